"""Storage tools: the per-workspace key-value store (SPEC 4) as workflow tools.

The manifests are data in `tools/manifests/storage_*.yaml`; this module holds only the code
that runs them. Each runner calls `services.kv`, exactly as the HTTP API does: same key rules,
same quota, same workspace boundary. Nothing here decides anything the service decides.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from ..clock import iso
from ..services.errors import BadRequest, NotFound
from ..services.kv import check_ttl
from ..services.media_types import check_media_type
from ..services.shapes import etag
from ..wire import messages as m
from .manifest import whole_number
from .runtime import Context, Emitted, Runner


def check_key(ctx: Context, key: str) -> str:
    ctx.services.kv.key(key)  # the service's own rule: raises invalid_key before the stream
    return key


def filename_of(key: str) -> str:
    """A file name hint for a blob: the key's last '/'-segment (keys are not paths; this is only
    what a workflow shows or saves the file as)."""
    return key.rsplit("/", 1)[-1] or "value"


# --- storage_set ---------------------------------------------------------------------------------


def prepare_set(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    check_key(ctx, p["key"])
    text, b64 = p["value"], p["value_base64"]
    if (text is None) == (b64 is None):
        raise BadRequest(
            "give the value in exactly one of `value` (text) and `value_base64`",
            code="invalid_parameter",
        )
    if b64 is not None:
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(
                "parameter 'value_base64' is not valid base64", code="invalid_parameter"
            ) from exc
        default_type = m.DEFAULT_MIME
    else:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate escaped in the JSON
            raise BadRequest(
                "parameter 'value' is not valid Unicode text", code="invalid_parameter"
            ) from exc
        default_type = "text/plain; charset=utf-8"
    check_ttl(p["ttl"])
    content_type = check_media_type(p["content_type"] or default_type)
    return {
        "key": p["key"],
        "value": data,
        "content_type": content_type,
        "ttl": p["ttl"],
    }


async def run_set(ctx: Context, p: dict[str, Any]) -> AsyncIterator[Emitted]:
    written = await ctx.services.kv.set(
        ctx.workspace_id, p["key"], p["value"], content_type=p["content_type"], ttl=p["ttl"]
    )
    out = {
        "key": p["key"],
        "version": written.version,
        "etag": etag(written.version),
        "created": written.created,
        "value_size": len(p["value"]),
        "expires_at": iso(written.expires_at),
    }
    how = "created" if written.created else "replaced"
    yield [
        m.text(
            f"Stored {len(p['value'])} bytes under {p['key']!r} ({how}, version {written.version})."
        ),  # fmt: skip
        m.json_message(out),
        *(m.variable(k, v) for k, v in out.items()),
    ]


# --- storage_get ---------------------------------------------------------------------------------


async def run_get(ctx: Context, p: dict[str, Any]) -> AsyncIterator[Emitted]:
    key = p["key"]
    value = await ctx.services.kv.get(ctx.workspace_id, key)
    try:
        as_text: str | None = value.value.decode("utf-8")
    except UnicodeDecodeError:
        as_text = None
    out = {
        "key": key,
        "content_type": value.content_type,
        "value_size": len(value.value),
        "value_text": as_text,
        "version": value.version,
        "etag": etag(value.version),
        "expires_at": iso(value.expires_at),
    }
    yield [
        m.text(f"Read {len(value.value)} bytes ({value.content_type}) from {key!r}."),
        m.blob(value.value, value.content_type, filename_of(key)),
        *(m.variable(k, v) for k, v in out.items()),
    ]


# --- storage_exist -------------------------------------------------------------------------------


async def run_exist(ctx: Context, p: dict[str, Any]) -> AsyncIterator[Emitted]:
    exists = await ctx.services.kv.exists(ctx.workspace_id, p["key"])
    yield [
        m.text(f"Key {p['key']!r} {'exists' if exists else 'does not exist'}."),
        m.variable("key", p["key"]),
        m.variable("exists", exists),
    ]


# --- storage_delete ------------------------------------------------------------------------------


async def run_delete(ctx: Context, p: dict[str, Any]) -> AsyncIterator[Emitted]:
    key = p["key"]
    try:
        freed = await ctx.services.kv.delete(ctx.workspace_id, key)
        deleted = True
    except NotFound:  # the plugin-storage contract: deleting what is absent is a no-op
        freed, deleted = 0, False
    summary = f"Deleted {key!r} ({freed} bytes freed)." if deleted else f"No key {key!r}."
    yield [
        m.text(summary),
        m.variable("key", key),
        m.variable("deleted", deleted),
        m.variable("freed_bytes", freed),
    ]


# --- storage_list --------------------------------------------------------------------------------


def prepare_list(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    limit = whole_number("limit", p["limit"])
    ctx.services.kv.page_limit(limit)  # the service's own bound, checked before the stream
    return {**p, "limit": limit}


async def run_list(ctx: Context, p: dict[str, Any]) -> AsyncIterator[Emitted]:
    listed, next_cursor = await ctx.services.kv.list(
        ctx.workspace_id, prefix=p["prefix"] or "", limit=p["limit"], cursor=p["cursor"] or None
    )
    # The API's items under the attribute names (snake_case, as every tool output is named).
    items = [msgspec.structs.asdict(item) for item in listed]
    more = "; more: pass next_cursor as cursor" if next_cursor else ""
    yield [
        m.text(f"Listed {len(items)} key(s) with prefix {p['prefix'] or ''!r}{more}."),
        m.json_message({"items": items, "next_cursor": next_cursor}),
        m.variable("keys", [i["key"] for i in items]),
        m.variable("items", items),
        m.variable("count", len(items)),
        m.variable("next_cursor", next_cursor),
    ]


def prepare_key(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return {"key": check_key(ctx, p["key"])}


RUNNERS = {
    "storage_set": Runner(run_set, prepare_set),
    "storage_get": Runner(run_get, prepare_key),
    "storage_exist": Runner(run_exist, prepare_key),
    "storage_delete": Runner(run_delete, prepare_key),
    "storage_list": Runner(run_list, prepare_list),
}
