"""Checks on the raw request that must happen before Litestar parses it.

A body sent with a Content-Encoding (gzip, br, ...) is refused with 415: the service does not
decode bodies, and storing the encoded bytes as if they were the value would be wrong. `identity`
(no encoding) is accepted. The check runs before the body is read, after the credential
(http/auth.py's `admit` and the admin guard; the fast paths with the headers they read).

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

from ..services.errors import ServiceError

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


BODY_METHODS = frozenset(("POST", "PUT", "PATCH"))


class UnsupportedContentEncoding(ServiceError):
    status = 415
    code = "unsupported_content_encoding"


def check_encoding(value: str | None) -> None:
    """Refuse a Content-Encoding other than `identity` (a list of codings, any case)."""
    if value is None:
        return
    codings = (coding.strip() for coding in value.split(","))
    if any(coding and coding.lower() != "identity" for coding in codings):
        raise UnsupportedContentEncoding(
            f"Content-Encoding {value.strip()!r} is not supported: send the body unencoded "
            "(identity)"
        )


def check_content_encoding(scope: Scope) -> None:
    """`check_encoding` for each Content-Encoding header of a request that may carry a body."""
    if scope.get("method") not in BODY_METHODS:
        return
    for name, value in scope["headers"]:
        if name == b"content-encoding":
            check_encoding(value.decode("latin-1"))
