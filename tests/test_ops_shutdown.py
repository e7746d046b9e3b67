"""SIGTERM under load: in-flight requests finish, every acknowledged write is there and whole,
nothing is half applied, and the database is closed cleanly (usage equals a recount)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal

import httpx

from tests.conftest import stored_bytes
from tests.support.server import LiveServer, create_workspace

WORKERS = 12
MAX_PER_WORKER = 150  # bounded, whatever happens
SIGTERM_AFTER = 120  # acknowledged writes before the signal


def body_for(key: str, size: int) -> bytes:
    seed = hashlib.sha256(key.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


async def load(server: LiveServer, key: str) -> list[tuple[str, bytes, object]]:
    """Concurrent writers of distinct keys and bodies; SIGTERM once enough were acknowledged.
    Returns (key, body, status or the exception) for every request sent."""
    results: list[tuple[str, bytes, object]] = []
    acknowledged = 0
    signalled = asyncio.Event()
    after_signal: list[str] = []
    rng = random.Random(6)

    async def worker(n: int) -> None:
        nonlocal acknowledged
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/x-test"}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for i in range(MAX_PER_WORKER):
                name = f"w{n}/k{i}"
                body = body_for(name, rng.randrange(1, 48_000))
                try:
                    r = await client.put(f"/api/kv/{name}", content=body, headers=headers)
                except httpx.HTTPError as exc:  # no answer: the write may or may not exist
                    results.append((name, body, exc))
                    return
                results.append((name, body, r.status_code))
                if signalled.is_set():
                    after_signal.append(name)
                if r.status_code == 201:
                    acknowledged += 1
                if acknowledged >= SIGTERM_AFTER and not signalled.is_set():
                    signalled.set()
                    os.killpg(server.proc.pid, signal.SIGTERM)  # mid-load: others are in flight

    await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    assert signalled.is_set(), "the load ended before the signal"
    # Eleven other writers had requests in flight when the signal went: they were answered.
    assert after_signal, "no request was answered after the signal"
    return results


def test_sigterm_mid_load_keeps_every_acknowledged_write(tmp_path, database_url) -> None:  # noqa: ANN001
    key = create_workspace(database_url, "load")
    server = LiveServer(database_url, tmp_path).start()
    try:
        results = asyncio.run(load(server, key))
        # uvicorn finishes, then re-raises the signal so that the exit status tells it.
        assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
        log = server.log_text()
        assert "Application shutdown complete" in log  # the lifespan closed the database
        assert "Finished server process" in log

        answered = [(k, b, s) for k, b, s in results if isinstance(s, int)]
        unknown = [(k, b) for k, b, s in results if not isinstance(s, int)]
        assert answered and {s for _, _, s in answered} == {201}  # no 5xx, no half answer
        assert len(answered) >= SIGTERM_AFTER

        server.start()
        headers = {"Authorization": f"Bearer {key}"}
        present = 0
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            for name, body, _ in answered:
                r = client.get(f"/api/kv/{name}")
                assert r.status_code == 200, name
                assert r.content == body and r.headers["content-type"] == "application/x-test"
                present += len(name) + len(body)
            for name, body in unknown:  # either the whole write or nothing of it
                r = client.get(f"/api/kv/{name}")
                assert r.status_code in (200, 404), name
                if r.status_code == 200:
                    assert r.content == body
                    present += len(name) + len(body)
            usage = client.get("/api/usage").json()
        assert usage["used"] == present
        assert asyncio.run(stored_bytes(database_url, "load")) == present
    finally:
        server.stop()
