"""`GET /api/stats`: what the caller's workspace holds, for overviews (the `/ui` explorer)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import QueryParameter

from ..services.workspaces import Principal
from .auth import admit, provide_principal
from .memory import ID_DOC, memory_of


def query(name: str, description: str) -> QueryParameter:
    return QueryParameter(name=name, required=False, description=description)


ConversationId = Annotated[str | None, query("conversationId", ID_DOC)]
LegacyId = Annotated[str | None, query("id", "Legacy alias of conversationId.")]
BlockId = Annotated[str | None, query("blockId", ID_DOC)]
BlockName = Annotated[str | None, query("blockName", "Name from the block registry.")]


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


class WorkspaceStats(msgspec.Struct, rename="camel"):
    success: Literal[True]
    message: str
    workspace: str
    # Memories and the messages they hold: those matching the filter, or all without one.
    memories: int
    messages: int
    # Of the whole workspace, whatever the filter: live KV entries and named blocks.
    kv_keys: int
    named_blocks: int


class StatsController(Controller):
    path = "/api"
    tags = ["workspace"]
    dependencies = {"principal": Provide(provide_principal)}
    guards = [admit]  # the credential, checked before any body is read (http/auth.py)

    @get(
        "/stats",
        operation_id="workspaceStats",
        summary="Counts of the caller's workspace: memories, messages, KV keys, named blocks",
        description="Without a filter, every memory of the workspace and all their messages; "
        "with `conversationId` (or `id`), `blockId` and/or `blockName` (exact, as for get and "
        "delete), only the memories they match: what a delete with that filter would remove. "
        "`kvKeys` (live entries) and `namedBlocks` are always the whole workspace's. Bytes "
        "used and the quota are in `GET /api/usage`.",
    )
    async def stats(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        conversation_id: ConversationId = None,
        legacy_id: LegacyId = None,
        block_id: BlockId = None,
        block_name: BlockName = None,
    ) -> WorkspaceStats:
        flt = None
        if (conversation_id, legacy_id, block_id, block_name) != (None, None, None, None):
            flt = memory_of(request).filter(conversation_id, legacy_id, block_id, block_name)
        counts = await request.app.state.services.stats.counts(principal.workspace_id, flt)
        return WorkspaceStats(
            success=True,
            message=f"{plural(counts.memories, 'memory', 'memories')}, "
            f"{plural(counts.messages, 'message', 'messages')}",
            workspace=principal.workspace,
            memories=counts.memories,
            messages=counts.messages,
            kv_keys=counts.kv_keys,
            named_blocks=counts.named_blocks,
        )
