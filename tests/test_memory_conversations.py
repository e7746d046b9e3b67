"""GET /api/memory/conversations: the distinct conversation ids of a workspace (of a block, or
with an exact id prefix), paged with sealed cursors, with block and message counts."""

from __future__ import annotations

from typing import Any

import pytest

from memory_service.client import AsyncMemoryServiceClient, MemoryServiceClient
from tests.conftest import Api
from tests.support.live import new_workspace
from tests.support.server import LiveServer

U = "/api/memory/conversations"


async def add(api: Api, h: dict, conv: str, block: str | None = None, n: int = 1) -> None:
    body: dict[str, Any] = {
        "conversationId": conv,
        "messages": [{"role": "user", "content": f"m{i}"} for i in range(n)],
    }
    if block is not None:
        body["blockId"] = block
    r = await api.client.post("/api/memory", json=body, headers=h)
    assert r.status_code == 200, r.text


async def all_pages(api: Api, h: dict, **params: Any) -> list[dict]:
    out, cursor = [], None
    while True:
        q = {**params, **({"cursor": cursor} if cursor else {})}
        r = await api.client.get(U, params=q, headers=h)
        assert r.status_code == 200, r.text
        out += r.json()["conversations"]
        if not (cursor := r.json()["nextCursor"]):
            return out


def brief(items: list[dict]) -> list[tuple[str, int, int]]:
    return [(c["conversationId"], c["blockCount"], c["messageCount"]) for c in items]


async def test_lists_distinct_ids_with_counts(api: Api) -> None:
    h = await api.workspace("a")
    await add(api, h, "user-1", n=2)
    await add(api, h, "user-1", "chat", n=3)
    await add(api, h, "user-2", "chat")
    await add(api, h, "user-1", n=1)  # a later append: updatedAt moves
    r = await api.client.get(U, headers=h)
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True and body["message"] == "2 conversations"
    assert body["nextCursor"] is None
    assert brief(body["conversations"]) == [("user-1", 2, 6), ("user-2", 1, 1)]
    one = body["conversations"][0]
    got = await api.client.get("/api/memory", params={"conversationId": "user-1"}, headers=h)
    assert one["updatedAt"] == max(m["updatedAt"] for m in got.json()["memories"])
    # Of one block: only conversations with a memory there, counted in it alone.
    r = await api.client.get(U, params={"blockId": "chat"}, headers=h)
    assert brief(r.json()["conversations"]) == [("user-1", 1, 3), ("user-2", 1, 1)]
    r = await api.client.get(U, params={"blockId": "default"}, headers=h)
    assert brief(r.json()["conversations"]) == [("user-1", 1, 3)]
    r = await api.client.get(U, params={"blockId": "nope"}, headers=h)
    assert r.json() == {
        "success": True,
        "message": "0 conversations",
        "conversations": [],
        "nextCursor": None,
    }


async def test_deleted_memories_leave_the_listing(api: Api) -> None:
    h = await api.workspace("a")
    await add(api, h, "c1")
    await add(api, h, "c1", "b2", n=2)
    await add(api, h, "c2")
    params = {"conversationId": "c1", "blockId": "default"}
    await api.client.delete("/api/memory", params=params, headers=h)
    assert brief(await all_pages(api, h)) == [("c1", 1, 2), ("c2", 1, 1)]
    await api.client.delete("/api/memory", params={"conversationId": "c1"}, headers=h)
    assert brief(await all_pages(api, h)) == [("c2", 1, 1)]


async def test_prefix_is_exact(api: Api) -> None:
    h = await api.workspace("a")
    ids = ["a%b", "a_b", "aXb", "A%b", "a%", "ab", "\u00fc%1", "\u00fcx"]
    for conv in ids:
        await add(api, h, conv)
    cases = {
        "a%": ["a%", "a%b"],
        "a_": ["a_b"],
        "a": ["a%", "a%b", "aXb", "a_b", "ab"],
        "A": ["A%b"],
        "\u00fc%": ["\u00fc%1"],
        "zz": [],
    }
    for prefix, want in cases.items():
        got = [c["conversationId"] for c in await all_pages(api, h, prefix=prefix)]
        assert sorted(got) == sorted(want), prefix
    # No prefix (and an empty one): everything.
    assert len(await all_pages(api, h)) == len(ids)
    assert len(await all_pages(api, h, prefix="")) == len(ids)


