"""The common add on PostgreSQL: one server-side function call, batched (migration 0004)."""

from __future__ import annotations

from ...errors import WorkspaceGone
from ...storage import memory as sql
from ...storage.pg_batch import PgBatcher
from ..errors import QuotaExceeded
from .add import AddRequest
from .results import MemoryOut, MessageOut


def one_plain_message(req: AddRequest) -> bool:
    """The add ms_memory_add makes (PostgreSQL): one message, no Idempotency-Key, no block name,
    no window to widen (so nothing to read back). Every other add runs add_txn."""
    return (
        len(req.messages) == 1
        and req.idempotency_key is None
        and req.block_name is None
        and req.last_n == 0
        and not req.keep_system
    )


async def pg_add(adds: PgBatcher, req: AddRequest) -> MemoryOut:
    """add_txn for `one_plain_message` on PostgreSQL, as one function call (migration 0004)."""
    role, text_, raw, size = req.messages[0]
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
    row = await adds.submit(params)
    if row.status == "quota":
        raise QuotaExceeded(
            f"quota exceeded: this write needs {row.delta} more bytes; "
            f"{row.used} of {row.quota} bytes are used",
        )
    if row.status == "gone":
        raise WorkspaceGone(req.workspace_id)
    if row.status != "ok":
        raise RuntimeError(f"ms_memory_add answered {row.status!r}")
    first = row.first_seq
    return MemoryOut(
        id=row.memory_id,
        conversation_id=req.conversation_id,
        block_id=req.block_id,
        block_name=row.block_name,
        message_count=row.message_count,
        created_at=row.created_at,
        updated_at=req.now,
        messages=[MessageOut(first, role, text_)],
        window_start=first,  # as _extend sets it for last_n 0: nothing before is included
    )
