"""PostgreSQL writes hold the workspace row lock for one round trip: each KV write is one statement
in its own transaction (no BEGIN, no COMMIT), so the lock it takes inside the database is released
before the answer comes back.

Round trips are counted on the driver: every message exchange asyncpg's protocol makes with the
server (simple queries such as BEGIN and COMMIT, prepares, executions) goes through a counter
placed on each pooled connection. Nothing is mocked: the statements run on the real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import event

from memory_service.clock import now_ms
from memory_service.services.errors import PreconditionFailed, QuotaExceeded
from tests.conftest import Api, make_api, stored_bytes
from tests.support.pgserver import PgServer, pg_wanted

pytestmark = pytest.mark.skipif(not pg_wanted(), reason="PostgreSQL tests skipped")

# asyncpg's protocol methods that each send messages and wait for the server's answer.
ROUND_TRIPS = ("query", "prepare", "bind_execute", "bind_execute_many", "bind", "execute")


class CountingProtocol:
    """Forwards to asyncpg's protocol, counting the round-trip calls by kind."""

    def __init__(self, protocol: object, counts: Counter) -> None:
        self._protocol = protocol
        self._counts = counts

    def __getattr__(self, name: str) -> object:
        attr = getattr(self._protocol, name)
        if name in ROUND_TRIPS:
            counts = self._counts

            def counted(*args: object, **kwargs: object) -> object:
                counts[name] += 1
                if name == "query":
                    counts[f"query:{str(args[0]).split()[0].upper()}"] += 1
                return attr(*args, **kwargs)

            return counted
        return attr


@pytest.fixture
async def counted(pg: PgServer) -> AsyncIterator[tuple[Api, Counter]]:
    async with counting(pg) as made:
        yield made


@asynccontextmanager
async def counting(pg: PgServer, **overrides: object) -> AsyncIterator[tuple[Api, Counter]]:
    """The app on a new database, its driver's round trips counted (`overrides`: settings)."""
    api, app = await make_api(
        pg.create_database(f"round_trips_{uuid.uuid4().hex[:8]}"), **overrides
    )
    counts: Counter = Counter()
    engine = app.state.services.db.engine

    @event.listens_for(engine.sync_engine, "connect")
    def _count(dbapi_conn, _record) -> None:  # noqa: ANN001
        raw = dbapi_conn._connection
        raw._protocol = CountingProtocol(raw._protocol, counts)

    async with api.client:
        yield api, counts


async def test_kv_set_and_delete_are_one_round_trip_each(counted) -> None:  # noqa: ANN001
    api, counts = counted
    ws = await api.workspace("w")
    # Warm up: the first use of each statement on a connection also prepares it.
    for i in range(3):
        assert (await api.client.put(f"/api/kv/warm{i}", content=b"x", headers=ws)).is_success
        assert (await api.client.delete(f"/api/kv/warm{i}", headers=ws)).status_code == 200
    for request, status in [
        (("PUT", "/api/kv/k", b"v1", {}), 201),
        (("PUT", "/api/kv/k", b"v2", {"If-Match": '"4"'}), 200),  # after 3 warm-up writes
        (("PUT", "/api/kv/k", b"v3", {"If-Match": '"1"'}), 412),
        (("PUT", "/api/kv/k", b"v3", {"If-None-Match": "*"}), 412),
        (("PUT", "/api/kv/t?ttl=60", b"ttl", {}), 201),
        (("DELETE", "/api/kv/k", None, {"If-Match": '"5"'}), 200),
        (("DELETE", "/api/kv/k", None, {}), 404),
    ]:
        method, path, body, headers = request
        counts.clear()
        r = await api.client.request(method, path, content=body, headers={**ws, **headers})
        assert r.status_code == status, (request, r.text)
        # The key check is cached after the first request of a workspace, so the write is the
        # only statement: one execution, and no BEGIN or COMMIT around it.
        assert counts["bind_execute"] == 1, (request, counts)
        assert sum(counts[k] for k in ROUND_TRIPS) == 1, (request, counts)


async def workspace_id(services, name: str, quota: int | None = None) -> int:  # noqa: ANN001
    _, key = await services.workspaces.create_workspace(name, quota)
    return (await services.workspaces.authenticate(key.secret)).workspace_id


