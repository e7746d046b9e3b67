"""The read cache (services/memory/read_cache.py) never answers what a fresh read would not.

A page of memories read before is answered again only while the database shows its memory rows
unchanged. These tests drive three apps over one database, as three replicas or processes would
be: `reader` with the cache (the default), `plain` with it off (MEMORY_READ_CACHE_MB=0), and
`writer`, which makes most changes, so that `reader` learns of them only through the database.
Every answer of `reader` must be the answer of `plain`, cursors opened to what they point at.

A page is kept once two reads in a row find its rows unchanged, and answered from the cache from
the third on: `same_reads` reads three times.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.parse

import pytest

from memory_service.services.memory.read_cache import ENTRY_OVERHEAD
from tests.conftest import Api, make_api

SEED = 20261130
STEPS = 160
CONVERSATIONS = ["c1", "c2", "c3"]
BLOCKS = [None, "b1", "b2/x"]
NAMES = ["n1", "n2"]


def page_reads(services: object) -> dict[str, float]:
    """memory_page_reads_total by source: {"cache": n, "database": n}."""
    text = services.metrics.exposition().decode()  # type: ignore[attr-defined]
    found = {}
    for line in text.splitlines():
        if line.startswith("memory_page_reads_total{"):
            name, value = line.rsplit(" ", 1)
            found[name.split('"')[1]] = float(value)
    return found


class Apps:
    def __init__(self, reader: Api, plain: Api, writer: Api, reader_app: object) -> None:
        self.reader, self.plain, self.writer = reader, plain, writer
        self.services = reader_app.state.services  # type: ignore[attr-defined]
        self.auth: dict[str, str] = {}
        self.workspace_id = 0

    async def start(self, name: str = "rc") -> None:
        self.auth = await self.writer.workspace(name)
        principal = await self.services.workspaces.authenticate(
            self.auth["Authorization"].removeprefix("Bearer ")
        )
        self.workspace_id = principal.workspace_id

    def opened(self, raw: bytes) -> object:
        """The answer's JSON with each sealed cursor replaced by what it points at."""
        body = json.loads(raw)
        cursors = self.services.memory.cursors
        if body.get("nextCursor"):
            body["nextCursor"] = cursors.open(body["nextCursor"], "memories", self.workspace_id)
        for memory in body.get("memories", []):
            if memory.get("dataCursor"):
                memory["dataCursor"] = cursors.open(
                    memory["dataCursor"], "messages", self.workspace_id
                )
        return body

    def page_reads(self) -> dict[str, float]:
        return page_reads(self.services)

    async def same_reads(self, path: str, params: dict) -> dict:
        """`reader` answers three times (the third from its cache, when nothing changed
        meanwhile) and `plain` once: all alike. Returns the answer."""
        want = await self.plain.client.get(path, params=params, headers=self.auth)
        for _ in range(3):
            got = await self.reader.client.get(path, params=params, headers=self.auth)
            assert got.status_code == want.status_code, (path, params, got.text)
            assert got.headers["content-type"] == want.headers["content-type"]
            if want.status_code == 200:
                assert self.opened(got.content) == self.opened(want.content), (path, params)
            else:
                assert got.json() == want.json()
        return want.json()


@pytest.fixture
async def apps(database_url: str):  # noqa: ANN201
    reader, reader_app = await make_api(database_url)
    plain, _ = await make_api(database_url, read_cache_mb=0)
    writer, _ = await make_api(database_url)
    async with reader.client, plain.client, writer.client:
        made = Apps(reader, plain, writer, reader_app)
        await made.start()
        yield made


def memory_params(conversation: str, block: str | None) -> dict:
    return {"conversationId": conversation, **({"blockId": block} if block else {})}


async def test_a_repeated_read_is_answered_from_the_cache(apps: Apps) -> None:
    """The cache works: the second read of an unchanged memory keeps the page, the third is
    not read from the database, and its bytes are the second answer's, cursor included."""
    batch = [{"role": "user", "content": f"m{i}"} for i in range(30)]
    r = await apps.writer.client.post(
        "/api/memory", json={"conversationId": "c", "messages": batch}, headers=apps.auth
    )
    assert r.status_code == 200, r.text
    params = {"conversationId": "c", "lastN": 20}
    answers = []
    for reads in ({"cache": 0.0, "database": 1.0}, {"cache": 0.0, "database": 2.0}):
        answers.append(
            await apps.reader.client.get("/api/memory", params=params, headers=apps.auth)
        )
        assert apps.page_reads() == reads
    third = await apps.reader.client.get("/api/memory", params=params, headers=apps.auth)
    assert apps.page_reads() == {"cache": 1.0, "database": 2.0}
    assert third.content == answers[1].content
    assert apps.opened(answers[0].content) == apps.opened(third.content)
    assert [m["content"] for m in third.json()["memories"][0]["data"]] == [
        f"m{i}" for i in range(10, 30)
    ]
    assert third.json()["memories"][0]["dataCursor"]


