"""KV HTTP API: `/api/kv/{key}` with raw bodies, ETags and conditional requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar import Controller, Request, Response, delete, get, head, put
from litestar.di import NamedDependency, Provide
from litestar.enums import ParamType
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.openapi.spec import (
    Parameter as OpenAPIParameter,
)
from litestar.params import HeaderParameter, PathParameter, QueryParameter
from litestar.response.base import ASGIResponse
from litestar.types import Scope

from ..clock import iso
from ..services.conditions import Preconditions
from ..services.container import Services
from ..services.kv import KvService
from ..services.media_types import value_headers
from ..services.shapes import etag
from ..services.workspaces import Principal
from .auth import admit, principal_of, provide_principal, request_secret
from .paths import path_rest
from .schemas import Failure, KvDeleted, KvList, KvWritten, Usage, count

PREFIX = "/api/kv/"
KEY_DOC = (
    "Entry key: 1-512 bytes of UTF-8, no control characters, percent-encoded in the path. "
    "Keys are opaque: '/' and '..' are ordinary characters, never path segments. The key is "
    "all of the path after /api/kv/, decoded: '/' and '%2F' are the same character, and no "
    "slash is merged or dropped (/api/kv// is the key '/', /api/kv/a//b/ the key 'a//b/')."
)


def key_from_path(request: Request) -> str:
    return key_of(request.scope)


def key_of(scope: Scope) -> str:
    return path_rest(scope, PREFIX, "key", "invalid_key")


def value_response_headers(
    version: int, content_type: str, expires_at: int | None, size: int
) -> dict[str, str]:
    """What GET and HEAD (and their 304s) of an entry answer besides the bytes: the same
    headers for both (RFC 9110 §9.1), X-Value-Length too (Content-Length says it only on a 200,
    and a browser's fetch may not show it)."""
    headers = {"ETag": etag(version), **value_headers(content_type), "X-Value-Length": str(size)}
    if expires_at is not None:
        headers["X-Expires-At"] = iso(expires_at)
    return headers


async def read_answer(
    services: Services,
    scope: Scope,
    secret: str | None,
    if_match: str | None,
    if_none_match: str | None,
) -> tuple[int, dict[str, str], bytes]:
    """kvGet's status, headers and body: the one implementation behind both the Litestar handler
    and the fast path (http/kv_get.py), checked in the same order so that they refuse alike."""
    principal = await principal_of(services, scope, secret)
    conditions = Preconditions.parse(if_match, if_none_match)
    value = await services.kv.get(principal.workspace_id, key_of(scope))
    headers = value_response_headers(
        value.version, value.content_type, value.expires_at, len(value.value)
    )
    if not conditions.empty and not conditions.evaluate(value.version):
        return 304, headers, b""
    # The stored type exactly: as media_type alone, Litestar appends "; charset=utf-8" to
    # every text/* type, even one that already names its charset.
    headers["Content-Type"] = value.content_type
    return 200, headers, value.value


async def set_answer(
    services: Services,
    principal: Principal,
    name: str,
    body: bytes,
    *,
    content_type: str | None,
    ttl: float | None,
    if_match: str | None,
    if_none_match: str | None,
) -> tuple[int, str, KvWritten]:
    """kvSet's status, ETag and answer: the one implementation behind both
    `KvController.set_value` and the fast path (http/kv_set.py)."""
    written = await services.kv.set(
        principal.workspace_id,
        name,
        body,
        content_type=content_type,
        ttl=ttl,
        if_match=if_match,
        if_none_match=if_none_match,
    )
    tag = etag(written.version)
    result = KvWritten(
        success=True,
        message=f"Stored {len(body)} bytes ({'created' if written.created else 'replaced'})",
        key=name,
        version=written.version,
        etag=tag,
        size=written.size,
        created=written.created,
        expires_at=iso(written.expires_at),
    )
    return 201 if written.created else 200, tag, result


def kv_of(request: Request) -> KvService:
    services: Services = request.app.state.services
    return services.kv


IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        required=False,
        description='Entity tag(s) "<version>", or *: 412 unless one is the current '
        "version (strong comparison: a weak tag never matches).",
    ),
]
IfNoneMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-None-Match",
        required=False,
        description="Entity tag(s) or *: on a write, 412 when one matches (weak comparison).",
    ),
]