async def test_pages_with_sealed_cursors(api: Api) -> None:
    h = await api.workspace("a")
    ids = [f"conv-{i:02d}" for i in range(7)]
    for conv in reversed(ids):
        await add(api, h, conv)
        await add(api, h, conv, "other")
    pages = []
    cursor = None
    while True:
        params: dict = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = (await api.client.get(U, params=params, headers=h)).json()
        pages.append([c["conversationId"] for c in body["conversations"]])
        if not (cursor := body["nextCursor"]):
            break
        assert not any(conv in cursor for conv in ids)  # opaque
    assert pages == [ids[0:3], ids[3:6], ids[6:7]]
    first = (await api.client.get(U, params={"limit": 3}, headers=h)).json()["nextCursor"]
    # A cursor under other filters, a tampered one, another workspace's: 400 invalid_cursor.
    for params in (
        {"cursor": first, "prefix": "conv"},
        {"cursor": first, "blockId": "other"},
        {"cursor": first[:-3] + ("AAA" if not first.endswith("AAA") else "BBB")},
        {"cursor": "garbage"},
    ):
        r = await api.client.get(U, params=params, headers=h)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor"), params
    other = await api.workspace("b")
    r = await api.client.get(U, params={"cursor": first}, headers=other)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor")
    # The same filters go on from it.
    r = await api.client.get(U, params={"cursor": first, "limit": 3}, headers=h)
    assert [c["conversationId"] for c in r.json()["conversations"]] == ids[3:6]


@pytest.mark.parametrize(
    "params,code",
    [
        ({"limit": 0}, "invalid_limit"),
        ({"limit": 1001}, "invalid_limit"),
        ({"limit": "x"}, "invalid_request"),
        ({"blockId": ""}, "invalid_id"),
        ({"blockId": "a\x01"}, "invalid_id"),
        ({"prefix": "p" * 257}, "invalid_id"),
        ({"prefix": "a\nb"}, "invalid_id"),
    ],
)
async def test_bad_input(api: Api, params: dict, code: str) -> None:
    h = await api.workspace("a")
    r = await api.client.get(U, params=params, headers=h)
    assert r.status_code == 400
    body = r.json()
    assert body["success"] is False and body["code"] == code and body["message"] == body["error"]


async def test_other_workspaces_are_invisible(api: Api) -> None:
    a = await api.workspace("a")
    b = await api.workspace("b")
    await add(api, a, "shared", n=5)
    await add(api, a, "only-a")
    await add(api, b, "shared")
    assert brief(await all_pages(api, b)) == [("shared", 1, 1)]
    assert brief(await all_pages(api, a)) == [("only-a", 1, 1), ("shared", 1, 5)]
    r = await api.client.get(U)
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")


def test_client_conversations_sync(live_server: LiveServer) -> None:
    with MemoryServiceClient(live_server.url, new_workspace(live_server)) as c:
        for conv in ("c2", "c1", "c_1", "x"):
            c.memory.add(conv, "user", "hi")
        c.memory.add("c1", "user", "again", block_id="b")
        got = [
            (x.conversation_id, x.block_count, x.message_count)
            for x in c.memory.conversations(page_size=1)
        ]
        assert got == [("c1", 2, 2), ("c2", 1, 1), ("c_1", 1, 1), ("x", 1, 1)]
        assert [x.conversation_id for x in c.memory.conversations(prefix="c_")] == ["c_1"]
        assert [x.conversation_id for x in c.memory.conversations(block_id="b")] == ["c1"]


async def test_client_conversations_async(live_server: LiveServer) -> None:
    async with AsyncMemoryServiceClient(live_server.url, new_workspace(live_server)) as c:
        await c.memory.add("a1", "user", "hi")
        await c.memory.add("a2", "user", "hi", block_id="z")
        got = [x.conversation_id async for x in c.memory.conversations(page_size=1)]
        assert got == ["a1", "a2"]
        assert [x.conversation_id async for x in c.memory.conversations(block_id="z")] == ["a2"]
