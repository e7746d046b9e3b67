"""The Python client against a real server process: every method, sync and async, and the
mapping of error answers to typed exceptions carrying the server's message and code."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from memory_service.client import (
    AsyncMemoryServiceClient,
    AuthError,
    BadRequestError,
    ConflictError,
    MemoryServiceClient,
    MemoryServiceError,
    NotFoundError,
    PreconditionFailedError,
    QuotaExceededError,
    RateLimitedError,
    TooLargeError,
    ToolError,
)
from memory_service.settings import sqlite_url
from memory_service.wire import messages as m
from tests.support.live import new_workspace
from tests.support.server import LiveServer

ODD_KEYS = [".", "..", "a/../b", "100%", "x y", "ünï/🔑", "a%2Fb", "?q=1#f"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("client-live")
    with LiveServer(sqlite_url(tmp / "memory.db"), tmp) as server:
        yield server


# --- sync ----------------------------------------------------------------------------------------


def test_memory_sync(live: LiveServer) -> None:
    with MemoryServiceClient(live.url, new_workspace(live)) as c:
        added = c.memory.add("u:1", "system", "be brief", block_id="b%1", block_name="notes")
        assert not added.replayed and added.memory.message_count == 1
        assert added.memory.key == "u%3A1:b%251" and added.memory.block_name == "notes"
        again = c.memory.add("u:1", "user", "hi", block_id="b%1", idempotency_key="k1")
        replay = c.memory.add("u:1", "user", "hi", block_id="b%1", idempotency_key="k1")
        assert replay.replayed and replay.memory.message_count == again.memory.message_count == 2
        c.memory.add("u:2", "user", "other", block_id="b%1")
        c.memory.add("u:1", "user", "default block")

        page = c.memory.get("u:1", block_id="b%1")
        assert [(x.role, x.content) for x in page.memories[0].data] == [
            ("system", "be brief"),
            ("user", "hi"),
        ]
        assert page.message == "Found 1 memory" and page.next_cursor is None
        assert len(c.memory.get("u:1").memories) == 2
        assert {x.conversation_id for x in c.memory.get(block_name="notes").memories} == {
            "u:1",
            "u:2",
        }
        windowed = c.memory.get("u:1", block_id="b%1", last_n=1, keep_system=True)
        assert [x.role for x in windowed.memories[0].data] == ["system", "user"]

        first = c.memory.get_all(limit=2)
        assert len(first.memories) == 2 and first.next_cursor
        rest = c.memory.get_all(limit=2, cursor=first.next_cursor)
        assert len(rest.memories) == 1 and rest.next_cursor is None

        dry = c.memory.delete(block_name="notes", dry_run=True)
        assert dry.dry_run and dry.deleted_count == 2
        gone = c.memory.delete(block_name="notes")
        assert gone.deleted_count == 2 and gone.freed_bytes > 0
        assert [x.block_id for x in c.memory.get_all().memories] == ["default"]


def test_storage_sync(live: LiveServer) -> None:
    with MemoryServiceClient(live.url, new_workspace(live)) as c:
        w = c.storage.set("greeting", b"hello", content_type="text/plain")
        assert w.created and w.etag == f'"{w.version}"'
        assert w.message == "Stored 5 bytes (created)"  # every success carries a message
        assert c.storage.get("greeting") == b"hello"
        entry = c.storage.get_entry("greeting")
        assert entry.content_type.startswith("text/plain") and entry.etag == w.etag
        assert c.storage.exist("greeting") and not c.storage.exist("nope")

        # compare-and-set
        w2 = c.storage.set("greeting", b"hi", if_match=w.etag)
        assert not w2.created and w2.version > w.version
        with pytest.raises(PreconditionFailedError) as refused:
            c.storage.set("greeting", b"x", if_match=w.etag)
        assert refused.value.code == "precondition_failed" and refused.value.status == 412
        with pytest.raises(PreconditionFailedError):
            c.storage.set("greeting", b"x", if_none_match="*")
        assert c.storage.get("greeting") == b"hi"

        for key in ODD_KEYS:  # opaque keys survive the trip through the URL
            c.storage.set(key, key.encode())
            assert c.storage.get(key) == key.encode() and c.storage.exist(key)
        assert c.storage.set("ttl", b"t", ttl=60).expires_at

        for i in range(5):
            c.storage.set(f"p/{i}", bytes([i]) * i)
        listed = list(c.storage.list("p/", page_size=2))  # three pages
        assert [x.key for x in listed] == [f"p/{i}" for i in range(5)]
        assert [x.size for x in listed] == [3 + i for i in range(5)]
        everything = {x.key for x in c.storage.list()}
        assert everything >= {"greeting", "ttl", *ODD_KEYS}

        assert c.storage.delete("greeting") == len("greeting") + 2
        assert not c.storage.exist("greeting")
        with pytest.raises(NotFoundError):
            c.storage.get("greeting")
        usage = c.usage()
        assert usage.used == sum(x.size for x in c.storage.list()) and usage.quota > 0


def test_tools_sync(live: LiveServer) -> None:
    with MemoryServiceClient(live.url, new_workspace(live)) as c:
        names = [t["identity"]["name"] for t in c.tools.list()]
        assert "memory_get" in names and "storage_set" in names
        assert c.tools.get("storage_get")["identity"]["name"] == "storage_get"
        c.memory.add("c", "user", "hello")
        messages = list(c.tools.invoke("memory_get", {"conversationId": "c"}))
        assert isinstance(messages[0], m.TextMessage)
        assert any(isinstance(x, m.JsonMessage) for x in messages)
        out = c.tools.run("memory_get", {"conversationId": "c"}, sse=True)
        assert out.variables["transcript"] == "user: hello\n" and out.text == "Found 1 memory."
        with pytest.raises(ToolError) as caught:
            c.tools.run("storage_get", {"key": "missing"})
        assert caught.value.code == "key_not_found"
        errors = list(c.tools.invoke("storage_get", {"key": "missing"}, raise_on_error=False))
        assert isinstance(errors[-1], m.ErrorMessage)


# --- async ---------------------------------------------------------------------------------------


async def test_memory_async(live: LiveServer) -> None:
    async with AsyncMemoryServiceClient(live.url, new_workspace(live)) as c:
        # concurrent adds all land, each once
        await asyncio.gather(*(c.memory.add("c", "user", f"m{i}") for i in range(20)))
        page = await c.memory.get("c")
        assert page.memories[0].message_count == 20
        assert sorted(x.content for x in page.memories[0].data) == sorted(
            f"m{i}" for i in range(20)
        )
        replay = await c.memory.add("c", "user", "x", idempotency_key="same")
        assert not replay.replayed
        assert (await c.memory.add("c", "user", "x", idempotency_key="same")).replayed
        await c.memory.add("d", "assistant", "y", block_id="b")
        assert len((await c.memory.get_all()).memories) == 2
        assert (await c.memory.delete("c")).deleted_count == 1
        assert (await c.memory.get("c")).memories == []


async def test_storage_async(live: LiveServer) -> None:
    async with AsyncMemoryServiceClient(live.url, new_workspace(live)) as c:
        w = await c.storage.set("k", bytes(range(256)))
        assert w.created
        assert await c.storage.get("k") == bytes(range(256))
        assert (await c.storage.get_entry("k")).content_type == "application/octet-stream"
        assert await c.storage.exist("k") and not await c.storage.exist("nope")
        with pytest.raises(PreconditionFailedError):
            await c.storage.delete("k", if_match='"999999"')
        for key in ODD_KEYS:
            await c.storage.set(key, b"v")
        keys = [x.key async for x in c.storage.list(page_size=3)]
        assert keys == sorted([*ODD_KEYS, "k"], key=lambda k: k.encode())
        assert [x.key async for x in c.storage.list("a")] == ["a%2Fb", "a/../b"]
        assert await c.storage.delete("k") == 1 + 256
        with pytest.raises(NotFoundError):
            await c.storage.delete("k")


async def test_tools_async(live: LiveServer) -> None:
    async with AsyncMemoryServiceClient(live.url, new_workspace(live)) as c:
        assert len(await c.tools.list()) >= 9
        assert (await c.tools.get("memory_add"))["identity"]["name"] == "memory_add"
        out = await c.tools.run(
            "memory_add", {"conversationId": "c", "role": "user", "content": "a"}
        )
        assert out.variables["message_count"] == 1
        kinds = [
            type(x) async for x in c.tools.invoke("memory_get", {"conversationId": "c"}, sse=True)
        ]
        assert kinds[0] is m.TextMessage and m.VariableMessage in kinds
        with pytest.raises(NotFoundError) as caught:
            await c.tools.run("no_such_tool")
        assert caught.value.code == "tool_not_found"


# --- errors --------------------------------------------------------------------------------------


def test_error_mapping_sync(live: LiveServer) -> None:
    key = new_workspace(live, quota=100)
    with MemoryServiceClient(live.url, "msk_wrong") as bad, pytest.raises(AuthError) as caught:
        bad.storage.get("k")
    assert caught.value.status == 401 and caught.value.message

    with MemoryServiceClient(live.url, key) as c:
        with pytest.raises(NotFoundError) as nf:
            c.storage.get("missing")
        assert (nf.value.status, nf.value.code) == (404, "key_not_found")
        with pytest.raises(NotFoundError):
            c.tools.get("no_such_tool")

        c.memory.add("c", "user", "a", idempotency_key="k")
        with pytest.raises(ConflictError) as conflict:
            c.memory.add("c", "user", "different", idempotency_key="k")
        assert conflict.value.status == 409 and conflict.value.code == "idempotency_key_reused"
        assert not isinstance(conflict.value, PreconditionFailedError)

        w = c.storage.set("v", b"1")
        c.storage.set("v", b"2")
        with pytest.raises(ConflictError) as stale:  # 412 is a ConflictError too
            c.storage.set("v", b"3", if_match=w.etag)
        assert isinstance(stale.value, PreconditionFailedError) and stale.value.status == 412

        with pytest.raises(QuotaExceededError) as quota:
            c.storage.set("big", b"x" * 200)
        assert quota.value.status == 413 and quota.value.code == "quota_exceeded"
        assert isinstance(quota.value, TooLargeError)
        with pytest.raises(TooLargeError) as large:
            c.memory.add("c", "user", "x" * (256 * 1024 + 1))
        assert large.value.code == "content_too_large"
        assert not isinstance(large.value, QuotaExceededError)

        with pytest.raises(BadRequestError) as bad_request:
            c.memory.get()
        assert (bad_request.value.status, bad_request.value.code) == (400, "missing_filter")
        with pytest.raises(BadRequestError) as bad_limit:
            list(c.storage.list(page_size=100_000))
        assert bad_limit.value.code == "invalid_limit" and "limit" in bad_limit.value.message
        with pytest.raises(BadRequestError):
            list(c.tools.invoke("storage_get", {"key": ""}))
        assert isinstance(bad_request.value, MemoryServiceError)


async def test_error_mapping_async(live: LiveServer) -> None:
    key = new_workspace(live, quota=100)
    async with AsyncMemoryServiceClient(live.url, "msk_wrong") as bad:
        with pytest.raises(AuthError):
            await bad.memory.get_all()
        with pytest.raises(AuthError):
            [x async for x in bad.tools.invoke("memory_get_all")]
    async with AsyncMemoryServiceClient(live.url, key) as c:
        with pytest.raises(NotFoundError):
            await c.storage.get_entry("missing")
        await c.memory.add("c", "user", "a", idempotency_key="k")
        with pytest.raises(ConflictError):
            await c.memory.add("c", "user", "b", idempotency_key="k")
        await c.storage.set("v", b"1")
        with pytest.raises(PreconditionFailedError):
            await c.storage.set("v", b"2", if_none_match="*")
        with pytest.raises(QuotaExceededError):
            await c.memory.add("c", "user", "x" * 200)
        with pytest.raises(TooLargeError):
            await c.memory.add("c", "user", "x" * (256 * 1024 + 1))
        with pytest.raises(BadRequestError) as caught:
            await c.memory.delete()
        assert caught.value.code == "missing_filter"


def test_rate_limited(tmp_path) -> None:  # noqa: ANN001
    env = {"MEMORY_RATE_LIMIT_RPS": "0.001", "MEMORY_RATE_LIMIT_BURST": "1"}
    with LiveServer(sqlite_url(tmp_path / "m.db"), tmp_path, env=env) as server:
        with MemoryServiceClient(server.url, new_workspace(server)) as c:
            c.storage.exist("k")  # the one token of the burst
            with pytest.raises(RateLimitedError) as caught:
                c.storage.get("k")
        assert (
            caught.value.status == 429 and caught.value.retry_after and caught.value.retry_after > 0
        )
