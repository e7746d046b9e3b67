"""Compare-and-set and the quota under real contention: a live server process, and writers in
several OS processes released at the same instant (tests/support/load.py)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, stored_bytes
from tests.support.load import Answer, Call, fire
from tests.support.server import LiveServer, remember_key

PROCESSES = 5
CLIENTS = 10  # per process: 50 writers in all


@pytest.fixture(scope="module")
def live(live_server: LiveServer) -> tuple[LiveServer, str]:
    return live_server, live_server.database_url


async def new_workspace(server: LiveServer, quota: int | None = None) -> tuple[str, dict]:
    name = f"w-{uuid.uuid4().hex[:10]}"
    body: dict = {"name": name}
    if quota is not None:
        body["quotaBytes"] = quota
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post(
            "/admin/workspaces", json=body, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
    assert r.status_code == 201, r.text
    return name, {"Authorization": f"Bearer {remember_key(r.json()['key'])}"}


async def run(server: LiveServer, calls: list[Call]) -> list[Answer]:
    return await asyncio.to_thread(fire, calls, PROCESSES, base_url=server.url)


async def test_compare_and_set_has_exactly_one_winner(live: tuple[LiveServer, str]) -> None:
    server, _ = live
    _, h = await new_workspace(server)
    async with httpx.AsyncClient(base_url=server.url, headers=h) as c:
        r = await c.put("/api/kv/cas", content=b"initial")
        assert r.status_code == 201
        start = r.headers["etag"]

        bodies = [f"writer-{i:02d}".encode() for i in range(PROCESSES * CLIENTS)]
        reqs = [Call("PUT", "/api/kv/cas", {**h, "If-Match": start}, body) for body in bodies]
        answers = await run(server, reqs)

        statuses = sorted(a.status for a in answers)
        assert statuses == [200] + [412] * (len(reqs) - 1), statuses
        winner = next(i for i, a in enumerate(answers) if a.status == 200)
        winner_tag = answers[winner].headers["etag"]
        for a in answers:
            if a.status == 412:
                assert a.json()["code"] == "precondition_failed"
                assert a.headers["etag"] == winner_tag  # every loser saw the winner's version
        r = await c.get("/api/kv/cas")
        assert r.content == bodies[winner] and r.headers["etag"] == winner_tag


async def test_create_only_has_exactly_one_winner(live: tuple[LiveServer, str]) -> None:
    server, _ = live
    _, h = await new_workspace(server)
    bodies = [f"creator-{i:02d}".encode() for i in range(PROCESSES * CLIENTS)]
    reqs = [Call("PUT", "/api/kv/once", {**h, "If-None-Match": "*"}, body) for body in bodies]
    answers = await run(server, reqs)
    statuses = sorted(a.status for a in answers)
    assert statuses == [201] + [412] * (len(reqs) - 1), statuses
    winner = next(i for i, a in enumerate(answers) if a.status == 201)
    async with httpx.AsyncClient(base_url=server.url, headers=h) as c:
        assert (await c.get("/api/kv/once")).content == bodies[winner]


async def test_concurrent_writers_cannot_overshoot_the_quota(live: tuple[LiveServer, str]) -> None:
    server, url = live
    quota = 20_000
    name, h = await new_workspace(server, quota)
    n = PROCESSES * CLIENTS

    # Round 1: 50 new entries of 1004 bytes (50 KB in all) race for 20 000 bytes.
    keys = [f"q/{i:02d}" for i in range(n)]
    values = {k: bytes([i]) * 1000 for i, k in enumerate(keys)}
    answers = await run(server, [Call("PUT", f"/api/kv/{k}", h, values[k]) for k in keys])
    stored = {k for k, a in zip(keys, answers, strict=True) if a.status == 201}
    for a in answers:
        assert a.status in (201, 413), a.body
        if a.status == 413:
            assert a.json()["code"] == "quota_exceeded"
    # The writes are decided one at a time: exactly as many fit as the quota holds.
    assert len(stored) == quota // 1004
    await check_usage(server, url, name, h, quota, {k: values[k] for k in stored})

    # Round 2: at once, deletes, overwrites that grow, and new entries, all on distinct keys.
    stored_keys = sorted(stored)
    deletes = stored_keys[::2]
    grows = stored_keys[1::2]
    fresh = [f"r/{i:02d}" for i in range(n - len(stored_keys))]
    new_values = {k: b"G" * 1500 for k in grows} | {k: b"F" * 700 for k in fresh}
    reqs = [Call("DELETE", f"/api/kv/{k}", h) for k in deletes]
    reqs += [Call("PUT", f"/api/kv/{k}", h, new_values[k]) for k in grows + fresh]
    answers = await run(server, reqs)
    expected = {k: values[k] for k in stored}
    for req, a in zip(reqs, answers, strict=True):
        key = req.url.removeprefix("/api/kv/")
        if req.method == "DELETE":
            assert a.status == 200, a.body
            del expected[key]
        elif a.status in (200, 201):
            expected[key] = new_values[key]
        else:
            assert a.status == 413 and a.json()["code"] == "quota_exceeded", a.body
    await check_usage(server, url, name, h, quota, expected)


async def check_usage(
    server: LiveServer, url: str, name: str, h: dict, quota: int, expected: dict[str, bytes]
) -> None:
    """used <= quota, used == the bytes really in the tables, and exactly `expected` is stored."""
    async with httpx.AsyncClient(base_url=server.url, headers=h) as c:
        used = (await c.get("/api/usage")).json()["used"]
        assert used <= quota
        assert used == await stored_bytes(url, name)
        assert used == sum(len(k) + len(v) for k, v in expected.items())
        listing = (await c.get("/api/kv", params={"limit": 1000})).json()["items"]
        assert sorted(i["key"] for i in listing) == sorted(expected)
        for key, value in expected.items():
            assert (await c.get(f"/api/kv/{key}")).content == value
