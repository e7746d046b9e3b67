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


def unfold_tail(scope: Scope, roots: tuple[str, ...]) -> None:
    """Show the router a path parameter made only of slashes, after one of `roots`, encoded.

    Litestar's router strips trailing slashes and merges repeated ones before routing, so
    `PUT /api/kv/%2F` (or `/api/kv//`) reached `/api/kv`, the listing: a GET answered the
    listing instead of the value, the other methods a 405. A key of other characters routes as it
    should (the handlers read it from the raw path, `path_rest`). For the slash-only ones, the
    router is shown the tail percent-encoded (`/api/kv/%2F%2F`), which it routes to the key's
    route unchanged; the raw path, and so the key, stays what the client sent. An empty tail
    (`/api/kv/`) is left alone: that is the root itself. Called only for paths ending in '//'."""
    path = scope["path"]
    root_path = scope.get("root_path", "")
    routed = path.split(root_path, maxsplit=1)[-1] if root_path else path  # as Litestar does
    root = routed.rstrip("/")
    if root in roots:
        slashes = len(routed) - len(root) - 1  # after the root's own '/'
        scope["path"] = path[: len(path) - len(routed)] + root + "/" + "%2F" * slashes
