"""The LangChain adapters against a live server on SQLite and PostgreSQL: the ByteStore through
langchain-tests' own standard suites (sync and async), plus what they leave out (one request per
batch, a key prefix, more than 1,000 keys); the chat history through a plain conversation round
trip and the loud refusal of what the memory API cannot store yet."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_tests.integration_tests import BaseStoreAsyncTests, BaseStoreSyncTests

from memory_service.client import AsyncMemoryServiceClient, MemoryServiceClient
from memory_service.client.adapters.langchain import (
    MemoryServiceByteStore,
    MemoryServiceChatMessageHistory,
)
from tests.support.live import new_workspace
from tests.support.server import LiveServer


class Counting(httpx.Client):
    """An httpx client that counts the requests it sends, by path."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.paths: list[str] = []

    def send(self, request: httpx.Request, **kw: object) -> httpx.Response:  # type: ignore[override]
        self.paths.append(request.url.path)
        return super().send(request, **kw)  # type: ignore[arg-type]


# --- ByteStore: the standard suites --------------------------------------------------------------


class TestByteStoreSync(BaseStoreSyncTests[bytes]):
    @pytest.fixture
    def kv_store(self, live_server: LiveServer) -> Iterator[MemoryServiceByteStore]:
        with MemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
            yield MemoryServiceByteStore(client)

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"\x00\xffbar", "bäz 🔑".encode()


class TestByteStoreAsync(BaseStoreAsyncTests[bytes]):
    @pytest.fixture
    async def kv_store(  # type: ignore[override]
        self,
        live_server: LiveServer,
    ) -> AsyncIterator[MemoryServiceByteStore]:
        key = new_workspace(live_server)
        async with AsyncMemoryServiceClient(live_server.url, key) as client:
            yield MemoryServiceByteStore(async_client=client)

    @pytest.fixture
    def three_values(self) -> tuple[bytes, bytes, bytes]:
        return b"foo", b"\x00\xffbar", "bäz 🔑".encode()


# --- ByteStore: what the suites do not check -----------------------------------------------------


def test_bytestore_one_request_per_batch(live_server: LiveServer) -> None:
    http = Counting(base_url=live_server.url, timeout=30)
    with MemoryServiceClient(live_server.url, new_workspace(live_server), http=http) as client:
        store = MemoryServiceByteStore(client, prefix="lc/")
        pairs = [(f"k{i}", f"v{i}".encode()) for i in range(1500)]
        store.mset(pairs)
        assert http.paths == ["/api/kv-batch/set", "/api/kv-batch/set"]  # 1,000 + 500
        http.paths.clear()
        keys = [f"k{i}" for i in range(0, 1500, 3)] + ["missing"]
        assert store.mget(keys) == [f"v{i}".encode() for i in range(0, 1500, 3)] + [None]
        assert http.paths == ["/api/kv-batch/get"]
        http.paths.clear()
        store.mdelete([f"k{i}" for i in range(100)] + ["missing"])
        assert http.paths == ["/api/kv-batch/delete"]
        assert store.mget(["k0", "k99", "k100"]) == [None, None, b"v100"]
        # The prefix is the store's own: the keys it yields are without it, and a key
        # written outside the prefix is not one of them.
        client.storage.set("other", b"x")
        assert sorted(store.yield_keys(prefix="k149")) == ["k149"] + [f"k149{i}" for i in range(10)]
        assert len(list(store.yield_keys())) == 1400
        assert client.storage.get("lc/k100") == b"v100"


def test_bytestore_repeated_keys_last_wins(live_server: LiveServer) -> None:
    with MemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
        store = MemoryServiceByteStore(client)
        store.mset([("a", b"1"), ("b", b"2"), ("a", b"3")])
        assert store.mget(["a", "a", "b"]) == [b"3", b"3", b"2"]
        store.mdelete(["a", "a"])
        assert store.mget(["a", "b"]) == [None, b"2"]


async def test_bytestore_without_the_matching_client_says_so(live_server: LiveServer) -> None:
    with MemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
        store = MemoryServiceByteStore(client)
        with pytest.raises(TypeError, match="no async client"):
            await store.amget(["a"])


