"""The memory block API (SPEC 3), one concern a file:

- `ids`: what ids and messages may hold, and the `conversationId:blockId` key
- `results`: the memories and messages the services answer
- `add`: an add as one transaction (replay, append, charge, widen the answer)
- `pg_add`: every memory write on PostgreSQL as one server-side function call
- `reads`: a page of memories with their windows, and older messages
- `changes`: deletes and block names
- `service`: `MemoryService`, which checks input, picks the transaction and the thread
"""

from ...storage.memory import Filter
from .ids import (
    DEFAULT_BLOCK,
    ID_LENGTH,
    IDEMPOTENCY_KEY_LENGTH,
    ROLES,
    check_id,
    check_idempotency_key,
    check_message,
    conversation_of,
    memory_key,
)
from .results import MemoryOut, MessageOut, MessagePage, Window
from .service import MemoryService

__all__ = [
    "DEFAULT_BLOCK",
    "IDEMPOTENCY_KEY_LENGTH",
    "ID_LENGTH",
    "ROLES",
    "Filter",
    "MemoryOut",
    "MemoryService",
    "MessageOut",
    "MessagePage",
    "Window",
    "check_id",
    "check_message",
    "check_idempotency_key",
    "conversation_of",
    "memory_key",
]
