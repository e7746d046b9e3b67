"""Memory appends under concurrency: no lost or doubled append across OS processes and replicas,
idempotent retries, and cursor walks that see every pre-existing memory exactly once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from memory_service.app import create_app
from memory_service.settings import Settings
from memory_service.storage.memory_tables import memory_idempotency_t
from memory_service.storage.migrations import upgrade
from tests.conftest import ADMIN_TOKEN, Api, FakeClock
from tests.support.load import Call, fire, replicas
from tests.support.memory_api import (
    add,
    get,
    ids_size,
    message_size,
    messages_of,
    recount,
    walk,
)
from tests.support.server import create_workspace

# --- idempotency ---------------------------------------------------------------------------------


async def _add_raw(api: Api, h: dict, key: str | None, **body: object):  # noqa: ANN202
    headers = {**h, **({"Idempotency-Key": key} if key else {})}
    return await api.client.post("/api/memory", json=body, headers=headers)


async def test_retried_add_with_the_same_key_appends_once(api: Api) -> None:
    h = await api.workspace("a")
    body = {"conversationId": "c", "messages": [{"role": "user", "content": "q"}] * 3}
    first = await _add_raw(api, h, "key-1", **body)
    assert first.status_code == 200 and first.json()["replayed"] is False
    await add(api.client, h, conversationId="c", role="assistant", content="later")
    again = await _add_raw(api, h, "key-1", **body)
    assert again.status_code == 200 and again.json()["replayed"] is True
    m1, m2 = first.json()["memories"][0], again.json()["memories"][0]
    assert m2["data"] == m1["data"] and [d["seq"] for d in m2["data"]] == [0, 1, 2]
    assert m2["key"] == m1["key"] and m2["createdAt"] == m1["createdAt"]
    assert m2["messageCount"] == 4  # the later add; nothing appended by the retry
    stored = await messages_of(api.settings.database_url, "c", "default")
    assert [s[2] for s in stored] == ["q", "q", "q", "later"]
    assert (await api.client.get("/api/usage", headers=h)).json()["used"] == 3 * message_size(
        "user", "q"
    ) + message_size("assistant", "later") + ids_size("c")

    # The same key with another request is refused, not replayed, and changes nothing.
    r = await _add_raw(api, h, "key-1", conversationId="c", role="user", content="other")
    assert r.status_code == 409 and r.json()["code"] == "idempotency_key_reused"
    # Keys are remembered for 24 hours; after that the key is new again.
    api.clock.advance(24 * 3600 + 1)
    r = await _add_raw(api, h, "key-1", **body)
    assert r.json()["replayed"] is False and r.json()["memories"][0]["messageCount"] == 7

    # A retry after its memory was deleted is told so; it does not append to a new memory.
    await _add_raw(api, h, "key-2", conversationId="gone", role="user", content="x")
    await api.client.delete("/api/memory", params={"conversationId": "gone"}, headers=h)
    r = await _add_raw(api, h, "key-2", conversationId="gone", role="user", content="x")
    assert r.status_code == 409 and r.json()["code"] == "idempotent_memory_deleted"
    assert (await get(api.client, h, conversationId="gone"))["memories"] == []


async def test_concurrent_retries_with_one_key_append_once(api: Api) -> None:
    h = await api.workspace("a")
    await add(api.client, h, conversationId="c", role="system", content="s")
    body = {"conversationId": "c", "role": "user", "content": "only once"}
    answers = await asyncio.gather(*(_add_raw(api, h, "same", **body) for _ in range(20)))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert sorted(r.json()["replayed"] for r in answers) == [False] + [True] * 19
    assert {json.dumps(r.json()["memories"][0]["data"]) for r in answers} == {
        json.dumps([{"role": "user", "content": "only once", "seq": 1}])
    }
    stored = await messages_of(api.settings.database_url, "c", "default")
    assert [s[2] for s in stored] == ["s", "only once"]


async def test_idempotency_records_are_swept(sqlite_database_url: str) -> None:
    await upgrade(sqlite_database_url)
    clock = FakeClock()
    settings = Settings(
        database_url=sqlite_database_url, admin_token=ADMIN_TOKEN, sweep_interval_seconds=0.05
    )
    engine = create_async_engine(sqlite_database_url)

    async def records() -> int:
        async with engine.connect() as conn:
            count = select(func.count()).select_from(memory_idempotency_t)
            return (await conn.execute(count)).scalar_one()

    try:
        async with AsyncTestClient(create_app(settings, clock=clock)) as client:
            r = await client.post(
                "/admin/workspaces",
                json={"name": "a"},
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            h = {"Authorization": f"Bearer {r.json()['key']}", "Idempotency-Key": "k"}
            body = {"conversationId": "c", "role": "user", "content": "x"}
            assert (await client.post("/api/memory", json=body, headers=h)).status_code == 200
            assert await records() == 1
            await asyncio.sleep(0.3)  # several sweeps: a live record stays
            assert await records() == 1
            clock.advance(24 * 3600 + 1)
            for _ in range(200):  # the sweeper runs every 50 ms
                if await records() == 0:
                    break
                await asyncio.sleep(0.05)
            assert await records() == 0
    finally:
        await engine.dispose()


# --- cursor walks --------------------------------------------------------------------------------


async def test_cursor_walk_sees_every_existing_memory_once_during_inserts(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    existing = set()
    for i in range(45):
        m = await add(
            c, h, conversationId=f"pre-{i}", blockId=f"b{i % 3}", role="user", content="x"
        )
        existing.add(m["key"])

    events: list[str] = []  # "page" and "insert", in the order they completed

    async def writer() -> list[str]:
        # New memories (ids after every existing one) and appends to existing ones, while the
        # walk goes on; a fixed amount, so that the walk ends whoever is faster.
        created = []
        for n in range(60):
            m = await add(c, h, conversationId=f"new-{n}", role="user", content="y")
            if m["messageCount"] == 1:  # this add created the memory
                created.append(m["key"])
            events.append("insert")
            await add(
                c,
                h,
                conversationId=f"pre-{n % 45}",
                blockId=f"b{n % 45 % 3}",
                role="assistant",
                content="z",
            )
            await asyncio.sleep(0)
        return created

    async def walker() -> list[str]:
        seen, cursor = [], None
        while True:
            params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
            page = await get(c, h, "/api/memory/all", **params)
            events.append("page")
            seen += [m["key"] for m in page["memories"]]
            cursor = page["nextCursor"]
            await asyncio.sleep(0)
            if cursor is None:
                return seen

    seen, written = await asyncio.gather(walker(), writer())
    counts = Counter(seen)
    assert all(counts[k] == 1 for k in existing), {k: counts[k] for k in existing if counts[k] != 1}
    assert all(n == 1 for n in counts.values())
    # The writer really created its 60 memories, and they are all there now.
    assert sorted(written) == sorted(f"new-{n}:default" for n in range(60))
    everything = {m["key"] for m in await walk(c, h)}
    assert everything == existing | set(written)
    # The walk and the inserts overlapped: inserts completed between the walk's first and last
    # pages (otherwise this test would prove nothing about walking during inserts).
    first, last = events.index("page"), len(events) - 1 - events[::-1].index("page")
    assert "insert" in events[first:last], events
    # Filtered walks too.
    keys = [m["key"] for m in await walk(c, h, "/api/memory", blockId="b1", limit=2)]
    assert sorted(keys) == sorted(k for k in existing if k.endswith(":b1"))


# --- many OS processes, many replicas ------------------------------------------------------------


async def test_no_lost_append_from_many_processes(database_url: str, tmp_path) -> None:  # noqa: ANN001
    """500 adds to one memory from 4 OS processes at once (an HTTP client per add), against a
    real server process; on PostgreSQL, spread over two replicas sharing the database."""
    n_servers = 2 if database_url.startswith("postgresql") else 1
    key = create_workspace(database_url, "load")
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    contents = [f"message {i:03d} / {'é' * (i % 5)}" for i in range(500)]
    with replicas(database_url, n_servers, tmp_path) as servers:
        calls = [
            Call(
                "POST",
                servers[i % n_servers].url + "/api/memory",
                headers,
                json.dumps(
                    {"conversationId": "shared", "blockId": "b:1", "role": "user", "content": text}
                ).encode(),
            )
            for i, text in enumerate(contents)
        ]
        # And 40 retries of one idempotent add, raced from the same processes.
        retry = json.dumps(
            {"conversationId": "shared", "blockId": "idem", "role": "user", "content": "once"}
        ).encode()
        calls += [
            Call(
                "POST",
                servers[i % n_servers].url + "/api/memory",
                {**headers, "Idempotency-Key": "retry-1"},
                retry,
            )
            for i in range(40)
        ]
        answers = fire(calls, processes=4)
        bad = [(a.status, a.error, a.body[:200]) for a in answers if a.status != 200]
        assert not bad, bad[:5]
        appended = [a.json()["memories"][0]["data"] for a in answers[:500]]
        assert all(len(d) == 1 for d in appended)
        assert sorted(d[0]["seq"] for d in appended) == list(range(500))
        assert [d[0]["content"] for d in appended] == contents
        replays = [a.json()["replayed"] for a in answers[500:]]
        assert sorted(replays) == [False] + [True] * 39

        # What the API reads back: exactly those 500, each once, in one well-defined order.
        async with httpx.AsyncClient() as client:
            r = await client.get(
                servers[0].url + "/api/memory",
                params={"conversationId": "shared", "blockId": "b:1"},
                headers=headers,
            )
        (m,) = r.json()["memories"]
        assert m["messageCount"] == 500 and m["dataCursor"] is None
        assert [d["seq"] for d in m["data"]] == list(range(500))
        assert sorted(d["content"] for d in m["data"]) == sorted(contents)
        by_seq = {d[0]["seq"]: d[0]["content"] for d in appended}
        assert [d["content"] for d in m["data"]] == [by_seq[s] for s in range(500)]

    # And what the table holds.
    stored = await messages_of(database_url, "shared", "b:1")
    assert [s[0] for s in stored] == list(range(500))
    assert Counter(s[2] for s in stored) == Counter(contents)
    assert [s[2] for s in await messages_of(database_url, "shared", "idem")] == ["once"]
    counts = await recount(database_url, "load")
    expected = (
        sum(message_size("user", t) for t in contents)
        + message_size("user", "once")
        + ids_size("shared", "b:1")
        + ids_size("shared", "idem")
    )
    assert counts["used"] == counts["memory"] == counts["memory_rows"] == expected