@pytest.fixture
async def batched(pg: PgServer) -> AsyncIterator[tuple[object, Counter]]:
    """The app's services, called concurrently on this test's event loop, as a server's requests
    are (the test client runs the app on a loop of its own, one request at a time)."""
    _, app = await make_api(pg.create_database(f"batched_{uuid.uuid4().hex[:8]}"))
    counts: Counter = Counter()
    services = app.state.services

    @event.listens_for(services.db.engine.sync_engine, "connect")
    def _count(dbapi_conn, _record) -> None:  # noqa: ANN001
        raw = dbapi_conn._connection
        raw._protocol = CountingProtocol(raw._protocol, counts)

    await services.cursors.load()  # the shared secret, read once at start-up by a server
    try:
        yield services, counts
    finally:
        await services.db.dispose()


async def test_concurrent_sets_share_statements_and_keep_every_rule(batched) -> None:  # noqa: ANN001
    """Sets arriving together go in one statement (one commit) and are decided one by one under
    the lock: versions distinct and gap-free, exactly one compare-and-set winner, quota exact."""
    services, counts = batched
    kv = services.kv
    a = await workspace_id(services, "a")
    b = await workspace_id(services, "b", quota=10 * (2 + 100))
    counts.clear()
    written = await asyncio.gather(
        *(kv.set(a, f"k{i}", b"x" * 10) for i in range(40)),
        *(kv.set(b, f"k{i}", b"y" * 100) for i in range(15)),
        return_exceptions=True,
    )
    statements = counts["bind_execute"]
    assert 1 <= statements < 55 / 4  # most writes shared a statement with others
    assert sorted(w.version for w in written[:40]) == list(range(1, 41))
    assert all(w.created for w in written[:40])
    in_b = written[40:]  # (one statement: 55 < MAX_BATCH, so in arrival order)
    assert sorted(w.version for w in in_b if not isinstance(w, Exception)) == list(range(1, 11))
    refused = [w for w in in_b if isinstance(w, Exception)]
    assert len(refused) == 5 and all(isinstance(w, QuotaExceeded) for w in refused)
    assert await kv.usage(b) == {"used": 10 * 102, "quota": 10 * 102}

    # Compare-and-set in one batch: of 20 writers that all saw version 41, one wins.
    assert (await kv.set(a, "k39", b"z")).version == 41
    results = await asyncio.gather(
        *(kv.set(a, "k39", b"w", if_match='"41"') for _ in range(20)),
        *(kv.set(a, "new", b"n", if_none_match="*") for _ in range(20)),
        return_exceptions=True,
    )
    cas, create = results[:20], results[20:]
    assert sum(not isinstance(r, Exception) for r in cas) == 1
    assert all(isinstance(r, PreconditionFailed) for r in cas if isinstance(r, Exception))
    assert sum(not isinstance(r, Exception) for r in create) == 1
    assert all(isinstance(r, PreconditionFailed) for r in create if isinstance(r, Exception))
    value = await kv.get(a, "k39")
    assert value.value == b"w" and value.version == 42  # arrival order: the CAS batch first
    assert (await kv.get(a, "new")).version == 43


async def test_kv_get_and_head_are_one_round_trip_each(counted) -> None:  # noqa: ANN001
    """A point read is one statement: alone in its transaction, without BEGIN and COMMIT."""
    api, counts = counted
    ws = await api.workspace("w")
    assert (await api.client.put("/api/kv/k", content=b"v", headers=ws)).status_code == 201
    for _ in range(2):  # warm up
        assert (await api.client.get("/api/kv/k", headers=ws)).content == b"v"
        assert (await api.client.head("/api/kv/k", headers=ws)).status_code == 200
    for method, path, status in [
        ("GET", "/api/kv/k", 200),
        ("HEAD", "/api/kv/k", 200),
        ("GET", "/api/kv/absent", 404),
    ]:
        counts.clear()
        r = await api.client.request(method, path, headers=ws)
        assert r.status_code == status
        assert counts["bind_execute"] == 1, (path, counts)
        assert sum(counts[k] for k in ROUND_TRIPS) == 1, (path, counts)


async def test_memory_add_is_one_round_trip(counted) -> None:  # noqa: ANN001
    api, counts = counted
    ws = await api.workspace("w")
    for i in range(3):  # warm up (statements prepared on the connection)
        body = {"conversationId": f"warm{i}", "role": "user", "content": "hi"}
        assert (await api.client.post("/api/memory", json=body, headers=ws)).is_success
    for i, conv in enumerate(["c", "c", "d"]):
        counts.clear()
        body = {"conversationId": conv, "role": "user", "content": f"m{i}"}
        r = await api.client.post("/api/memory", json=body, headers=ws)
        assert r.is_success, r.text
        assert counts["bind_execute"] == 1, counts
        assert sum(counts[k] for k in ROUND_TRIPS) == 1, counts
    got = (await api.client.get("/api/memory?conversationId=c", headers=ws)).json()
    assert got["memories"][0]["data"] == [
        {"seq": 0, "role": "user", "content": "m0"},
        {"seq": 1, "role": "user", "content": "m1"},
    ]


