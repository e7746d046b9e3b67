"""Load from several OS processes at the same instant, and several server processes on one
database: the one multi-process load helper of the tests.

    with replicas(database_url, 3, log_dir) as servers:
        answers = fire([Call("PUT", servers[i % 3].url + "/api/kv/k", headers, b"v") ...])
    answers = fire([Call("PUT", "/api/kv/k", headers, b"1"), ...], base_url=server.url)

`fire` deals the calls over `processes` worker processes, round robin. Every call has its own
`httpx.AsyncClient` (its own connection, opened by a warm-up request before the start), and all
processes wait on one barrier, so the calls leave together and contend for real: across
processes, across connections, across replicas, and inside each server's event loop. Answers
come back in the calls' order. Workers come from a fork server (started once, with this module
imported), never forked from the test process, whose threads and event loop a fork would copy
half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import queue
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.server import LiveServer


@dataclass(frozen=True)
class Call:
    method: str
    url: str  # absolute, or a path under fire's base_url
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer at all (connection refused, reset, timeout)
    headers: dict[str, str]
    body: bytes
    error: str = ""

    def json(self):  # noqa: ANN201
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


async def _one_process(
    base_url: str,
    calls: list[Call],
    barrier,
    limit: float,  # noqa: ANN001
) -> list[Answer]:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    # One TLS context for all: httpx builds one per client otherwise (~50 ms each), unused here.
    tls = ssl.create_default_context()
    clients = [
        httpx.AsyncClient(base_url=base_url, timeout=limit, limits=limits, verify=tls)
        for _ in calls
    ]

    async def warm(client: httpx.AsyncClient, call: Call) -> None:
        # Open the connection (and let the server know the key) before the start, so the calls
        # race, not the TCP handshakes. A server that is down answers the call itself with 0.
        origin = httpx.URL(call.url).join("/") if httpx.URL(call.url).is_absolute_url else ""
        with contextlib.suppress(httpx.HTTPError):
            await client.get(f"{str(origin).rstrip('/')}/api/usage", headers=call.headers)

    async def send(client: httpx.AsyncClient, call: Call) -> Answer:
        try:
            r = await client.request(
                call.method, call.url, headers=call.headers, content=call.body, params=call.params
            )
        except httpx.HTTPError as exc:
            return Answer(0, {}, b"", f"{type(exc).__name__}: {exc}")
        return Answer(r.status_code, dict(r.headers), r.content)

    try:
        await asyncio.gather(*(warm(c, call) for c, call in zip(clients, calls, strict=True)))
        await asyncio.to_thread(barrier.wait, limit)
        return list(
            await asyncio.gather(*(send(c, k) for c, k in zip(clients, calls, strict=True)))
        )
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def _worker(index: int, base_url: str, calls: list[Call], barrier, out, timeout: float) -> None:  # noqa: ANN001
    try:
        out.put((index, asyncio.run(_one_process(base_url, calls, barrier, timeout)), None))
    except BaseException as exc:  # the parent re-raises it with the worker's words
        barrier.abort()
        out.put((index, None, f"{type(exc).__name__}: {exc}"))


def fire(
    calls: Sequence[Call], processes: int = 4, *, base_url: str = "", timeout: float = 60.0
) -> list[Answer]:
    """Send every call at once from `processes` OS processes; answers in the calls' order."""
    processes = max(1, min(processes, len(calls)))
    chunks = [list(calls[p::processes]) for p in range(processes)]
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])  # imported once by the server, not per worker
    barrier = ctx.Barrier(processes)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(p, base_url, chunk, barrier, out, timeout), daemon=True)
        for p, chunk in enumerate(chunks)
    ]
    for p in procs:
        p.start()
    results: dict[int, list[Answer]] = {}
    errors = []
    try:
        for _ in procs:
            try:
                index, answers, err = out.get(timeout=timeout + 60)
            except queue.Empty:
                raise RuntimeError("load workers did not answer in time") from None
            if err:
                errors.append(f"worker {index}: {err}")
            else:
                results[index] = answers
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return [results[i % processes][i // processes] for i in range(len(calls))]


def all_messages(base_url: str, headers: dict, conversation: str, block: str) -> list[dict]:
    """Every message of one memory, oldest first, following its message cursor back ([] if the
    memory does not exist)."""
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
