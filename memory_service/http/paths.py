"""Path parameters read from the raw path, exactly as the client sent them."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from litestar.types import Scope

from ..services.errors import BadRequest


def path_rest(scope: Scope, prefix: str, what: str, code: str) -> str:
    """What follows `prefix` in the path. Decoded from the raw path so that invalid UTF-8, '%2F'
    and trailing slashes are seen as the client wrote them, not as the router normalised them."""
    raw = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
    marker = raw.find(prefix.encode())
    rest = raw[marker + len(prefix) :] if marker >= 0 else b""
    try:
        return unquote_to_bytes(rest).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{what} is not valid UTF-8", code=code) from exc
