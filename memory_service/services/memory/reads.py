"""Reads as transactions: a page of memories with their windows, and older messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy.engine import Connection

from ...storage import memory as sql
from ...storage.memory import Filter, MemoryRecord
from ..errors import Conflict, NotFound
from .results import MemoryOut, MessageOut, MessagePage, Window, memory_out, message_of, messages_of

# A read of at most this many messages, none larger than INLINE_MESSAGE_BYTES, runs on the event
# loop's thread (SQLite): less than the hop to a reader thread costs. Larger reads go to threads.
INLINE_MESSAGES = 100
INLINE_MESSAGE_BYTES = 16 * 1024


def _snapshot(conn: Connection) -> None:
    """Make the statements of a read see one snapshot (PostgreSQL; SQLite reads already do)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def _pick(
    rows: Sequence[MemoryRecord], limit: int, window: Window, budget: int
) -> tuple[list[MemoryRecord], bool, int]:
    """The memories of a page: at most `limit`, and no more messages than `budget` once one is
    in; returns (picked, more to come, messages in their windows)."""
    more = len(rows) > limit
    picked: list[MemoryRecord] = []
    total = 0
    for row in rows[:limit]:
        size = min(row.message_count, window.size)
        if picked and total + size > budget:
            more = True
            break
        picked.append(row)
        total += size
    return picked, more, total


class PageRead(NamedTuple):
    rows: list[MemoryRecord]  # what the page query found
    memories: list[MemoryOut]
    next_after: int | None  # the id to continue after, or None


def read_page_txn(
    conn: Connection,
    workspace_id: int,
    flt: Filter,
    after: int,
    limit: int,
    window: Window,
    budget: int,
    inline: bool = False,
) -> PageRead | None:
    """A page of memories (id > after, in id order) with their windows of messages, in two
    queries whatever the page's size.

    `inline`: give up (return None) rather than read more than a small read may.
    """
    _snapshot(conn)
    rows = sql.memory_page(conn, workspace_id, flt, after, limit + 1)
    picked, more, total = _pick(rows, limit, window, budget)
    if not picked:
        return PageRead(rows, [], None)
    if inline and total + (len(picked) if window.keep_system else 0) > INLINE_MESSAGES:
        return None
    cap = INLINE_MESSAGE_BYTES if inline else sql.NO_CAP
    by_id: dict[int, list[MessageOut]] = {row.id: [] for row in picked}
    found = sql.tails(conn, list(by_id), window.size, cap)
    starts = {row.id: max(0, row.next_seq - window.size) for row in picked}
    heads = []
    if window.keep_system:
        heads = sql.system_heads(conn, [i for i, start in starts.items() if start > 0], cap)
    if inline and any(r.content is None for r in (*found, *heads)):  # a large one: in a thread
        return None
    for r in found:
        by_id[r.memory_id].append(message_of(r))
    for r in heads:
        by_id[r.memory_id].insert(0, message_of(r))
    memories = [memory_out(row, by_id[row.id], starts[row.id]) for row in picked]
    return PageRead(rows, memories, picked[-1].id if more else None)


def messages_txn(
    conn: Connection,
    workspace_id: int,
    conversation_id: str,
    block_id: str,
    cursor: tuple[int, int] | None,
    limit: int,
) -> MessagePage:
    """The `limit` messages just before the cursor (the newest without one), in order."""
    _snapshot(conn)
    row = sql.memory_by_pair(conn, workspace_id, conversation_id, block_id)
    if row is None:
        raise NotFound("memory not found", code="memory_not_found")
    end = row.next_seq
    if cursor is not None:
        memory_id, before = cursor
        if memory_id != row.id:
            raise Conflict(
                "cursor belongs to a memory that has been deleted since (this one is newer)",
                code="stale_cursor",
            )
        end = min(before, end)
    start = max(0, end - limit)
    memory = memory_out(row, messages_of(sql.message_range(conn, row.id, start, end)), start)
    return MessagePage(memory)
