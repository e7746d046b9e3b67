"""Memory tools: the memory block API (SPEC 3) as workflow tools.

The runners call `services.memory` with the same arguments the HTTP API passes, and answer the
memory objects exactly as the API shapes them (`http.memory.memory_item`): a workflow sees the
same `conversationId`, `data`, `messageCount` and `dataCursor` whichever way it asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec

from ..http.memory import found, memory_item
from ..services.memory import IDEMPOTENCY_KEY_LENGTH, ROLES, MemoryOut, check_id
from . import messages as m
from .manifest import (
    AUTHOR,
    NULLABLE_STRING,
    Description,
    Identity,
    Option,
    ToolManifest,
    i18n,
    object_schema,
    param,
    whole_number,
)
from .runtime import Context, Emitted, Tool

# Transcript chunks are sent this many to a write: one message per chunk for the typewriter
# effect, without one socket write per message.
CHUNKS_PER_WRITE = 256

MESSAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "role": {"enum": sorted(ROLES)},
        "content": {"type": "string"},
        "seq": {"type": "integer", "minimum": 0},
    },
    "required": ["role", "content", "seq"],
}
MEMORY_SCHEMA = {
    "type": "object",
    "description": "A memory exactly as the HTTP API answers it.",
    "properties": {
        "key": {"type": "string"},
        "conversationId": {"type": "string"},
        "blockId": {"type": "string"},
        "blockName": NULLABLE_STRING,
        "data": {"type": "array", "items": MESSAGE_SCHEMA},
        "messageCount": {"type": "integer", "minimum": 0},
        "createdAt": {"type": "string"},
        "updatedAt": {"type": "string"},
        "dataCursor": {
            **NULLABLE_STRING,
            "description": "Set when older messages exist than those in data.",
        },
    },
    "required": [
        "key",
        "conversationId",
        "blockId",
        "blockName",
        "data",
        "messageCount",
        "createdAt",
        "updatedAt",
    ],
}


# --- shared parameters ---------------------------------------------------------------------------


def _conversation(required: bool):  # noqa: ANN202
    return param(
        "conversationId",
        "string",
        i18n("Conversation ID", "会话 ID", "会話 ID"),
        i18n(
            "The conversation, e.g. user-123 or session-abc. Matched exactly.",
            "会话标识，例如 user-123 或 session-abc。精确匹配。",
            "会話の識別子（例：user-123、session-abc）。完全一致で照合します。",
        ),
        "Identifier of the conversation, e.g. the user or session id.",
        required=required,
    )


BLOCK_ID = param(
    "blockId",
    "string",
    i18n("Block ID", "块 ID", "ブロック ID"),
    i18n(
        "The memory block within the conversation (default: 'default').",
        "会话中的记忆块（默认：'default'）。",
        "会話内のメモリブロック（既定：'default'）。",
    ),
    "Identifier of the memory block; omit for the default block.",
    form="form",
)
BLOCK_NAME = param(
    "blockName",
    "string",
    i18n("Block name", "块名称", "ブロック名"),
    i18n(
        "The block's name in the workspace's block registry.",
        "该块在工作区块注册表中的名称。",
        "ワークスペースのブロック登録簿でのブロック名。",
    ),
    "Human-readable name of the memory block.",
    form="form",
)
LAST_N = param(
    "lastN",
    "number",
    i18n("Last N messages", "最近 N 条消息", "直近 N 件のメッセージ"),
    i18n(
        "Only the last N messages of each memory (0 to 1000).",
        "每个记忆只返回最近 N 条消息（0 到 1000）。",
        "各メモリの直近 N 件のメッセージのみ（0〜1000）。",
    ),
    "Return only the most recent N messages of each memory.",
    form="form",
    min=0,
)
KEEP_SYSTEM = param(
    "keepSystem",
    "boolean",
    i18n("Keep system message", "保留系统消息", "システムメッセージを保持"),
    i18n(
        "With last N: also keep the memory's first message if it is a system message.",
        "配合最近 N 条：若记忆的第一条消息是系统消息，也一并保留。",
        "直近 N 件と併用：最初のメッセージがシステムメッセージなら、それも含めます。",
    ),
    "Keep the leading system message when windowing with last_n.",
    form="form",
    default=False,
)
LIMIT = param(
    "limit",
    "number",
    i18n("Page size", "每页数量", "ページサイズ"),
    i18n(
        "Memories per page (default 100, at most the server's maximum page size).",
        "每页的记忆数（默认 100，最多为服务器的最大页大小）。",
        "1 ページのメモリ数（既定 100、最大はサーバーの最大ページサイズ）。",
    ),
    "How many memories to return at most.",
    form="form",
    min=1,
)
CURSOR = param(
    "cursor",
    "string",
    i18n("Cursor", "游标", "カーソル"),
    i18n(
        "next_cursor of the previous page.",
        "上一页返回的 next_cursor。",
        "前のページの next_cursor。",
    ),
    "The next_cursor returned by the previous call, to get the next page.",
    form="form",
)


def _memory_dict(memory: MemoryOut) -> dict[str, Any]:
    return msgspec.to_builtins(memory_item(memory))


# --- memory_add ----------------------------------------------------------------------------------

ADD = ToolManifest(
    identity=Identity(
        name="memory_add",
        author=AUTHOR,
        label=i18n("Memory: add message", "记忆：添加消息", "メモリ：メッセージ追加"),
    ),
    description=Description(
        human=i18n(
            "Append one message to a conversation's memory, creating the memory if it is new.",
            "向会话记忆追加一条消息；若记忆不存在则创建。",
            "会話のメモリにメッセージを 1 件追加します（なければ作成します）。",
        ),
        llm="Append a message (role user, assistant or system, and its content) to the memory "
        "of a conversation and block. Appends are atomic and ordered.",
    ),
    parameters=[
        _conversation(required=True),
        param(
            "role",
            "select",
            i18n("Role", "角色", "ロール"),
            i18n("Who said it.", "消息的发送者。", "発言者。"),
            "Role of the message author: user, assistant or system.",
            required=True,
            options=[
                Option("user", i18n("User", "用户", "ユーザー")),
                Option("assistant", i18n("Assistant", "助手", "アシスタント")),
                Option("system", i18n("System", "系统", "システム")),
            ],
        ),
        param(
            "content",
            "string",
            i18n("Content", "内容", "内容"),
            i18n("The message text.", "消息文本。", "メッセージのテキスト。"),
            "The text of the message to remember.",
            required=True,
        ),
        BLOCK_ID,
        BLOCK_NAME,
        param(
            "idempotencyKey",
            "string",
            i18n("Idempotency key", "幂等键", "冪等キー"),
            i18n(
                "A retried add with the same key appends nothing new.",
                "使用相同键重试添加时不会重复追加。",
                "同じキーで再試行した追加は、何も追加しません。",
            ),
            "Unique id of this add, so that a retry does not append twice.",
            form="form",
        ),
    ],
    output_schema=object_schema(
        {
            "memory": {**MEMORY_SCHEMA, "description": "The memory with the appended message."},
            "key": {"type": "string"},
            "message_count": {"type": "integer", "minimum": 1},
            "replayed": {
                "type": "boolean",
                "description": "True if this was a retry of an earlier add (nothing appended).",
            },
        }
    ),
)


def prepare_add(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    # The service's own id rules, before the stream starts; the rest it checks as it adds.
    ctx.services.memory.filter(p["conversationId"], None, p["blockId"], p["blockName"])
    if p["idempotencyKey"] is not None:  # the README promises a 4xx before the stream
        check_id(p["idempotencyKey"], "idempotencyKey", IDEMPOTENCY_KEY_LENGTH)
    return p


async def run_add(ctx: Context, p: dict[str, Any]) -> AsyncIterator[Emitted]:
    memory, replayed = await ctx.services.memory.add(
        ctx.workspace_id,
        conversation_id=p["conversationId"],
        block_id=p["blockId"],
        block_name=p["blockName"],
        role=p["role"],
        content=p["content"],
        idempotency_key=p["idempotencyKey"],
    )
    item = _memory_dict(memory)
    where = f"{memory.conversation_id}/{memory.block_id}"
    summary = (
        f"Already added with this idempotency key; {where} unchanged."
        if replayed
        else f"Added 1 {p['role']} message to {where} ({memory.message_count} in all)."
    )
    yield [
        m.text(summary),
        m.json_message({"memories": [item], "replayed": replayed}),
        m.variable("memory", item),
        m.variable("key", memory.key),
        m.variable("message_count", memory.message_count),
        m.variable("replayed", replayed),
    ]


# --- memory_get / memory_get_all -----------------------------------------------------------------

READ_OUTPUTS = object_schema(
    {
        "memories": {"type": "array", "items": MEMORY_SCHEMA},
        "count": {"type": "integer", "minimum": 0},
        "next_cursor": {
            **NULLABLE_STRING,
            "description": "More memories: pass back as `cursor`. Null on the last page.",
        },
        "transcript": {
            "type": "string",
            "description": "The messages as 'role: content' lines, streamed one message per "
            "chunk (memories separated by a blank line).",
        },
    }
)

GET = ToolManifest(
    identity=Identity(
        name="memory_get",
        author=AUTHOR,
        label=i18n("Memory: get", "记忆：读取", "メモリ：取得"),
    ),
    description=Description(
        human=i18n(
            "Read memories by conversation, block ID or block name (any combination), with a "
            "transcript of their messages.",
            "按会话、块 ID 或块名称（任意组合）读取记忆，并给出消息的文字记录。",
            "会話・ブロック ID・ブロック名（任意の組み合わせ）でメモリを読み取り、"
            "メッセージの書き起こしも返します。",
        ),
        llm="Read the remembered messages of a conversation (and/or a block id or block name; at "
        "least one). Returns the memories and a transcript of 'role: content' lines.",
    ),
    parameters=[
        _conversation(required=False),
        BLOCK_ID,
        BLOCK_NAME,
        LAST_N,
        KEEP_SYSTEM,
        LIMIT,
        CURSOR,
    ],
    output_schema=READ_OUTPUTS,
)

GET_ALL = ToolManifest(
    identity=Identity(
        name="memory_get_all",
        author=AUTHOR,
        label=i18n("Memory: get all", "记忆：读取全部", "メモリ：すべて取得"),
    ),
    description=Description(
        human=i18n(
            "Read every memory of the workspace, a page at a time, with a transcript.",
            "分页读取工作区的全部记忆，并给出文字记录。",
            "ワークスペースのすべてのメモリを 1 ページずつ読み取り、書き起こしも返します。",
        ),
        llm="Read all memories of the workspace, one page at a time (pass next_cursor back as "
        "cursor). Returns the memories and a transcript.",
    ),
    parameters=[LAST_N, KEEP_SYSTEM, LIMIT, CURSOR],
    output_schema=READ_OUTPUTS,
)


def _window(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    service = ctx.services.memory
    last_n = whole_number("lastN", p["lastN"])
    limit = whole_number("limit", p["limit"])
    service.window(last_n, p["keepSystem"])  # the service's bounds, before the stream starts
    service.page_limit(limit)
    return {**p, "lastN": last_n, "limit": limit}


def prepare_get(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = ctx.services.memory.filter(p["conversationId"], None, p["blockId"], p["blockName"])
    return {**_window(ctx, p), "filter": flt}


def prepare_get_all(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    return {**_window(ctx, p), "filter": None}


def _transcript(memories: list[MemoryOut]) -> Iterator[str]:
    several = len(memories) > 1
    for i, memory in enumerate(memories):
        if several:
            gap = "\n" if i else ""
            yield f"{gap}## {memory.conversation_id} / {memory.block_id}\n"
        for msg in memory.messages:
            yield f"{msg.role}: {msg.content}\n"


async def run_read(ctx: Context, p: dict[str, Any]) -> AsyncIterator[Emitted]:
    memories, next_cursor = await ctx.services.memory.get(
        ctx.workspace_id,
        p["filter"],
        limit=p["limit"],
        cursor=p["cursor"] or None,
        last_n=p["lastN"],
        keep_system=p["keepSystem"],
    )
    more = "; more: pass next_cursor as cursor" if next_cursor else ""
    # The summary on its own write: it is ready as soon as the read is, before the page of
    # memories is shaped, checked and encoded.
    yield m.text(f"{found(len(memories))}{more}.")
    items = [_memory_dict(x) for x in memories]
    yield [
        m.json_message({"memories": items, "next_cursor": next_cursor}),
        m.variable("memories", items),
        m.variable("count", len(items)),
        m.variable("next_cursor", next_cursor),
    ]
    batch: list[m.ToolMessage] = []
    for chunk in _transcript(memories):
        batch.append(m.variable("transcript", chunk, stream=True))
        if len(batch) == CHUNKS_PER_WRITE:
            yield batch
            batch = []
    if batch:
        yield batch
    elif not any(x.messages for x in memories):
        yield m.variable("transcript", "")  # declared, so emitted even when there is nothing


# --- memory_delete -------------------------------------------------------------------------------

DELETE = ToolManifest(
    identity=Identity(
        name="memory_delete",
        author=AUTHOR,
        label=i18n("Memory: delete", "记忆：删除", "メモリ：削除"),
    ),
    description=Description(
        human=i18n(
            "Delete memories by conversation, block ID or block name (any combination; at "
            "least one).",
            "按会话、块 ID 或块名称（任意组合，至少一个）删除记忆。",
            "会話・ブロック ID・ブロック名（任意の組み合わせ、1 つ以上）でメモリを削除します。",
        ),
        llm="Delete the memories of a conversation (and/or a block id or block name; at least "
        "one). Deletion is immediate and permanent.",
    ),
    parameters=[
        _conversation(required=False),
        BLOCK_ID,
        BLOCK_NAME,
        param(
            "dryRun",
            "boolean",
            i18n("Dry run", "仅统计", "ドライラン"),
            i18n(
                "Only count what would be deleted.",
                "只统计将被删除的数量，不实际删除。",
                "削除される数を数えるだけで、削除しません。",
            ),
            "Count the matching memories without deleting them.",
            form="form",
            default=False,
        ),
    ],
    output_schema=object_schema(
        {
            "deleted_count": {"type": "integer", "minimum": 0},
            "freed_bytes": {"type": "integer", "minimum": 0},
            "dry_run": {"type": "boolean"},
        }
    ),
)


def prepare_delete(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    flt = ctx.services.memory.filter(p["conversationId"], None, p["blockId"], p["blockName"])
    return {"filter": flt, "dryRun": p["dryRun"]}


async def run_delete(ctx: Context, p: dict[str, Any]) -> AsyncIterator[Emitted]:
    count, freed = await ctx.services.memory.delete(
        ctx.workspace_id, p["filter"], dry_run=p["dryRun"]
    )
    noun = "memory" if count == 1 else "memories"
    if p["dryRun"]:
        summary = f"Would delete {count} {noun} ({freed} bytes)."
    elif count:
        summary = f"Deleted {count} {noun} ({freed} bytes freed)."
    else:
        summary = "No memories found."
    yield [
        m.text(summary),
        m.variable("deleted_count", count),
        m.variable("freed_bytes", freed),
        m.variable("dry_run", p["dryRun"]),
    ]


TOOLS = [
    Tool(ADD, run_add, prepare_add),
    Tool(GET, run_read, prepare_get),
    Tool(GET_ALL, run_read, prepare_get_all),
    Tool(DELETE, run_delete, prepare_delete),
]
