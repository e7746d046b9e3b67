"""What the memory API stores of a chat message today, in one place for every chat adapter.

The API keeps a role (user, assistant or system) and string content per message. Each adapter
maps its framework's message onto that and refuses, with `cannot_store`, anything that would be
lost (tool messages, ids, names, tool calls, metadata, non-text content): nothing is dropped
silently. When the API widens (SPEC 3's richer messages), widen `ROLES` and the adapters'
checks here and beside them.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from .. import _protocol as p
from ._plans import Plan

# The roles the memory API stores.
ROLES = ("user", "assistant", "system")


def cannot_store(kind: str, lost: list[str]) -> ValueError:
    return ValueError(
        f"cannot store this {kind}: memory-service does not store its {', '.join(lost)} yet; "
        "send only the role (user, assistant or system) and string content"
    )


class _Messages(msgspec.Struct, rename="camel"):
    data: list[p.Message]
    next_cursor: str | None = None


def _messages_page(
    conversation_id: str, block_id: str, cursor: str | None
) -> p.Call[_Messages | None]:
    params: dict[str, Any] = {"conversationId": conversation_id, "blockId": block_id}
    if cursor is not None:
        params["cursor"] = cursor
    dec = msgspec.json.Decoder(_Messages)

    def parse(r: httpx.Response) -> _Messages | None:
        # A memory that was never added to (or was cleared) is an empty history.
        return None if r.status_code == 404 else dec.decode(r.content)

    return p.Call("GET", "/api/memory/messages", parse, params=params, ok=(404,))


def read_messages(conversation_id: str, block_id: str) -> Plan[list[p.Message]]:
    """Every message of the memory, oldest first ([] for a memory that does not exist)."""
    pages: list[list[p.Message]] = []
    cursor: str | None = None
    while True:
        # The newest page first, then back through the older ones.
        page: _Messages | None = yield _messages_page(conversation_id, block_id, cursor)
        if page is None:
            break
        pages.append(page.data)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    return [m for page in reversed(pages) for m in page]


def add_messages(conversation_id: str, block_id: str, pairs: list[tuple[str, str]]) -> Plan[None]:
    for role, content in pairs:
        yield p.memory_add(conversation_id, role, content, block_id=block_id)
    return None


def delete_memory(conversation_id: str, block_id: str) -> Plan[None]:
    yield p.memory_delete(conversation_id, block_id=block_id)
    return None
