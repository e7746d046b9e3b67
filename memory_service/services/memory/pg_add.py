"""Memory writes on PostgreSQL: each one server-side function call, so the workspace lock is held
for one round trip (migrations 0004 and 0005). The rules are those of `add_txn`, `delete_txn` and
`set_block_txn`, decided inside the database; this module turns their answers into the same
results and errors. SQLite runs the Python transactions.
"""

from __future__ import annotations

from ...errors import WorkspaceGone
from ...storage import memory as sql
from ...storage import pg_writes
from ...storage.database import Database
from ...storage.memory import Filter, PgAdded
from ...storage.pg_batch import PgBatcher
from ...storage.pg_writes import Appended, Charged
from ..errors import QuotaExceeded
from .add import AddRequest, key_reused, keys_exhausted, memory_deleted
from .results import MemoryOut, MessageOut


def one_plain_message(req: AddRequest) -> bool:
    """The add ms_memory_add makes (PostgreSQL): one message, no Idempotency-Key, no block name,
    no window to widen (so nothing to read back). Every other add is ms_memory_append's."""
    return (
        len(req.messages) == 1
        and req.idempotency_key is None
        and req.block_name is None
        and req.last_n == 0
        and not req.keep_system
    )


def _quota_refused(row: PgAdded | Appended | Charged) -> QuotaExceeded:
    # charge()'s message, with the figures the function decided on.
    return QuotaExceeded(
        f"quota exceeded: this write needs {row.delta} more bytes; "
        f"{row.used} of {row.quota} bytes are used",
    )


def _refusal(row: PgAdded | Appended, req: AddRequest) -> Exception:
    if row.status == "quota":
        return _quota_refused(row)
    if row.status == "gone":
        return WorkspaceGone(req.workspace_id)
    if row.status == "exhausted" and isinstance(row, Appended):  # (only appends take keys)
        return keys_exhausted(req, row.oldest)
    if row.status == "reused":
        return key_reused()
    if row.status == "deleted":
        return memory_deleted()
    return RuntimeError(f"memory write function answered {row.status!r}")


class PgMemoryWrites:
    """The memory writes of one service on PostgreSQL; adds arriving together share a statement
    (storage/pg_batch.py): plain ones (ms_memory_add) apart from the others (ms_memory_append)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._plain = PgBatcher(db, sql.pg_add, sql.pg_add_many)
        self._appends = PgBatcher(db, pg_writes.append, pg_writes.append_many)

    async def add(self, req: AddRequest) -> tuple[MemoryOut, bool]:
        if one_plain_message(req):
            return await self._add_plain(req), False
        return await self._append(req)

    async def _add_plain(self, req: AddRequest) -> MemoryOut:
        """add_txn for `one_plain_message`, as one ms_memory_add call (migration 0004)."""
        role, _text, raw, size = req.messages[0]
        params = {
            "ws": req.workspace_id,
            "conv": req.conversation_id,
            "block": req.block_id,
            "role": role,
            "content": raw,
            "size": size,
            "ids": sql.id_bytes(req.conversation_id, req.block_id),
            "now": req.now,
        }
        row = await self._plain.submit(params)
        if row.status != "ok":
            raise _refusal(row, req)
        first = row.first_seq
        return MemoryOut(
            id=row.memory_id,
            conversation_id=req.conversation_id,
            block_id=req.block_id,
            block_name=row.block_name,
            message_count=row.message_count,
            created_at=row.created_at,
            updated_at=req.now,
            messages=req.sent(first),
            window_start=first,  # as _extend sets it for last_n 0: nothing before is included
        )

    async def _append(self, req: AddRequest) -> tuple[MemoryOut, bool]:
        """add_txn for any add, as one ms_memory_append call (migration 0005): replay, append,
        charge, name the block, record the key, and read the answer's window."""
        params = {
            "ws": req.workspace_id,
            "conv": req.conversation_id,
            "block": req.block_id,
            "name": req.block_name,
            "name_bytes": sql.name_bytes(req.block_id, req.block_name),
            "roles": [m[0] for m in req.messages],
            "contents": [m[2] for m in req.messages],
            "sizes": [m[3] for m in req.messages],
            "ids": sql.id_bytes(req.conversation_id, req.block_id),
            "key": req.idempotency_key,
            "hash": req.request_hash,
            "cutoff": req.idempotency_cutoff,
            "max_keys": req.max_idempotency_keys,
            "last_n": req.last_n,
            "keep_system": req.keep_system,
            "now": req.now,
        }
        row = await self._appends.submit(params)
        if row.status not in ("ok", "replay"):
            raise _refusal(row, req)
        read = [
            MessageOut(seq, role, content.decode("utf-8"))
            for seq, role, content in zip(
                row.seqs or (), row.roles or (), row.contents or (), strict=True
            )
        ]
        replayed = row.status == "replay"
        if not replayed:  # the appended messages follow what was read, as the client sent them
            assert row.first_seq is not None  # (set when the add appended)
            read += req.sent(row.first_seq)
        memory = MemoryOut(
            id=row.memory_id,
            conversation_id=req.conversation_id,  # a replay's: the same, the request hash says
            block_id=req.block_id,
            block_name=row.block_name,
            message_count=row.message_count,
            created_at=row.created_at,
            updated_at=row.updated_at,
            messages=read,
            window_start=row.window_start,
        )
        return memory, replayed

    async def delete(self, workspace_id: int, flt: Filter) -> tuple[int, int]:
        """delete_txn as one ms_memory_delete call: (memories deleted, bytes freed)."""
        params = {
            "ws": workspace_id,
            "conv": flt.conversation_id,
            "block": flt.block_id,
            "name": flt.block_name,
        }
        row = await self.db.write_statement(pg_writes.delete_memories, params)
        if row.status == "gone":
            raise WorkspaceGone(workspace_id)
        if row.status != "ok":
            raise RuntimeError(f"ms_memory_delete answered {row.status!r}")
        return int(row.deleted or 0), int(row.freed or 0)

    async def set_block(self, workspace_id: int, block_id: str, name: str | None, now: int) -> None:
        """set_block_txn as one ms_block_set call."""
        params = {
            "ws": workspace_id,
            "block": block_id,
            "name": name,
            "name_bytes": sql.name_bytes(block_id, name),
            "now": now,
        }
        row = await self.db.write_statement(pg_writes.set_block, params)
        if row.status == "quota":
            raise _quota_refused(row)
        if row.status == "gone":
            raise WorkspaceGone(workspace_id)
        if row.status != "ok":
            raise RuntimeError(f"ms_block_set answered {row.status!r}")
