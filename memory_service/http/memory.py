"""Memory block HTTP API (SPEC 3): add, get, getAll, delete, message pages, block registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.serialization import encode_json

from ..clock import iso
from ..services.container import Services
from ..services.memory import MemoryService, check_idempotency_key
from ..services.memory.read_cache import Page
from ..services.shapes import found, memory_item, message_out
from ..services.workspaces import Principal
from .auth import admit, provide_principal
from .memory_schemas import (
    ConversationItem,
    ConversationList,
    MemoryAddBody,
    MemoryAdded,
    MemoryBlockItem,
    MemoryBlockList,
    MemoryBlockName,
    MemoryBlockOne,
    MemoryDeleted,
    MemoryList,
    MemoryMessages,
)
from .paths import path_rest
from .schemas import count

BLOCKS_PREFIX = "/api/memory/blocks/"
ID_DOC = "1-256 characters, any Unicode but control characters; matched exactly."

ConversationId = Annotated[
    str | None, QueryParameter(name="conversationId", required=False, description=ID_DOC)
]
LegacyId = Annotated[
    str | None,
    QueryParameter(
        name="id",
        required=False,
        description="Deprecated alias of conversationId; if both are given they must agree.",
    ),
]
BlockId = Annotated[str | None, QueryParameter(name="blockId", required=False, description=ID_DOC)]
BlockName = Annotated[
    str | None,
    QueryParameter(name="blockName", required=False, description="Name from the block registry."),
]
Limit = Annotated[
    int | None,
    QueryParameter(
        required=False,
        description="Memories per page (default 100, max 1000; above the maximum is a 400).",
    ),
]
Cursor = Annotated[
    str | None, QueryParameter(required=False, description="nextCursor of the previous page.")
]
LastN = Annotated[
    int | None,
    QueryParameter(
        name="lastN",
        required=False,
        description="Only the last N messages of each memory (0 to 1000); without it, up to "
        "1000 (one message page) and a dataCursor for the rest.",
    ),
]
KeepSystem = Annotated[
    bool,
    QueryParameter(
        name="keepSystem",
        required=False,
        description="With a window: keep the memory's first message too if it is a system one.",
    ),
]


def memory_of(request: Request) -> MemoryService:
    services: Services = request.app.state.services
    return services.memory


def block_from_path(request: Request) -> str:
    """The block id exactly as sent ('/' is ordinary)."""
    return path_rest(request.scope, BLOCKS_PREFIX, "blockId", "invalid_id")


def memory_list(page: Page) -> MemoryList:
    """The answer to a page read: one shape for get and getAll."""
    return MemoryList(
        success=True,
        memories=[memory_item(m) for m in page.memories],
        message=found(len(page.memories)),
        next_cursor=page.next_cursor,
    )


def page_answer(page: Page) -> bytes:
    """`memory_list(page)` as JSON, rendered once per page: a page served again from the read
    cache (services/memory/read_cache.py) is answered with the same bytes."""
    if page.answer is None:
        page.answer = encode_json(memory_list(page))
    return page.answer


@dataclass(slots=True)
class MemoryQuery:
    """memoryGet's query parameters."""

    conversation_id: str | None = None
    legacy_id: str | None = None
    block_id: str | None = None
    block_name: str | None = None
    limit: int | None = None
    cursor: str | None = None
    last_n: int | None = None
    keep_system: bool = False


async def get_page(services: Services, principal: Principal, q: MemoryQuery) -> Page:
    """memoryGet's page: the one implementation behind both `MemoryController.get_memories`
    and the fast path (http/memory_get.py)."""
    memory = services.memory
    return await memory.get_page(
        principal.workspace_id,
        memory.filter(q.conversation_id, q.legacy_id, q.block_id, q.block_name),
        limit=q.limit,
        cursor=q.cursor,
        last_n=q.last_n,
        keep_system=q.keep_system,
    )


