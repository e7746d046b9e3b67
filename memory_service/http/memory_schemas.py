"""Wire shapes of the memory block API (SPEC 3): field names exactly as the spec names them."""

from __future__ import annotations

from typing import Literal

import msgspec

# A memory's shape is shared with the tools: built in services/shapes.py.
from ..services.shapes import MemoryItem, MemoryMessageOut


class MemoryMessageIn(msgspec.Struct, forbid_unknown_fields=True):
    role: str
    content: str


class MemoryAddBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """One message (`role` + `content`) or a batch (`messages`), appended atomically in order."""

    conversation_id: str | None = None
    # Legacy alias of conversationId; when both are given they must agree.
    id: str | None = None
    block_id: str | None = None
    block_name: str | None = None
    role: str | None = None
    content: str | None = None
    messages: list[MemoryMessageIn] | None = None
    # Answer with (at least) the last N messages, not only those appended.
    last_n: int | None = None
    keep_system: bool = False


class MemoryAdded(msgspec.Struct, rename="camel"):
    success: Literal[True]
    memories: list[MemoryItem]
    message: str
    # True when this answers a retry of an add with the same Idempotency-Key (nothing appended).
    replayed: bool


class MemoryList(msgspec.Struct, rename="camel"):
    success: Literal[True]
    memories: list[MemoryItem]
    message: str
    # The next page's cursor; null on the last page.
    next_cursor: str | None


class MemoryDeleted(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    deleted_count: int
    freed_bytes: int
    dry_run: bool


class MemoryMessages(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    key: str
    conversation_id: str
    block_id: str
    block_name: str | None
    # In append order: the page just before the cursor (the newest page without one).
    data: list[MemoryMessageOut]
    message_count: int
    # The page before this one; null when this page starts at the first message.
    next_cursor: str | None


class MemoryBlockName(msgspec.Struct, forbid_unknown_fields=True):
    # null forgets the name (reads then show blockName null).
    name: str | None


class MemoryBlockItem(msgspec.Struct, rename="camel"):
    block_id: str
    name: str | None
    updated_at: str | None


class MemoryBlockOne(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    block: MemoryBlockItem


class MemoryBlockList(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    blocks: list[MemoryBlockItem]
    next_cursor: str | None


class ConversationItem(msgspec.Struct, rename="camel"):
    conversation_id: str
    # Memories (one per block) of this conversation that the listing's filter matches.
    block_count: int
    # Messages in those memories, summed.
    message_count: int
    # The last append to any of them.
    updated_at: str


class ConversationList(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    conversations: list[ConversationItem]
    next_cursor: str | None
