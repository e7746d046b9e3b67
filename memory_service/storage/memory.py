"""SQL for the memory block API: memories, their messages, the block registry, idempotency.

An append inserts one row per message under the next sequence numbers of its memory, and
advances the memory's counter in the same transaction (under the workspace lock the caller
holds); it never reads or rewrites the history. Sequence numbers are dense (0..next_seq-1,
messages are only ever deleted with their memory), so "the last N messages" is the primary-key
range seq >= next_seq - N: its cost does not depend on the length of the history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import (
    Executable,
    Select,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from .memory_tables import memory_block_t, memory_idempotency_t, memory_message_t, memory_t
from .prepared import first_record, prepared, records

M = memory_t.c
MM = memory_message_t.c
B = memory_block_t.c
I = memory_idempotency_t.c  # noqa: E741

# --- appends -------------------------------------------------------------------------------------

# The registry's name of the block being appended to (RETURNING may hold it: one statement
# fewer per append). Matched on the bound workspace and block, never correlated with the memory
# row: SQLite renders the columns of an UPDATE's own table unqualified inside RETURNING, where
# they bind to memory_block's columns instead, and the subquery then named any workspace's block.
_ROW_BLOCK_NAME = (
    select(B.name)
    .where(B.workspace_id == bindparam("ws"), B.block_id == bindparam("block"))
    .scalar_subquery()
    .label("block_name")
)
# Advance the counter of an existing memory and learn where this append starts.
_BUMP = prepared(
    update(memory_t)
    .where(
        M.workspace_id == bindparam("ws"),
        M.conversation_id == bindparam("conv"),
        M.block_id == bindparam("block"),
    )
    .values(
        next_seq=M.next_seq + bindparam("n"),
        message_count=M.message_count + bindparam("n"),
        bytes=M.bytes + bindparam("size"),
        updated_at=bindparam("now"),
    )
    .returning(M.id, M.next_seq, M.message_count, M.created_at, _ROW_BLOCK_NAME)
)
_CREATE = prepared(
    insert(memory_t)
    .values(
        workspace_id=bindparam("ws"),
        conversation_id=bindparam("conv"),
        block_id=bindparam("block"),
        next_seq=bindparam("n"),
        message_count=bindparam("n"),
        bytes=bindparam("created_size"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
    .returning(M.id)
)
_INSERT_MESSAGES = prepared(
    insert(memory_message_t).values(
        {c: bindparam(c) for c in ("memory_id", "seq", "role", "content", "size", "created_at")}
    )
)


@dataclass(slots=True)
class Appended:
    memory_id: int
    first_seq: int
    message_count: int
    created_at: int
    block_name: str | None  # as registered before this append
    created: bool = False  # this append created the memory


def id_bytes(conversation_id: str, block_id: str) -> int:
    """What a memory's ids cost its workspace's quota (charged once, when it is created)."""
    return len(conversation_id.encode("utf-8", "surrogatepass")) + len(
        block_id.encode("utf-8", "surrogatepass")
    )


def name_bytes(block_id: str, name: str | None) -> int:
    """What a block registry entry costs its workspace's quota (nothing when there is none)."""
    if name is None:
        return 0
    return len(block_id.encode("utf-8", "surrogatepass")) + len(
        name.encode("utf-8", "surrogatepass")
    )


def append(
    conn: Connection,
    workspace_id: int,
    conversation_id: str,
    block_id: str,
    messages: Sequence[tuple[str, bytes, int]],
    now: int,
) -> Appended:
    """Append (role, content, size) messages in order; the caller holds the workspace lock.
    A memory created here is charged its ids too (in its `bytes`, freed with it)."""
    n = len(messages)
    size = sum(m[2] for m in messages)
    params = {
        "ws": workspace_id,
        "conv": conversation_id,
        "block": block_id,
        "n": n,
        "size": size,
        "created_size": size + id_bytes(conversation_id, block_id),
        "now": now,
    }
    row = conn.execute(_BUMP, params).first()
    if row is None:
        # (SQLite renders a correlated subquery in INSERT ... RETURNING unqualified: ask apart.)
        memory_id = conn.execute(_CREATE, params).scalar_one()
        appended = Appended(
            memory_id, 0, n, now, block_name(conn, workspace_id, block_id), created=True
        )
    else:
        appended = Appended(
            row.id, row.next_seq - n, row.message_count, row.created_at, row.block_name
        )
    first = appended.first_seq
    rows = [
        {
            "memory_id": appended.memory_id,
            "seq": first + i,
            "role": role,
            "content": content,
            "size": msg_size,
            "created_at": now,
        }
        for i, (role, content, msg_size) in enumerate(messages)
    ]
    # One message (the common add) as a plain execute: executemany costs more for one row.
    conn.execute(_INSERT_MESSAGES, rows[0] if n == 1 else rows)
    return appended


