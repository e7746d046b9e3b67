"""Checks on the raw request that must happen before Litestar parses it.

A body sent with a Content-Encoding (gzip, br, ...) is refused with 415: the service does not
decode bodies, and storing the encoded bytes as if they were the value would be wrong. `identity`
(no encoding) is accepted. The check runs before the body is read, after the credential
(http/auth.py's `admit` and the admin guard; the fast paths with the headers they read).

Litestar decodes a query string with `errors="replace"`: `?key=%ff` would reach a handler as
U+FFFD, a different id than the client sent (paths are already decoded strictly, by the handlers
that take ids from them). A query string that is not UTF-8 once percent-decoded is refused here
with the error envelope, like any other malformed input.

Litestar also lets the last of a repeated parameter win (`?limit=1&limit=2` is `limit=2`), and a
repeated id would be read differently by different clients and proxies. No route takes a
parameter more than once (none is declared as an array), so a name given twice, blank or not,
is refused here, for every route, before any fast path or handler sees it.
"""

from __future__ import annotations

import json
from urllib.parse import unquote, unquote_to_bytes

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
# Names in a refusal are cut to this many characters: the answer stays small whatever was sent.
_NAME_SHOWN = 100


def _refusal(message: str, code: str) -> bytes:
    return json.dumps(
        {"success": False, "error": message, "message": message, "code": code}
    ).encode()


_REFUSAL = _refusal(_MESSAGE, "invalid_query")


def query_is_utf8(query: bytes) -> bool:
    if query.isascii() and b"%" not in query:
        return True  # nearly every request: nothing to decode
    try:
        unquote_to_bytes(query.replace(b"+", b" ")).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def repeated_parameter(query: bytes) -> str | None:
    """The first parameter name that the (UTF-8) query gives more than once, as Litestar's parser
    decodes names; None when each comes once."""
    if b"&" not in query:
        return None  # one parameter at most: nearly every request
    seen: set[str] = set()
    for field in query.decode("utf-8", "replace").split("&"):
        if not field:
            continue  # `a=1&&b=2`: Litestar's parser skips empty fields too
        name = unquote(field.partition("=")[0].replace("+", " "), errors="replace")
        if name in seen:
            return name
        seen.add(name)
    return None


def _repeated_refusal(name: str) -> bytes:
    shown = name if len(name) <= _NAME_SHOWN else name[:_NAME_SHOWN] + "..."
    return _refusal(
        f"query parameter {shown!r} is given more than once; give each parameter once",
        "repeated_parameter",
    )


class QueryGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            query = scope.get("query_string", b"")
            if not query_is_utf8(query):
                await _refuse(send, _REFUSAL)
                return
            repeated = repeated_parameter(query)
            if repeated is not None:
                await _refuse(send, _repeated_refusal(repeated))
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


async def _refuse(send: Send, refusal: bytes) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 400,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(refusal)).encode()),
        ],
    }
    await send(start)
    body: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": refusal,
        "more_body": False,
    }
    await send(body)
