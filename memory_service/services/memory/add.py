"""An add (SPEC 3.1) as one transaction: lock the account, replay or append, charge, answer.

Every write locks the workspace's account first (storage.kv.lock_account), charges or frees the
bytes of the messages (services.kv.charge), and saves the account in the same transaction: one
quota and one workspace boundary for KV values and memories alike. (On PostgreSQL the same rules
run inside the database, as one function call: pg_add.py, migration 0005.)
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from ...storage import kv as kv_sql
from ...storage import memory as sql
from ...storage.memory import IdempotencyRecord
from ..errors import Conflict, RateLimited
from ..kv import charge
from .results import MemoryOut, MessageOut, memory_out, messages_of


@dataclass(slots=True)
class AddRequest:
    workspace_id: int
    conversation_id: str
    block_id: str
    block_name: str | None
    # (role, content, content as UTF-8, bytes charged)
    messages: list[tuple[str, str, bytes, int]]
    idempotency_key: str | None
    request_hash: str | None
    last_n: int
    keep_system: bool
    now: int
    idempotency_cutoff: int  # records created at or before this have expired
    max_idempotency_keys: int = 10_000  # records a workspace may hold (expired ones swept)

    def sent(self, first: int) -> list[MessageOut]:
        """This add's messages as the client sent them, numbered from seq `first`."""
        return [MessageOut(first + i, m[0], m[1]) for i, m in enumerate(self.messages)]


def add_txn(conn: Connection, req: AddRequest) -> tuple[MemoryOut, bool]:
    """Append the messages; returns (the memory with what this add appended, replayed)."""
    ws = req.workspace_id
    account = kv_sql.lock_account(conn, ws)
    if req.idempotency_key is not None:
        record = sql.idempotency_record(conn, ws, req.idempotency_key)
        if record is not None:
            if record.created_at > req.idempotency_cutoff:
                return _replay(conn, req, record), True
            sql.forget_idempotency(conn, ws, req.idempotency_key)
        _make_room_for_idempotency(conn, req)
    stored = [(role, raw, size) for role, _text, raw, size in req.messages]
    charge(conn, account, sum(m[2] for m in stored), req.now)  # refuses before anything is stored
    appended = sql.append(conn, ws, req.conversation_id, req.block_id, stored, req.now)
    if appended.created:  # a new memory's ids are charged too (a failure rolls it all back)
        charge(conn, account, sql.id_bytes(req.conversation_id, req.block_id), req.now)
    name = appended.block_name
    if req.block_name is not None and req.block_name != name:
        delta = sql.name_bytes(req.block_id, req.block_name) - sql.name_bytes(req.block_id, name)
        charge(conn, account, delta, req.now)
        sql.set_block_name(conn, ws, req.block_id, req.block_name, req.now)
        name = req.block_name
    if req.idempotency_key is not None and req.request_hash is not None:  # set together
        sql.record_idempotency(
            conn,
            ws,
            req.idempotency_key,
            req.request_hash,
            appended,
            len(stored),
            req.now,
        )
    kv_sql.save_account(conn, account)

    first = appended.first_seq
    data = req.sent(first)
    memory = MemoryOut(
        id=appended.memory_id,
        conversation_id=req.conversation_id,
        block_id=req.block_id,
        block_name=name,
        message_count=appended.message_count,
        created_at=appended.created_at,
        updated_at=req.now,
        messages=data,
    )
    _extend(conn, memory, first, first + len(data), req.last_n, req.keep_system)
    return memory, False


def _make_room_for_idempotency(conn: Connection, req: AddRequest) -> None:
    """A workspace remembers at most `max_idempotency_keys` Idempotency-Keys (each one is a row
    kept for the TTL): expired ones go first; with none expired, the add is refused (429) until
    the oldest one expires, rather than kept outside any bound."""
    limit = req.max_idempotency_keys
    ws = req.workspace_id
    if sql.count_idempotency(conn, ws, limit) < limit:
        return
    sql.sweep_workspace_idempotency(conn, ws, req.idempotency_cutoff)
    if sql.count_idempotency(conn, ws, limit) < limit:
        return
    raise keys_exhausted(req, sql.oldest_idempotency(conn, ws))


def keys_exhausted(req: AddRequest, oldest: int | None) -> RateLimited:
    """The 429 of an add that finds `max_idempotency_keys` live records (oldest created then)."""
    limit = req.max_idempotency_keys
    wait = max(1, -(-((oldest or req.now) - req.idempotency_cutoff) // 1000))
    return RateLimited(
        f"this workspace already holds {limit} idempotency keys (MEMORY_MAX_IDEMPOTENCY_KEYS); "
        f"retry in {wait} s, when the oldest expires, or add without Idempotency-Key",
        code="idempotency_keys_exhausted",
        headers={"Retry-After": str(wait)},
    )


def key_reused() -> Conflict:
    return Conflict(
        "Idempotency-Key was already used with a different request; use a new key",
        code="idempotency_key_reused",
    )


def memory_deleted() -> Conflict:
    return Conflict(
        "the add with this Idempotency-Key succeeded, but its memory has been deleted since",
        code="idempotent_memory_deleted",
    )


def _replay(conn: Connection, req: AddRequest, record: IdempotencyRecord) -> MemoryOut:
    """The answer of the add that first used this idempotency key; appends nothing."""
    if record.request_hash != req.request_hash:
        raise key_reused()
    row = sql.memory_by_id(conn, req.workspace_id, record.memory_id)
    if row is None:
        raise memory_deleted()
    first, end = record.first_seq, record.first_seq + record.appended
    memory = memory_out(row, messages_of(sql.message_range(conn, row.id, first, end)), 0)
    _extend(conn, memory, first, end, req.last_n, req.keep_system)
    return memory


def _extend(
    conn: Connection, memory: MemoryOut, first: int, end: int, last_n: int, keep_system: bool
) -> None:
    """Widen an add's answer [first, end) to the last `last_n` messages up to `end`, keep the
    leading system message if asked, and set the cursor to what lies before."""
    start = max(0, min(first, end - last_n))
    if start < first:
        memory.messages[:0] = messages_of(sql.message_range(conn, memory.id, start, first))
    memory.window_start = start
    if keep_system and start > 0:
        memory.messages[:0] = messages_of(sql.message_range(conn, memory.id, 0, 1))[:1]
        if memory.messages[0].role != "system":
            del memory.messages[0]
