"""The memory block API (SPEC 3) through HTTP, on SQLite and PostgreSQL: shapes, filters, exact
ids, legacy `id`, the block registry, delete, windows and message pages, workspaces, quota."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest

from tests.conftest import Api, make_api
from tests.support.memory_api import (
    MEMORY_FIELDS,
    add,
    assert_envelope,
    get,
    ids_size,
    message_size,
    name_size,
    pairs,
    recount,
    walk,
)

# --- shapes --------------------------------------------------------------------------------------


async def test_four_operations_exact_shapes(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    r = await c.post(
        "/api/memory",
        json={"conversationId": "user-123", "role": "user", "content": "hello"},
        headers=h,
    )
    assert r.status_code == 200
    added = r.json()
    assert set(added) == {"success", "memories", "message", "replayed"}
    assert added["success"] is True and added["replayed"] is False
    assert added["message"] == "Added 1 message"
    (m,) = added["memories"]
    assert set(m) == MEMORY_FIELDS
    assert m["key"] == "user-123:default"
    assert (m["conversationId"], m["blockId"], m["blockName"]) == ("user-123", "default", None)
    assert m["data"] == [{"role": "user", "content": "hello", "seq": 0}]
    assert m["messageCount"] == 1 and m["dataCursor"] is None
    assert m["createdAt"].endswith("Z") and m["updatedAt"] == m["createdAt"]

    # A second add answers only what it appended, plus the count.
    m2 = await add(
        c, h, conversationId="user-123", role="assistant", content="hi!", blockName="Chat"
    )
    assert m2["data"] == [{"role": "assistant", "content": "hi!", "seq": 1}]
    assert m2["messageCount"] == 2 and m2["blockName"] == "Chat"
    assert m2["createdAt"] == m["createdAt"] and m2["dataCursor"] is not None

    got = await get(c, h, conversationId="user-123")
    assert set(got) == {"success", "memories", "message", "nextCursor"}
    assert got["success"] is True and got["message"] == "Found 1 memory"
    assert got["nextCursor"] is None
    (g,) = got["memories"]
    assert set(g) == MEMORY_FIELDS and g["blockName"] == "Chat"
    assert g["data"] == [
        {"role": "user", "content": "hello", "seq": 0},
        {"role": "assistant", "content": "hi!", "seq": 1},
    ]
    assert g["messageCount"] == 2 and g["dataCursor"] is None

    await add(c, h, conversationId="session-abc", blockId="b", role="user", content="x")
    everything = await get(c, h, "/api/memory/all")
    assert everything["message"] == "Found 2 memories"
    assert pairs(everything["memories"]) == [("session-abc", "b"), ("user-123", "default")]
    none = await get(c, h, conversationId="nobody")
    assert none == {
        "success": True,
        "memories": [],
        "message": "No memories found",
        "nextCursor": None,
    }

    r = await c.delete("/api/memory", params={"conversationId": "user-123"}, headers=h)
    assert r.status_code == 200
    assert r.json() == {
        "success": True,
        "message": "Deleted 1 memory",
        "deletedCount": 1,
        # The messages and the memory's ids (charged when it was created).
        "freedBytes": message_size("user", "hello")
        + message_size("assistant", "hi!")
        + ids_size("user-123", "default"),
        "dryRun": False,
    }
    assert (await get(c, h, conversationId="user-123"))["memories"] == []


# --- every filter combination --------------------------------------------------------------------

DATA = [
    ("c1", "b1"),
    ("c1", "b2"),
    ("c1", "b3"),
    ("c2", "b1"),
    ("c2", "b2"),
    ("c3", "b3"),
    ("c3", "default"),
]
NAMES = {"b1": "alpha", "b2": "beta", "b3": "alpha"}  # `default` has no name

FILTERS = [
    ("conversationId alone", {"conversationId": "c1"}),
    ("blockId alone", {"blockId": "b1"}),
    ("blockName alone", {"blockName": "alpha"}),
    ("conversationId+blockId", {"conversationId": "c1", "blockId": "b2"}),
    ("conversationId+blockName", {"conversationId": "c1", "blockName": "alpha"}),
    ("blockId+blockName", {"blockId": "b3", "blockName": "alpha"}),
    ("blockId+blockName disagreeing", {"blockId": "b2", "blockName": "alpha"}),
    ("all three", {"conversationId": "c3", "blockId": "b3", "blockName": "alpha"}),
    ("no match", {"conversationId": "c9"}),
]


def matches(pair: tuple[str, str], flt: dict) -> bool:
    conv, block = pair
    return (
        flt.get("conversationId", conv) == conv
        and flt.get("blockId", block) == block
        and ("blockName" not in flt or NAMES.get(block) == flt["blockName"])
    )


async def populate(c, h: dict) -> None:  # noqa: ANN001
    for block, name in NAMES.items():
        r = await c.put(f"/api/memory/blocks/{block}", json={"name": name}, headers=h)
        assert r.status_code == 200, r.text
    for conv, block in DATA:
        await add(c, h, conversationId=conv, blockId=block, role="user", content=f"{conv}/{block}")


def legacy(flt: dict) -> dict:
    """The same filter with the legacy spelling `id`."""
    out = dict(flt)
    if "conversationId" in out:
        out["id"] = out.pop("conversationId")
    return out


async def test_get_every_filter_combination(api: Api) -> None:
    h = await api.workspace("a")
    await populate(api.client, h)
    for label, flt in FILTERS:
        expected = sorted(p for p in DATA if matches(p, flt))
        for spelling in (flt, legacy(flt)):
            got = await get(api.client, h, **spelling)
            assert pairs(got["memories"]) == expected, (label, spelling)
            n = len(expected)
            assert got["message"] == (
                "No memories found"
                if n == 0
                else "Found 1 memory"
                if n == 1
                else f"Found {n} memories"
            ), label
            for m in got["memories"]:
                assert set(m) == MEMORY_FIELDS
                assert m["blockName"] == NAMES.get(m["blockId"]), label
                content = f"{m['conversationId']}/{m['blockId']}"
                assert m["data"] == [{"role": "user", "content": content, "seq": 0}]
    r = await api.client.get("/api/memory", headers=h)
    assert assert_envelope(r, 400)["code"] == "missing_filter"


async def test_delete_every_filter_combination(api: Api) -> None:
    c = api.client
    size = {p: message_size("user", f"{p[0]}/{p[1]}") + ids_size(*p) for p in DATA}
    registry = sum(name_size(b, n) for b, n in NAMES.items())  # not freed by deleting memories
    for i, (label, flt) in enumerate(FILTERS):
        h = await api.workspace(f"d{i}")
        await populate(c, h)
        expected = sorted(p for p in DATA if matches(p, flt))
        freed = sum(size[p] for p in expected)
        params = legacy(flt) if i % 2 else flt  # both spellings, over the table
        dry = await c.delete("/api/memory", params={**params, "dryRun": "true"}, headers=h)
        assert dry.status_code == 200
        assert dry.json()["deletedCount"] == len(expected) and dry.json()["dryRun"] is True
        assert len(await walk(c, h)) == len(DATA), f"{label}: dryRun deleted something"
        r = await c.delete("/api/memory", params=params, headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"success", "message", "deletedCount", "freedBytes", "dryRun"}
        assert body["deletedCount"] == len(expected), label
        assert body["freedBytes"] == freed, label
        assert body["message"] == (
            f"Deleted {len(expected)} {'memory' if len(expected) == 1 else 'memories'}"
            if expected
            else "No memories found"
        )
        left = pairs(await walk(c, h))
        assert left == sorted(p for p in DATA if p not in expected), label
        usage = (await c.get("/api/usage", headers=h)).json()
        assert usage["used"] == sum(size.values()) - freed + registry, label
        # Deleted memories are never returned again, by any read.
        for p in expected:
            got = await get(c, h, conversationId=p[0], blockId=p[1])
            assert got["memories"] == [], label
    h = await api.workspace("none")
    await populate(c, h)
    r = await c.delete("/api/memory", headers=h)
    assert assert_envelope(r, 400)["code"] == "missing_filter"
    assert len(await walk(c, h)) == len(DATA)


# --- exact ids and keys --------------------------------------------------------------------------

TRICKY_IDS = [
    "a",
    "a%",
    "a%25",
    "%",
    "_",
    "a_",
    "a_b",
    "aXb",
    "a:b",
    "a%3Ab",
    "a:",
    ":",
    "it's",
    "'",
    "a b",
    "a+b",
    "a/b",
    "a/",
    "/",
    "..",
    "ünïcødé",
    "unicode",
    "会話-1",
    "🔑",
    "A",
    "a\u0301",  # 'a' + combining acute: not the same id as 'á'
    "á",
]


def in_path(ident: str) -> str:
    """Percent-encode everything, dots too: a client folds `.` and `..` path segments."""
    return quote(ident, safe="").replace(".", "%2E")


async def test_ids_are_matched_exactly(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    for ident in TRICKY_IDS:
        m = await add(c, h, conversationId=ident, blockId=ident, role="user", content=ident)
        assert (m["conversationId"], m["blockId"]) == (ident, ident)
    keys = set()
    for ident in TRICKY_IDS:
        for params in (
            {"conversationId": ident},
            {"blockId": ident},
            {"conversationId": ident, "blockId": ident},
            {"id": ident},
        ):
            got = await get(c, h, **params)
            assert [(m["conversationId"], m["data"][0]["content"]) for m in got["memories"]] == [
                (ident, ident)
            ], params
        keys.add(got["memories"][0]["key"])
        r = await c.get(
            "/api/memory/messages", params={"conversationId": ident, "blockId": ident}, headers=h
        )
        assert r.status_code == 200 and [d["content"] for d in r.json()["data"]] == [ident]
    assert len(keys) == len(TRICKY_IDS)
    # Names are exact too, and a path-encoded block id is the same id.
    for ident in TRICKY_IDS:
        r = await c.put(
            f"/api/memory/blocks/{in_path(ident)}", json={"name": f"n-{ident}"}, headers=h
        )
        assert r.status_code == 200 and r.json()["block"]["blockId"] == ident, r.text
    for ident in TRICKY_IDS:
        got = await get(c, h, blockName=f"n-{ident}")
        assert [m["blockId"] for m in got["memories"]] == [ident]
    # Deleting one tricky id deletes exactly that one.
    for ident in ("a%", "_", "a:b"):
        r = await c.delete("/api/memory", params={"conversationId": ident}, headers=h)
        assert r.json()["deletedCount"] == 1
    left = {m["conversationId"] for m in await walk(c, h)}
    assert left == set(TRICKY_IDS) - {"a%", "_", "a:b"}


async def test_key_is_injective_over_colons_and_percents(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    a = await add(c, h, conversationId="a:b", blockId="c", role="user", content="1")
    b = await add(c, h, conversationId="a", blockId="b:c", role="user", content="2")
    d = await add(c, h, conversationId="a%3Ab", blockId="c", role="user", content="3")
    assert a["key"] == "a%3Ab:c"
    assert b["key"] == "a:b%3Ac"
    assert d["key"] == "a%253Ab:c"
    assert len({a["key"], b["key"], d["key"]}) == 3
    assert [
        m["data"][0]["content"] for m in (await get(c, h, conversationId="a:b"))["memories"]
    ] == ["1"]
    assert [m["data"][0]["content"] for m in (await get(c, h, blockId="b:c"))["memories"]] == ["2"]


# --- legacy id -----------------------------------------------------------------------------------


async def test_legacy_id_wherever_conversation_id(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    m = await add(c, h, id="legacy-1", role="user", content="one")
    assert m["conversationId"] == "legacy-1"
    m = await add(c, h, id="legacy-1", conversationId="legacy-1", role="user", content="two")
    assert m["messageCount"] == 2
    got = await get(c, h, id="legacy-1")
    assert [d["content"] for d in got["memories"][0]["data"]] == ["one", "two"]
    r = await c.get("/api/memory/messages", params={"id": "legacy-1"}, headers=h)
    assert r.status_code == 200 and r.json()["messageCount"] == 2
    # Both given and different: refused everywhere, nothing changed.
    conflict = {"id": "legacy-1", "conversationId": "other"}
    r = await c.post("/api/memory", json={**conflict, "role": "user", "content": "x"}, headers=h)
    assert assert_envelope(r, 400)["code"] == "conflicting_ids"
    for path in ("/api/memory", "/api/memory/messages"):
        r = await c.get(path, params=conflict, headers=h)
        assert assert_envelope(r, 400)["code"] == "conflicting_ids"
    r = await c.delete("/api/memory", params=conflict, headers=h)
    assert assert_envelope(r, 400)["code"] == "conflicting_ids"
    assert [m["messageCount"] for m in await walk(c, h)] == [2]
    r = await c.delete("/api/memory", params={"id": "legacy-1"}, headers=h)
    assert r.json()["deletedCount"] == 1


# --- block registry ------------------------------------------------------------------------------


async def test_block_registry_rename_is_seen_by_later_reads(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    m = await add(c, h, conversationId="c", blockId="b1", role="user", content="x")
    assert m["blockName"] is None  # unknown name: null, never "unknown"
    r = await c.put("/api/memory/blocks/b1", json={"name": "Support bot"}, headers=h)
    assert r.status_code == 200
    assert r.json()["block"]["blockId"] == "b1" and r.json()["block"]["name"] == "Support bot"
    assert (await get(c, h, conversationId="c"))["memories"][0]["blockName"] == "Support bot"
    await c.put("/api/memory/blocks/b1", json={"name": "Helpdesk"}, headers=h)
    assert (await get(c, h, blockName="Helpdesk"))["memories"][0]["blockName"] == "Helpdesk"
    assert (await get(c, h, blockName="Support bot"))["memories"] == []
    # blockName on add names the block too (and renames it).
    m = await add(
        c, h, conversationId="c2", blockId="b1", blockName="Desk", role="user", content="y"
    )
    assert m["blockName"] == "Desk"
    assert {x["blockName"] for x in await walk(c, h)} == {"Desk"}
    # A name may be forgotten: reads say null again.
    r = await c.put("/api/memory/blocks/b1", json={"name": None}, headers=h)
    assert r.status_code == 200
    assert {x["blockName"] for x in await walk(c, h)} == {None}
    await c.put("/api/memory/blocks/b2", json={"name": "Two"}, headers=h)
    await c.put("/api/memory/blocks/b3", json={"name": "Three"}, headers=h)
    r = await c.get("/api/memory/blocks", params={"limit": 1}, headers=h)
    listed, cursor = r.json()["blocks"], r.json()["nextCursor"]
    while cursor:
        page = (await c.get("/api/memory/blocks", params={"cursor": cursor}, headers=h)).json()
        listed += page["blocks"]
        cursor = page["nextCursor"]
    assert [(b["blockId"], b["name"]) for b in listed] == [("b2", "Two"), ("b3", "Three")]
    for bad in ({"name": ""}, {"name": "x" * 257}, {"nom": "x"}, {"name": 5}):
        assert_envelope(await c.put("/api/memory/blocks/b2", json=bad, headers=h), 400)


# --- delete, then add again ----------------------------------------------------------------------


async def test_delete_is_immediate_and_the_conversation_can_start_again(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    await add(
        c,
        h,
        conversationId="c",
        messages=[{"role": "user", "content": str(i)} for i in range(5)],
    )
    before = (await get(c, h, conversationId="c"))["memories"][0]
    old_cursor = (
        await c.get("/api/memory/messages", params={"conversationId": "c", "limit": 2}, headers=h)
    ).json()["nextCursor"]
    r = await c.delete("/api/memory", params={"conversationId": "c"}, headers=h)
    assert r.json()["deletedCount"] == 1
    assert (await get(c, h, conversationId="c"))["memories"] == []
    r = await c.get("/api/memory/messages", params={"conversationId": "c"}, headers=h)
    assert assert_envelope(r, 404)["code"] == "memory_not_found"
    m = await add(c, h, conversationId="c", role="user", content="fresh")
    assert m["data"] == [{"role": "user", "content": "fresh", "seq": 0}]
    assert m["messageCount"] == 1 and m["dataCursor"] is None
    got = (await get(c, h, conversationId="c"))["memories"][0]
    assert got["data"] == [{"role": "user", "content": "fresh", "seq": 0}]
    assert got["createdAt"] >= before["createdAt"]
    # A cursor of the deleted memory never reads the new one.
    r = await c.get(
        "/api/memory/messages", params={"conversationId": "c", "cursor": old_cursor}, headers=h
    )
    assert assert_envelope(r, 409)["code"] == "stale_cursor"
    assert (await c.get("/api/usage", headers=h)).json()["used"] == message_size(
        "user", "fresh"
    ) + ids_size("c")
    counts = await recount(api.settings.database_url, "a")
    assert counts["messages"] == 1 and counts["orphan_messages"] == 0


# --- windows and message pages -------------------------------------------------------------------


@pytest.fixture
async def paged_api(database_url: str) -> AsyncIterator[Api]:
    """Small pages, so that paging shows with a few messages."""
    made, _ = await make_api(
        database_url, max_message_page=5, max_page_size=10, max_response_messages=12
    )
    async with made.client:
        yield made


async def test_windows_last_n_and_keep_system(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    msgs = [{"role": "system", "content": "rules"}] + [
        {"role": "user" if i % 2 else "assistant", "content": f"m{i}"} for i in range(1, 10)
    ]
    await add(c, h, conversationId="c", messages=msgs)
    await add(c, h, conversationId="d", messages=[{"role": "user", "content": "no system"}] * 4)

    def contents(m: dict) -> list[str]:
        return [d["content"] for d in m["data"]]

    got = await get(c, h, conversationId="c", lastN=3)
    (m,) = got["memories"]
    assert contents(m) == ["m7", "m8", "m9"] and [d["seq"] for d in m["data"]] == [7, 8, 9]
    assert m["messageCount"] == 10 and m["dataCursor"] is not None
    m = (await get(c, h, conversationId="c", lastN=3, keepSystem="true"))["memories"][0]
    assert contents(m) == ["rules", "m7", "m8", "m9"]
    m = (await get(c, h, conversationId="c", lastN=0, keepSystem="true"))["memories"][0]
    assert contents(m) == ["rules"]
    m = (await get(c, h, conversationId="c", lastN=10, keepSystem="true"))["memories"][0]
    assert contents(m) == [x["content"] for x in msgs] and m["dataCursor"] is None
    # keepSystem keeps only a leading *system* message.
    m = (await get(c, h, conversationId="d", lastN=1, keepSystem="true"))["memories"][0]
    assert contents(m) == ["no system"] and m["data"][0]["seq"] == 3
    # Windows apply to getAll and to every memory of a page.
    all_ = await get(c, h, "/api/memory/all", lastN=2)
    assert [contents(x) for x in all_["memories"]] == [["m8", "m9"], ["no system"] * 2]
    # lastN on add asks for more history than the append.
    m = await add(c, h, conversationId="c", role="user", content="m10", lastN=3)
    assert contents(m) == ["m8", "m9", "m10"] and m["messageCount"] == 11
    m = await add(c, h, conversationId="c", role="user", content="m11", lastN=1, keepSystem=True)
    assert contents(m) == ["rules", "m11"]
    # The stored history is untouched by windows.
    assert len((await get(c, h, conversationId="c"))["memories"][0]["data"]) == 12
    for bad in (-1, 1001):
        r = await c.get("/api/memory", params={"conversationId": "c", "lastN": bad}, headers=h)
        assert assert_envelope(r, 400)["code"] == "invalid_last_n"


async def test_long_memory_pages_back_in_order(paged_api: Api) -> None:
    api = paged_api
    h = await api.workspace("a")
    c = api.client
    await add(
        c,
        h,
        conversationId="long",
        messages=[{"role": "user", "content": f"m{i}"} for i in range(5)],
    )
    for i in range(5, 12):
        await add(c, h, conversationId="long", role="assistant", content=f"m{i}")
    await add(c, h, conversationId="short", role="user", content="s0")

    got = await get(c, h, conversationId="long")
    (m,) = got["memories"]
    # The newest page, in order, the total, and a cursor for the rest.
    assert [d["seq"] for d in m["data"]] == [7, 8, 9, 10, 11]
    assert m["messageCount"] == 12 and m["dataCursor"]
    seen = m["data"]
    cursor = m["dataCursor"]
    while cursor:
        r = await c.get(
            "/api/memory/messages",
            params={"conversationId": "long", "cursor": cursor},
            headers=h,
        )
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["messageCount"] == 12 and page["key"] == "long:default"
        seen = page["data"] + seen
        cursor = page["nextCursor"]
    assert [d["content"] for d in seen] == [f"m{i}" for i in range(12)]
    assert [d["seq"] for d in seen] == list(range(12))
    # Without a cursor the pages start at the newest; `limit` sizes them, above max is a 400.
    r = await c.get(
        "/api/memory/messages", params={"conversationId": "long", "limit": 3}, headers=h
    )
    assert [d["seq"] for d in r.json()["data"]] == [9, 10, 11]
    r = await c.get(
        "/api/memory/messages", params={"conversationId": "long", "limit": 6}, headers=h
    )
    assert assert_envelope(r, 400)["code"] == "invalid_limit"
    # A memory within one page comes whole, without a cursor.
    s = (await get(c, h, conversationId="short"))["memories"][0]
    assert [d["content"] for d in s["data"]] == ["s0"] and s["dataCursor"] is None


async def test_memory_pages_limit_and_message_budget(paged_api: Api) -> None:
    api = paged_api
    h = await api.workspace("a")
    c = api.client
    for i in range(6):
        await add(
            c,
            h,
            conversationId=f"c{i}",
            messages=[{"role": "user", "content": f"{i}-{j}"} for j in range(5)],
        )
    # 5 messages each, at most 12 per response: pages of 2 memories even with limit 10, and
    # the cursor says so (never a silent cut).
    page = await get(c, h, "/api/memory/all", limit=10)
    assert len(page["memories"]) == 2 and page["nextCursor"]
    memories = await walk(c, h, limit=10)
    assert [m["conversationId"] for m in memories] == [f"c{i}" for i in range(6)]
    assert all(len(m["data"]) == 5 for m in memories)
    # A window makes room for more per page.
    page = await get(c, h, "/api/memory/all", limit=10, lastN=1)
    assert len(page["memories"]) == 6 and page["nextCursor"] is None
    # limit above the maximum: a 400, not a cut; cursors belong to their query.
    r = await c.get("/api/memory/all", params={"limit": 11}, headers=h)
    assert assert_envelope(r, 400)["code"] == "invalid_limit"
    r = await c.get("/api/memory", params={"conversationId": "c1", "limit": 0}, headers=h)
    assert assert_envelope(r, 400)["code"] == "invalid_limit"
    cursor = (await get(c, h, "/api/memory/all", limit=1))["nextCursor"]
    r = await c.get("/api/memory", params={"blockId": "default", "cursor": cursor}, headers=h)
    assert assert_envelope(r, 400)["code"] == "invalid_cursor"
    for bad in ("garbage", "e30", cursor[:-3]):
        r = await c.get("/api/memory/all", params={"cursor": bad}, headers=h)
        assert assert_envelope(r, 400)["code"] == "invalid_cursor"


# --- workspaces ----------------------------------------------------------------------------------


async def test_other_workspaces_see_nothing_count_nothing_delete_nothing(api: Api) -> None:
    a = await api.workspace("a")
    b = await api.workspace("b")
    c = api.client
    await c.put("/api/memory/blocks/blk", json={"name": "A's"}, headers=a)
    await add(c, a, conversationId="c", blockId="blk", role="user", content="secret")
    await add(c, a, conversationId="c", blockId="blk", role="user", content="again")
    r = await c.post(
        "/api/memory",
        json={"conversationId": "idem", "role": "user", "content": "x"},
        headers={**a, "Idempotency-Key": "k1"},
    )
    assert r.status_code == 200
    usage_a = (await c.get("/api/usage", headers=a)).json()["used"]

    for params in (
        {"conversationId": "c"},
        {"blockId": "blk"},
        {"blockName": "A's"},
        {"conversationId": "c", "blockId": "blk", "blockName": "A's"},
    ):
        assert (await get(c, b, **params))["memories"] == []
        r = await c.delete("/api/memory", params={**params, "dryRun": "true"}, headers=b)
        assert r.json()["deletedCount"] == 0
        r = await c.delete("/api/memory", params=params, headers=b)
        assert r.json()["deletedCount"] == 0 and r.json()["freedBytes"] == 0
    assert (await get(c, b, "/api/memory/all"))["memories"] == []
    r = await c.get(
        "/api/memory/messages", params={"conversationId": "c", "blockId": "blk"}, headers=b
    )
    assert assert_envelope(r, 404)["code"] == "memory_not_found"
    # A's data cursor is nothing to B.
    cursor = (await get(c, a, conversationId="c", lastN=1))["memories"][0]["dataCursor"]
    r = await c.get(
        "/api/memory/messages",
        params={"conversationId": "c", "blockId": "blk", "cursor": cursor},
        headers=b,
    )
    # (Sealed for A's workspace: refused before anything is looked up, as any foreign cursor.)
    assert assert_envelope(r, 400)["code"] == "invalid_cursor"
    assert (await c.get("/api/memory/blocks", headers=b)).json()["blocks"] == []
    # B's registry and idempotency keys are B's own.
    await c.put("/api/memory/blocks/blk", json={"name": "B's"}, headers=b)
    assert (await get(c, a, conversationId="c"))["memories"][0]["blockName"] == "A's"
    r = await c.post(
        "/api/memory",
        json={"conversationId": "idem", "role": "user", "content": "x"},
        headers={**b, "Idempotency-Key": "k1"},
    )
    assert r.json()["replayed"] is False
    assert (await c.get("/api/usage", headers=b)).json()["used"] == (
        message_size("user", "x") + ids_size("idem") + name_size("blk", "B's")
    )
    # A is untouched.
    assert (await c.get("/api/usage", headers=a)).json()["used"] == usage_a
    got = await get(c, a, conversationId="c")
    assert [d["content"] for d in got["memories"][0]["data"]] == ["secret", "again"]
    assert len(await walk(c, a)) == 2


# --- quota ---------------------------------------------------------------------------------------


async def test_memory_bytes_share_the_workspace_quota(api: Api) -> None:
    from sqlalchemy.engine import make_url

    quota = 200
    h = await api.workspace("q", quota=quota)
    c = api.client
    assert (await c.put("/api/kv/k", content=b"v" * 50, headers=h)).status_code == 201
    kv_bytes = len("k") + 50
    m = await add(c, h, conversationId="c", role="user", content="héllo")
    mem = message_size("user", "héllo") + ids_size("c")
    assert mem == 4 + 6 + len("c") + len("default")
    usage = (await c.get("/api/usage", headers=h)).json()
    assert usage["used"] == kv_bytes + mem
    assert m["messageCount"] == 1

    # A batch that would cross the quota is refused whole, before anything is stored.
    room = quota - kv_bytes - mem
    batch = [{"role": "user", "content": "x" * 40}] * 4  # 4 * 44 = 176 > room
    assert sum(message_size(b["role"], b["content"]) for b in batch) > room
    r = await c.post("/api/memory", json={"conversationId": "c", "messages": batch}, headers=h)
    assert assert_envelope(r, 413)["code"] == "quota_exceeded"
    r = await c.post(
        "/api/memory",
        json={"conversationId": "new", "role": "user", "content": "y" * room},
        headers=h,
    )
    assert assert_envelope(r, 413)["code"] == "quota_exceeded"
    # The messages would fit, the new memory's ids would not: refused whole too.
    r = await c.post(
        "/api/memory",
        json={"conversationId": "new", "role": "user", "content": "y" * (room - 4)},
        headers=h,
    )
    assert assert_envelope(r, 413)["code"] == "quota_exceeded"
    assert pairs(await walk(c, h)) == [("c", "default")]
    assert (await get(c, h, conversationId="c"))["memories"][0]["messageCount"] == 1
    assert (await c.get("/api/usage", headers=h)).json()["used"] == kv_bytes + mem

    # Exactly up to the quota is fine.
    fill = room - len("user")
    await add(c, h, conversationId="c", role="user", content="z" * fill)
    assert (await c.get("/api/usage", headers=h)).json()["used"] == quota
    assert (await c.put("/api/kv/k2", content=b"!", headers=h)).status_code == 413
    counts = await recount(api.settings.database_url, "q")
    assert counts["used"] == counts["kv"] + counts["memory"] == quota
    assert counts["memory"] == counts["memory_rows"]

    # A delete frees the bytes, for memories and KV alike.
    r = await c.delete("/api/memory", params={"conversationId": "c"}, headers=h)
    assert r.json()["freedBytes"] == quota - kv_bytes
    assert (await c.get("/api/usage", headers=h)).json()["used"] == kv_bytes
    await add(c, h, conversationId="new", role="user", content="y" * 100)
    counts = await recount(api.settings.database_url, "q")
    assert counts["used"] == counts["kv"] + counts["memory"] == kv_bytes + 104 + ids_size("new")
    assert counts["orphan_messages"] == 0
    assert make_url(api.settings.database_url).get_backend_name() in ("sqlite", "postgresql")


# --- bad input -----------------------------------------------------------------------------------

OK_BODY = {"conversationId": "c", "role": "user", "content": "fine"}
BAD_ADDS = [
    ("missing role", {"conversationId": "c", "content": "x"}, 400, "missing_role"),
    ("null role", {"conversationId": "c", "role": None, "content": "x"}, 400, "missing_role"),
    ("unknown role", {**OK_BODY, "role": "robot"}, 400, "invalid_role"),
    ("role in capitals", {**OK_BODY, "role": "User"}, 400, "invalid_role"),
    ("role not a string", {**OK_BODY, "role": 1}, 400, None),
    ("missing content", {"conversationId": "c", "role": "user"}, 400, "missing_content"),
    ("content a number", {**OK_BODY, "content": 123}, 400, None),
    ("content an object", {**OK_BODY, "content": {"text": "x"}}, 400, None),
    ("content a list", {**OK_BODY, "content": ["x"]}, 400, None),
    ("content too large", {**OK_BODY, "content": "x" * (256 * 1024 + 1)}, 413, "content_too_large"),
    (
        "content too large in UTF-8",
        {**OK_BODY, "content": "é" * (128 * 1024 + 1)},
        413,
        "content_too_large",
    ),
    ("no conversation id", {"role": "user", "content": "x"}, 400, "missing_conversation_id"),
    ("empty conversation id", {**OK_BODY, "conversationId": ""}, 400, "invalid_id"),
    ("control char in id", {**OK_BODY, "conversationId": "a\nb"}, 400, "invalid_id"),
    ("NUL in id", {**OK_BODY, "conversationId": "a\x00b"}, 400, "invalid_id"),
    ("id too long", {**OK_BODY, "conversationId": "x" * 257}, 400, "invalid_id"),
    ("conversation id a number", {**OK_BODY, "conversationId": 7}, 400, None),
    ("empty block id", {**OK_BODY, "blockId": ""}, 400, "invalid_id"),
    ("block id too long", {**OK_BODY, "blockId": "b" * 257}, 400, "invalid_id"),
    ("empty block name", {**OK_BODY, "blockName": ""}, 400, "invalid_id"),
    ("ids disagree", {**OK_BODY, "id": "other"}, 400, "conflicting_ids"),
    ("unknown field", {**OK_BODY, "conversationID": "c"}, 400, None),
    ("empty batch", {"conversationId": "c", "messages": []}, 400, "empty_batch"),
    (
        "oversize batch",
        {"conversationId": "c", "messages": [{"role": "user", "content": "x"}] * 1001},
        413,
        "batch_too_large",
    ),
    (
        "batch and single",
        {**OK_BODY, "messages": [{"role": "user", "content": "x"}]},
        400,
        "invalid_message",
    ),
    (
        "bad role mid-batch",
        {
            "conversationId": "c",
            "messages": [{"role": "user", "content": "ok"}, {"role": "bot", "content": "no"}],
        },
        400,
        "invalid_role",
    ),
    (
        "batch entry without content",
        {"conversationId": "c", "messages": [{"role": "user"}]},
        400,
        None,
    ),
    (
        "batch entry with unknown field",
        {"conversationId": "c", "messages": [{"role": "user", "content": "x", "name": "n"}]},
        400,
        None,
    ),
    ("lastN negative", {**OK_BODY, "lastN": -1}, 400, "invalid_last_n"),
    ("lastN not a number", {**OK_BODY, "lastN": "three"}, 400, None),
    ("lastN a fraction", {**OK_BODY, "lastN": 1.5}, 400, None),
]
BAD_RAW = [
    ("malformed JSON", b'{"conversationId": "c", "role": "user", '),
    ("not an object", b'[{"conversationId": "c"}]'),
    ("a string", b'"hello"'),
    ("empty body", b""),
    ("invalid UTF-8", b'{"conversationId": "\xff", "role": "user", "content": "x"}'),
    ("lone surrogate", b'{"conversationId": "c", "role": "user", "content": "\\ud800"}'),
]
BAD_READS = [
    ("GET", "/api/memory", {}, "missing_filter"),
    ("DELETE", "/api/memory", {}, "missing_filter"),
    ("DELETE", "/api/memory", {"dryRun": "true"}, "missing_filter"),
    ("GET", "/api/memory", {"conversationId": ""}, "invalid_id"),
    ("DELETE", "/api/memory", {"blockId": ""}, "invalid_id"),
    ("DELETE", "/api/memory", {"blockName": "x" * 257}, "invalid_id"),
    ("GET", "/api/memory", {"conversationId": "c", "limit": "many"}, None),
    ("GET", "/api/memory/all", {"limit": 1001}, "invalid_limit"),
    ("GET", "/api/memory/all", {"cursor": "!!"}, "invalid_cursor"),
    ("GET", "/api/memory/all", {"lastN": 1001}, "invalid_last_n"),
    ("GET", "/api/memory/all", {"keepSystem": "maybe"}, None),
    ("DELETE", "/api/memory", {"conversationId": "c", "dryRun": "perhaps"}, None),
    ("GET", "/api/memory/messages", {}, "missing_conversation_id"),
    ("GET", "/api/memory/messages", {"conversationId": "c", "cursor": "e30"}, "invalid_cursor"),
    ("GET", "/api/memory/messages", {"conversationId": "c", "limit": 0}, "invalid_limit"),
    ("GET", "/api/memory/blocks", {"limit": 1001}, "invalid_limit"),
]


async def test_bad_input_is_a_4xx_envelope_and_stores_nothing(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    for label, body, status, code in BAD_ADDS:
        r = await c.post("/api/memory", json=body, headers=h)
        assert 400 <= r.status_code < 500, (label, r.text)
        got = assert_envelope(r, status)
        if code:
            assert got["code"] == code, (label, got)
    for label, raw in BAD_RAW:
        r = await c.post(
            "/api/memory", content=raw, headers={**h, "Content-Type": "application/json"}
        )
        assert r.status_code == 400, (label, r.text)
        assert_envelope(r, 400)
    for method, path, params, code in BAD_READS:
        r = await c.request(method, path, params=params, headers=h)
        got = assert_envelope(r, 400)
        if code:
            assert got["code"] == code, (method, path, params, got)
    r = await c.post("/api/memory", json=OK_BODY, headers={**h, "Idempotency-Key": "k\u0007"})
    assert assert_envelope(r, 400)["code"] == "invalid_id"
    r = await c.post("/api/memory", json=OK_BODY)  # no key at all
    assert assert_envelope(r, 401)
    # Nothing of any of it was stored: no memory, no name, no byte.
    assert await walk(c, h) == []
    assert (await c.get("/api/memory/blocks", headers=h)).json()["blocks"] == []
    assert (await c.get("/api/usage", headers=h)).json()["used"] == 0
    counts = await recount(api.settings.database_url, "a")
    assert counts["messages"] == 0 and counts["used"] == 0
    # The same request, well formed, works.
    assert (await add(c, h, **OK_BODY))["messageCount"] == 1


async def test_reads_are_complete_whatever_their_size(api: Api) -> None:
    """Small reads and large ones (many messages, or large messages) answer alike."""
    h = await api.workspace("a")
    c = api.client
    big = "β" * 60_000  # 120,000 bytes of UTF-8
    msgs = [{"role": "user", "content": f"m{i}"} for i in range(150)]
    msgs[140] = {"role": "assistant", "content": big}
    await add(c, h, conversationId="c", messages=msgs)
    await add(c, h, conversationId="d", messages=[{"role": "system", "content": big}])
    await add(c, h, conversationId="d", role="user", content="after")
    m = (await get(c, h, conversationId="c"))["memories"][0]
    assert [(d["role"], d["content"]) for d in m["data"]] == [
        (x["role"], x["content"]) for x in msgs
    ]
    for last_n in (1, 9, 10, 11):
        m = (await get(c, h, conversationId="c", lastN=last_n))["memories"][0]
        assert [d["content"] for d in m["data"]] == [x["content"] for x in msgs[-last_n:]]
    m = (await get(c, h, conversationId="d", lastN=1, keepSystem="true"))["memories"][0]
    assert [d["content"] for d in m["data"]] == [big, "after"]
    everything = await walk(c, h, lastN=150)
    assert [len(x["data"]) for x in everything] == [150, 2]
