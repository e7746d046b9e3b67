"""Several server processes on one PostgreSQL database, with clients in several OS processes.

Each replica is a real `memory-service serve` process; the clients are spread over the replicas
and over worker processes (tests/support/load.py), so the decisions under test (compare-and-set,
quota, usage, key revocation) are made by the database, not by one process's memory.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, stored_bytes
from tests.support.load import Call, all_messages, fire, replicas
from tests.support.server import LiveServer

AUTH_CACHE_SECONDS = 1.0
# Time for a poll to notice, and scheduling on a shared 2-core machine. A correctness bound: a
# replica that ignored revocation entirely would trust the key until it restarts.
SLACK_SECONDS = 2.0
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Fleet:
    database_url: str
    servers: list[LiveServer]

    def url(self, i: int, path: str) -> str:
        return self.servers[i % len(self.servers)].url + path

    def workspace(self, quota: int | None = None) -> tuple[str, dict[str, str]]:
        """A new workspace (created through replica 0's admin API) and its auth headers."""
        name = f"w-{uuid.uuid4().hex[:10]}"
        body: dict = {"name": name}
        if quota is not None:
            body["quotaBytes"] = quota
        r = httpx.post(self.url(0, "/admin/workspaces"), json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        return name, {"Authorization": f"Bearer {r.json()['key']}"}

    def usage(self, i: int, headers: dict[str, str]) -> int:
        r = httpx.get(self.url(i, "/api/usage"), headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["used"]


@pytest.fixture(scope="module")
def fleet(pg, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:  # noqa: ANN001
    url = pg.create_database(f"replicas_{uuid.uuid4().hex[:8]}")
    log_dir = tmp_path_factory.mktemp("replica-logs")
    env = {"MEMORY_AUTH_CACHE_SECONDS": str(AUTH_CACHE_SECONDS)}
    with replicas(url, 3, log_dir, env=env) as servers:
        yield Fleet(url, servers)


def recount(fleet: Fleet, workspace: str) -> int:
    return asyncio.run(stored_bytes(fleet.database_url, workspace))


def test_conditional_writes_across_replicas_exactly_one_wins(fleet: Fleet) -> None:
    _, h = fleet.workspace()
    r = httpx.put(fleet.url(0, "/api/kv/counter"), content=b"v0", headers=h)
    assert r.status_code == 201, r.text
    tag = r.headers["etag"]

    bodies = [f"writer-{i}".encode() for i in range(50)]
    calls = [
        Call("PUT", fleet.url(i, "/api/kv/counter"), {**h, "If-Match": tag}, body)
        for i, body in enumerate(bodies)
    ]
    answers = fire(calls, processes=4)

    statuses = Counter(a.status for a in answers)
    assert statuses == {200: 1, 412: 49}, statuses
    winner = next(i for i, a in enumerate(answers) if a.status == 200)
    for a in answers:
        if a.status == 412:
            assert a.json()["code"] == "precondition_failed"
    # Every replica reads the winner's bytes at the winner's version.
    for i in range(3):
        r = httpx.get(fleet.url(i, "/api/kv/counter"), headers=h)
        assert r.content == bodies[winner]
        assert r.headers["etag"] == answers[winner].headers["etag"]


def test_create_only_writes_across_replicas_exactly_one_creates(fleet: Fleet) -> None:
    _, h = fleet.workspace()
    calls = [
        Call("PUT", fleet.url(i, "/api/kv/lock"), {**h, "If-None-Match": "*"}, f"{i}".encode())
        for i in range(50)
    ]
    answers = fire(calls, processes=4)
    assert Counter(a.status for a in answers) == {201: 1, 412: 49}
    winner = next(i for i, a in enumerate(answers) if a.status == 201)
    assert httpx.get(fleet.url(2, "/api/kv/lock"), headers=h).content == f"{winner}".encode()


def test_concurrent_writers_near_the_quota_cannot_overshoot_it(fleet: Fleet) -> None:
    value = b"q" * 1000
    entry = len(b"k-00") + len(value)  # every key below has 4 bytes
    quota = 10 * entry + entry // 2  # room for exactly 10 entries
    name, h = fleet.workspace(quota=quota)
    calls = [Call("PUT", fleet.url(i, f"/api/kv/k-{i:02d}"), h, value) for i in range(60)]
    answers = fire(calls, processes=4)

    statuses = Counter(a.status for a in answers)
    assert statuses == {201: 10, 413: 50}, statuses
    assert all(a.json()["code"] == "quota_exceeded" for a in answers if a.status == 413)
    assert fleet.usage(1, h) == 10 * entry == recount(fleet, name)

    # Now growth, shrinking and deletes race each other at the edge of the quota.
    stored = [i for i, a in enumerate(answers) if a.status == 201]
    calls = []
    for n, i in enumerate(stored):
        key = f"/api/kv/k-{i:02d}"
        if n % 3 == 0:
            calls.append(Call("DELETE", fleet.url(n, key), h))
        elif n % 3 == 1:
            calls.append(Call("PUT", fleet.url(n, key), h, b"q" * 1400))  # grows by 400
        else:
            calls.append(Call("PUT", fleet.url(n, key), h, b"q" * 10))  # shrinks by 990
    calls += [Call("PUT", fleet.url(n, f"/api/kv/n-{n:02d}"), h, value) for n in range(20)]
    answers = fire(calls, processes=4)
    assert {a.status for a in answers} <= {200, 201, 413}, Counter(a.status for a in answers)

    used = fleet.usage(2, h)
    assert used <= quota
    assert used == recount(fleet, name)
    listing = httpx.get(fleet.url(0, "/api/kv"), params={"limit": 1000}, headers=h).json()
    assert sum(item["size"] for item in listing["items"]) == used


def test_usage_stays_exact_under_mixed_load_from_every_replica(fleet: Fleet) -> None:
    name, h = fleet.workspace()
    calls = []
    for n in range(240):
        key = f"/api/kv/mix-{n % 40}"  # 40 keys, each hit by six writers of mixed kinds
        if n % 6 == 5:
            calls.append(Call("DELETE", fleet.url(n, key), h))
        else:
            calls.append(Call("PUT", fleet.url(n, key), h, b"m" * (n * 37 % 3000)))
    answers = fire(calls, processes=4)
    assert {a.status for a in answers} <= {200, 201, 404}, Counter(a.status for a in answers)

    # Each acknowledged write took its own version: never two writes with the same version.
    versions = [
        a.json()["version"]
        for call, a in zip(calls, answers, strict=True)
        if call.method == "PUT" and a.status in (200, 201)
    ]
    assert len(versions) == len(set(versions))
    used = fleet.usage(0, h)
    assert used == recount(fleet, name)
    listing = httpx.get(fleet.url(1, "/api/kv"), params={"limit": 1000}, headers=h).json()
    assert sum(item["size"] for item in listing["items"]) == used


def test_600_concurrent_adds_to_one_memory_land_once_each_in_one_order(fleet: Fleet) -> None:
    name, h = fleet.workspace()
    bodies = [
        {"conversationId": "conv-1", "blockId": "agent", "role": "user", "content": f"m-{i}"}
        for i in range(600)
    ]
    calls = [
        Call(
            "POST",
            fleet.url(i, "/api/memory"),
            {**h, "Content-Type": "application/json"},
            json.dumps(b).encode(),
        )
        for i, b in enumerate(bodies)
    ]
    answers = fire(calls, processes=6)
    assert Counter(a.status for a in answers) == {200: 600}, Counter(a.status for a in answers)

    # What each client was told: its message, at a position no other client was given.
    told = {}
    for body, a in zip(bodies, answers, strict=True):
        (memory,) = a.json()["memories"]
        (message,) = memory["data"]
        assert message["content"] == body["content"]
        told[message["seq"]] = body["content"]
    assert sorted(told) == list(range(600))

    # Every replica reads the same 600 messages, each once, in the order the clients were told.
    orders = [all_messages(fleet.url(i, ""), h, "conv-1", "agent") for i in range(3)]
    assert orders[0] == orders[1] == orders[2]
    assert [m["seq"] for m in orders[0]] == list(range(600))
    assert [m["content"] for m in orders[0]] == [told[i] for i in range(600)]
    assert fleet.usage(0, h) == recount(fleet, name)


def test_concurrent_batches_across_replicas_are_atomic_and_contiguous(fleet: Fleet) -> None:
    name, h = fleet.workspace()
    batches = [[{"role": "user", "content": f"b{b}-{i}"} for i in range(5)] for b in range(100)]
    calls = [
        Call(
            "POST",
            fleet.url(b, "/api/memory"),
            {**h, "Content-Type": "application/json"},
            json.dumps({"conversationId": "conv-b", "messages": batch}).encode(),
        )
        for b, batch in enumerate(batches)
    ]
    answers = fire(calls, processes=4)
    assert Counter(a.status for a in answers) == {200: 100}
    data = all_messages(fleet.url(1, ""), h, "conv-b", "default")
    contents = [m["content"] for m in data]
    assert len(contents) == 500
    # Each batch's five messages sit together, in their order: no interleaving.
    for start in range(0, 500, 5):
        b = contents[start].split("-")[0]
        assert contents[start : start + 5] == [f"{b}-{i}" for i in range(5)]
    assert {c.split("-")[0] for c in contents} == {f"b{b}" for b in range(100)}
    assert fleet.usage(2, h) == recount(fleet, name)


def test_concurrent_adds_near_the_quota_cannot_overshoot_it(fleet: Fleet) -> None:
    content = "c" * 996
    per_message = len("user") + len(content)  # what one message is charged
    quota = 12 * per_message + per_message // 2
    name, h = fleet.workspace(quota=quota)
    calls = [
        Call(
            "POST",
            fleet.url(i, "/api/memory"),
            {**h, "Content-Type": "application/json"},
            json.dumps(
                {"conversationId": f"q-{i % 3}", "role": "user", "content": content}
            ).encode(),
        )
        for i in range(60)
    ]
    answers = fire(calls, processes=4)
    assert Counter(a.status for a in answers) == {200: 12, 413: 48}
    # The messages, and the ids of each memory they created (charged once per memory).
    memories = httpx.get(fleet.url(0, "/api/memory/all"), headers=h).json()["memories"]
    ids = sum(len(m["conversationId"]) + len(m["blockId"]) for m in memories)
    assert sum(m["messageCount"] for m in memories) == 12
    assert fleet.usage(0, h) == 12 * per_message + ids == recount(fleet, name)


def _status(url: str, headers: dict[str, str]) -> int:
    return httpx.get(url, headers=headers).status_code


def test_revoked_key_stops_working_on_every_replica_within_the_cache_bound(fleet: Fleet) -> None:
    name, h = fleet.workspace()
    keys = httpx.get(fleet.url(0, f"/admin/workspaces/{name}/keys"), headers=ADMIN).json()["keys"]
    (key_id,) = [k["id"] for k in keys]
    usage = [fleet.url(i, "/api/usage") for i in range(3)]
    # Every replica has checked the key, and so caches it, right before the revocation.
    assert [_status(u, h) for u in usage] == [200, 200, 200]

    r = httpx.delete(fleet.url(0, f"/admin/keys/{key_id}"), headers=ADMIN)
    assert r.status_code == 200, r.text
    revoked_at = time.monotonic()
    assert _status(usage[0], h) == 401  # the replica that revoked it forgets it at once

    refused_after = {}
    deadline = revoked_at + AUTH_CACHE_SECONDS + SLACK_SECONDS + 10  # give up far later
    while len(refused_after) < 2 and time.monotonic() < deadline:
        for i in (1, 2):
            if i not in refused_after and _status(usage[i], h) == 401:
                refused_after[i] = time.monotonic() - revoked_at
        time.sleep(0.02)
    assert set(refused_after) == {1, 2}, "a replica kept accepting a revoked key"
    assert max(refused_after.values()) <= AUTH_CACHE_SECONDS + SLACK_SECONDS, refused_after
    # And it stays refused everywhere.
    assert [_status(u, h) for u in usage] == [401, 401, 401]


def test_deleted_workspace_is_refused_cleanly_by_replicas_that_still_cache_its_key(
    fleet: Fleet,
) -> None:
    name, h = fleet.workspace()
    for i in range(3):
        r = httpx.put(fleet.url(i, f"/api/kv/r{i}"), content=b"x", headers=h)
        assert r.status_code == 201, r.text
    r = httpx.delete(fleet.url(0, f"/admin/workspaces/{name}"), headers=ADMIN)
    assert r.status_code == 200, r.text
    # Replicas 1 and 2 may still trust the key for a moment: whatever they answer meanwhile is
    # a clean 4xx (the data is gone), never a 5xx, and nothing is written for a deleted workspace.
    for i in (1, 2):
        for method in ("PUT", "GET", "DELETE"):
            r = httpx.request(method, fleet.url(i, "/api/kv/r0"), content=b"y", headers=h)
            assert r.status_code in (401, 404), (method, r.status_code, r.text)
        r = httpx.get(fleet.url(i, "/api/usage"), headers=h)
        assert r.status_code in (401, 404), r.text
    assert recount(fleet, name) == 0


def test_replicas_started_together_on_an_empty_database_all_come_up(
    pg,  # noqa: ANN001
    tmp_path,  # noqa: ANN001
) -> None:
    """Migrations at start-up are serialised across processes: none fails on a race."""
    url = pg.create_database(f"together_{uuid.uuid4().hex[:8]}")
    servers = [LiveServer(url, tmp_path) for _ in range(3)]
    errors: list[BaseException] = []

    def start(server: LiveServer) -> None:
        try:
            server.start()
        except BaseException as exc:  # reported below, with the server's log
            errors.append(exc)

    try:
        threads = [threading.Thread(target=start, args=(s,)) for s in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[0]
        ws = httpx.get(servers[0].url + "/admin/workspaces", headers=ADMIN).json()["workspaces"]
        assert ws == []  # --no-default-workspace
        for server in servers:
            assert httpx.get(server.url + "/ready").status_code == 200
    finally:
        for server in servers:
            server.stop()