async def add_answer(
    services: Services, principal: Principal, data: MemoryAddBody, idempotency_key: str | None
) -> MemoryAdded:
    """memoryAdd's answer: the one implementation behind both `MemoryController.add` and the
    fast path (http/memory_add.py)."""
    if idempotency_key is not None:  # before anything else, as it always was
        check_idempotency_key(idempotency_key)
    memory, replayed = await services.memory.add(
        principal.workspace_id,
        conversation_id=data.conversation_id,
        legacy_id=data.id,
        block_id=data.block_id,
        block_name=data.block_name,
        role=data.role,
        content=data.content,
        messages=data.messages,
        last_n=data.last_n,
        keep_system=data.keep_system,
        idempotency_key=idempotency_key,
    )
    if replayed:
        message = "Already added with this Idempotency-Key; nothing appended"
    else:
        n = 1 if data.messages is None else len(data.messages)
        message = f"Added {n} message{'' if n == 1 else 's'}"
    return MemoryAdded(
        success=True, memories=[memory_item(memory)], message=message, replayed=replayed
    )


class MemoryController(Controller):
    path = "/api/memory"
    tags = ["memory"]
    # One dependency only (several cost an anyio task group per request); the service is
    # reached through app state.
    dependencies = {"principal": Provide(provide_principal)}
    guards = [admit]  # the credential, checked before any body is read (http/auth.py)

    @post(
        "",
        operation_id="memoryAdd",
        status_code=200,
        summary="Append a message (or a batch) to a memory, creating it if new",
        description="Appends atomically, in order, each message exactly once. The answer holds "
        "the memory with the messages this add appended in `data` (`lastN` asks for more "
        "history) and its `messageCount`. A retry with the same `Idempotency-Key` (kept 24 h) "
        "appends nothing and answers the same. Over the workspace quota: 413, nothing stored.",
    )
    async def add(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        data: JSONBody[MemoryAddBody],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key",
                required=False,
                description="Makes a retried add append nothing new (1-255 ASCII characters).",
            ),
        ] = None,
    ) -> MemoryAdded:
        return await add_answer(request.app.state.services, principal, data, idempotency_key)

    @get(
        "",
        operation_id="memoryGet",
        summary="Memories by conversationId (or id), blockId, blockName, or any combination",
        description="At least one filter. Paginated in memory-id order (`limit`, `cursor`, "
        "`nextCursor`). Each memory carries its whole `data` when it fits one message page "
        "(1000), else its newest page and a `dataCursor`.",
    )
    async def get_memories(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        conversation_id: ConversationId = None,
        legacy_id: LegacyId = None,
        block_id: BlockId = None,
        block_name: BlockName = None,
        limit: Limit = None,
        cursor: Cursor = None,
        last_n: LastN = None,
        keep_system: KeepSystem = False,
    ) -> MemoryList:
        query = MemoryQuery(
            conversation_id, legacy_id, block_id, block_name, limit, cursor, last_n, keep_system
        )
        return memory_list(await get_page(request.app.state.services, principal, query))

    @get(
        "/all",
        operation_id="memoryGetAll",
        summary="Every memory of the workspace, paginated",
    )
    async def get_all(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        limit: Limit = None,
        cursor: Cursor = None,
        last_n: LastN = None,
        keep_system: KeepSystem = False,
    ) -> MemoryList:
        page = await memory_of(request).get_page(
            principal.workspace_id,
            None,
            limit=limit,
            cursor=cursor,
            last_n=last_n,
            keep_system=keep_system,
        )
        return memory_list(page)

    @delete(
        "",
        operation_id="memoryDelete",
        status_code=200,
        summary="Delete memories by conversationId (or id), blockId, blockName, or any combination",
        description="At least one filter (never everything by omission). Hard and immediate; "
        "frees the messages' bytes. `dryRun=true` only counts.",
    )
    async def delete_memories(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        conversation_id: ConversationId = None,
        legacy_id: LegacyId = None,
        block_id: BlockId = None,
        block_name: BlockName = None,
        dry_run: Annotated[bool, QueryParameter(name="dryRun", required=False)] = False,
    ) -> MemoryDeleted:
        service = memory_of(request)
        flt = service.filter(conversation_id, legacy_id, block_id, block_name)
        count, freed = await service.delete(principal.workspace_id, flt, dry_run=dry_run)
        noun = "memory" if count == 1 else "memories"
        if dry_run:
            message = f"Would delete {count} {noun}"
        else:
            message = f"Deleted {count} {noun}" if count else "No memories found"
        return MemoryDeleted(
            success=True, message=message, deleted_count=count, freed_bytes=freed, dry_run=dry_run
        )

    @get(
        "/messages",
        operation_id="memoryMessages",
        summary="Page back through a memory's messages",
        description="The `limit` messages (default and max 1000) just before `cursor` (a "
        "`dataCursor` or `nextCursor`), in append order; the newest page without a cursor.",
    )
    async def messages(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        conversation_id: ConversationId = None,
        legacy_id: LegacyId = None,
        block_id: Annotated[
            str | None,
            QueryParameter(name="blockId", required=False, description="Default: `default`."),
        ] = None,
        cursor: Cursor = None,
        limit: Annotated[
            int | None, QueryParameter(required=False, description="Messages per page (1-1000).")
        ] = None,
    ) -> MemoryMessages:
        page = await memory_of(request).messages(
            principal.workspace_id,
            conversation_id=conversation_id,
            legacy_id=legacy_id,
            block_id=block_id,
            cursor=cursor,
            limit=limit,
        )
        m = page.memory
        n = len(m.messages)
        return MemoryMessages(
            success=True,
            message=f"{n} of {m.message_count} message{'' if m.message_count == 1 else 's'}",
            key=m.key,
            conversation_id=m.conversation_id,
            block_id=m.block_id,
            block_name=m.block_name,
            data=[message_out(x) for x in m.messages],
            message_count=m.message_count,
            next_cursor=page.next_cursor,
        )

    @put(
        "/blocks/{block_id:path}",
        operation_id="memoryBlockSet",
        summary="Name a block in the workspace's block registry (null forgets the name)",
    )
    async def set_block(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        block_id: Annotated[str, PathParameter(description=ID_DOC + " Percent-encoded.")],
        data: JSONBody[MemoryBlockName],
    ) -> MemoryBlockOne:
        block = block_from_path(request)
        when = await memory_of(request).set_block(principal.workspace_id, block, data.name)
        item = MemoryBlockItem(block_id=block, name=data.name, updated_at=iso(when))
        return MemoryBlockOne(
            success=True,
            message=f"Block named {data.name!r}" if data.name is not None else "Block name removed",
            block=item,
        )

    # A block id of only slashes ('%2F') reaches the router as `/blocks//`, which it folds into
    # `/blocks`: take that PUT here too (block_from_path reads the id from the raw path).
    @put("/blocks", include_in_schema=False)
    async def set_block_slashes(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        data: JSONBody[MemoryBlockName],
    ) -> MemoryBlockOne:
        # The handler's plain function (Litestar types it loosely).
        one: MemoryBlockOne = await self.set_block.fn(self, request, principal, "", data)
        return one

    @get("/blocks", operation_id="memoryBlockList", summary="The block registry, paginated")
    async def list_blocks(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> MemoryBlockList:
        rows, next_cursor = await memory_of(request).list_blocks(
            principal.workspace_id, limit=limit, cursor=cursor
        )
        blocks = [
            MemoryBlockItem(block_id=r.block_id, name=r.name, updated_at=iso(r.updated_at))
            for r in rows
        ]
        return MemoryBlockList(
            success=True,
            message=count(len(blocks), "block"),
            blocks=blocks,
            next_cursor=next_cursor,
        )

    @get(
        "/conversations",
        operation_id="memoryConversations",
        summary="The workspace's distinct conversation ids, paginated, with their counts",
        description="In id order (`limit`, `cursor`, `nextCursor`), each with the number of "
        "its memories (blocks) and messages and its last update. `blockId`: only "
        "conversations with a memory in that block, counted in it alone. `prefix`: only ids "
        "that start with it, exactly (`%` and `_` are ordinary characters).",
    )
    async def conversations(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        block_id: BlockId = None,
        prefix: Annotated[
            str | None,
            QueryParameter(
                required=False, description="Only conversation ids that start with this."
            ),
        ] = None,
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> ConversationList:
        rows, next_cursor = await memory_of(request).list_conversations(
            principal.workspace_id, block_id=block_id, prefix=prefix, limit=limit, cursor=cursor
        )
        items = [
            ConversationItem(
                conversation_id=r.conversation_id,
                block_count=r.blocks,
                message_count=r.messages,
                updated_at=iso(r.updated_at),
            )
            for r in rows
        ]
        return ConversationList(
            success=True,
            message=count(len(items), "conversation"),
            conversations=items,
            next_cursor=next_cursor,
        )