# PostgreSQL: one message appended by one function call (migration 0004), alone or with others
# arriving at the same moment (storage/pg_batch.py).
_PG_ADD = text(
    "SELECT * FROM ms_memory_add(:ws, :conv, :block, :role, :content, :size, :ids, :now)"
)
_PG_ADD_MANY = text(
    "SELECT * FROM ms_memory_add_many(:ws, :conv, :block, :role, :content, :size, :ids, :now)"
)


class PgAdded(NamedTuple):
    """What ms_memory_add answers (migration 0004): `status` is ok, quota or gone."""

    status: str
    memory_id: int | None
    first_seq: int | None
    message_count: int | None
    created_at: int | None
    block_name: str | None
    created: bool | None
    used: int | None
    quota: int | None
    delta: int | None


def pg_add(conn: Connection, params: dict) -> PgAdded:
    return PgAdded._make(conn.execute(_PG_ADD, params).one())


def pg_add_many(conn: Connection, many: list[dict]) -> list[PgAdded]:
    """pg_add for each of `many`, in order, in one statement."""
    columns = {name: [p[name] for p in many] for name in many[0]}
    return [PgAdded._make(r) for r in conn.execute(_PG_ADD_MANY, columns)]


# --- the block registry --------------------------------------------------------------------------

_BLOCK_NAME = prepared(
    select(B.name).where(B.workspace_id == bindparam("ws"), B.block_id == bindparam("block"))
)
_DELETE_BLOCK = delete(memory_block_t).where(
    B.workspace_id == bindparam("ws"), B.block_id == bindparam("block")
)


def _upsert_block(insert_fn: Callable[[Table], SqliteInsert | PgInsert]) -> Executable:
    stmt = insert_fn(memory_block_t).values(
        workspace_id=bindparam("ws"),
        block_id=bindparam("block"),
        name=bindparam("name"),
        updated_at=bindparam("now"),
    )
    return stmt.on_conflict_do_update(
        index_elements=[B.workspace_id, B.block_id],
        set_={"name": stmt.excluded.name, "updated_at": stmt.excluded.updated_at},
    )


_UPSERT_BLOCK = {
    "sqlite": prepared(_upsert_block(sqlite_insert)),
    "postgresql": _upsert_block(pg_insert),
}


def block_name(conn: Connection, workspace_id: int, block_id: str) -> str | None:
    return conn.execute(_BLOCK_NAME, {"ws": workspace_id, "block": block_id}).scalar()


def set_block_name(
    conn: Connection, workspace_id: int, block_id: str, name: str | None, now: int
) -> None:
    """Name a block, or forget its name (None)."""
    params = {"ws": workspace_id, "block": block_id, "name": name, "now": now}
    if name is None:
        conn.execute(_DELETE_BLOCK, params)
    else:
        conn.execute(_UPSERT_BLOCK[conn.dialect.name], params)


_BLOCK_COUNT = select(func.count()).select_from(
    select(B.block_id).where(B.workspace_id == bindparam("ws")).limit(bindparam("cap")).subquery()
)
_IDEM_COUNT = select(func.count()).select_from(
    select(I.key).where(I.workspace_id == bindparam("ws")).limit(bindparam("cap")).subquery()
)


def count_blocks(conn: Connection, workspace_id: int, cap: int) -> int:
    """Named blocks of the workspace, counted up to `cap` (the cost is bounded by it)."""
    return int(conn.execute(_BLOCK_COUNT, {"ws": workspace_id, "cap": cap}).scalar_one())


def count_idempotency(conn: Connection, workspace_id: int, cap: int) -> int:
    """Idempotency records of the workspace (expired ones too), counted up to `cap`."""
    return int(conn.execute(_IDEM_COUNT, {"ws": workspace_id, "cap": cap}).scalar_one())


def oldest_idempotency(conn: Connection, workspace_id: int) -> int | None:
    return conn.execute(
        select(func.min(I.created_at)).where(I.workspace_id == workspace_id)
    ).scalar()


def sweep_workspace_idempotency(conn: Connection, workspace_id: int, cutoff: int) -> int:
    return conn.execute(
        delete(memory_idempotency_t).where(I.workspace_id == workspace_id, I.created_at <= cutoff)
    ).rowcount


