"""The methods each route answers, said alike by HEAD, OPTIONS and the 405s' `Allow` (and, in
the same layer, KV keys made only of slashes routed to their route: http/paths.py).

RFC 9110 §9.1: a server that answers GET on a resource answers HEAD too, with GET's status and
headers and no body. Litestar 2 serves HEAD only where a handler is declared for it, so `Methods`
answers a HEAD to any other GET route by running the GET and dropping the body: the headers
(Content-Length and ETag included) are GET's by construction, and a new GET route gets its HEAD
without anyone remembering to add one. Its OPTIONS answer lists what the route really serves:
Litestar's generated OPTIONS handler keeps the methods of the first handler registered on a path
(`OPTIONS /api/kv/x` said "DELETE, OPTIONS"), while its 405s list every method but the implied
HEAD; http/errors.py renders those with `allow_header` as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send
from litestar.utils import normalize_path

from .paths import unfold_tail

# The methods this layer answers for; any other passes with a string compare or two (plain
# strings: comparing with ScopeType.HTTP costs four times as much, on every request).
_ANSWERED = frozenset(("HEAD", "OPTIONS"))


def served(methods: Iterable[str]) -> list[str]:
    """The methods a route answers, given those its handlers declare: HEAD wherever GET is."""
    found = set(methods)
    if "GET" in found:
        found.add("HEAD")
    return sorted(found)


def allow_header(methods: Iterable[str]) -> str:
    return ", ".join(served(methods))


class Methods:
    """In front of Litestar's router (and the fast paths), one layer for what the router alone
    gets wrong: a path parameter made only of slashes, after one of `opaque_roots`
    (`unfold_tail`), HEAD on GET routes, and OPTIONS that agree with the 405s. Any other request
    passes untouched, at the cost of a few string compares (one layer, not two: each costs
    about 0.3 us per request)."""

    def __init__(self, app: ASGIApp, litestar: Litestar, opaque_roots: tuple[str, ...]) -> None:
        self.app = app
        self.router = litestar.asgi_router
        self.opaque_roots = opaque_roots
        # By route template (what routing answers), the methods that the handlers declare.
        self.declared = {
            route.path_format: frozenset(route.methods)
            for route in litestar.routes
            if isinstance(route, HTTPRoute)
        }

    def methods_of(self, scope: Scope) -> frozenset[str] | None:
        """The methods declared on the route that the request's path reaches (None: no HTTP
        route, such as a 404 or the mounted /mcp app)."""
        path = scope["path"]
        if root_path := scope.get("root_path", ""):
            path = path.split(root_path, maxsplit=1)[-1]  # as Litestar's router does
        try:
            # Every HTTP route has an OPTIONS handler, so this finds the route whatever the
            # request's method (and it is the router's own, cached, lookup).
            template = self.router.handle_routing(normalize_path(path), "OPTIONS")[4]
        except HTTPException:
            return None
        return self.declared.get(template)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind: str = scope["type"]  # as a plain str: see _ANSWERED
        if kind != "http":
            await self.app(scope, receive, send)
            return
        http = cast("HTTPScope", scope)
        if http["path"].endswith("//"):
            unfold_tail(http, self.opaque_roots)
        if http["method"] not in _ANSWERED:
            await self.app(scope, receive, send)
            return
        declared = self.methods_of(http)
        if http["method"] == "OPTIONS":
            await self.app(scope, receive, self._with_allow(send, declared))
            return
        if declared is None or "HEAD" in declared or "GET" not in declared:
            # A declared HEAD handler, or no GET to stand in: Litestar answers (or refuses).
            await self.app(scope, receive, _without_body(send))
            return
        http["method"] = "GET"
        try:
            await self.app(scope, receive, _without_body(send, http))
        finally:
            http["method"] = "HEAD"  # what the access log and the metrics record

    @staticmethod
    def _with_allow(send: Send, declared: frozenset[str] | None) -> Send:
        if declared is None:
            return send
        allow = allow_header(declared).encode("latin-1")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 300:
                headers = [(n, v) for n, v in message.get("headers", ()) if n.lower() != b"allow"]
                message["headers"] = [*headers, (b"allow", allow)]
            await send(message)

        return sending


def _without_body(send: Send, stand_in: HTTPScope | None = None) -> Send:
    """`send` for a HEAD: the answer's start as it is, its body bytes dropped (a streamed body
    ends with one empty message). `stand_in`: the scope routed as a GET, shown as the HEAD again
    once the answer starts, since the server reads the method then to expect no body bytes."""

    async def sending(message: Message) -> None:
        if stand_in is not None and message["type"] == "http.response.start":
            stand_in["method"] = "HEAD"
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return sending
