"""Helpers for the memory block API tests: requests, shapes, and recounts from the tables."""

from __future__ import annotations

from typing import Any

MEMORY_FIELDS = {
    "key",
    "conversationId",
    "blockId",
    "blockName",
    "data",
    "messageCount",
    "createdAt",
    "updatedAt",
    "dataCursor",
}
ENVELOPE_FIELDS = {"success", "error", "message", "code"}


async def add(client, headers: dict, **body: Any) -> dict:  # noqa: ANN001
    """POST /api/memory; asserts a 200 and returns the one memory it answers."""
    r = await client.post("/api/memory", json=body, headers=headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["success"] is True and len(answer["memories"]) == 1, answer
    return answer["memories"][0]


async def get(client, headers: dict, path: str = "/api/memory", **params: Any) -> dict:  # noqa: ANN001
    r = await client.get(path, params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def walk(client, headers: dict, path: str = "/api/memory/all", **params: Any) -> list[dict]:  # noqa: ANN001
    """Every memory of a cursor walk, page after page."""
    out, cursor = [], None
    while True:
        page = await get(client, headers, path, **params, **({"cursor": cursor} if cursor else {}))
        out += page["memories"]
        cursor = page["nextCursor"]
        if cursor is None:
            return out


def assert_envelope(r, status: int | None = None) -> dict:  # noqa: ANN001
    """A 4xx answered with exactly the error envelope."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == ENVELOPE_FIELDS, body
    assert body["success"] is False and isinstance(body["error"], str) and body["error"]
    return body


def pairs(memories: list[dict]) -> list[tuple[str, str]]:
    return sorted((m["conversationId"], m["blockId"]) for m in memories)


def message_size(role: str, content: str) -> int:
    return len(role) + len(content.encode())


def ids_size(conversation_id: str, block_id: str = "default") -> int:
    """What a memory's ids are charged, once, when it is created."""
    return len(conversation_id.encode()) + len(block_id.encode())


def name_size(block_id: str, name: str) -> int:
    """What a block registry entry is charged."""
    return len(block_id.encode()) + len(name.encode())


async def recount(database_url: str, workspace: str) -> dict[str, int]:
    """Straight from the tables: bytes of KV entries and of what the memory API stores
    (messages, memories' ids, registry names: `memory`), and the account."""
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from memory_service.storage.memory_tables import memory_block_t, memory_message_t, memory_t
    from memory_service.storage.tables import kv_entry_t, workspace_t

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            ws = (
                await conn.execute(
                    select(workspace_t.c.id, workspace_t.c.used_bytes).where(
                        workspace_t.c.name == workspace
                    )
                )
            ).one()
            kv = await conn.execute(
                select(func.coalesce(func.sum(kv_entry_t.c.size), 0)).where(
                    kv_entry_t.c.workspace_id == ws.id
                )
            )
            mem = await conn.execute(
                select(
                    func.coalesce(func.sum(memory_message_t.c.size), 0),
                    func.count(),
                )
                .select_from(
                    memory_message_t.join(memory_t, memory_t.c.id == memory_message_t.c.memory_id)
                )
                .where(memory_t.c.workspace_id == ws.id)
            )
            mem_bytes, mem_messages = mem.one()
            ids = await conn.execute(
                select(memory_t.c.conversation_id, memory_t.c.block_id).where(
                    memory_t.c.workspace_id == ws.id
                )
            )
            id_bytes = sum(ids_size(r.conversation_id, r.block_id) for r in ids)
            names = await conn.execute(
                select(memory_block_t.c.block_id, memory_block_t.c.name).where(
                    memory_block_t.c.workspace_id == ws.id
                )
            )
            registry_bytes = sum(name_size(r.block_id, r.name) for r in names)
            memory_rows = await conn.execute(
                select(func.coalesce(func.sum(memory_t.c.bytes), 0)).where(
                    memory_t.c.workspace_id == ws.id
                )
            )
            # Messages whose memory is gone (a delete that did not cascade): must never exist.
            orphans = await conn.execute(
                select(func.count()).where(
                    memory_message_t.c.memory_id.not_in(select(memory_t.c.id))
                )
            )
            return {
                "orphan_messages": int(orphans.scalar_one()),
                "used": int(ws.used_bytes),
                "kv": int(kv.scalar_one()),
                "memory": int(mem_bytes) + id_bytes + registry_bytes,
                "message_bytes": int(mem_bytes),
                "id_bytes": id_bytes,
                "registry_bytes": registry_bytes,
                # What deleting every memory would free: messages and ids.
                "memory_rows": int(memory_rows.scalar_one()),
                "messages": int(mem_messages),
            }
    finally:
        await engine.dispose()


async def messages_of(database_url: str, conversation_id: str, block_id: str) -> list[tuple]:
    """(seq, role, content) of one memory's messages, from the table, in seq order."""
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import create_async_engine

    from memory_service.storage.memory_tables import memory_message_t, memory_t

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                select(memory_message_t.c.seq, memory_message_t.c.role, memory_message_t.c.content)
                .select_from(
                    memory_message_t.join(memory_t, memory_t.c.id == memory_message_t.c.memory_id)
                )
                .where(
                    memory_t.c.conversation_id == conversation_id,
                    memory_t.c.block_id == block_id,
                )
                .order_by(memory_message_t.c.seq)
            )
            return [(r.seq, r.role, r.content.decode()) for r in result]
    finally:
        await engine.dispose()
