"""The JSON shapes of a memory and of a KV list item, built in one place for every way they
leave the service: HTTP bodies (`http/`), tool outputs and MCP resources (`tools/`, `http/mcp`).
A workflow thus sees exactly the fields, names and formats the API answers.

msgspec Structs, so HTTP answers them as they are (and documents them in openapi.yaml), and a
tool turns them into plain values with `msgspec.to_builtins` (camelCase, as the API) or
`msgspec.structs.asdict` (the attribute names, snake_case).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ..clock import iso
from ..storage.kv import ListedEntry

if TYPE_CHECKING:  # services.memory imports services.kv, which builds its list items here
    from .memory import MemoryOut, MessageOut


def etag(version: int) -> str:
    return f'"{version}"'


class KvItem(msgspec.Struct, rename="camel"):
    key: str
    size: int
    content_type: str
    version: int
    etag: str
    updated_at: str
    expires_at: str | None


def kv_item(entry: ListedEntry) -> KvItem:
    return KvItem(
        key=entry.key.decode("utf-8"),
        size=entry.size,
        content_type=entry.content_type,
        version=entry.version,
        etag=etag(entry.version),
        updated_at=iso(entry.updated_at),
        expires_at=iso(entry.expires_at),
    )


class MemoryMessageOut(msgspec.Struct):
    role: str
    content: str
    # Position in the memory: 0, 1, 2, ... in append order, never reused.
    seq: int


class MemoryItem(msgspec.Struct, rename="camel"):
    key: str
    conversation_id: str
    block_id: str
    block_name: str | None
    data: list[MemoryMessageOut]
    message_count: int
    created_at: str
    updated_at: str
    # Set when older messages exist than those in `data` (else null): pass it to
    # GET /api/memory/messages to page back through them.
    data_cursor: str | None


def message_out(m: MessageOut) -> MemoryMessageOut:
    return MemoryMessageOut(role=m.role, content=m.content, seq=m.seq)


def memory_item(m: MemoryOut) -> MemoryItem:
    return MemoryItem(
        key=m.key,
        conversation_id=m.conversation_id,
        block_id=m.block_id,
        block_name=m.block_name,
        data=[message_out(x) for x in m.messages],
        message_count=m.message_count,
        created_at=iso(m.created_at),
        updated_at=iso(m.updated_at),
        data_cursor=m.data_cursor,
    )


def found(n: int) -> str:
    """How a read of memories sums itself up, over HTTP and in a tool's text."""
    if n == 0:
        return "No memories found"
    return "Found 1 memory" if n == 1 else f"Found {n} memories"
