"""Counts of what a workspace holds, for its overview (the browser explorer's first page)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from .kv import live
from .memory import Filter
from .memory_tables import memory_block_t, memory_t
from .tables import kv_entry_t

M = memory_t.c


@dataclass(frozen=True, slots=True)
class Counts:
    memories: int
    messages: int
    kv_keys: int
    named_blocks: int


def workspace_counts(conn: Connection, workspace_id: int, flt: Filter | None, now: int) -> Counts:
    """Memories and their messages (those matching `flt`, every one without it), live KV keys
    and named blocks of one workspace, from one snapshot.

    Messages are summed from each memory's own counter, never counted row by row: the cost
    grows with the number of memories, not with the length of their histories. KV keys use the
    same expiry rule as every read, so an expired entry is never counted.
    """
    where = (flt or Filter()).where(workspace_id)
    memories, messages = conn.execute(
        select(func.count(), func.coalesce(func.sum(M.message_count), 0)).where(*where)
    ).one()
    kv_keys = conn.execute(
        select(func.count())
        .select_from(kv_entry_t)
        .where(kv_entry_t.c.workspace_id == workspace_id, live(now))
    ).scalar_one()
    named = conn.execute(
        select(func.count())
        .select_from(memory_block_t)
        .where(memory_block_t.c.workspace_id == workspace_id)
    ).scalar_one()
    return Counts(int(memories), int(messages), int(kv_keys), int(named))