# --- chat history --------------------------------------------------------------------------------


def conversation() -> list[BaseMessage]:
    return [
        SystemMessage(content="You are terse."),
        HumanMessage(content="Hi, I'm Ada 👋"),
        AIMessage(content="Hello Ada."),
        ChatMessage(role="user", content="What's 2+2?"),
        AIMessage(content="4"),
    ]


def expected() -> list[BaseMessage]:
    # A ChatMessage with role user reads back as the HumanMessage it is.
    out = conversation()
    out[3] = HumanMessage(content="What's 2+2?")
    return out


def test_history_round_trip_sync(live_server: LiveServer) -> None:
    with MemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
        history = MemoryServiceChatMessageHistory("user-1", block_id="chat", client=client)
        other = MemoryServiceChatMessageHistory("user-1", block_id="notes", client=client)
        assert history.messages == []
        history.add_messages(conversation()[:3])
        history.add_user_message("What's 2+2?")
        history.add_ai_message("4")
        other.add_messages([HumanMessage(content="elsewhere")])
        assert history.messages == expected()
        assert [m.role for m in client.memory.get("user-1", block_id="chat").memories[0].data] == [
            "system",
            "user",
            "assistant",
            "user",
            "assistant",
        ]
        history.clear()
        assert history.messages == []
        assert other.messages == [HumanMessage(content="elsewhere")]
        history.add_messages([HumanMessage(content="again")])
        assert history.messages == [HumanMessage(content="again")]


async def test_history_round_trip_async(live_server: LiveServer) -> None:
    async with AsyncMemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
        history = MemoryServiceChatMessageHistory("a/b%:c", async_client=client)
        assert await history.aget_messages() == []
        await history.aadd_messages(conversation())
        assert await history.aget_messages() == expected()
        await history.aclear()
        assert await history.aget_messages() == []


def test_history_pages_back_through_long_memories(live_server: LiveServer) -> None:
    with MemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
        history = MemoryServiceChatMessageHistory("long", client=client)
        sent = [HumanMessage(content=f"m{i}") for i in range(2500)]
        for i in range(0, 2500, 500):
            history.add_messages(sent[i : i + 500])
        assert history.messages == sent


REFUSED = [
    (ToolMessage(content="42", tool_call_id="call-1"), "ToolMessage"),
    (
        AIMessage(content="", tool_calls=[{"name": "calc", "args": {"x": 1}, "id": "call-1"}]),
        "tool_calls",
    ),
    (HumanMessage(content="hi", id="msg-1"), "id"),
    (HumanMessage(content="hi", name="ada"), "name"),
    (AIMessage(content="hi", response_metadata={"model": "m"}), "response_metadata"),
    (HumanMessage(content="hi", additional_kwargs={"x": 1}), "additional_kwargs"),
    (HumanMessage(content=[{"type": "text", "text": "hi"}]), "list content"),
    (ChatMessage(role="tool", content="42"), "role 'tool'"),
    (
        AIMessage(
            content="hi",
            usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
        ),
        "usage_metadata",
    ),
]


@pytest.mark.parametrize(("message", "named"), REFUSED, ids=[n for _, n in REFUSED])
def test_history_refuses_what_it_cannot_store(
    live_server: LiveServer,
    message: BaseMessage,
    named: str,
) -> None:
    with MemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
        history = MemoryServiceChatMessageHistory("turn", client=client)
        # An agent turn whose third message cannot be stored: none of it is.
        turn = [HumanMessage(content="what is 6*7?"), AIMessage(content="let me see"), message]
        with pytest.raises(ValueError, match="cannot store") as caught:
            history.add_messages(turn)
        assert named in str(caught.value)
        assert history.messages == []
        assert client.memory.get_all().memories == []


async def test_history_refuses_a_tool_message_async(live_server: LiveServer) -> None:
    async with AsyncMemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
        history = MemoryServiceChatMessageHistory("turn", async_client=client)
        with pytest.raises(ValueError, match="cannot store a ToolMessage"):
            await history.aadd_messages(
                [HumanMessage(content="q"), ToolMessage(content="42", tool_call_id="c1")]
            )
        assert await history.aget_messages() == []
