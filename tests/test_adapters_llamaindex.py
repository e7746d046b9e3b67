"""The LlamaIndex chat store against a live server on SQLite and PostgreSQL. LlamaIndex ships no
reusable suite for chat stores, so each method of `BaseChatStore` is pinned here against the
behaviour of its reference `SimpleChatStore` (same calls, same answers), sync and async, plus
the loud refusal of what the memory API cannot store yet."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import pytest
from llama_index.core.base.llms.types import ChatMessage, ImageBlock, MessageRole, TextBlock
from llama_index.core.storage.chat_store import SimpleChatStore
from llama_index.core.storage.chat_store.base import BaseChatStore

from memory_service.client import AsyncMemoryServiceClient, MemoryServiceClient
from memory_service.client.adapters.llamaindex import MemoryServiceChatStore
from tests.support.live import new_workspace
from tests.support.server import LiveServer


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[MemoryServiceClient]:
    with MemoryServiceClient(live_server.url, new_workspace(live_server)) as c:
        yield c


def conversation() -> list[ChatMessage]:
    return [
        ChatMessage(role=MessageRole.SYSTEM, content="be brief"),
        ChatMessage(role=MessageRole.USER, content="hi 🔑"),
        ChatMessage(role=MessageRole.ASSISTANT, content="hello\nthere"),
        ChatMessage(role="user", content="bye"),
    ]


def pairs(messages: list[ChatMessage] | None) -> list[tuple[str, str | None]] | None:
    if messages is None:
        return None
    return [(m.role.value, m.content) for m in messages]


def one(message: ChatMessage | None) -> tuple[str, str | None] | None:
    return None if message is None else (message.role.value, message.content)


def script(store: BaseChatStore) -> list[object]:
    """Every method of the interface, in a row; the answers are compared across stores."""
    out: list[object] = []
    out.append(pairs(store.get_messages("c1")))
    store.set_messages("c1", conversation())
    store.add_message("c1", ChatMessage(role=MessageRole.ASSISTANT, content="later"))
    store.add_message("c2", ChatMessage(content="other"))
    out.append(pairs(store.get_messages("c1")))
    out.append(sorted(store.get_keys()))
    out.append(one(store.delete_message("c1", 1)))
    out.append(one(store.delete_message("c1", 99)))
    out.append(pairs(store.get_messages("c1")))
    out.append(one(store.delete_last_message("c1")))
    out.append(pairs(store.get_messages("c1")))
    store.set_messages("c1", conversation()[:2])  # replaces
    out.append(pairs(store.get_messages("c1")))
    out.append(pairs(store.delete_messages("c2")))
    out.append(pairs(store.get_messages("c2")))
    out.append(pairs(store.delete_messages("c2")))
    out.append(one(store.delete_last_message("nobody")))
    out.append(one(store.delete_message("nobody", 0)))
    return out


def test_every_method_answers_as_simple_chat_store(client: MemoryServiceClient) -> None:
    ours = script(MemoryServiceChatStore(client))
    reference = script(SimpleChatStore())
    assert ours == reference
    assert reference == [
        [],
        [
            ("system", "be brief"),
            ("user", "hi 🔑"),
            ("assistant", "hello\nthere"),
            ("user", "bye"),
            ("assistant", "later"),
        ],
        ["c1", "c2"],
        ("user", "hi 🔑"),
        None,
        [
            ("system", "be brief"),
            ("assistant", "hello\nthere"),
            ("user", "bye"),
            ("assistant", "later"),
        ],
        ("assistant", "later"),
        [("system", "be brief"), ("assistant", "hello\nthere"), ("user", "bye")],
        [("system", "be brief"), ("user", "hi 🔑")],
        [("user", "other")],
        [],
        None,
        None,
        None,
    ]


def test_keys_and_blocks(client: MemoryServiceClient) -> None:
    a = MemoryServiceChatStore(client)
    b = MemoryServiceChatStore(client, block_id="side")
    a.add_message("k1", ChatMessage(content="x"))
    b.add_message("k2", ChatMessage(content="y"))
    assert a.get_keys() == ["k1"] and b.get_keys() == ["k2"]
    assert a.get_messages("k2") == [] and pairs(b.get_messages("k2")) == [("user", "y")]
    # The memory API's other users see the same conversation.
    page = client.memory.get("k1")
    assert [(m.role, m.content) for m in page.memories[0].data] == [("user", "x")]


def test_many_messages_page_through(client: MemoryServiceClient) -> None:
    store = MemoryServiceChatStore(client)
    msgs = [ChatMessage(content=f"m{i}") for i in range(230)]
    store.set_messages("long", msgs)
    assert [m.content for m in store.get_messages("long")] == [f"m{i}" for i in range(230)]
    gone = store.delete_message("long", -230)
    assert gone is not None and gone.content == "m0"
    assert [m.content for m in store.get_messages("long")] == [f"m{i}" for i in range(1, 230)]


def test_refuses_what_it_cannot_store(client: MemoryServiceClient) -> None:
    store = MemoryServiceChatStore(client)
    store.set_messages("r", [ChatMessage(content="kept")])
    bad = [
        (ChatMessage(role=MessageRole.TOOL, content="42"), "role 'tool'"),
        (ChatMessage(role=MessageRole.FUNCTION, content="f"), "role 'function'"),
        (ChatMessage(content="x", additional_kwargs={"tool_calls": []}), "additional_kwargs"),
        (
            ChatMessage(blocks=[TextBlock(text="a"), TextBlock(text="b")]),
            "content blocks",
        ),
        (ChatMessage(blocks=[ImageBlock(url="https://example.invalid/a.png")]), "ImageBlock"),
        (ChatMessage(blocks=[]), "content blocks"),
    ]
    for message, what in bad:
        with pytest.raises(ValueError, match="cannot store this ChatMessage") as caught:
            store.add_message("r", message)
        assert what in str(caught.value)
        # set_messages checks every message before it deletes or adds anything.
        with pytest.raises(ValueError, match="cannot store"):
            store.set_messages("r", [ChatMessage(content="new"), message])
        assert pairs(store.get_messages("r")) == [("user", "kept")]
    with pytest.raises(TypeError, match="no async client"):
        asyncio.run(store.aget_messages("r"))


async def test_async_twins(live_server: LiveServer) -> None:
    async with AsyncMemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
        store = MemoryServiceChatStore(async_client=client)
        assert await store.aget_messages("a") == []
        await store.aset_messages("a", conversation())
        await store.async_add_message("a", ChatMessage(content="more"))
        assert await store.aget_keys() == ["a"]
        gone = await store.adelete_message("a", 0)
        assert one(gone) == ("system", "be brief")
        last = await store.adelete_last_message("a")
        assert one(last) == ("user", "more")
        assert pairs(await store.aget_messages("a")) == [
            ("user", "hi 🔑"),
            ("assistant", "hello\nthere"),
            ("user", "bye"),
        ]
        deleted = await store.adelete_messages("a")
        assert deleted is not None and len(deleted) == 3
        assert await store.aget_messages("a") == [] and await store.aget_keys() == []
        with pytest.raises(TypeError, match="no sync client"):
            store.get_messages("a")


def test_the_service_never_imports_a_framework() -> None:
    """`serve` (and the client) must run on a plain install, without the [langchain],
    [langgraph] or [llamaindex] extras: every module of the package outside the adapters, once
    imported, has pulled in none of the frameworks."""
    code = """
import importlib, pkgutil, sys
import memory_service
for mod in pkgutil.walk_packages(memory_service.__path__, "memory_service."):
    name = mod.name
    if name.startswith(("memory_service.client.adapters.", "memory_service.migrations")):
        continue
    if name.endswith(".__main__"):  # runs the CLI
        continue
    importlib.import_module(name)
roots = {"langchain_core", "langchain", "langgraph", "llama_index"}
print(sorted({m.split(".")[0] for m in sys.modules} & roots))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr[-3000:]
