"""What the memory services answer: memories with a window of their messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ...storage.memory import MemoryRecord, MessageRecord
from .ids import memory_key


@dataclass(slots=True)
class MessageOut:
    seq: int
    role: str
    content: str


@dataclass(slots=True)
class MemoryOut:
    id: int
    conversation_id: str
    block_id: str
    block_name: str | None
    message_count: int
    created_at: int
    updated_at: int
    messages: list[MessageOut] = field(default_factory=list)
    # The seq of the first message in `messages`: older ones exist when it is above 0.
    window_start: int = 0
    # Set (by the service, sealed) when older messages exist: pages back through them.
    data_cursor: str | None = None

    @property
    def key(self) -> str:
        return memory_key(self.conversation_id, self.block_id)


@dataclass(slots=True)
class MessagePage:
    memory: MemoryOut
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Window:
    size: int  # at most this many of the newest messages per memory
    keep_system: bool


def memory_out(row: MemoryRecord, messages: list[MessageOut], window_start: int) -> MemoryOut:
    return MemoryOut(
        id=row.id,
        conversation_id=row.conversation_id,
        block_id=row.block_id,
        block_name=row.block_name,
        message_count=row.message_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
        messages=messages,
        window_start=window_start,
    )


def message_of(r: MessageRecord) -> MessageOut:
    """A message read whole (content is None only from a read capped by size, which gives up
    on such a message before it gets here)."""
    assert r.content is not None
    return MessageOut(r.seq, r.role, r.content.decode("utf-8"))


def messages_of(rows: Sequence[MessageRecord]) -> list[MessageOut]:
    return [message_of(r) for r in rows]