async def test_concurrent_adds_share_statements_and_keep_every_rule(batched) -> None:  # noqa: ANN001
    """Adds arriving together go in one statement and are decided one by one under the lock:
    per-memory sequence numbers dense and in arrival order, the quota (ids included) exact."""
    services, counts = batched
    memory = services.memory
    a = await workspace_id(services, "a")
    per = len("user") + 10  # what one 10-character message is charged
    ids = len("q") + len("default")  # what a new memory's ids are charged
    b = await workspace_id(services, "b", quota=ids + 5 * per)
    counts.clear()
    done = await asyncio.gather(
        *(
            memory.add(a, conversation_id=f"c{i % 3}", role="user", content=f"{i:010d}")
            for i in range(60)
        ),
        *(memory.add(b, conversation_id="q", role="user", content="x" * 10) for _ in range(8)),
        return_exceptions=True,
    )
    assert 1 <= counts["bind_execute"] < 68 / 4
    # Two statements may be in flight at once, so adds are serialised in the order their
    # statements took the lock, not always that of arrival: each memory's numbers are dense.
    for c in range(3):
        mine = [d[0] for i, d in enumerate(done[:60]) if i % 3 == c]
        by_seq = sorted((m.messages[0].seq, m.messages[0].content) for m in mine)
        assert [s for s, _ in by_seq] == list(range(20))
        assert sorted(c for _, c in by_seq) == [f"{i:010d}" for i in range(c, 60, 3)]
        assert {m.id for m in mine} == {mine[0].id} and max(m.message_count for m in mine) == 20
    # The first creates the memory (its ids and one message), four more fit, three do not.
    ok = [d[0] for d in done[60:] if not isinstance(d, Exception)]
    assert sorted(m.messages[0].seq for m in ok) == [0, 1, 2, 3, 4]
    refused = [d for d in done[60:] if isinstance(d, Exception)]
    assert len(refused) == 3 and all(isinstance(d, QuotaExceeded) for d in refused)
    usage = await services.kv.usage(b)
    assert usage["used"] == ids + 5 * per


def one_round_trip(counts: Counter, what: object) -> None:
    """The write was one statement, alone in its transaction: no BEGIN, no COMMIT, so the
    workspace lock it took inside the database was held for that one round trip only."""
    assert counts["bind_execute"] == 1, (what, counts)
    assert sum(counts[k] for k in ROUND_TRIPS) == 1, (what, counts)


