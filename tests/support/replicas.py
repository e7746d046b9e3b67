"""Several `memory-service serve` processes on one database, and clients in several OS processes.

    with replicas(database_url, 3, log_dir) as servers:
        answers = fire([Call("PUT", servers[i % 3].url + "/api/kv/k", headers, b"v") ...])

`fire` splits the calls over worker processes (spawned, so nothing of the test process's threads
or event loop is inherited); each worker opens one connection per call and sends them all at
once, released by a common start time so that the calls really overlap across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.server import LiveServer


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer at all (connection refused, reset, timeout)
    headers: dict[str, str]
    body: bytes
    error: str = ""

    def json(self):  # noqa: ANN201
        import json

        return json.loads(self.body)


@contextlib.contextmanager
def replicas(
    database_url: str, n: int, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[list[LiveServer]]:
    """`n` server processes on one database (the first migrates; the others find it current)."""
    servers: list[LiveServer] = []
    try:
        for _ in range(n):
            servers.append(LiveServer(database_url, log_dir, env=env).start())
        yield servers
    finally:
        for server in servers:
            server.stop()


async def _send_all(calls: Sequence[Call], start_at: float, timeout_s: float) -> list[Answer]:
    import ssl

    import httpx

    tls = ssl.create_default_context()  # built once: httpx builds one per client (~20 ms) else

    async def one(call: Call) -> Answer:
        # One client per call: a shared pool would queue calls instead of overlapping them.
        async with httpx.AsyncClient(timeout=timeout_s, verify=tls) as client:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            try:
                r = await client.request(
                    call.method, call.url, headers=call.headers, content=call.body
                )
            except httpx.HTTPError as exc:
                return Answer(0, {}, b"", f"{type(exc).__name__}: {exc}")
            return Answer(r.status_code, dict(r.headers), r.content)

    return await asyncio.gather(*(one(c) for c in calls))


def _worker(calls: Sequence[Call], start_at: float, timeout: float) -> list[Answer]:
    return asyncio.run(_send_all(calls, start_at, timeout))


def fire(
    calls: Sequence[Call], processes: int = 4, timeout: float = 60.0, lead: float = 2.0
) -> list[Answer]:
    """Send every call concurrently from `processes` OS processes; answers in the calls' order.

    `lead` seconds let every worker start (spawn + imports) before the common start time.
    """
    chunks = [list(range(i, len(calls), processes)) for i in range(processes)]
    start_at = time.time() + lead
    ctx = multiprocessing.get_context("spawn")
    answers: list[Answer | None] = [None] * len(calls)
    with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        futures = [
            pool.submit(_worker, [calls[i] for i in idx], start_at, timeout) for idx in chunks
        ]
        for idx, fut in zip(chunks, futures, strict=True):
            for i, answer in zip(idx, fut.result(), strict=True):
                answers[i] = answer
    return answers  # type: ignore[return-value]


def all_messages(base_url: str, headers: dict, conversation: str, block: str) -> list[dict]:
    """Every message of one memory, oldest first, following its message cursor back ([] if the
    memory does not exist)."""
    import httpx

    params = {"conversationId": conversation, "blockId": block}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        r = client.get("/api/memory", params=params)
        assert r.status_code == 200, r.text
        if not r.json()["memories"]:
            return []
        (memory,) = r.json()["memories"]
        data, cursor = memory["data"], memory.get("dataCursor")
        while cursor:
            r = client.get("/api/memory/messages", params={**params, "cursor": cursor})
            assert r.status_code == 200, r.text
            data = r.json()["data"] + data
            cursor = r.json().get("nextCursor")
    assert len(data) == memory["messageCount"]
    return data
