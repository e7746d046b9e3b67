"""`GET /api/kv/{key}` answered from the ASGI scope (see http/fast_path.py): the same
`read_answer` as `KvController.get_value`."""

from __future__ import annotations

from litestar import Litestar
from litestar.types import ASGIApp, HTTPScope, Receive, Send

from ..services.container import Services
from .auth import credential
from .fast_path import FastPath, plain_route
from .kv import PREFIX, read_answer

_READ = frozenset((b"authorization", b"x-api-key", b"if-match", b"if-none-match"))


class KvGetFastPath(FastPath):
    operation_id = "kvGet"

    def __init__(self, app: ASGIApp, litestar: Litestar, services: Services) -> None:
        super().__init__(app, litestar, services)
        # The route label Litestar gives these requests (metrics, access log).
        self.path_template = litestar.asgi_router.handle_routing(path=PREFIX + "k", method="GET")[4]

    def takes(self, scope: HTTPScope) -> bool:
        return plain_route(scope, "GET", PREFIX, exact=False)

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
        except Exception as exc:
            await self.refuse(scope, receive, send, exc)
            return
        raw = [(name.lower().encode("latin-1"), v.encode("latin-1")) for name, v in headers.items()]
        if status != 304:
            raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body, "more_body": False})