class BlockRecord(NamedTuple):
    """A block registry entry."""

    block_id: str
    name: str | None
    updated_at: int


def list_blocks(
    conn: Connection, workspace_id: int, after: str | None, limit: int
) -> list[BlockRecord]:
    stmt = select(B.block_id, B.name, B.updated_at).where(B.workspace_id == workspace_id)
    if after is not None:
        stmt = stmt.where(B.block_id > after)
    return [BlockRecord._make(r) for r in conn.execute(stmt.order_by(B.block_id).limit(limit))]


class ConversationRecord(NamedTuple):
    conversation_id: str
    blocks: int
    messages: int
    updated_at: int


def list_conversations(
    conn: Connection,
    workspace_id: int,
    block_id: str | None,
    prefix: str | None,
    after: str | None,
    limit: int,
) -> list[ConversationRecord]:
    """The workspace's conversation ids after `after`, in order, each with the number of its
    memories (blocks), their messages and their last change; only memories of `block_id` when
    given, only ids starting with `prefix` (compared as characters: `%` and `_` are ordinary,
    never LIKE, which SQLite also folds in case)."""
    stmt = select(
        M.conversation_id, func.count(), func.sum(M.message_count), func.max(M.updated_at)
    ).where(M.workspace_id == workspace_id)
    if block_id is not None:
        stmt = stmt.where(M.block_id == block_id)
    if prefix:
        stmt = stmt.where(func.substr(M.conversation_id, 1, len(prefix)) == prefix)
    if after is not None:
        stmt = stmt.where(M.conversation_id > after)
    stmt = stmt.group_by(M.conversation_id).order_by(M.conversation_id).limit(limit)
    return [
        ConversationRecord(conv, int(blocks), int(messages), int(updated))
        for conv, blocks, messages, updated in conn.execute(stmt)
    ]


# --- idempotency ---------------------------------------------------------------------------------


class IdempotencyRecord(NamedTuple):
    """What an add with an Idempotency-Key appended, kept to answer its retries."""

    memory_id: int
    first_seq: int
    appended: int  # messages (the column `count`, a name tuples already use)
    request_hash: str | None
    created_at: int


_IDEM_GET = prepared(
    select(I.memory_id, I.first_seq, I.count.label("appended"), I.request_hash, I.created_at).where(
        I.workspace_id == bindparam("ws"), I.key == bindparam("key")
    ),
    IdempotencyRecord,
)
_IDEM_DELETE = delete(memory_idempotency_t).where(
    I.workspace_id == bindparam("ws"), I.key == bindparam("key")
)
_IDEM_INSERT = prepared(
    insert(memory_idempotency_t).values(
        {
            c: bindparam(c)
            for c in (
                "workspace_id",
                "key",
                "memory_id",
                "first_seq",
                "count",
                "request_hash",
                "created_at",
            )
        }
    )
)
_IDEM_SWEEP = delete(memory_idempotency_t).where(I.created_at <= bindparam("cutoff"))


def idempotency_record(conn: Connection, workspace_id: int, key: str) -> IdempotencyRecord | None:
    return first_record(conn, _IDEM_GET, {"ws": workspace_id, "key": key})


def forget_idempotency(conn: Connection, workspace_id: int, key: str) -> None:
    conn.execute(_IDEM_DELETE, {"ws": workspace_id, "key": key})


def record_idempotency(
    conn: Connection,
    workspace_id: int,
    key: str,
    request_hash: str,
    appended: Appended,
    count: int,
    now: int,
) -> None:
    conn.execute(
        _IDEM_INSERT,
        {
            "workspace_id": workspace_id,
            "key": key,
            "memory_id": appended.memory_id,
            "first_seq": appended.first_seq,
            "count": count,
            "request_hash": request_hash,
            "created_at": now,
        },
    )


def sweep_idempotency(conn: Connection, cutoff: int) -> int:
    """Delete idempotency records created at or before `cutoff`; returns how many."""
    return conn.execute(_IDEM_SWEEP, {"cutoff": cutoff}).rowcount


# --- reads ---------------------------------------------------------------------------------------


class MemoryRecord(NamedTuple):
    """A memory as reads give it: its row and its block's registered name."""

    id: int
    conversation_id: str
    block_id: str
    next_seq: int
    message_count: int
    created_at: int
    updated_at: int
    block_name: str | None


class MessageRecord(NamedTuple):
    memory_id: int
    seq: int
    role: str
    content: bytes | None  # None only from a capped read: larger than the cap


