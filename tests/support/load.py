"""Fire many HTTP requests at a live server at the same instant, from several OS processes.

    results = fire(server.url, [[Req("PUT", "/api/kv/k", headers, b"1"), ...], ...])

`requests[p][c]` is the request of client `c` in process `p`. Every client has its own
`httpx.AsyncClient` (its own connection, opened by a warm-up request before the start), and all
processes wait on one barrier, so the requests leave together and contend for real: across
processes, across connections, and inside the server's event loop. Answers come back in the same
shape as the requests. Workers come from a fork server (started once, with this module imported),
never forked from the test process, whose threads and event loop a fork would copy half-way.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import ssl
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    params: dict[str, str] | None = None


@dataclass(frozen=True)
class Res:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        import json

        return json.loads(self.body)


async def _one_process(base_url: str, reqs: list[Req], barrier, limit: float) -> list[Res]:  # noqa: ANN001
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    # One TLS context for all: httpx builds one per client otherwise (~50 ms each), unused here.
    tls = ssl.create_default_context()
    clients = [
        httpx.AsyncClient(base_url=base_url, timeout=limit, limits=limits, verify=tls) for _ in reqs
    ]
    try:
        # Open every connection before the start, so the requests race, not the TCP handshakes.
        await asyncio.gather(
            *(c.get("/api/usage", headers=r.headers) for c, r in zip(clients, reqs, strict=True))
        )
        await asyncio.to_thread(barrier.wait, limit)

        async def send(client: httpx.AsyncClient, r: Req) -> Res:
            resp = await client.request(
                r.method, r.path, headers=r.headers, content=r.content, params=r.params
            )
            return Res(resp.status_code, dict(resp.headers), resp.content)

        return list(await asyncio.gather(*(send(c, r) for c, r in zip(clients, reqs, strict=True))))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def _worker(index: int, base_url: str, reqs: list[Req], barrier, out, timeout: float) -> None:  # noqa: ANN001
    try:
        out.put((index, asyncio.run(_one_process(base_url, reqs, barrier, timeout)), None))
    except BaseException as exc:  # the parent re-raises it with the worker's words
        barrier.abort()
        out.put((index, None, f"{type(exc).__name__}: {exc}"))


def fire(base_url: str, requests: list[list[Req]], timeout: float = 60) -> list[list[Res]]:
    """Send requests[p][c] from process p, client c, all released at once; answers alike."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])  # imported once by the server, not per worker
    barrier = ctx.Barrier(len(requests))
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(i, base_url, reqs, barrier, out, timeout), daemon=True)
        for i, reqs in enumerate(requests)
    ]
    for p in procs:
        p.start()
    results: dict[int, list[Res]] = {}
    errors = []
    try:
        for _ in procs:
            try:
                index, res, err = out.get(timeout=timeout + 60)
            except queue.Empty:
                raise RuntimeError("load workers did not answer in time") from None
            if err:
                errors.append(f"worker {index}: {err}")
            else:
                results[index] = res
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    if errors:
        raise RuntimeError("; ".join(errors))
    return [results[i] for i in range(len(requests))]


def spread(reqs: list[Req], processes: int) -> list[list[Req]]:
    """Deal a flat list of requests over `processes` processes, round robin."""
    return [reqs[i::processes] for i in range(processes)]


def flat(results: list[list[Res]], processes: int) -> list[Res]:
    """Undo `spread`: answers in the order of the flat request list."""
    total = sum(len(r) for r in results)
    return [results[i % processes][i // processes] for i in range(total)]
