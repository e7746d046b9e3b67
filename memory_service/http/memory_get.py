"""`GET /api/memory` answered from the ASGI scope (see http/fast_path.py): the same `get_page`
as `MemoryController.get_memories`, rendered once per page (`page_answer`).

The query string is parsed by Litestar's own parser. Litestar then converts each parameter
leniently (`lastN=007`, `keepSystem=yes`) and answers a bad one with its own words, after the
credential is checked. This path takes only queries it is sure of: known names, each once,
numbers as plain digits, booleans as `true` or `false`; any other query goes to Litestar, before
anything else is done.
"""

from __future__ import annotations

import re

from litestar.types import HTTPScope, Receive, Send

from .auth import CREDENTIAL_HEADERS, first_headers
from .fast_path import FastPath, send_json, single_values
from .memory import MemoryQuery, get_page, page_answer

PATH = "/api/memory"
_TEXT = {
    "conversationId": "conversation_id",
    "id": "legacy_id",
    "blockId": "block_id",
    "blockName": "block_name",
    "cursor": "cursor",
}
_NUMBER = {"limit": "limit", "lastN": "last_n"}
_PLAIN_NUMBER = re.compile(r"0|[1-9][0-9]{0,8}")
_BOOLEAN = {"true": True, "false": False}
_NAMES = frozenset((*_TEXT, *_NUMBER, "keepSystem"))


def plain_query(query: bytes) -> MemoryQuery | None:
    """The query's parameters when every one is plainly valid, else None."""
    values = single_values(query, _NAMES)
    if values is None:
        return None
    q = MemoryQuery()
    for name, value in values.items():
        if name in _TEXT:
            setattr(q, _TEXT[name], value)
        elif name in _NUMBER and _PLAIN_NUMBER.fullmatch(value):
            setattr(q, _NUMBER[name], int(value))
        elif name == "keepSystem" and value in _BOOLEAN:
            q.keep_system = _BOOLEAN[value]
        else:
            return None
    return q


class MemoryGetFastPath(FastPath):
    operation_id = "memoryGet"
    method = "GET"
    path = PATH

    async def answer(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        query = plain_query(scope["query_string"])
        if query is None:
            await self.app(scope, receive, send)
            return
        wanted = first_headers(scope, CREDENTIAL_HEADERS)
        if wanted is None:  # a credential repeated: Litestar's guard refuses it
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.principal(scope, wanted)
            page = await get_page(self.services, principal, query)
        except Exception as exc:
            await self.refuse(scope, receive, send, exc)
            return
        await send_json(send, page_answer(page))
