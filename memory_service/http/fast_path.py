"""Routes answered straight from the ASGI scope, in front of Litestar: the hottest requests.

Litestar's router, request object, dependency and parameter parsing (a JSON body decoded, then
converted), handler call and response object cost more than the work of these requests: in
process a KV get took 63 us of the app's CPU through them and 27 us without, a read of a memory's
last 20 messages 110 us and 57 us; under load a memory add went from 0.80x to 1.35x the baseline
insert (bench/README.md). A fast path skips that machinery, not the checks: it answers with the
same function as the route's handler and renders refusals with the route's own exception
handlers, through Litestar's own rendering. tests/test_fast_paths.py sends the same requests, odd
ones included, to an app with the fast paths and one without and compares whole answers and what
they leave behind.

A fast path takes only requests it is sure Litestar would route to its handler unchanged; any
other goes the long way. And it is installed only while its route has nothing that it would skip
(`blockers`): a guard, middleware, a hook, response headers, cookies, caching, another
dependency or exception handler added to the route, its controller or the app turns it off, so
that the addition applies, and tests/test_route_guards.py says so.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Litestar
from litestar._parsers import parse_query_string
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.middleware._internal.exceptions.middleware import ExceptionHandlerMiddleware
from litestar.serialization import encode_json
from litestar.types import ASGIApp, HTTPScope, Receive, ReceiveMessage, Scope, Send
from litestar.utils.scope.state import ScopeState

from ..services.container import Services
from ..services.workspaces import Principal
from .auth import CREDENTIAL_HEADERS, admit, first_headers, principal_of, secret_of
from .errors import EXCEPTION_HANDLERS
from .guards import check_encoding
from .json_body import repeated_member

# Host values Litestar accepts, narrowed to the usual ones (names, IPv4, [IPv6], a port). A
# request with any other Host goes to Litestar, which accepts it or answers 400 itself.
_PLAIN_HOST = re.compile(rb"[0-9A-Za-z.\-:\[\]]*")
_DIGITS = re.compile(r"[0-9]{1,18}")


def route_handler(app: Litestar, operation_id: str) -> HTTPRouteHandler:
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and handler.operation_id == operation_id:
                return handler
    raise LookupError(f"no {operation_id} route")


def blockers(app: Litestar, handler: HTTPRouteHandler) -> list[str]:
    """What the route does that a fast path would skip (empty: nothing)."""
    checks = {
        # `admit` (the credential and the body's encoding) is done by the fast paths themselves.
        "guards": [guard for guard in handler.resolve_guards() if guard is not admit],
        "middleware": handler.resolve_middleware(),
        "before_request": handler.resolve_before_request(),
        "after_request": [layer for layer in handler.ownership_layers if layer.after_request],
        "after_response": handler.resolve_after_response(),
        "response_headers": handler.resolve_response_headers(),
        "response_cookies": handler.resolve_response_cookies(),
        "after_exception": app.after_exception,
        "cache": handler.cache,
        "background": handler.background,
    }
    found = [name for name, value in checks.items() if value]
    if set(handler.resolve_dependencies()) != {"principal"}:
        found.append("dependencies")  # the fast paths resolve the principal, nothing else
    if handler.resolve_exception_handlers() != EXCEPTION_HANDLERS:
        found.append("exception_handlers")
    if app.debug:
        found.append("debug")  # Litestar's debug answers for 500s
    return found


def plain_route(scope: HTTPScope, prefix: str, exact: bool) -> bool:
    """A request that Litestar routes by its path as it is: `prefix` followed by more (a path
    parameter) or, `exact`, nothing."""
    if scope.get("root_path"):
        return False
    path = scope["path"]
    if exact:
        if path != prefix:
            return False
    # Litestar strips trailing slashes and merges repeated ones before routing. (A KV key made
    # only of slashes arrives here already shown as '%2F's: http/paths.py, unfold_tail.)
    elif not path.startswith(prefix) or path.endswith("/") or "//" in path:
        return False
    for name, value in scope["headers"]:
        if name == b"host":
            return _PLAIN_HOST.fullmatch(value) is not None
    return True


def single_values(query: bytes, names: frozenset[str]) -> dict[str, str] | None:
    """The query's parameters, parsed by Litestar's own parser, when all are among `names` and
    each comes once; else None (Litestar's conversion of repeated or unknown ones decides)."""
    found: dict[str, str] = {}
    for name, value in parse_query_string(query):
        if name not in names or name in found:
            return None
        found[name] = value
    return found


async def send_answer(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_json(send: Send, body: bytes) -> None:
    """A 200 with a JSON body, as Litestar answers a handler's returned struct."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send_answer(send, 200, headers, body)


# Bodies above this (or above the route's own limit) go to Litestar; these requests are smaller.
MAX_FAST_BODY = 256 * 1024
BODY_HEADERS = frozenset((b"content-length", b"transfer-encoding", b"expect", b"content-encoding"))


def replay(
    messages: list[ReceiveMessage], receive: Receive
) -> Callable[[], Awaitable[ReceiveMessage]]:
    """`receive` as if `messages` had not been taken from it yet."""
    pending = list(messages)

    async def again() -> ReceiveMessage:
        return pending.pop(0) if pending else await receive()

    return again


async def plain_body(
    headers: dict[bytes, str], receive: Receive, limit: int
) -> tuple[bytes | None, Receive]:
    """The body, when Content-Length announces at most `limit` bytes and they all arrive; else
    None. Either way, a `receive` that gives Litestar the request as if nothing had been read.
    (`Expect: 100-continue` goes to Litestar too: reading would answer 100 where Litestar may
    refuse first.)"""
    length = headers.get(b"content-length", "")
    if (
        not _DIGITS.fullmatch(length)
        or int(length) > limit
        or b"transfer-encoding" in headers
        or b"expect" in headers
    ):
        return None, receive
    taken: list[ReceiveMessage] = []
    chunks = []
    while True:
        message = await receive()
        taken.append(message)
        if message["type"] != "http.request":  # the client left: Litestar says what then
            return None, replay(taken, receive)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), replay(taken, receive)


class FastPath:
    """One route answered in front of Litestar: `answer` for the requests it takes, `app`
    (Litestar's handler) for any it hands back.

    A subclass names its route (`operation_id`), `method` and `path`: the path itself (`exact`)
    or a prefix that a path parameter follows."""

    operation_id: str
    method: str
    path: str
    exact: bool = True

    def __init__(self, app: ASGIApp, litestar: Litestar, services: Services) -> None:
        self.app = app
        self.services = services
        self.handler = route_handler(litestar, self.operation_id)
        self.exception_handlers = self.handler.resolve_exception_handlers()
        self.errors = ExceptionHandlerMiddleware(app, None)  # None: debug read from the app
        # Above the route's limit, Litestar answers 413 itself.
        limit = self.handler.resolve_request_max_body_size()
        self.max_body = MAX_FAST_BODY if limit is None else min(MAX_FAST_BODY, limit)
        # The route label Litestar gives these requests (metrics, access log).
        sample = self.path if self.exact else self.path + "k"
        self.path_template = litestar.asgi_router.handle_routing(sample, self.method)[4]

    def takes(self, scope: HTTPScope) -> bool:
        return plain_route(scope, self.path, self.exact)

    async def answer(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        raise NotImplementedError

    async def principal(self, scope: HTTPScope, headers: dict[bytes, str]) -> Principal:
        """What the route's guard `admit` checks, first: the credential (its principal is kept in
        the scope: a request handed on to Litestar is not authenticated again) and, for a
        request with a body, its encoding (`content-encoding` among `headers`)."""
        principal = await principal_of(self.services, scope, secret_of(headers))
        check_encoding(headers.get(b"content-encoding"))
        return principal

    async def refuse(self, scope: HTTPScope, receive: Receive, send: Send, exc: Exception) -> None:
        """Answer `exc` as the route would: its exception handlers, Litestar's rendering."""
        scope["route_handler"] = self.handler
        ScopeState.from_scope(scope).exception_handlers = self.exception_handlers
        await self.errors.handle_request_exception(scope["litestar_app"], scope, receive, send, exc)

    async def admitted_body(
        self, scope: HTTPScope, receive: Receive, send: Send, wanted: dict[bytes, str]
    ) -> tuple[Principal, bytes, Receive] | None:
        """The credential before the body (and without waiting for it), then the body whole; None
        once the request is answered (refused) or handed to Litestar (a body not plainly sent)."""
        try:
            principal = await self.principal(scope, wanted)
        except Exception as exc:
            await self.refuse(scope, receive, send, exc)
            return None
        body, receive = await plain_body(wanted, receive, self.max_body)
        if body is None:
            await self.app(scope, receive, send)
            return None
        return principal, body, receive


class JsonFastPath(FastPath):
    """A route whose JSON body is decoded straight into `body_type`, strictly: a body that is not
    plainly valid (malformed, lenient, repeating a member) is handed to Litestar untouched, so
    that every refusal of a body stays Litestar's. `respond` gives the answer's struct."""

    body_type: type
    headers: frozenset[bytes] = CREDENTIAL_HEADERS | BODY_HEADERS  # those `respond` is given

    def __init__(self, app: ASGIApp, litestar: Litestar, services: Services) -> None:
        super().__init__(app, litestar, services)
        self.decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(self.body_type)

    async def respond(self, principal: Principal, data: Any, headers: dict[bytes, str]) -> object:
        raise NotImplementedError

    async def answer(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        wanted = first_headers(scope, self.headers)
        if wanted is None:  # a header repeated: Litestar's reading decides
            await self.app(scope, receive, send)
            return
        admitted = await self.admitted_body(scope, receive, send, wanted)
        if admitted is None:
            return
        principal, body, receive = admitted
        try:
            data = self.decoder.decode(body)
        except Exception:  # any doubt about the body: Litestar's reading and words
            await self.app(scope, receive, send)
            return
        if repeated_member(body) is not None:
            await self.app(scope, receive, send)
            return
        try:
            answer = await self.respond(principal, data, wanted)
        except Exception as exc:
            await self.refuse(scope, receive, send, exc)
            return
        await send_json(send, encode_json(answer))


class FastPaths:
    """In front of `app`, one layer for all the fast paths: a request one of them takes is
    answered by it, any other goes on to `app`."""

    def __init__(self, app: ASGIApp, paths: list[FastPath]) -> None:
        self.app = app
        self.paths = paths
        self._by_method: dict[str, list[FastPath]] = {}
        for path in paths:
            self._by_method.setdefault(path.method, []).append(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            for path in self._by_method.get(scope["method"], ()):
                if path.takes(scope):
                    scope["path_template"] = path.path_template
                    await path.answer(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def with_fast_paths(
    app: ASGIApp, litestar: Litestar, services: Services, paths: list[type[FastPath]]
) -> ASGIApp:
    """`app` behind those of `paths` whose route has nothing that they would skip."""
    installed = [
        path(app, litestar, services)
        for path in paths
        if not blockers(litestar, route_handler(litestar, path.operation_id))
    ]
    return FastPaths(app, installed) if installed else app


def fast_paths_of(app: Litestar) -> list[FastPath]:
    """The fast paths installed in front of `app`'s handler."""
    handler: object = app.asgi_handler
    while handler is not None:
        if isinstance(handler, FastPaths):
            return handler.paths
        handler = getattr(handler, "app", None)
    return []
