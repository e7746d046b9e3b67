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

import pytest
from sqlalchemy import event

from memory_service.services.errors import PreconditionFailed, QuotaExceeded
from tests.conftest import Api, make_api
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
    api, app = await make_api(pg.create_database(f"round_trips_{uuid.uuid4().hex[:8]}"))
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
