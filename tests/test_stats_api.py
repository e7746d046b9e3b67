"""GET /api/stats: the counts behind the explorer's overview and its delete confirmation."""

from __future__ import annotations


async def add(api, h, conversation: str, block: str, n: int, name: str | None = None) -> None:
    body = {
        "conversationId": conversation,
        "blockId": block,
        "messages": [{"role": "user", "content": f"m{i}"} for i in range(n)],
    }
    if name is not None:
        body["blockName"] = name
    r = await api.client.post("/api/memory", json=body, headers=h)
    assert r.status_code == 200, r.text


async def stats(api, h, **params) -> dict:
    r = await api.client.get("/api/stats", params=params, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    return body


async def test_counts_of_an_empty_workspace(api) -> None:
    h = await api.workspace("empty")
    body = await stats(api, h)
    assert (body["workspace"], body["memories"], body["messages"]) == ("empty", 0, 0)
    assert (body["kvKeys"], body["namedBlocks"]) == (0, 0)
    assert body["message"] == "0 memories, 0 messages"


async def test_counts_memories_messages_keys_and_named_blocks(api) -> None:
    h = await api.workspace("acme")
    await add(api, h, "c1", "chat", 3, name="Support")
    await add(api, h, "c1", "notes", 2)
    await add(api, h, "c2", "chat", 5)
    await add(api, h, "c2", "chat", 1)  # appends to the same memory
    for key in ("a", "b/c", "d"):
        r = await api.client.put(f"/api/kv/{key}", content=b"x", headers=h)
        assert r.status_code == 201
    r = await api.client.put("/api/memory/blocks/other", json={"name": "Other"}, headers=h)
    assert r.status_code == 200
    body = await stats(api, h)
    assert (body["memories"], body["messages"]) == (3, 11)
    assert (body["kvKeys"], body["namedBlocks"]) == (3, 2)


async def test_a_filter_narrows_memories_and_messages_exactly(api) -> None:
    h = await api.workspace("acme")
    await add(api, h, "c1", "chat", 3, name="Support")
    await add(api, h, "c1", "notes", 2)
    await add(api, h, "c2", "chat", 5)
    await add(api, h, "c_", "chat", 7)  # '_' is an ordinary character, never a wildcard
    by_conv = await stats(api, h, conversationId="c1")
    assert (by_conv["memories"], by_conv["messages"]) == (2, 5)
    by_block = await stats(api, h, blockId="chat")
    assert (by_block["memories"], by_block["messages"]) == (3, 15)
    by_name = await stats(api, h, blockName="Support")
    assert (by_name["memories"], by_name["messages"]) == (3, 15)
    both = await stats(api, h, conversationId="c2", blockId="chat")
    assert (both["memories"], both["messages"]) == (1, 5)
    legacy = await stats(api, h, id="c_")
    assert (legacy["memories"], legacy["messages"]) == (1, 7)
    assert (await stats(api, h, conversationId="c%"))["memories"] == 0
    # The workspace-wide figures do not move with the filter.
    assert (both["kvKeys"], both["namedBlocks"]) == (0, 1)
    # What the filter counts is what a delete with it removes.
    r = await api.client.delete("/api/memory", params={"blockId": "chat"}, headers=h)
    assert r.json()["deletedCount"] == by_block["memories"]
    after = await stats(api, h)
    assert (after["memories"], after["messages"]) == (1, 2)


async def test_expired_keys_are_not_counted(api) -> None:
    h = await api.workspace("acme")
    r = await api.client.put("/api/kv/short", content=b"x", params={"ttl": 10}, headers=h)
    assert r.status_code == 201
    r = await api.client.put("/api/kv/long", content=b"x", headers=h)
    assert r.status_code == 201
    assert (await stats(api, h))["kvKeys"] == 2
    api.clock.advance(11)
    assert (await stats(api, h))["kvKeys"] == 1


async def test_counts_never_include_another_workspace(api) -> None:
    a = await api.workspace("alpha")
    b = await api.workspace("beta")
    await add(api, a, "secret", "chat", 4, name="A's block")
    r = await api.client.put("/api/kv/secret", content=b"x", headers=a)
    assert r.status_code == 201
    body = await stats(api, b)
    assert body["workspace"] == "beta"
    assert (body["memories"], body["messages"], body["kvKeys"], body["namedBlocks"]) == (0, 0, 0, 0)
    assert (await stats(api, b, conversationId="secret"))["memories"] == 0


async def test_bad_requests_are_refused(api) -> None:
    h = await api.workspace("acme")
    r = await api.client.get("/api/stats")
    assert r.status_code == 401
    assert r.json()["success"] is False
    r = await api.client.get("/api/stats", params={"conversationId": "a\x01b"}, headers=h)
    assert r.status_code == 400
    assert r.json()["success"] is False
    r = await api.client.get("/api/stats", params={"conversationId": "a", "id": "b"}, headers=h)
    assert r.status_code == 400
    assert r.json()["success"] is False
