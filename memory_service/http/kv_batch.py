"""Batch KV HTTP API under `/api/kv-batch/` (never `/api/kv/{key}`, whose paths are all keys):
get, exist, set and delete of up to 1,000 keys per request, and a listing with values.

Values travel as base64 in JSON (they are bytes). The rules are services/kv_batch.py's; this
file parses bodies, decodes base64 and shapes per-key results.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody, QueryParameter

from ..clock import iso
from ..services.container import Services
from ..services.errors import BadRequest
from ..services.kv_batch import MAX_BATCH_KEYS, NOT_FOUND, KeyFailure, KvBatchService
from ..services.shapes import etag
from ..services.workspaces import Principal
from .auth import admit, provide_principal
from .schemas import Failure, count

Keys = Annotated[list[str], msgspec.Meta(max_length=MAX_BATCH_KEYS)]
B64_DOC = "The value's bytes in base64 (RFC 4648 section 4, with padding)."


class KvBatchKeys(msgspec.Struct, forbid_unknown_fields=True):
    """Keys to read: each 1-512 bytes of UTF-8, no control characters, each at most once."""

    keys: Keys


class KvBatchSetItem(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    key: str
    value: Annotated[str, msgspec.Meta(description=B64_DOC)]
    content_type: str | None = None
    # Seconds until the entry expires; absent for no expiry.
    ttl: float | None = None
    # Entity tag(s) or *, as the If-Match header of a single set (strong comparison).
    if_match: str | None = None
    # Entity tag(s) or *, as the If-None-Match header of a single set (`*`: only if absent).
    if_none_match: str | None = None


class KvBatchDeleteItem(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    key: str
    if_match: str | None = None
    if_none_match: str | None = None


class KvBatchSetBody(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[KvBatchSetItem], msgspec.Meta(max_length=MAX_BATCH_KEYS)]
    # All or nothing: any key that fails fails the request (its status and code), nothing stored.
    atomic: bool = False


class KvBatchDeleteBody(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[KvBatchDeleteItem], msgspec.Meta(max_length=MAX_BATCH_KEYS)]
    atomic: bool = False


# --- answers: one result per key, in request order; `status` and `code` are what the single
# request of that key would answer (`code` null on success) ---------------------------------------


class KvBatchValue(msgspec.Struct, rename="camel"):
    key: str
    # 200, or 404 (key_not_found), or 413 (batch_too_large: the answer holds as many value
    # bytes as one GET may; read that key alone).
    status: int
    code: str | None
    error: str | None
    # bytes, which msgspec writes as base64 (and the document as a string)
    value: Annotated[bytes | None, msgspec.Meta(description=B64_DOC)]
    content_type: str | None
    # The value's length in bytes (a single GET's X-Value-Length).
    value_length: int | None
    version: int | None
    etag: str | None
    updated_at: str | None
    expires_at: str | None


class KvBatchGot(msgspec.Struct):
    success: Literal[True]
    message: str
    results: list[KvBatchValue]


class KvBatchExists(msgspec.Struct, rename="camel"):
    key: str
    exists: bool
    status: int  # 200 or 404
    code: str | None
    content_type: str | None
    value_length: int | None  # the value's length in bytes
    version: int | None
    etag: str | None
    updated_at: str | None
    expires_at: str | None


class KvBatchExisting(msgspec.Struct):
    success: Literal[True]
    message: str
    results: list[KvBatchExists]


class KvBatchWrite(msgspec.Struct, rename="camel"):
    key: str
    # 201 created, 200 replaced; else 412 (precondition_failed) or 413 (quota_exceeded).
    status: int
    code: str | None
    error: str | None
    version: int | None
    etag: str | None
    # key + value bytes, as charged to the quota.
    size: int | None
    created: bool | None
    expires_at: str | None


class KvBatchWritten(msgspec.Struct):
    success: Literal[True]
    message: str
    atomic: bool
    results: list[KvBatchWrite]


class KvBatchDelete(msgspec.Struct, rename="camel"):
    key: str
    # 200; else 404 (key_not_found) or 412 (precondition_failed).
    status: int
    code: str | None
    error: str | None
    deleted: bool
    freed_bytes: int


class KvBatchDeleted(msgspec.Struct):
    success: Literal[True]
    message: str
    atomic: bool
    results: list[KvBatchDelete]


class KvValueItem(msgspec.Struct, rename="camel"):
    key: str
    size: int
    content_type: str
    version: int
    etag: str
    updated_at: str
    expires_at: str | None
    value: Annotated[bytes, msgspec.Meta(description=B64_DOC)]


class KvValueList(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    items: list[KvValueItem]
    next_cursor: str | None


def _unb64(index: int, value: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise BadRequest(
            f"items[{index}]: value is not valid base64 (RFC 4648 section 4, with padding)",
            code="invalid_value",
        ) from exc


def _failed(f: KeyFailure | None) -> tuple[str | None, str | None]:
    return (f.code, f.error) if f is not None else (None, None)


def batch_of(request: Request) -> KvBatchService:
    services: Services = request.app.state.services
    return services.kv_batch


ATOMIC_DOC = (
    "With `atomic: true`, a key that fails fails the whole request with that key's status and "
    "code (412, 404, 413; the message names the item) and nothing changes; the quota is decided "
    "on the batch's total before anything is stored. Without it, each key stands alone, in "
    "request order, with its own `status` and `code`, and the answer is a 200. Invalid input "
    "anywhere (a bad key, base64, TTL, media type or condition, a key given twice, more than "
    f"{MAX_BATCH_KEYS} items) is a 400 naming the item, and nothing changes."
)
CONFLICT = {
    412: ResponseSpec(
        Failure,
        description="Atomic batch: a key's condition did not hold; nothing changed.",
        generate_examples=False,
    )
}


class KvBatchController(Controller):
    path = "/api/kv-batch"
    tags = ["kv"]
    guards = [admit]  # the credential, checked before any body is read (http/auth.py)
    dependencies = {"principal": Provide(provide_principal)}

    @post(
        "/get",
        operation_id="kvBatchGet",
        status_code=200,
        summary="Read up to 1,000 keys: each key's value (base64), type and version",
        description="Per key, in request order: 200 with the value, or 404. Values of one "
        "answer total at most the largest value size; keys past that are 413 "
        "(`batch_too_large`) without a value. Read in one snapshot.",
    )
    async def get_many(
        self, request: Request, principal: NamedDependency[Principal], data: JSONBody[KvBatchKeys]
    ) -> KvBatchGot:
        got = await batch_of(request).get(principal.workspace_id, data.keys)
        results = []
        found = 0
        # Positional (the fields' order): a hundred keys an answer make this loop count.
        for key, (e, f) in zip(data.keys, got, strict=True):
            if e is None:
                results.append(
                    KvBatchValue(key, 404, NOT_FOUND.code, NOT_FOUND.error, *(None,) * 7)
                )
                continue
            found += f is None
            results.append(
                KvBatchValue(
                    key,
                    200 if f is None else f.status,
                    None if f is None else f.code,
                    None if f is None else f.error,
                    e.value if f is None else None,
                    e.content_type,
                    e.size - len(e.key),
                    e.version,
                    f'"{e.version}"',  # (services/shapes.py: etag)
                    iso(e.updated_at),
                    iso(e.expires_at),
                )
            )
        return KvBatchGot(
            success=True, message=f"Found {found} of {count(len(results), 'key')}", results=results
        )

    @post(
        "/exist",
        operation_id="kvBatchExist",
        status_code=200,
        summary="Whether each of up to 1,000 keys exists, with its version (no values)",
    )
    async def exist_many(
        self, request: Request, principal: NamedDependency[Principal], data: JSONBody[KvBatchKeys]
    ) -> KvBatchExisting:
        found = await batch_of(request).exist(principal.workspace_id, data.keys)
        results = [
            KvBatchExists(
                key=key,
                exists=e is not None,
                status=200 if e is not None else 404,
                code=None if e is not None else "key_not_found",
                content_type=e.content_type if e is not None else None,
                value_length=e.size - len(e.key) if e is not None else None,
                version=e.version if e is not None else None,
                etag=etag(e.version) if e is not None else None,
                updated_at=iso(e.updated_at) if e is not None else None,
                expires_at=iso(e.expires_at) if e is not None else None,
            )
            for key, e in zip(data.keys, found, strict=True)
        ]
        n = sum(r.exists for r in results)
        return KvBatchExisting(
            success=True, message=f"{n} of {count(len(results), 'key')} exist", results=results
        )

    @post(
        "/set",
        operation_id="kvBatchSet",
        status_code=200,
        summary="Store up to 1,000 keys in one transaction, each with its own conditions",
        description="Each item: `key`, `value` (base64), optional `contentType`, `ttl`, "
        "`ifMatch`, `ifNoneMatch` (as the single set's headers). The quota is charged exactly: "
        "an overwrite the difference. " + ATOMIC_DOC,
        responses=CONFLICT,
    )
    async def set_many(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        data: JSONBody[KvBatchSetBody],
    ) -> KvBatchWritten:
        items = [
            {
                "key": it.key,
                "value": _unb64(i, it.value),
                "content_type": it.content_type,
                "ttl": it.ttl,
                "if_match": it.if_match,
                "if_none_match": it.if_none_match,
            }
            for i, it in enumerate(data.items)
        ]
        outcomes = await batch_of(request).set(principal.workspace_id, items, data.atomic)
        results = []
        for it, o in zip(data.items, outcomes, strict=True):
            code, error = _failed(o.failure)
            results.append(
                KvBatchWrite(
                    key=it.key,
                    status=o.status,
                    code=code,
                    error=error,
                    version=o.version,
                    etag=etag(o.version) if o.version is not None else None,
                    size=o.size,
                    created=o.created,
                    expires_at=iso(o.expires_at) if o.failure is None else None,
                )
            )
        stored = sum(1 for o in outcomes if o.failure is None)
        return KvBatchWritten(
            success=True,
            message=f"Stored {stored} of {count(len(results), 'key')}",
            atomic=data.atomic,
            results=results,
        )

    @post(
        "/delete",
        operation_id="kvBatchDelete",
        status_code=200,
        summary="Delete up to 1,000 keys in one transaction, each with its own conditions",
        description="Each item: `key`, optional `ifMatch`, `ifNoneMatch`. A missing key is "
        "404 (`key_not_found`) whatever its conditions. " + ATOMIC_DOC,
        responses=CONFLICT,
    )
    async def delete_many(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        data: JSONBody[KvBatchDeleteBody],
    ) -> KvBatchDeleted:
        items = [
            {"key": it.key, "if_match": it.if_match, "if_none_match": it.if_none_match}
            for it in data.items
        ]
        outcomes = await batch_of(request).delete(principal.workspace_id, items, data.atomic)
        results = []
        for it, o in zip(data.items, outcomes, strict=True):
            code, error = _failed(o.failure)
            results.append(
                KvBatchDelete(
                    key=it.key,
                    status=o.failure.status if o.failure else 200,
                    code=code,
                    error=error,
                    deleted=o.failure is None,
                    freed_bytes=o.freed,
                )
            )
        n = sum(r.deleted for r in results)
        return KvBatchDeleted(
            success=True,
            message=f"Deleted {n} of {count(len(results), 'key')}",
            atomic=data.atomic,
            results=results,
        )

    @get(
        "/list",
        operation_id="kvListValues",
        summary="List keys by prefix with their values (base64), in byte order, paginated",
        description="As kvList, with each entry's value; the cursors of both listings are the "
        "same. A page also ends early (with a nextCursor) once its values reach the largest "
        "value size.",
    )
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
    ) -> KvValueList:
        rows, next_cursor = await batch_of(request).list_values(
            principal.workspace_id, prefix=prefix, limit=limit, cursor=cursor
        )
        items = [
            KvValueItem(
                key=r.key.decode("utf-8"),
                size=r.size,
                content_type=r.content_type,
                version=r.version,
                etag=etag(r.version),
                updated_at=iso(r.updated_at),
                expires_at=iso(r.expires_at),
                value=value,
            )
            for r, value in rows
        ]
        return KvValueList(
            success=True, message=count(len(items), "key"), items=items, next_cursor=next_cursor
        )
