"""Memory tools: the memory block API (SPEC 3) as workflow tools.

The manifests (parameters, labels, output_schema) are data in `tools/manifests/memory_*.yaml`;
this module holds only the code that runs them. The runners call `services.memory` with the
same arguments the HTTP API passes, and answer the memory objects exactly as the API shapes them
(`services.shapes.memory_item`): a workflow sees the same `conversationId`, `data`, `messageCount`
and `dataCursor` whichever way it asked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec

from ..services.memory import MemoryOut, check_idempotency_key
from ..services.shapes import found, memory_item
from ..wire import messages as m
from .manifest import whole_number
from .runtime import Context, Emitted, Runner

# Transcript chunks are sent this many to a write: one message per chunk for the typewriter
# effect, without one socket write per message.
CHUNKS_PER_WRITE = 256


def _memory_dict(memory: MemoryOut) -> dict[str, Any]:
    as_dict: dict[str, Any] = msgspec.to_builtins(memory_item(memory))
    return as_dict


# --- memory_add ----------------------------------------------------------------------------------


def prepare_add(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    # The service's own id rules, before the stream starts; the rest it checks as it adds.
    ctx.services.memory.filter(p["conversationId"], None, p["blockId"], p["blockName"])
    if p["idempotencyKey"] is not None:  # the README promises a 4xx before the stream
        check_idempotency_key(p["idempotencyKey"])  # the header's rule, words and code
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
    page = await ctx.services.memory.get_page(
        ctx.workspace_id,
        p["filter"],
        limit=p["limit"],
        cursor=p["cursor"] or None,
        last_n=p["lastN"],
        keep_system=p["keepSystem"],
    )
    memories, next_cursor = page.memories, page.next_cursor
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


RUNNERS = {
    "memory_add": Runner(run_add, prepare_add),
    "memory_get": Runner(run_read, prepare_get),
    "memory_get_all": Runner(run_read, prepare_get_all),
    "memory_delete": Runner(run_delete, prepare_delete),
}
