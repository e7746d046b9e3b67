"""LangChain on memory-service (`pip install 'memory-service[langchain]'`).

- `MemoryServiceByteStore`: a `ByteStore` (`BaseStore[str, bytes]`) on the KV store. `mget`,
  `mset` and `mdelete` are one batch request per 1,000 keys, not one per key; `mset` is
  all-or-nothing per request. An optional `prefix` keeps the store's keys apart from others.
- `MemoryServiceChatMessageHistory`: a `BaseChatMessageHistory` on the memory API, one
  `(conversation_id, block_id)` memory per history.

Each takes a sync client (`client=`), an async one (`async_client=`), or both; the sync methods
need the first, the `a*` methods the second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.stores import ByteStore

from .. import _protocol as p
from ..aio import AsyncMemoryServiceClient
from ..sync import MemoryServiceClient
from ._messages import ROLES, add_messages, cannot_store, delete_memory, read_messages
from ._plans import Plan, arun, delete_many, get_many, run, set_many

__all__ = ["MemoryServiceByteStore", "MemoryServiceChatMessageHistory"]


class MemoryServiceByteStore(ByteStore):
    """A LangChain `ByteStore` whose keys are KV keys (`prefix + key`) of one workspace.

    Values are stored byte for byte. `mget` of a missing key gives None and `mdelete` of a missing
    key is no error, as the interface wants; anything else the server refuses (a key too long,
    the quota) raises the client's typed error and, for `mset`, stores nothing of that request.
    """

    def __init__(
        self,
        client: MemoryServiceClient | None = None,
        *,
        async_client: AsyncMemoryServiceClient | None = None,
        prefix: str = "",
    ) -> None:
        if client is None and async_client is None:
            raise TypeError("MemoryServiceByteStore needs client= or async_client=")
        self._client = client
        self._aclient = async_client
        self._prefix = prefix

    def _mget(self, keys: Sequence[str]) -> Plan[list[bytes | None]]:
        full = [self._prefix + k for k in keys]
        found = yield from get_many(full)
        return [found.get(k) for k in full]

    def _mset(self, pairs: Sequence[tuple[str, bytes]]) -> Plan[None]:
        yield from set_many([p.SetItem(self._prefix + k, v) for k, v in pairs])

    def _mdelete(self, keys: Sequence[str]) -> Plan[None]:
        yield from delete_many(self._prefix + k for k in keys)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return run(self._client, self._mget(keys), "MemoryServiceByteStore")

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        return await arun(self._aclient, self._mget(keys), "MemoryServiceByteStore")

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        run(self._client, self._mset(key_value_pairs), "MemoryServiceByteStore")

    async def amset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        await arun(self._aclient, self._mset(key_value_pairs), "MemoryServiceByteStore")

    def mdelete(self, keys: Sequence[str]) -> None:
        run(self._client, self._mdelete(keys), "MemoryServiceByteStore")

    async def amdelete(self, keys: Sequence[str]) -> None:
        await arun(self._aclient, self._mdelete(keys), "MemoryServiceByteStore")

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        if self._client is None:
            raise TypeError("MemoryServiceByteStore has no sync client: pass client=")
        cut = len(self._prefix)
        for item in self._client.storage.list(self._prefix + (prefix or "")):
            yield item.key[cut:]

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        if self._aclient is None:
            raise TypeError("MemoryServiceByteStore has no async client: pass async_client=")
        cut = len(self._prefix)
        async for item in self._aclient.storage.list(self._prefix + (prefix or "")):
            yield item.key[cut:]


# --- chat history --------------------------------------------------------------------------------

_ROLES = {"human": "user", "ai": "assistant", "system": "system"}
_TYPES: dict[str, type[BaseMessage]] = {
    "user": HumanMessage,
    "assistant": AIMessage,
    "system": SystemMessage,
}


def role_of(message: BaseMessage) -> str:
    """The memory API's role for a message it can store whole; ValueError naming what it
    cannot store otherwise (so that nothing is ever dropped without a word)."""
    kind = type(message).__name__
    if isinstance(message, ChatMessage):
        if message.role not in ROLES:
            raise ValueError(
                f"cannot store a ChatMessage with role {message.role!r}: memory-service stores "
                "only the roles user, assistant and system"
            )
        role = message.role
    elif message.type in _ROLES and isinstance(message, HumanMessage | AIMessage | SystemMessage):
        role = _ROLES[message.type]
    else:
        raise ValueError(
            f"cannot store a {kind} (type {message.type!r}): memory-service stores only "
            "human, AI and system messages for now (tool messages are not stored yet)"
        )
    lost = []
    if not isinstance(message.content, str):
        lost.append("list content (only a string is stored)")
    if isinstance(message, AIMessage):
        if message.tool_calls:
            lost.append("tool_calls")
        if message.invalid_tool_calls:
            lost.append("invalid_tool_calls")
        if message.usage_metadata:
            lost.append("usage_metadata")
    for field in ("id", "name"):
        if getattr(message, field) is not None:
            lost.append(field)
    for field in ("additional_kwargs", "response_metadata"):
        if getattr(message, field):
            lost.append(field)
    if getattr(message, "example", False):
        lost.append("example")
    if lost:
        raise cannot_store(kind, lost)
    return role


class MemoryServiceChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history kept as the memory `(conversation_id, block_id)`.

    The memory API stores roles user, assistant and system with string content today, so
    HumanMessage, AIMessage and SystemMessage (and a ChatMessage with one of those roles) are
    stored and read back as such. A message the service cannot store whole is refused with a
    ValueError naming what would be lost, before anything of the call is stored: a ToolMessage
    (or any other type), an AIMessage with tool_calls or usage_metadata, list content, an id, a
    name, additional_kwargs or response_metadata. Nothing is ever dropped silently.
    """

    def __init__(
        self,
        conversation_id: str,
        *,
        block_id: str = "default",
        client: MemoryServiceClient | None = None,
        async_client: AsyncMemoryServiceClient | None = None,
    ) -> None:
        if client is None and async_client is None:
            raise TypeError("MemoryServiceChatMessageHistory needs client= or async_client=")
        self.conversation_id = conversation_id
        self.block_id = block_id
        self._client = client
        self._aclient = async_client

    def _read(self) -> Plan[list[BaseMessage]]:
        stored = yield from read_messages(self.conversation_id, self.block_id)
        return [_TYPES[m.role](content=m.content) for m in stored]

    def _add(self, messages: Sequence[BaseMessage]) -> Plan[None]:
        roles = [role_of(m) for m in messages]  # every message checked before any is sent
        pairs = []
        for message, role in zip(messages, roles, strict=True):
            assert isinstance(message.content, str)
            pairs.append((role, message.content))
        yield from add_messages(self.conversation_id, self.block_id, pairs)

    def _clear(self) -> Plan[None]:
        yield from delete_memory(self.conversation_id, self.block_id)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        return run(self._client, self._read(), "MemoryServiceChatMessageHistory")

    async def aget_messages(self) -> list[BaseMessage]:
        return await arun(self._aclient, self._read(), "MemoryServiceChatMessageHistory")

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        run(self._client, self._add(messages), "MemoryServiceChatMessageHistory")

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        await arun(self._aclient, self._add(messages), "MemoryServiceChatMessageHistory")

    def clear(self) -> None:
        run(self._client, self._clear(), "MemoryServiceChatMessageHistory")

    async def aclear(self) -> None:
        await arun(self._aclient, self._clear(), "MemoryServiceChatMessageHistory")