_MEMORY_COLUMNS = (
    M.id,
    M.conversation_id,
    M.block_id,
    M.next_seq,
    M.message_count,
    M.created_at,
    M.updated_at,
)
# The registry's name rides along with every memory (null when the block has none).
_NAMED = memory_t.outerjoin(
    memory_block_t, and_(B.workspace_id == M.workspace_id, B.block_id == M.block_id)
)


@dataclass(frozen=True, slots=True)
class Filter:
    """Which memories: any combination of the three (None = any)."""

    conversation_id: str | None = None
    block_id: str | None = None
    block_name: str | None = None

    def where(self, workspace_id: int) -> list:
        conds = [M.workspace_id == workspace_id]
        if self.conversation_id is not None:
            conds.append(M.conversation_id == self.conversation_id)
        if self.block_id is not None:
            conds.append(M.block_id == self.block_id)
        if self.block_name is not None:
            conds.append(
                M.block_id.in_(
                    select(B.block_id).where(
                        B.workspace_id == workspace_id, B.name == self.block_name
                    )
                )
            )
        return conds


def _page_statement(by_conversation: bool, by_block: bool, by_name: bool) -> Select:
    conds = [M.workspace_id == bindparam("ws")]
    if by_conversation:
        conds.append(M.conversation_id == bindparam("conv"))
    if by_block:
        conds.append(M.block_id == bindparam("block"))
    if by_name:
        named = select(B.block_id).where(
            B.workspace_id == bindparam("ws"), B.name == bindparam("name")
        )
        conds.append(M.block_id.in_(named))
    # One conversation has few memories: find them by the unique (workspace, conversation,
    # block) index and sort, rather than walk every memory of the workspace in id order
    # (`id + 0` keeps SQLite's planner from choosing the latter).
    order = M.id + literal_column("0") if by_conversation else M.id
    return (
        select(*_MEMORY_COLUMNS, B.name.label("block_name"))
        .select_from(_NAMED)
        .where(*conds, order > bindparam("after"))
        .order_by(order)
        .limit(bindparam("limit"))
        # SQLite's LIMIT needs an OFFSET; a bound one keeps the statement free of literal
        # values, as a prepared statement must be (storage/prepared.py).
        .offset(bindparam("offset"))
    )


# Built once per combination of filters (building a statement costs more than running it).
_PAGES = {
    (c, b, n): prepared(_page_statement(c, b, n), MemoryRecord)
    for c in (False, True)
    for b in (False, True)
    for n in (False, True)
}


def memory_page(
    conn: Connection, workspace_id: int, flt: Filter, after: int, limit: int
) -> list[MemoryRecord]:
    """Memories with id > after, in id order, each with its block's registered name."""
    stmt = _PAGES[
        (flt.conversation_id is not None, flt.block_id is not None, flt.block_name is not None)
    ]
    params = {
        "ws": workspace_id,
        "conv": flt.conversation_id,
        "block": flt.block_id,
        "name": flt.block_name,
        "after": after,
        "limit": limit,
        "offset": 0,
    }
    return records(conn, stmt, params)


_MEMORY_BY_PAIR = prepared(
    select(*_MEMORY_COLUMNS, B.name.label("block_name"))
    .select_from(_NAMED)
    .where(
        M.workspace_id == bindparam("ws"),
        M.conversation_id == bindparam("conv"),
        M.block_id == bindparam("block"),
    ),
    MemoryRecord,
)
_MEMORY_BY_ID = prepared(
    select(*_MEMORY_COLUMNS, B.name.label("block_name"))
    .select_from(_NAMED)
    .where(M.workspace_id == bindparam("ws"), M.id == bindparam("id")),
    MemoryRecord,
)


def memory_by_pair(
    conn: Connection, workspace_id: int, conversation_id: str, block_id: str
) -> MemoryRecord | None:
    params = {"ws": workspace_id, "conv": conversation_id, "block": block_id}
    return first_record(conn, _MEMORY_BY_PAIR, params)


def memory_by_id(conn: Connection, workspace_id: int, memory_id: int) -> MemoryRecord | None:
    return first_record(conn, _MEMORY_BY_ID, {"ws": workspace_id, "id": memory_id})


