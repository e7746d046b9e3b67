"""`PUT /api/kv/{key}` answered from the ASGI scope (see http/fast_path.py): the same
`set_answer` as `KvController.set_value`.

Litestar checks the credential (and the body's encoding), then converts `ttl` leniently and
answers a bad one with its own words, then reads the body. This path takes only requests it is
sure of: each header it reads given once, a query of `ttl` (a plain decimal number) and
`contentType`, each at most once; any other goes to Litestar, its body untouched. It checks the
credential as Litestar does, before the body, then hands a body not announced by Content-Length
within the route's limit to Litestar (which does not authenticate it again).
"""

from __future__ import annotations

import re

from litestar.serialization import encode_json
from litestar.types import HTTPScope, Receive, Send

from .auth import CREDENTIAL_HEADERS, first_headers
from .fast_path import (
    BODY_HEADERS,
    FastPath,
    send_answer,
    single_values,
)
from .kv import PREFIX, key_of, set_answer

_READ = CREDENTIAL_HEADERS | BODY_HEADERS | {b"if-match", b"if-none-match", b"content-type"}
_NAMES = frozenset(("ttl", "contentType"))
_PLAIN_TTL = re.compile(r"(0|[1-9][0-9]{0,9})(\.[0-9]{1,9})?")


def plain_query(query: bytes) -> tuple[float | None, str | None] | None:
    """(ttl, contentType) when the query holds only those, plainly written, each once."""
    values = single_values(query, _NAMES)
    if values is None:
        return None
    ttl = values.get("ttl")
    if ttl is not None and not _PLAIN_TTL.fullmatch(ttl):
        return None
    return (None if ttl is None else float(ttl)), values.get("contentType")


class KvSetFastPath(FastPath):
    operation_id = "kvSet"
    method = "PUT"
    path = PREFIX
    exact = False  # a key follows

    async def answer(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        query = plain_query(scope["query_string"])
        wanted = first_headers(scope, _READ)
        if query is None or wanted is None:
            await self.app(scope, receive, send)
            return
        admitted = await self.admitted_body(scope, receive, send, wanted)
        if admitted is None:
            return
        principal, body, receive = admitted
        ttl, content_type = query
        try:
            status, tag, written = await set_answer(
                self.services,
                principal,
                key_of(scope),
                body,
                content_type=content_type or wanted.get(b"content-type"),
                ttl=ttl,
                if_match=wanted.get(b"if-match"),
                if_none_match=wanted.get(b"if-none-match"),
            )
        except Exception as exc:
            await self.refuse(scope, receive, send, exc)
            return
        answer = encode_json(written)
        raw = [
            (b"etag", tag.encode("latin-1")),
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(answer)),
        ]
        await send_answer(send, status, raw, answer)