async def test_every_memory_write_is_one_round_trip(pg: PgServer) -> None:
    """Adds of every kind (Idempotency-Key: first, replay, reused, exhausted, memory deleted;
    blockName; batches; lastN and keepSystem windows), deletes, block renames (done and refused
    for quota) and usage: each one statement (migration 0005), with the answer SQLite gives."""
    async with counting(pg, max_idempotency_keys=2) as (api, counts):
        c = api.client
        ws = await api.workspace("w", quota=1000)

        async def send(method: str, path: str, status: int, **kw: object) -> dict:
            headers = {**ws, **kw.pop("headers", {})}  # type: ignore[dict-item]
            counts.clear()
            r = await c.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]
            assert r.status_code == status, (method, path, kw, r.text)
            one_round_trip(counts, (method, path, kw))
            return r.json()

        def msg(conv: str, content: str, **more: object) -> dict:
            return {"conversationId": conv, "role": "user", "content": content, **more}

        # Warm up (the first use of a statement on a connection also prepares it).
        # Thrice: sequential requests may alternate between two pooled connections.
        for _ in range(3):
            await c.post("/api/memory", json=msg("warm", "w", blockName="wn"), headers=ws)
            await c.post("/api/memory", json=msg("warm", "plain"), headers=ws)
            await c.put("/api/memory/blocks/warm", json={"name": "x"}, headers=ws)
            await c.delete("/api/memory", params={"conversationId": "warm"}, headers=ws)
            await c.get("/api/usage", headers=ws)

        idem = {"Idempotency-Key": "k1"}
        first = await send("POST", "/api/memory", 200, json=msg("c", "one"), headers=idem)
        assert first["replayed"] is False and first["memories"][0]["messageCount"] == 1
        again = await send("POST", "/api/memory", 200, json=msg("c", "one"), headers=idem)
        assert (
            again["replayed"] is True
            and again["memories"][0]["data"] == first["memories"][0]["data"]
        )
        other = await send("POST", "/api/memory", 409, json=msg("c", "two"), headers=idem)
        assert other["code"] == "idempotency_key_reused"
        named = await send("POST", "/api/memory", 200, json=msg("c", "two", blockName="nm"))
        assert named["memories"][0]["blockName"] == "nm"
        batch = {
            "conversationId": "c",
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        }
        await send("POST", "/api/memory", 200, json=batch, headers={"Idempotency-Key": "k2"})
        window = await send("POST", "/api/memory", 200, json=msg("c", "w", lastN=3))
        assert [m["content"] for m in window["memories"][0]["data"]] == ["s", "u", "w"]
        keep = {"keepSystem": True}
        new = await send("POST", "/api/memory", 200, json={**msg("d", "x", lastN=1), **keep})
        assert new["memories"][0]["data"] == [{"seq": 0, "role": "user", "content": "x"}]
        full = {**msg("c", "v", lastN=1), "keepSystem": True}
        head = await send("POST", "/api/memory", 200, json=full)
        assert [m["seq"] for m in head["memories"][0]["data"]] == [5]  # seq 0 is no system message
        system = {"conversationId": "e", "messages": [{"role": "system", "content": "sys"}]}
        await send("POST", "/api/memory", 200, json={**system, "lastN": 0})
        await send("POST", "/api/memory", 200, json={**msg("e", "a"), "blockId": "default"})
        kept = await send("POST", "/api/memory", 200, json={**msg("e", "b", lastN=1), **keep})
        assert [(m["seq"], m["content"]) for m in kept["memories"][0]["data"]] == [
            (0, "sys"),
            (2, "b"),
        ]
        exhausted = await send(
            "POST", "/api/memory", 429, json=msg("c", "z"), headers={"Idempotency-Key": "k3"}
        )
        assert exhausted["code"] == "idempotency_keys_exhausted"
        await send("PUT", "/api/memory/blocks/default", 200, json={"name": "dflt"})
        emoji = {"name": "\U0001f600" * 256}  # 1,024 bytes: more than the quota left
        big = await send("PUT", "/api/memory/blocks/default", 413, json=emoji)
        assert big["code"] == "quota_exceeded"
        gone = await send("DELETE", "/api/memory", 200, params={"conversationId": "c"})
        assert gone["deletedCount"] == 1
        deleted = await send("POST", "/api/memory", 409, json=msg("c", "one"), headers=idem)
        assert deleted["code"] == "idempotent_memory_deleted"
        usage = await send("GET", "/api/usage", 200)
        assert usage["used"] == await stored_bytes(api.settings.database_url, "w")


async def test_sweeps_hold_each_workspace_lock_for_one_round_trip(batched) -> None:  # noqa: ANN001
    """The expired-entry sweep: one read to find the workspaces, then one statement per
    workspace (no BEGIN/COMMIT around it); the idempotency sweep: one statement."""
    services, counts = batched
    kv, memory = services.kv, services.memory
    a = await workspace_id(services, "a")
    b = await workspace_id(services, "b")
    for ws in (a, b):
        await kv.set(ws, "short", b"x", ttl=1)
        await kv.set(ws, "long", b"y")
        await memory.add(ws, conversation_id="c", role="user", content="m", idempotency_key="k")
    services.kv.clock = services.memory.clock = lambda: now_ms() + 2_000_000_000
    counts.clear()
    assert await kv.sweep() == 2 * (len("short") + 1)
    # The read: BEGIN, SELECT, COMMIT; then ms_kv_sweep twice, each alone.
    assert counts["query:BEGIN"] == 1 and counts["bind_execute"] == 1 + 2, counts
    assert await kv.usage(a) == {
        "used": len("long") + 1 + 5 + len("c") + len("default"),
        "quota": services.settings.default_quota_bytes,
    }
    counts.clear()
    assert await memory.sweep_idempotency() == 2
    # One execution, no BEGIN or COMMIT (its first use on the connection prepares it too).
    assert counts["bind_execute"] == 1 and counts["query"] == 0, counts


