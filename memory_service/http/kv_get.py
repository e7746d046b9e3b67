"""`GET /api/kv/{key}` answered from the ASGI scope (see http/fast_path.py): the same
`read_answer` as `KvController.get_value`."""

from __future__ import annotations

from litestar.types import HTTPScope, Receive, Send

from .auth import CREDENTIAL_HEADERS, first_headers, secret_of
from .fast_path import FastPath, send_answer
from .kv import PREFIX, read_answer

_READ = CREDENTIAL_HEADERS | {b"if-match", b"if-none-match"}


class KvGetFastPath(FastPath):
    operation_id = "kvGet"
    method = "GET"
    path = PREFIX
    exact = False  # a key follows

    async def answer(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        wanted = first_headers(scope, _READ)
        if wanted is None:  # a header repeated: Litestar's reading decides
            await self.app(scope, receive, send)
            return
        try:
            status, headers, body = await read_answer(
                self.services,
                scope,
                secret_of(wanted),
                wanted.get(b"if-match"),
                wanted.get(b"if-none-match"),
            )
        except Exception as exc:
            await self.refuse(scope, receive, send, exc)
            return
        raw = [(name.lower().encode("latin-1"), v.encode("latin-1")) for name, v in headers.items()]
        if status != 304:
            raw.append((b"content-length", str(len(body)).encode()))
        await send_answer(send, status, raw, body)