BYTES = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)


@dataclass
class RawBodyOperation(Operation):
    """kvSet reads its body raw (any bytes, any Content-Type): document that body."""

    def __post_init__(self) -> None:
        # Declared as application/octet-stream, the one binary body generated clients send; any
        # other Content-Type is stored as well (or the `contentType` parameter's, for clients
        # that always send application/octet-stream).
        self.request_body = RequestBody(
            content={"application/octet-stream": OpenAPIMediaType(schema=BYTES)},
            description="The value, any bytes (empty too), stored byte for byte with the "
            "request's Content-Type (any media type, not only application/octet-stream) or the "
            "`contentType` parameter, and answered with it by GET.",
            required=True,
        )


@dataclass
class AnyTypeOperation(Operation):
    """kvGet answers a value with the Content-Type it was stored with, whatever that was."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            # Served with the media type it was stored with (the Content-Type header), declared
            # as binary: generated clients drop a `*/*` response, and read any binary one as bytes.
            ok.description = "The stored bytes, with the Content-Type they were stored with."
            ok.content = {"application/octet-stream": OpenAPIMediaType(schema=BYTES)}
        # Read by the handler itself (see get_value), documented here.
        for param in self.parameters or []:
            if isinstance(param, OpenAPIParameter) and param.name == "key":
                param.description = KEY_DOC
                param.schema = Schema(type=OpenAPIType.STRING, description=KEY_DOC)
        self.parameters = [
            *(self.parameters or []),
            OpenAPIParameter(
                name="If-None-Match",
                param_in=ParamType.HEADER,
                required=False,
                schema=Schema(type=OpenAPIType.STRING),
                description='Entity tag(s) "<version>" or *: 304 when one matches the '
                "current version (weak comparison).",
            ),
            OpenAPIParameter(
                name="If-Match",
                param_in=ParamType.HEADER,
                required=False,
                schema=Schema(type=OpenAPIType.STRING),
                description='Entity tag(s) "<version>" or *: 412 unless one is the current '
                "version (strong comparison).",
            ),
        ]


@dataclass
class HeadOperation(Operation):
    """kvExists answers GET's headers without a body: its 200 has no content to declare."""

    def __post_init__(self) -> None:
        ok = (self.responses or {}).get("200")
        if isinstance(ok, OpenAPIResponse):
            ok.content = None


