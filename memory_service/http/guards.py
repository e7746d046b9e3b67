"""Checks on the raw request that must happen before Litestar parses it.

Litestar decodes a query string with `errors="replace"`: `?key=%ff` would reach a handler as
U+FFFD, a different id than the client sent (paths are already decoded strictly, by the handlers
that take ids from them). A query string that is not UTF-8 once percent-decoded is refused here
with the error envelope, like any other malformed input.
"""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

_MESSAGE = "query string is not valid UTF-8 once percent-decoded"
_REFUSAL = json.dumps(
    {"success": False, "error": _MESSAGE, "message": _MESSAGE, "code": "invalid_query"}
).encode()


def query_is_utf8(query: bytes) -> bool:
    if query.isascii() and b"%" not in query:
        return True  # nearly every request: nothing to decode
    try:
        unquote_to_bytes(query.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class QueryGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and not query_is_utf8(scope.get("query_string", b"")):
            start: HTTPResponseStartEvent = {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_REFUSAL)).encode()),
                ],
            }
            await send(start)
            body: HTTPResponseBodyEvent = {
                "type": "http.response.body",
                "body": _REFUSAL,
                "more_body": False,
            }
            await send(body)
            return
        await self.app(scope, receive, send)