# The newest `n` messages of each listed memory, in one query: a primary-key range per memory.
# `content` is null for a message larger than :cap bytes, so that a read on the event loop's
# thread never fetches a large one (the caller reads again in a thread).
_CAPPED_CONTENT = case((MM.size <= bindparam("cap"), MM.content), else_=None).label("content")
_TAILS = (
    select(MM.memory_id, MM.seq, MM.role, _CAPPED_CONTENT)
    .select_from(
        memory_t.join(
            memory_message_t,
            and_(MM.memory_id == M.id, MM.seq >= M.next_seq - bindparam("n")),
        )
    )
    .where(M.id.in_(bindparam("ids", expanding=True)))
    .order_by(MM.memory_id, MM.seq)
)
# The same for one memory, as a prepared statement (SQLite, where a statement is a function call
# rather than a round trip: one per memory costs less than compiling the IN list of _TAILS).
_TAIL = prepared(
    select(MM.memory_id, MM.seq, MM.role, _CAPPED_CONTENT)
    .where(
        MM.memory_id == bindparam("id"),
        MM.seq
        >= select(M.next_seq - bindparam("n")).where(M.id == bindparam("id")).scalar_subquery(),
    )
    .order_by(MM.seq),
    MessageRecord,
)
# The first message of each listed memory when it is a system message (for keepSystem).
_SYSTEM_HEADS = select(MM.memory_id, MM.seq, MM.role, _CAPPED_CONTENT).where(
    MM.memory_id.in_(bindparam("ids", expanding=True)), MM.seq == 0, MM.role == "system"
)
_SYSTEM_HEAD = prepared(
    select(MM.memory_id, MM.seq, MM.role, _CAPPED_CONTENT).where(
        MM.memory_id == bindparam("id"),
        MM.seq == literal_column("0"),
        MM.role == literal_column("'system'"),
    ),
    MessageRecord,
)
_RANGE = prepared(
    select(MM.memory_id, MM.seq, MM.role, MM.content)
    .where(
        MM.memory_id == bindparam("id"),
        MM.seq >= bindparam("lo"),
        MM.seq < bindparam("hi"),
    )
    .order_by(MM.seq),
    MessageRecord,
)


NO_CAP = 2**31 - 1  # (size is an INTEGER column)


def _each_memory(
    conn: Connection, stmt: Executable, memory_ids: list[int], params: dict
) -> list[MessageRecord]:
    """A one-memory prepared statement run for each memory in id order, as the IN-list
    statements order their rows."""
    rows: list[MessageRecord] = []
    for memory_id in sorted(memory_ids):
        rows.extend(records(conn, stmt, {**params, "id": memory_id}))
    return rows


def tails(
    conn: Connection, memory_ids: list[int], n: int, cap: int = NO_CAP
) -> list[MessageRecord]:
    """The last `n` messages of each memory, ordered by (memory_id, seq); `content` is None
    for messages of more than `cap` bytes."""
    if not memory_ids or n <= 0:
        return []
    if conn.dialect.name == "sqlite":
        return _each_memory(conn, _TAIL, memory_ids, {"n": n, "cap": cap})
    found = conn.execute(_TAILS, {"ids": memory_ids, "n": n, "cap": cap})
    return [MessageRecord._make(r) for r in found]


def system_heads(conn: Connection, memory_ids: list[int], cap: int = NO_CAP) -> list[MessageRecord]:
    if not memory_ids:
        return []
    if conn.dialect.name == "sqlite":  # as in tails()
        return _each_memory(conn, _SYSTEM_HEAD, memory_ids, {"cap": cap})
    found = conn.execute(_SYSTEM_HEADS, {"ids": memory_ids, "cap": cap})
    return [MessageRecord._make(r) for r in found]


def message_range(conn: Connection, memory_id: int, lo: int, hi: int) -> list[MessageRecord]:
    """Messages with lo <= seq < hi, in order."""
    return records(conn, _RANGE, {"id": memory_id, "lo": lo, "hi": hi})


# --- deletes -------------------------------------------------------------------------------------


def count_matching(conn: Connection, workspace_id: int, flt: Filter) -> tuple[int, int]:
    """(memories, bytes charged for their messages) matching the filter."""
    row = conn.execute(
        select(func.count(), func.coalesce(func.sum(M.bytes), 0)).where(*flt.where(workspace_id))
    ).one()
    return int(row[0]), int(row[1])


def delete_matching(conn: Connection, workspace_id: int, flt: Filter) -> int:
    """Delete the matching memories; their messages go with them (ON DELETE CASCADE)."""
    return conn.execute(delete(memory_t).where(*flt.where(workspace_id))).rowcount


def stored_bytes(conn: Connection, workspace_id: int) -> int:
    """Recount of the bytes of memory messages a workspace stores (for checks)."""
    result = conn.execute(
        select(func.coalesce(func.sum(MM.size), 0))
        .select_from(memory_message_t.join(memory_t, M.id == MM.memory_id))
        .where(M.workspace_id == workspace_id)
    )
    return int(result.scalar_one())