async def test_a_memory_read_after_each_change_is_never_kept(apps: Apps) -> None:
    """An agent's turns: append, then read. Every read finds its memory changed, so the cache
    keeps no page (only the rows it saw) and answers none."""
    cache = apps.services.memory.read_cache
    params = {"conversationId": "agent", "lastN": 20}
    for turn in range(30):
        body = {"conversationId": "agent", "role": "user", "content": f"turn {turn}"}
        assert (
            await apps.reader.client.post("/api/memory", json=body, headers=apps.auth)
        ).is_success
        answer = await apps.same_reads("/api/memory", params) if turn % 10 == 9 else None
        r = await apps.reader.client.get("/api/memory", params=params, headers=apps.auth)
        assert r.json()["memories"][0]["data"][-1]["content"] == f"turn {turn}"
        if answer is None:
            assert cache.bytes == ENTRY_OVERHEAD * 2  # one memory's rows, no page
    # Only reads repeated on purpose: the third and fourth read of turns 9, 19 and 29.
    assert apps.page_reads()["cache"] == 6.0


async def test_a_change_through_another_app_is_seen_at_once(apps: Apps) -> None:
    """Each kind of change made through another app (another replica) shows in the very
    next read of the caching app: an append, a deletion and a new memory under the same ids,
    a block named and renamed."""
    add = {"conversationId": "c", "blockId": "b", "role": "user", "content": "one"}
    assert (await apps.writer.client.post("/api/memory", json=add, headers=apps.auth)).is_success
    params = memory_params("c", "b")

    def texts(answer: dict) -> list[str]:
        return [m["content"] for memory in answer["memories"] for m in memory["data"]]

    assert texts(await apps.same_reads("/api/memory", params)) == ["one"]
    add["content"] = "two"
    assert (await apps.writer.client.post("/api/memory", json=add, headers=apps.auth)).is_success
    assert texts(await apps.same_reads("/api/memory", params)) == ["one", "two"]

    gone = await apps.writer.client.delete("/api/memory", params=params, headers=apps.auth)
    assert gone.json()["deletedCount"] == 1
    assert texts(await apps.same_reads("/api/memory", params)) == []
    add["content"] = "new"
    assert (await apps.writer.client.post("/api/memory", json=add, headers=apps.auth)).is_success
    assert texts(await apps.same_reads("/api/memory", params)) == ["new"]

    for name in ("first", "second", None):
        r = await apps.writer.client.put(
            "/api/memory/blocks/b", json={"name": name}, headers=apps.auth
        )
        assert r.status_code == 200, r.text
        answer = await apps.same_reads("/api/memory", params)
        assert answer["memories"][0]["blockName"] == name
    by_name = await apps.same_reads("/api/memory", {"blockName": "second"})
    assert by_name["memories"] == []


async def test_random_programs_answer_as_without_the_cache(apps: Apps) -> None:
    """A seeded random program of adds (through both apps that cache), deletions, block names
    and reads of every shape (filters, windows, keepSystem, pages followed by nextCursor):
    every read of the caching app answers what the app without a cache answers."""
    rng = random.Random(SEED)
    counter = 0
    for _ in range(STEPS):
        op = rng.random()
        client = rng.choice([apps.writer.client, apps.reader.client])
        if op < 0.35:
            counter += 1
            body: dict = {"conversationId": rng.choice(CONVERSATIONS)}
            block = rng.choice(BLOCKS)
            if block:
                body["blockId"] = block
            role = rng.choice(["user", "assistant", "system"])
            if rng.random() < 0.3:
                body["messages"] = [
                    {"role": role, "content": f"{counter}.{i}"} for i in range(rng.randint(1, 4))
                ]
            else:
                body.update(role=role, content=f"m{counter}")
            r = await client.post("/api/memory", json=body, headers=apps.auth)
            assert r.status_code == 200, r.text
        elif op < 0.42:
            params = memory_params(rng.choice(CONVERSATIONS), rng.choice(BLOCKS))
            r = await client.delete("/api/memory", params=params, headers=apps.auth)
            assert r.status_code == 200, r.text
        elif op < 0.5:
            block = rng.choice([b for b in BLOCKS if b])
            quoted = urllib.parse.quote(block, safe="")
            r = await client.put(
                f"/api/memory/blocks/{quoted}",
                json={"name": rng.choice([*NAMES, None])},
                headers=apps.auth,
            )
            assert r.status_code == 200, r.text
        else:
            await read_at_random(apps, rng)


async def read_at_random(apps: Apps, rng: random.Random) -> None:
    params: dict = {}
    if rng.random() < 0.3:
        path = "/api/memory/all"
    else:
        path = "/api/memory"
        shape = rng.randrange(3)
        if shape == 0:
            params.update(memory_params(rng.choice(CONVERSATIONS), rng.choice(BLOCKS)))
        elif shape == 1:
            params["blockName"] = rng.choice(NAMES)
        else:
            params["conversationId"] = rng.choice(CONVERSATIONS)
    if rng.random() < 0.6:
        params["lastN"] = rng.choice([0, 1, 2, 5])
    if rng.random() < 0.4:
        params["keepSystem"] = "true"
    if rng.random() < 0.5:
        params["limit"] = rng.choice([1, 2])
    while True:
        answer = await apps.same_reads(path, params)
        cursor = answer.get("nextCursor") if answer.get("success") else None
        if not cursor:
            return
        params = {**params, "cursor": cursor}


