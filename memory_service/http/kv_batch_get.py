"""`POST /api/kv-batch/get` answered from the ASGI scope (see http/fast_path.py): the same
`get_many_answer` as `KvBatchController.get_many`.

A batch of 100 keys costs about 0.12 ms in its handler; Litestar's routing, body and response
handling around it cost as much again and more. As in http/memory_add.py, the credential (and
the body's encoding) is checked first, before the body is read; then the body is decoded straight
into `KvBatchKeys`, strictly. A body that is not plainly valid (malformed, too large, unannounced,
cut short, a member given twice: http/json_body.py) is handed to Litestar untouched, so that
every refusal of a body stays Litestar's (the principal found is kept: no second authentication).
"""

from __future__ import annotations

import msgspec
from litestar import Litestar
from litestar.serialization import encode_json
from litestar.types import ASGIApp, HTTPScope, Receive, Send

from ..services.container import Services
from .auth import CREDENTIAL_HEADERS, first_headers
from .fast_path import BODY_HEADERS, FastPath, plain_body, send_json
from .json_body import repeated_member
from .kv_batch import KvBatchKeys, get_many_answer

PATH = "/api/kv-batch/get"
_READ = CREDENTIAL_HEADERS | BODY_HEADERS


class KvBatchGetFastPath(FastPath):
    operation_id = "kvBatchGet"
    method = "POST"
    path = PATH

    def __init__(self, app: ASGIApp, litestar: Litestar, services: Services) -> None:
        super().__init__(app, litestar, services)
        self.decoder = msgspec.json.Decoder(KvBatchKeys)

    async def answer(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        wanted = first_headers(scope, _READ)
        if wanted is None:  # a header repeated: Litestar's reading decides
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
            got = await get_many_answer(self.services, principal, data.keys)
        except Exception as exc:
            await self.refuse(scope, receive, send, exc)
            return
        await send_json(send, encode_json(got))
