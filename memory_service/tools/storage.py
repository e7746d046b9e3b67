"""Storage tools: the per-workspace key-value store (SPEC 4) as workflow tools.

Each runner calls `services.kv`, exactly as the HTTP API does: same key rules, same quota,
same workspace boundary. Nothing here decides anything the service decides.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any

from ..clock import iso
from ..services.errors import BadRequest, NotFound
from ..services.kv import check_ttl, etag
from ..services.media_types import check_media_type
from . import messages as m
from .manifest import (
    AUTHOR,
    NULLABLE_STRING,
    Description,
    Identity,
    ToolManifest,
    i18n,
    object_schema,
    param,
    whole_number,
)
from .runtime import Context, Emitted, Tool

# --- shared parameters ---------------------------------------------------------------------------

KEY = param(
    "key",
    "string",
    i18n("Key", "键", "キー"),
    i18n(
        "Entry key: 1-512 bytes of UTF-8, no control characters. Keys are opaque strings.",
        "条目键：1-512 字节的 UTF-8，不含控制字符。键是不透明的字符串。",
        "エントリのキー：UTF-8 で 1〜512 バイト、制御文字なし。キーは不透明な文字列です。",
    ),
    "The storage key to use, e.g. 'settings/theme'.",
    required=True,
)


def check_key(ctx: Context, key: str) -> str:
    ctx.services.kv.key(key)  # the service's own rule: raises invalid_key before the stream
    return key


def filename_of(key: str) -> str:
    """A file name hint for a blob: the key's last '/'-segment (keys are not paths; this is only
    what a workflow shows or saves the file as)."""
    return key.rsplit("/", 1)[-1] or "value"


# --- storage_set ---------------------------------------------------------------------------------

SET = ToolManifest(
    identity=Identity(
        name="storage_set",
        author=AUTHOR,
        label=i18n("Storage: set", "存储：写入", "ストレージ：保存"),
    ),
    description=Description(
        human=i18n(
            "Store a value (text or base64 bytes) under a key in the workspace's storage.",
            "将一个值（文本或 base64 字节）存入工作区存储中的某个键。",
            "ワークスペースのストレージにキーで値（テキストまたは base64 バイト列）を保存します。",
        ),
        llm="Store a value under a key in persistent per-workspace storage. Give the value as "
        "text in `value`, or as base64 in `value_base64` (exactly one). Overwrites any earlier "
        "value. Optional `ttl` in seconds makes the entry expire.",
    ),
    parameters=[
        KEY,
        param(
            "value",
            "string",
            i18n("Value (text)", "值（文本）", "値（テキスト）"),
            i18n(
                "The value as text, stored as UTF-8. Give this or value_base64.",
                "以文本形式给出的值，按 UTF-8 存储。与 value_base64 二选一。",
                "テキストとしての値（UTF-8 で保存）。value_base64 とどちらか一方を指定します。",
            ),
            "The text to store. Use this or value_base64, not both.",
        ),
        param(
            "value_base64",
            "string",
            i18n("Value (base64)", "值（base64）", "値（base64）"),
            i18n(
                "The value as base64-encoded bytes, for binary data. Give this or value.",
                "以 base64 编码的字节给出的值，用于二进制数据。与 value 二选一。",
                "base64 でエンコードしたバイト列としての値（バイナリ用）。value とどちらか一方。",
            ),
            "Base64 of the bytes to store, for binary data. Use this or value, not both.",
        ),
        param(
            "content_type",
            "string",
            i18n("Content type", "内容类型", "コンテンツタイプ"),
            i18n(
                "MIME type stored with the value (default text/plain; charset=utf-8 for text, "
                "application/octet-stream for base64).",
                "与值一起存储的 MIME 类型（文本默认 text/plain; charset=utf-8，"
                "base64 默认 application/octet-stream）。",
                "値と一緒に保存する MIME タイプ（テキストの既定は text/plain; charset=utf-8、"
                "base64 の既定は application/octet-stream）。",
            ),
            "MIME type of the value, e.g. application/json.",
            form="form",
        ),
        param(
            "ttl",
            "number",
            i18n("Time to live (s)", "存活时间（秒）", "有効期間（秒）"),
            i18n(
                "Seconds until the entry expires; empty for no expiry.",
                "条目过期前的秒数；留空表示永不过期。",
                "エントリが期限切れになるまでの秒数。空なら期限なし。",
            ),
            "Seconds until the entry expires; omit to keep it.",
            form="form",
            min=0,
        ),
    ],
    output_schema=object_schema(
        {
            "key": {"type": "string", "description": "The key written."},
            "version": {"type": "integer", "description": "The entry's new version."},
            "etag": {"type": "string", "description": 'The version as an entity tag: "<n>".'},
            "created": {"type": "boolean", "description": "True if the key did not exist."},
            "value_size": {"type": "integer", "minimum": 0, "description": "Bytes stored."},
            "expires_at": {**NULLABLE_STRING, "description": "ISO time of expiry, or null."},
        }
    ),
)


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

GET = ToolManifest(
    identity=Identity(
        name="storage_get",
        author=AUTHOR,
        label=i18n("Storage: get", "存储：读取", "ストレージ：取得"),
    ),
    description=Description(
        human=i18n(
            "Read the value stored under a key, as a file and (when it is text) as text.",
            "读取某个键下存储的值，作为文件输出（若为文本，也作为文本输出）。",
            "キーに保存された値を読み取り、ファイルとして（テキストならテキストとしても）返します。",
        ),
        llm="Read the value stored under a key in persistent per-workspace storage. Returns the "
        "bytes as a file with their content type, and `value_text` when they are UTF-8 text. "
        "Fails if the key does not exist.",
    ),
    parameters=[KEY],
    output_schema=object_schema(
        {
            "key": {"type": "string"},
            "content_type": {"type": "string", "description": "The stored MIME type."},
            "value_size": {"type": "integer", "minimum": 0},
            "value_text": {
                **NULLABLE_STRING,
                "description": "The value as text if it is valid UTF-8, else null (use the file).",
            },
            "version": {"type": "integer"},
            "etag": {"type": "string"},
            "expires_at": NULLABLE_STRING,
        }
    ),
)


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

EXIST = ToolManifest(
    identity=Identity(
        name="storage_exist",
        author=AUTHOR,
        label=i18n("Storage: exists", "存储：是否存在", "ストレージ：存在確認"),
    ),
    description=Description(
        human=i18n(
            "Check whether a key exists (and has not expired).",
            "检查某个键是否存在（且未过期）。",
            "キーが存在する（期限切れでない）かを確認します。",
        ),
        llm="Check whether a key exists in persistent per-workspace storage. Returns `exists`.",
    ),
    parameters=[KEY],
    output_schema=object_schema({"key": {"type": "string"}, "exists": {"type": "boolean"}}),
)


async def run_exist(ctx: Context, p: dict[str, Any]) -> AsyncIterator[Emitted]:
    exists = await ctx.services.kv.exists(ctx.workspace_id, p["key"])
    yield [
        m.text(f"Key {p['key']!r} {'exists' if exists else 'does not exist'}."),
        m.variable("key", p["key"]),
        m.variable("exists", exists),
    ]


# --- storage_delete ------------------------------------------------------------------------------

DELETE = ToolManifest(
    identity=Identity(
        name="storage_delete",
        author=AUTHOR,
        label=i18n("Storage: delete", "存储：删除", "ストレージ：削除"),
    ),
    description=Description(
        human=i18n(
            "Delete a key and its value. Deleting a missing key is not an error.",
            "删除一个键及其值。删除不存在的键不会报错。",
            "キーとその値を削除します。存在しないキーの削除はエラーになりません。",
        ),
        llm="Delete a key from persistent per-workspace storage. `deleted` tells whether it "
        "existed.",
    ),
    parameters=[KEY],
    output_schema=object_schema(
        {
            "key": {"type": "string"},
            "deleted": {"type": "boolean", "description": "False if there was no such key."},
            "freed_bytes": {"type": "integer", "minimum": 0},
        }
    ),
)


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

ITEM_SCHEMA = {
    "type": "object",
    "properties": {
        "key": {"type": "string"},
        "size": {"type": "integer", "description": "Bytes charged: key + value."},
        "content_type": {"type": "string"},
        "version": {"type": "integer"},
        "etag": {"type": "string"},
        "updated_at": {"type": "string"},
        "expires_at": NULLABLE_STRING,
    },
    "required": ["key", "size", "content_type", "version", "etag", "updated_at", "expires_at"],
}

LIST = ToolManifest(
    identity=Identity(
        name="storage_list",
        author=AUTHOR,
        label=i18n("Storage: list keys", "存储：列出键", "ストレージ：キー一覧"),
    ),
    description=Description(
        human=i18n(
            "List keys that start with a prefix, in byte order, one page at a time.",
            "按字节顺序分页列出以某前缀开头的键。",
            "指定した接頭辞で始まるキーをバイト順に 1 ページずつ一覧表示します。",
        ),
        llm="List keys of persistent per-workspace storage that start with `prefix`. Returns "
        "one page; pass `next_cursor` back as `cursor` for the next page (null when done).",
    ),
    parameters=[
        param(
            "prefix",
            "string",
            i18n("Prefix", "前缀", "接頭辞"),
            i18n(
                "Only keys that start with this (empty: all keys).",
                "只列出以此开头的键（留空：全部键）。",
                "これで始まるキーのみ（空ならすべて）。",
            ),
            "Key prefix to filter by; empty for all keys.",
            default="",
        ),
        param(
            "limit",
            "number",
            i18n("Page size", "每页数量", "ページサイズ"),
            i18n(
                "Keys per page (default 100, at most the server's maximum page size).",
                "每页的键数（默认 100，最多为服务器的最大页大小）。",
                "1 ページのキー数（既定 100、最大はサーバーの最大ページサイズ）。",
            ),
            "How many keys to return at most.",
            form="form",
            min=1,
        ),
        param(
            "cursor",
            "string",
            i18n("Cursor", "游标", "カーソル"),
            i18n(
                "next_cursor of the previous page.",
                "上一页返回的 next_cursor。",
                "前のページの next_cursor。",
            ),
            "The next_cursor returned by the previous call, to get the next page.",
        ),
    ],
    output_schema=object_schema(
        {
            "keys": {"type": "array", "items": {"type": "string"}},
            "items": {"type": "array", "items": ITEM_SCHEMA},
            "count": {"type": "integer", "minimum": 0},
            "next_cursor": {
                **NULLABLE_STRING,
                "description": "Pass back as `cursor` for the next page; null on the last page.",
            },
        }
    ),
)


def prepare_list(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    limit = whole_number("limit", p["limit"])
    ctx.services.kv.page_limit(limit)  # the service's own bound, checked before the stream
    return {**p, "limit": limit}


async def run_list(ctx: Context, p: dict[str, Any]) -> AsyncIterator[Emitted]:
    rows, next_cursor = await ctx.services.kv.list(
        ctx.workspace_id, prefix=p["prefix"] or "", limit=p["limit"], cursor=p["cursor"] or None
    )
    items = [
        {
            "key": r.key.decode("utf-8"),
            "size": r.size,
            "content_type": r.content_type,
            "version": r.version,
            "etag": etag(r.version),
            "updated_at": iso(r.updated_at),
            "expires_at": iso(r.expires_at),
        }
        for r in rows
    ]
    more = "; more: pass next_cursor as cursor" if next_cursor else ""
    yield [
        m.text(f"Listed {len(items)} key(s) with prefix {p['prefix'] or ''!r}{more}."),
        m.json_message({"items": items, "next_cursor": next_cursor}),
        m.variable("keys", [i["key"] for i in items]),
        m.variable("items", items),
        m.variable("count", len(items)),
        m.variable("next_cursor", next_cursor),
    ]


TOOLS = [
    Tool(SET, run_set, prepare_set),
    Tool(GET, run_get, lambda ctx, p: {"key": check_key(ctx, p["key"])}),
    Tool(EXIST, run_exist, lambda ctx, p: {"key": check_key(ctx, p["key"])}),
    Tool(DELETE, run_delete, lambda ctx, p: {"key": check_key(ctx, p["key"])}),
    Tool(LIST, run_list, prepare_list),
]