async def test_workspaces_do_not_share_cached_pages(apps: Apps) -> None:
    """The same conversation in two workspaces: each reads its own, cached or not."""
    other = await apps.writer.workspace("rc-other")
    for auth, text in ((apps.auth, "mine"), (other, "theirs")):
        body = {"conversationId": "same", "role": "user", "content": text}
        assert (await apps.writer.client.post("/api/memory", json=body, headers=auth)).is_success
    for _ in range(3):
        for auth, text in ((apps.auth, "mine"), (other, "theirs")):
            r = await apps.reader.client.get(
                "/api/memory", params={"conversationId": "same"}, headers=auth
            )
            assert [m["content"] for m in r.json()["memories"][0]["data"]] == [text]
    assert apps.page_reads() == {"cache": 2.0, "database": 4.0}


async def test_cached_cursors_are_resealed_after_a_tenth_of_their_lifetime(
    sqlite_database_url: str,
) -> None:
    """A cached page hands out its cursors again only while they are young: past a tenth of
    the cursor lifetime the page is read and sealed anew, and its cursors still open."""
    api, app = await make_api(sqlite_database_url, cursor_ttl_seconds=3.0)
    async with api.client:
        auth = await api.workspace("rc-ttl")
        batch = [{"role": "user", "content": f"m{i}"} for i in range(5)]
        body = {"conversationId": "c", "messages": batch}
        assert (await api.client.post("/api/memory", json=body, headers=auth)).is_success
        params = {"conversationId": "c", "lastN": 2}

        async def cursor() -> str:
            r = await api.client.get("/api/memory", params=params, headers=auth)
            return r.json()["memories"][0]["dataCursor"]

        await cursor()
        first = await cursor()  # the page kept
        assert await cursor() == first  # within 0.3 s: the cached page
        await asyncio.sleep(0.35)
        fresh = await cursor()
        assert fresh != first
        older = await api.client.get(
            "/api/memory/messages",
            params={"conversationId": "c", "cursor": fresh},
            headers=auth,
        )
        assert older.status_code == 200, older.text
        assert [m["content"] for m in older.json()["data"]] == ["m0", "m1", "m2"]
    assert app.state.services.memory.read_cache.max_age == pytest.approx(0.3)  # type: ignore[attr-defined]


async def test_the_cache_stays_within_its_bound(sqlite_database_url: str) -> None:
    """MEMORY_READ_CACHE_MB bounds what is kept, least recently used first; a page larger
    than an eighth of the bound is not kept at all (it would push out many small ones)."""
    api, app = await make_api(sqlite_database_url, read_cache_mb=1)
    cache = app.state.services.memory.read_cache  # type: ignore[attr-defined]
    async with api.client:
        auth = await api.workspace("rc-bound")
        text = "x" * 2000
        for n in range(300):
            body = {"conversationId": f"c{n}", "messages": [{"role": "user", "content": text}] * 5}
            assert (await api.client.post("/api/memory", json=body, headers=auth)).is_success
        for n in range(300):
            for _ in range(2):  # the second read keeps the page
                r = await api.client.get(
                    "/api/memory", params={"conversationId": f"c{n}"}, headers=auth
                )
                assert r.status_code == 200
                assert cache.bytes <= 1024 * 1024
        assert 0 < len(cache) < 300
        services = app.state.services  # type: ignore[attr-defined]
        counted = page_reads(services)
        # The newest reads are the ones kept, the oldest were dropped.
        for conversation, source in (("c299", "cache"), ("c0", "database")):
            r = await api.client.get(
                "/api/memory", params={"conversationId": conversation}, headers=auth
            )
            assert r.status_code == 200
            counted[source] += 1
            assert page_reads(services) == counted
        before = len(cache)
        body = {"conversationId": "big", "messages": [{"role": "user", "content": text}] * 80}
        assert (await api.client.post("/api/memory", json=body, headers=auth)).is_success
        counted = page_reads(services)
        for _ in range(3):
            r = await api.client.get("/api/memory", params={"conversationId": "big"}, headers=auth)
            assert len(r.json()["memories"][0]["data"]) == 80
        counted["database"] += 3  # 80 x 2 kB: over 128 KiB, never kept, read anew each time
        assert page_reads(services) == counted
        assert len(cache) == before + 1  # its rows only


def test_the_setting_is_checked() -> None:
    from memory_service.settings import Settings

    assert Settings.from_env({}).read_cache_mb == 32
    assert Settings.from_env({"MEMORY_READ_CACHE_MB": "0"}).read_cache_mb == 0
    with pytest.raises(ValueError, match="MEMORY_READ_CACHE_MB must be 0"):
        Settings.from_env({"MEMORY_READ_CACHE_MB": "-1"})
    with pytest.raises(ValueError, match="MEMORY_READ_CACHE_MB must be an integer"):
        Settings.from_env({"MEMORY_READ_CACHE_MB": "lots"})
