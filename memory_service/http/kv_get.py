"""`GET /api/kv/{key}`, the hottest read, answered straight from the ASGI scope.

Through Litestar's router, request object, handler call and response object, a KV get cost about
twice what the read and its checks cost themselves (see bench/README.md, "Where a request's time
goes"). This path skips that machinery, not the checks: it answers with `read_answer`, the same
function as `KvController.get_value`, and renders refusals with the route's own exception
handlers. tests/test_kv_get_fast.py sends the same requests, odd ones included, to an app with it
and one without and compares whole answers and side effects.

It takes only requests that Litestar would route to kvGet unchanged (a plain path, a plain Host
header); anything else goes the long way. And it is installed only while the kvGet route has
nothing that this path would skip (`blockers`): a guard, middleware, a hook, response headers,
cookies, caching, another dependency or exception handler added to the route, its controller or
the app turns it off, so the addition applies, and makes tests/test_route_guards.py say so.
"""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.middleware._internal.exceptions.middleware import ExceptionHandlerMiddleware
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from ..services.container import Services
from .auth import credential
from .errors import EXCEPTION_HANDLERS
from .kv import PREFIX, read_answer

OPERATION = "kvGet"
# Host values Litestar accepts, narrowed to the usual ones (names, IPv4, [IPv6], a port). A
# request with any other Host goes to Litestar, which accepts it or answers 400 itself.
_PLAIN_HOST = re.compile(rb"[0-9A-Za-z.\-:\[\]]*")
_READ = frozenset((b"authorization", b"x-api-key", b"if-match", b"if-none-match"))


def kv_get_handler(app: Litestar) -> HTTPRouteHandler:
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler) and handler.operation_id == OPERATION:
                return handler
    raise LookupError(f"no {OPERATION} route")


def blockers(app: Litestar, handler: HTTPRouteHandler) -> list[str]:
    """What the kvGet route does that the fast path would skip (empty: nothing)."""
    checks = {
        "guards": handler.resolve_guards(),
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
        found.append("dependencies")  # get_value resolves the principal itself, nothing else
    if handler.resolve_exception_handlers() != EXCEPTION_HANDLERS:
        found.append("exception_handlers")
    if app.debug:
        found.append("debug")  # Litestar's debug answers for 500s
    return found


def path_template(app: Litestar) -> str:
    """The route label Litestar gives a kvGet request (metrics, access log)."""
    return app.asgi_router.handle_routing(path=PREFIX + "k", method="GET")[4]


def is_plain_get(scope: HTTPScope) -> bool:
    """A GET that Litestar routes to kvGet with its path as it is."""
    if scope["method"] != "GET" or scope.get("root_path"):
        return False
    path = scope["path"]
    # Litestar strips trailing slashes and merges repeated ones before routing.
    if not path.startswith(PREFIX) or path.endswith("/") or "//" in path:
        return False
    for name, value in scope["headers"]:
        if name == b"host":
            return _PLAIN_HOST.fullmatch(value) is not None
    return True


class KvGetFastPath:
    def __init__(self, app: ASGIApp, litestar: Litestar, services: Services) -> None:
        self.app = app
        self.services = services
        self.handler = kv_get_handler(litestar)
        self.path_template = path_template(litestar)
        self.exception_handlers = self.handler.resolve_exception_handlers()
        self.errors = ExceptionHandlerMiddleware(app, None)  # None: debug read from the app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and is_plain_get(scope):
            await self.answer(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def answer(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        scope["path_template"] = self.path_template
        wanted: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            # The first of each, as Litestar's headers.get answers.
            if name in _READ and name not in wanted:
                wanted[name] = value.decode("latin-1")
        try:
            status, headers, body = await read_answer(
                self.services,
                scope,
                credential(wanted.get(b"authorization"), wanted.get(b"x-api-key")),
                wanted.get(b"if-match"),
                wanted.get(b"if-none-match"),
            )
        except Exception as exc:  # answered as on the route: its handlers, Litestar's rendering
            scope["route_handler"] = self.handler
            ScopeState.from_scope(scope).exception_handlers = self.exception_handlers
            await self.errors.handle_request_exception(
                scope["litestar_app"], scope, receive, send, exc
            )
            return
        raw = [(name.lower().encode("latin-1"), v.encode("latin-1")) for name, v in headers.items()]
        if status != 304:
            raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def with_kv_get_fast_path(app: ASGIApp, litestar: Litestar, services: Services) -> ASGIApp:
    """`app` with the fast path in front of it, unless the kvGet route has something it skips."""
    if blockers(litestar, kv_get_handler(litestar)):
        return app
    return KvGetFastPath(app, litestar, services)
