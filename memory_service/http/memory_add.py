"""`POST /api/memory` answered from the ASGI scope (see http/fast_path.py): the same `add_answer`
as `MemoryController.add`.

Litestar checks the credential (its guard, before the body), reads the body, decodes the JSON,
then converts it to `MemoryAddBody` (leniently: `"lastN": "5"` passes) and answers what fails
with its own words. This path checks the credential the same way first, then decodes the body
straight into `MemoryAddBody`, strictly; a body that is not plainly valid (malformed, lenient,
too large, unannounced, cut short) is handed to Litestar untouched, so that every refusal of a
body stays Litestar's (the principal found is kept: no second authentication). A body that
repeats a member (http/json_body.py) is one of those: Litestar's request class refuses it.
"""

from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar.serialization import encode_json
from litestar.types import ASGIApp, HTTPScope, Receive, Send

from ..services.container import Services
from .auth import CREDENTIAL_HEADERS, first_headers
from .fast_path import (
    BODY_HEADERS,
    FastPath,
    plain_body,
    send_json,
)
from .json_body import repeated_member
from .memory import add_answer
from .memory_schemas import MemoryAddBody

PATH = "/api/memory"
_READ = CREDENTIAL_HEADERS | BODY_HEADERS | {b"idempotency-key"}


class MemoryAddFastPath(FastPath):
    operation_id = "memoryAdd"
    method = "POST"
    path = PATH

    def __init__(self, app: ASGIApp, litestar: Litestar, services: Services) -> None:
        super().__init__(app, litestar, services)
        self.decoder = msgspec.json.Decoder(MemoryAddBody)

    async def answer(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        wanted = first_headers(scope, _READ)
        if wanted is None:
            await self.app(scope, receive, send)
            return
        try:  # the credential before the body (and without waiting for it)
            principal = await self.principal(scope, wanted)
        except Exception as exc:
            await self.refuse(scope, receive, send, exc)
            return
        body, receive = await plain_body(wanted, receive, self.max_body)
        if body is None:
            await self.app(scope, receive, send)
            return
        try:
            data = self.decoder.decode(body)
        except Exception:  # any doubt about the body: Litestar's reading and words
            await self.app(scope, receive, send)
            return
        if repeated_member(body) is not None:
            await self.app(scope, receive, send)
            return
        try:
            added = await add_answer(self.services, principal, data, wanted.get(b"idempotency-key"))
        except Exception as exc:
            await self.refuse(scope, receive, send, exc)
            return
        await send_json(send, encode_json(added))
