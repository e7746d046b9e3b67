"""LlamaIndex on memory-service (`pip install 'memory-service[llamaindex]'`).

`MemoryServiceChatStore` is a LlamaIndex `BaseChatStore` on the memory API: a chat store key is
a conversation id, its messages the memory `(key, block_id)`. The memory API appends messages
and deletes a whole memory; it has no call that removes one message, so `delete_message` and
`delete_last_message` read the memory, delete it and add back the others (not atomic: a writer
meanwhile can interleave). `get_keys` lists the conversations that have a memory in `block_id`.

A message the API cannot store whole is refused with a ValueError before anything of the call
is stored (see `_messages`): a role other than user, assistant or system, content that is not
exactly one text block, or additional_kwargs.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock
from llama_index.core.storage.chat_store.base import BaseChatStore
from pydantic import PrivateAttr

from .. import _protocol as p
from ..aio import AsyncMemoryServiceClient
from ..sync import MemoryServiceClient
from ._messages import ROLES, add_messages, cannot_store, delete_memory, read_messages
from ._plans import Plan, arun, run

__all__ = ["MemoryServiceChatStore"]

WHAT = "MemoryServiceChatStore"


def pair_of(message: ChatMessage) -> tuple[str, str]:
    """(role, content) of a message the memory API can store whole; ValueError otherwise."""
    role = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    lost = []
    if role not in ROLES:
        lost.append(f"role {role!r}")
    if len(message.blocks) != 1 or not isinstance(message.blocks[0], TextBlock):
        kinds = [type(b).__name__ for b in message.blocks]
        lost.append(f"content blocks {kinds} (only one TextBlock is stored)")
    if message.additional_kwargs:
        lost.append(f"additional_kwargs {sorted(message.additional_kwargs)}")
    if lost:
        raise cannot_store("ChatMessage", lost)
    block = message.blocks[0]
    assert isinstance(block, TextBlock)
    return role, block.text


def _message(m: p.Message) -> ChatMessage:
    return ChatMessage(role=MessageRole(m.role), content=m.content)


class MemoryServiceChatStore(BaseChatStore):
    """A LlamaIndex chat store on the memory API (see the module's docstring).

    `MemoryServiceChatStore(client=..., async_client=..., block_id="default")`: the sync methods
    need the sync client, the async ones (`aget_messages`, `async_add_message`, ...) the async
    client.
    """

    block_id: str = "default"
    _client: MemoryServiceClient | None = PrivateAttr(default=None)
    _aclient: AsyncMemoryServiceClient | None = PrivateAttr(default=None)

    def __init__(
        self,
        client: MemoryServiceClient | None = None,
        *,
        async_client: AsyncMemoryServiceClient | None = None,
        block_id: str = "default",
        **kwargs: Any,
    ) -> None:
        if client is None and async_client is None:
            raise TypeError(f"{WHAT} needs client= or async_client=")
        super().__init__(block_id=block_id, **kwargs)  # type: ignore[call-arg]
        self._client = client
        self._aclient = async_client

    @classmethod
    def class_name(cls) -> str:
        return WHAT

    # --- plans -----------------------------------------------------------------------------------

    def _get(self, key: str) -> Plan[list[ChatMessage]]:
        stored = yield from read_messages(key, self.block_id)
        return [_message(m) for m in stored]

    def _set(self, key: str, messages: list[ChatMessage]) -> Plan[None]:
        pairs = [pair_of(m) for m in messages]  # every message checked before anything changes
        yield from delete_memory(key, self.block_id)
        yield from add_messages(key, self.block_id, pairs)

    def _add(self, key: str, message: ChatMessage) -> Plan[None]:
        yield from add_messages(key, self.block_id, [pair_of(message)])

    def _delete_all(self, key: str) -> Plan[list[ChatMessage] | None]:
        stored = yield from read_messages(key, self.block_id)
        if not stored:
            return None
        yield from delete_memory(key, self.block_id)
        return [_message(m) for m in stored]

    def _delete_at(self, key: str, idx: int | None) -> Plan[ChatMessage | None]:
        stored = yield from read_messages(key, self.block_id)
        if not stored:
            return None
        at = len(stored) - 1 if idx is None else idx
        # SimpleChatStore's rule: an index past the end deletes nothing.
        if at >= len(stored) or at < -len(stored):
            return None
        gone = stored.pop(at)
        yield from delete_memory(key, self.block_id)
        yield from add_messages(key, self.block_id, [(m.role, m.content) for m in stored])
        return _message(gone)

    def _keys(self) -> Plan[list[str]]:
        keys: list[str] = []
        cursor: str | None = None
        while True:
            page: p.ConversationPage = yield p.memory_conversations_page(
                block_id=self.block_id, cursor=cursor
            )
            keys.extend(c.conversation_id for c in page.conversations)
            if not page.next_cursor:
                return keys
            cursor = page.next_cursor

    # --- sync ------------------------------------------------------------------------------------

    def set_messages(self, key: str, messages: list[ChatMessage]) -> None:
        run(self._client, self._set(key, messages), WHAT)

    def get_messages(self, key: str) -> list[ChatMessage]:
        return run(self._client, self._get(key), WHAT)

    def add_message(self, key: str, message: ChatMessage) -> None:
        run(self._client, self._add(key, message), WHAT)

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        return run(self._client, self._delete_all(key), WHAT)

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        return run(self._client, self._delete_at(key, idx), WHAT)

    def delete_last_message(self, key: str) -> ChatMessage | None:
        return run(self._client, self._delete_at(key, None), WHAT)

    def get_keys(self) -> list[str]:
        return run(self._client, self._keys(), WHAT)

    # --- async -----------------------------------------------------------------------------------

    async def aset_messages(self, key: str, messages: list[ChatMessage]) -> None:
        await arun(self._aclient, self._set(key, messages), WHAT)

    async def aget_messages(self, key: str) -> list[ChatMessage]:
        return await arun(self._aclient, self._get(key), WHAT)

    async def async_add_message(self, key: str, message: ChatMessage) -> None:
        await arun(self._aclient, self._add(key, message), WHAT)

    async def adelete_messages(self, key: str) -> list[ChatMessage] | None:
        return await arun(self._aclient, self._delete_all(key), WHAT)

    async def adelete_message(self, key: str, idx: int) -> ChatMessage | None:
        return await arun(self._aclient, self._delete_at(key, idx), WHAT)

    async def adelete_last_message(self, key: str) -> ChatMessage | None:
        return await arun(self._aclient, self._delete_at(key, None), WHAT)

    async def aget_keys(self) -> list[str]:
        return await arun(self._aclient, self._keys(), WHAT)