async def test_admin_writes_of_a_workspace_are_one_round_trip(counted) -> None:  # noqa: ANN001
    """A quota change, a new key, a revoked key and a deleted workspace: each one statement
    naming the workspace (the lookup and the write together), no BEGIN or COMMIT around it."""
    api, counts = counted
    c, admin = api.client, api.admin
    for name in ("warm0", "warm1", "warm2"):
        await api.workspace(name)
    counts.clear()
    await api.workspace("w")
    # The workspace and its first key: one statement; then the answer, two reads of two SELECTs.
    assert counts["query:BEGIN"] == 2 and counts["bind_execute"] == 1 + 2 * 2, counts
    counts.clear()
    r = await c.post("/admin/workspaces", json={"name": "w"}, headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "workspace_exists", r.text
    one_round_trip(counts, "the name is taken")
    for i in range(3):  # warm up
        await c.put(f"/admin/workspaces/warm{i}/quota", json={"quotaBytes": 5}, headers=admin)
        r = await c.post(f"/admin/workspaces/warm{i}/keys", json={}, headers=admin)
        await c.delete(f"/admin/keys/{r.json()['keyInfo']['id']}", headers=admin)
        await c.delete(f"/admin/workspaces/warm{i}", headers=admin)

    # The write alone, then (quota, new key) the answer read in a transaction of its own:
    # BEGIN, two SELECTs, COMMIT.
    counts.clear()
    r = await c.put("/admin/workspaces/w/quota", json={"quotaBytes": 1234}, headers=admin)
    assert r.status_code == 200 and r.json()["workspace"]["quotaBytes"] == 1234, r.text
    assert counts["query:BEGIN"] == 1 and counts["bind_execute"] == 1 + 2, counts
    counts.clear()
    r = await c.post("/admin/workspaces/w/keys", json={"label": "x"}, headers=admin)
    assert r.status_code == 201 and r.json()["keyInfo"]["label"] == "x", r.text
    assert counts["query:BEGIN"] == 1 and counts["bind_execute"] == 1 + 2, counts
    key_id = r.json()["keyInfo"]["id"]
    for method, path, status in [
        ("POST", "/admin/workspaces/absent/keys", 404),
        ("DELETE", f"/admin/keys/{key_id}", 200),
        ("DELETE", "/admin/workspaces/w", 200),
        ("DELETE", "/admin/workspaces/w", 404),
    ]:
        counts.clear()
        kw = {"json": {}} if method == "POST" else {}
        r = await c.request(method, path, headers=admin, **kw)
        assert r.status_code == status, (path, r.text)
        one_round_trip(counts, (method, path))


async def test_concurrent_adds_of_every_kind_share_statements(batched) -> None:  # noqa: ANN001
    """Adds with Idempotency-Keys, block names and windows arriving together go in one
    statement (ms_memory_append_many) and are decided one by one under the lock: a key raced
    by 20 adds appends once and answers the others as replays; quota refusals are exact."""
    services, counts = batched
    memory = services.memory
    a = await workspace_id(services, "a")
    per = len("user") + 10
    b = await workspace_id(services, "b", quota=len("q") + len("default") + 3 * per)
    counts.clear()
    done = await asyncio.gather(
        *(
            memory.add(a, conversation_id="c", role="user", content="same", idempotency_key="k")
            for _ in range(20)
        ),
        *(
            memory.add(
                a, conversation_id=f"n{i % 2}", block_name=f"name{i}", role="user",
                content=f"{i}", last_n=2, messages=None,
            )
            for i in range(10)
        ),
        *(
            memory.add(b, conversation_id="q", role="user", content="x" * 10, idempotency_key=k)
            for k in ("q0", "q1", "q2", "q3", "q4")
        ),
        return_exceptions=True,
    )  # fmt: skip
    assert 1 <= counts["bind_execute"] < 35 / 4  # most adds shared a statement with others
    raced = done[:20]
    assert sum(not replayed for _, replayed in raced) == 1
    assert {(m.id, m.messages[0].seq, m.message_count) for m, _ in raced} == {
        (raced[0][0].id, 0, 1)
    }
    named = [m for m, _ in done[20:30]]
    for conv in ("n0", "n1"):
        mine = sorted(
            (m for m in named if m.conversation_id == conv), key=lambda m: m.message_count
        )
        assert [m.message_count for m in mine] == [1, 2, 3, 4, 5]
        # Each answer: the last two messages up to its own, its own name (set by this add).
        for m in mine:
            assert [x.seq for x in m.messages] == list(
                range(max(0, m.message_count - 2), m.message_count)
            )
            assert m.block_name == f"name{int(m.messages[-1].content)}"
    ok = [d for d in done[30:] if not isinstance(d, Exception)]
    refused = [d for d in done[30:] if isinstance(d, Exception)]
    assert len(ok) == 3 and len(refused) == 2 and all(isinstance(d, QuotaExceeded) for d in refused)
    assert sorted(m.messages[0].seq for m, _ in ok) == [0, 1, 2]
    assert (await services.kv.usage(b))["used"] == len("q") + len("default") + 3 * per