class KvController(Controller):
    path = "/api"
    tags = ["kv"]
    # One dependency only: Litestar resolves several through an anyio task group per request,
    # which cost more than the whole database read of a KV get.
    dependencies = {"principal": Provide(provide_principal)}
    guards = [admit]  # the credential, checked before any body is read (http/auth.py)

    @put(
        "/kv/{key:path}",
        operation_id="kvSet",
        status_code=200,
        summary="Store raw bytes under a key",
        description="The body is stored byte for byte with its Content-Type. `If-Match` makes "
        "the write conditional on the current version, `If-None-Match: *` on absence "
        "(412 otherwise). 201 when the key was created, 200 when replaced.",
        responses={
            201: ResponseSpec(
                KvWritten, description="Created: the key did not exist.", generate_examples=False
            )
        },
        operation_class=RawBodyOperation,
    )
    async def set_value(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        key: Annotated[str, PathParameter(description=KEY_DOC)],
        if_match: IfMatch = None,
        if_none_match: IfNoneMatch = None,
        ttl: Annotated[
            float | None,
            QueryParameter(description="Seconds until the entry expires; absent for no expiry."),
        ] = None,
        content_type: Annotated[
            str | None,
            QueryParameter(
                name="contentType",
                description="The media type to store, instead of the request's Content-Type "
                "(for clients that send every binary body as application/octet-stream).",
            ),
        ] = None,
    ) -> Response[KvWritten]:
        name = key_from_path(request)  # a bad key is refused before the body is read
        body = await request.body()
        status, tag, result = await set_answer(
            request.app.state.services,
            principal,
            name,
            body,
            content_type=content_type or request.headers.get("content-type"),
            ttl=ttl,
            if_match=if_match,
            if_none_match=if_none_match,
        )
        return Response(result, status_code=status, headers={"ETag": tag})

    @get(
        "/kv/{key:path}",
        operation_id="kvGet",
        summary="Read the bytes stored under a key",
        media_type="application/octet-stream",
        responses={
            409: ResponseSpec(
                Failure, description="Rewritten too fast to read; retry.", generate_examples=False
            )
        },
        operation_class=AnyTypeOperation,
    )
    async def get_value(self, request: Request) -> ASGIResponse:
        # Served by http/kv_get.py's fast path, outside Litestar, unless something the fast path
        # does not do (a guard, a hook, middleware) is added to this route; then by this handler.
        # It reads its credential and conditional headers itself (documented by AnyTypeOperation)
        # so that both paths share read_answer.
        headers = request.headers
        status, answer, body = await read_answer(
            request.app.state.services,
            request.scope,
            request_secret(request.scope),
            headers.get("if-match"),
            headers.get("if-none-match"),
        )
        if status == 304:
            return ASGIResponse(body=b"", status_code=304, headers=answer)
        return ASGIResponse(body=body, media_type=answer["Content-Type"], headers=answer)

    @head(
        "/kv/{key:path}",
        operation_id="kvExists",
        summary="Whether a key exists (200 or 404); the headers of a GET, without the body",
        operation_class=HeadOperation,
    )
    async def exists(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        key: Annotated[str, PathParameter(description=KEY_DOC)],
        if_match: IfMatch = None,
        if_none_match: IfNoneMatch = None,
    ) -> Response[None]:
        conditions = Preconditions.parse(if_match, if_none_match)
        row = await kv_of(request).head(principal.workspace_id, key_from_path(request))
        # GET's headers exactly (http/methods.py), without reading the value.
        headers = value_response_headers(
            row.version, row.content_type, row.expires_at, row.value_size
        )
        # b"", not None: Litestar cannot render None under a binary media type (a 500), yet it
        # wants a HEAD handler declared Response[None]; hence the arg-type ignores.
        if not conditions.empty and not conditions.evaluate(row.version):
            return Response(b"", status_code=304, headers=headers)  # type: ignore[arg-type]
        # The stored type exactly, as GET answers it (media_type alone gains a charset), and
        # GET's length (Litestar would count the empty body).
        headers["Content-Type"] = row.content_type
        headers["Content-Length"] = str(row.value_size)
        return Response(b"", media_type=row.content_type, headers=headers)  # type: ignore[arg-type]

    @delete(
        "/kv/{key:path}",
        operation_id="kvDelete",
        status_code=200,
        summary="Delete a key (conditional with If-Match)",
    )
    async def delete_value(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        key: Annotated[str, PathParameter(description=KEY_DOC)],
        if_match: IfMatch = None,
        if_none_match: IfNoneMatch = None,
    ) -> KvDeleted:
        name = key_from_path(request)
        freed = await kv_of(request).delete(
            principal.workspace_id, name, if_match=if_match, if_none_match=if_none_match
        )
        return KvDeleted(success=True, message="Deleted", key=name, deleted=True, freed_bytes=freed)

    @get("/kv", operation_id="kvList", summary="List keys by prefix, in byte order, paginated")
    async def list_values(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        prefix: Annotated[str, QueryParameter(description="Only keys that start with this.")] = "",
        limit: Annotated[
            int | None,
            QueryParameter(description="Page size (default 100, max 1000; above it is a 400)."),
        ] = None,
        cursor: Annotated[
            str | None, QueryParameter(description="nextCursor of the previous page.")
        ] = None,
    ) -> KvList:
        items, next_cursor = await kv_of(request).list(
            principal.workspace_id, prefix=prefix, limit=limit, cursor=cursor
        )
        return KvList(
            success=True, message=count(len(items), "key"), items=items, next_cursor=next_cursor
        )

    @get(
        "/usage",
        operation_id="usage",
        tags=["workspace"],
        summary="Bytes used and the quota of the caller's workspace",
    )
    async def usage(self, request: Request, principal: NamedDependency[Principal]) -> Usage:
        figures = await kv_of(request).usage(principal.workspace_id)
        message = f"{figures['used']} of {figures['quota']} bytes used"
        return Usage(success=True, message=message, workspace=principal.workspace, **figures)
