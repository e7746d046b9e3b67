"""MemoryService: checks a request's input, runs its transaction, seals its cursors.

SQLite reads of a small window run on the event loop's thread first (reads.INLINE_*); everything
else goes to the database's reader or writer threads, or PostgreSQL's pool.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from ...settings import MiB, Settings
from ...storage import memory as sql
from ...storage.database import Database
from ...storage.memory import BlockRecord, ConversationRecord, Filter
from ..base import WorkspaceDataService
from ..cursors import invalid_cursor
from ..errors import BadRequest, TooLarge
from .add import AddRequest, add_txn
from .changes import count_txn, delete_txn, set_block_txn
from .ids import (
    check_id,
    check_idempotency_key,
    check_message,
    conversation_of,
    memory_pair,
)
from .pg_add import PgMemoryWrites
from .read_cache import Page, ReadCache
from .reads import PageRead, messages_txn, read_page_txn
from .results import MemoryOut, MessagePage, Window


def _filter_tag(flt: Filter) -> str:
    """A short fingerprint of a filter, kept in cursors so that one is not reused elsewhere."""
    raw = json.dumps([flt.conversation_id, flt.block_id, flt.block_name]).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


class MemoryService(WorkspaceDataService):
    def __init__(self, db: Database, settings: Settings, **kwargs: Any) -> None:
        super().__init__(db, settings, **kwargs)
        # PostgreSQL: each write one server-side function call (migrations 0004, 0005).
        self._pg = None if db.is_sqlite else PgMemoryWrites(db)
        # Sealed cursors in a cached page are handed out again for at most a tenth of their
        # lifetime (and a minute): a cached answer's cursors are nearly as fresh as a new one's.
        max_age = min(60.0, settings.cursor_ttl_seconds / 10)
        self.read_cache = ReadCache(settings.read_cache_mb * MiB, max_age)

    async def _seal_data_cursors(self, workspace_id: int, memories: Sequence[MemoryOut]) -> None:
        """A sealed dataCursor on each memory that has older messages than those it carries."""
        if any(m.window_start > 0 for m in memories):
            await self.cursors.load()
        for m in memories:
            m.data_cursor = (
                self.cursors.seal("messages", workspace_id, [m.id, m.window_start])
                if m.window_start > 0
                else None
            )

    # --- validation -----------------------------------------------------------------------
    def filter(
        self,
        conversation_id: str | None,
        legacy_id: str | None,
        block_id: str | None,
        block_name: str | None,
    ) -> Filter:
        flt = Filter(
            conversation_of(conversation_id, legacy_id),
            None if block_id is None else check_id(block_id, "blockId"),
            None if block_name is None else check_id(block_name, "blockName"),
        )
        if flt.conversation_id is None and flt.block_id is None and flt.block_name is None:
            raise BadRequest(
                "give at least one of conversationId (or id), blockId, blockName",
                code="missing_filter",
            )
        return flt

    def window(self, last_n: int | None, keep_system: bool) -> Window:
        page = self.settings.max_message_page
        if last_n is None:
            return Window(page, keep_system)
        if not 0 <= last_n <= page:
            raise BadRequest(f"lastN must be between 0 and {page}", code="invalid_last_n")
        return Window(last_n, keep_system)

    def _checked_messages(self, role: str | None, content: str | None, batch: list | None) -> list:
        """(role, content, UTF-8 content, bytes charged) of each message, or a 4xx."""
        if batch is not None:
            if role is not None or content is not None:
                raise BadRequest(
                    "send either role and content, or messages, not both", code="invalid_message"
                )
            if not batch:
                raise BadRequest("messages must not be empty", code="empty_batch")
            if len(batch) > self.settings.max_batch_messages:
                raise TooLarge(
                    f"messages holds {len(batch)} messages; the maximum is "
                    f"{self.settings.max_batch_messages}",
                    code="batch_too_large",
                )
            pairs = [(m.role, m.content) for m in batch]
        else:
            if role is None:
                raise BadRequest(
                    "role is required (user, assistant or system)", code="missing_role"
                )
            if content is None:
                raise BadRequest("content is required", code="missing_content")
            pairs = [(role, content)]
        limit = self.settings.max_content_bytes
        return [
            check_message(r, c, limit, f"messages[{i}]." if batch is not None else "")
            for i, (r, c) in enumerate(pairs)
        ]

    # --- operations ------------------------------------------------------------------------
    async def add(
        self,
        workspace_id: int,
        *,
        conversation_id: str | None = None,
        legacy_id: str | None = None,
        block_id: str | None = None,
        block_name: str | None = None,
        role: str | None = None,
        content: str | None = None,
        messages: list | None = None,
        last_n: int | None = None,
        keep_system: bool = False,
        idempotency_key: str | None = None,
    ) -> tuple[MemoryOut, bool]:
        """Append one message or a batch, atomically and in order. Returns (memory, replayed):
        the memory's `messages` are those this add appended (more with `last_n`)."""
        conv, block = memory_pair(conversation_id, legacy_id, block_id)
        name = None if block_name is None else check_id(block_name, "blockName")
        msgs = self._checked_messages(role, content, messages)
        window = self.window(last_n, keep_system)
        request_hash = None
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
            canonical = [conv, block, name, [[m[0], m[1]] for m in msgs]]
            request_hash = hashlib.sha256(
                json.dumps(canonical, ensure_ascii=False).encode("utf-8", "surrogatepass")
            ).hexdigest()
        now = self.clock()
        req = AddRequest(
            workspace_id=workspace_id,
            conversation_id=conv,
            block_id=block,
            block_name=name,
            messages=msgs,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            last_n=0 if last_n is None else window.size,
            keep_system=keep_system,
            now=now,
            idempotency_cutoff=now - int(self.settings.idempotency_ttl_seconds * 1000),
            max_idempotency_keys=self.settings.max_idempotency_keys,
        )
        if self._pg is not None:
            memory, replayed = await self._pg.add(req)
        else:
            memory, replayed = await self.db.write(add_txn, req)
        await self._seal_data_cursors(workspace_id, [memory])
        if self.metrics is not None and not replayed:
            created = memory.message_count == len(msgs)  # the memory holds only this add
            self.metrics.messages_added(len(msgs), memories_created=int(created))
        return memory, replayed

    async def get_page(
        self,
        workspace_id: int,
        flt: Filter | None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        last_n: int | None = None,
        keep_system: bool = False,
    ) -> Page:
        """Matching memories (every memory when `flt` is None), a page at a time. The page may be
        one answered before (read_cache.py): treat it as read-only."""
        limit = self.page_limit(limit)
        window = self.window(last_n, keep_system)
        flt = flt or Filter()
        tag = None  # the filter's fingerprint, made only when a cursor is read or sealed
        after = 0
        if cursor:
            await self.cursors.load()
            # Sealed by this service for this workspace, so well-formed: [after id, filter tag].
            after, cursor_tag = self.cursors.open(cursor, "memories", workspace_id)
            tag = _filter_tag(flt)
            if cursor_tag != tag:
                raise BadRequest(
                    "cursor belongs to a listing with other filters", code="invalid_cursor"
                )
        # A page stops early (with a nextCursor) once it holds this many messages, so that a
        # response stays bounded however many memories and messages a page could name.
        budget = max(self.settings.max_response_messages, window.size)
        args = (workspace_id, flt, after, limit, window, budget)  # also the page's cache key
        cached = self.read_cache.get(args)
        if isinstance(cached, Page):
            # Its memory rows, in one statement (its own snapshot: no BEGIN and COMMIT); the
            # same ones mean the same messages, so the kept page is the answer.
            rows = await self.db.read_statement(
                sql.memory_page, workspace_id, flt, after, limit + 1
            )
            if rows == cached.rows:
                self._count_read(cached=True)
                return cached
        read: PageRead | None = None
        if self.db.is_sqlite:  # a small read first, on the loop's thread; else in a thread
            read = await self.db.read(read_page_txn, *args, True, inline=True)
        if read is None:
            read = await self.db.read(read_page_txn, *args)
        assert read is not None  # only the inline read gives up (None); a thread's read waits
        self._count_read(cached=False)
        memories = read.memories
        sealed_at = time.monotonic()
        await self._seal_data_cursors(workspace_id, memories)
        next_cursor = None
        if read.next_after is not None:
            await self.cursors.load()
            tag = tag or _filter_tag(flt)
            next_cursor = self.cursors.seal("memories", workspace_id, [read.next_after, tag])
        page = Page(memories, next_cursor, read.rows, sealed_at)
        self.read_cache.keep(args, cached, page)
        return page

    def _count_read(self, cached: bool) -> None:
        if self.metrics is not None:
            self.metrics.page_read(cached)

    async def messages(
        self,
        workspace_id: int,
        *,
        conversation_id: str | None,
        legacy_id: str | None = None,
        block_id: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> MessagePage:
        conv, block = memory_pair(conversation_id, legacy_id, block_id)
        most = self.settings.max_message_page
        if limit is None:
            limit = most
        if not 1 <= limit <= most:
            raise BadRequest(f"limit must be between 1 and {most}", code="invalid_limit")
        position = None
        if cursor:
            await self.cursors.load()
            memory_id, before = self.cursors.open(cursor, "messages", workspace_id)
            position = (memory_id, before)
        page = await self.db.read(messages_txn, workspace_id, conv, block, position, limit)
        await self._seal_data_cursors(workspace_id, [page.memory])
        page.next_cursor = page.memory.data_cursor
        return page

    async def delete(
        self, workspace_id: int, flt: Filter, *, dry_run: bool = False
    ) -> tuple[int, int]:
        """(memories deleted, or that would be with dry_run; bytes freed, or that would be)."""
        if dry_run:
            return await self.db.read(count_txn, workspace_id, flt)
        if self._pg is not None:
            return await self._pg.delete(workspace_id, flt)
        return await self.db.write(delete_txn, workspace_id, flt)

    async def set_block(self, workspace_id: int, block_id: str, name: str | None) -> int:
        """Name a block (None forgets its name); returns the time of the change."""
        check_id(block_id, "blockId")
        if name is not None:
            check_id(name, "name")
        now = self.clock()
        if self._pg is not None:
            await self._pg.set_block(workspace_id, block_id, name, now)
        else:
            await self.db.write(set_block_txn, workspace_id, block_id, name, now)
        return now

    async def list_blocks(
        self, workspace_id: int, *, limit: int | None = None, cursor: str | None = None
    ) -> tuple[list[BlockRecord], str | None]:
        limit = self.page_limit(limit)
        after = None
        if cursor:
            await self.cursors.load()
            after = self.cursors.open(cursor, "blocks", workspace_id)
            if not isinstance(after, str):
                raise invalid_cursor()
        rows = await self.db.read(sql.list_blocks, workspace_id, after, limit + 1)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            await self.cursors.load()
            next_cursor = self.cursors.seal("blocks", workspace_id, rows[-1].block_id)
        return rows, next_cursor

    async def list_conversations(
        self,
        workspace_id: int,
        *,
        block_id: str | None = None,
        prefix: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[list[ConversationRecord], str | None]:
        """Distinct conversation ids, paged in id order; counts over the memories the filter
        matches (with `block_id`, that block's memory only)."""
        limit = self.page_limit(limit)
        if block_id is not None:
            check_id(block_id, "blockId")
        if prefix:
            check_id(prefix, "prefix")
        # The filter's fingerprint, so that a cursor is not reused under other filters.
        raw = json.dumps(["conversations", block_id, prefix or ""]).encode()
        tag = hashlib.sha256(raw).hexdigest()[:16]
        after = None
        if cursor:
            await self.cursors.load()
            payload = self.cursors.open(cursor, "conversations", workspace_id)
            if not (isinstance(payload, list) and len(payload) == 2 and payload[1] == tag):
                raise invalid_cursor("belongs to a listing with other filters")
            after = payload[0]
        rows = await self.db.read(
            sql.list_conversations, workspace_id, block_id, prefix or None, after, limit + 1
        )
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            await self.cursors.load()
            next_cursor = self.cursors.seal(
                "conversations", workspace_id, [rows[-1].conversation_id, tag]
            )
        return rows, next_cursor

    async def sweep_idempotency(self) -> int:
        """Forget idempotency records past their time; returns how many."""
        cutoff = self.clock() - int(self.settings.idempotency_ttl_seconds * 1000)
        if self.db.is_sqlite:
            return await self.db.write(sql.sweep_idempotency, cutoff)
        # One statement on PostgreSQL (it locks no workspace): no BEGIN and COMMIT around it.
        return await self.db.write_statement(sql.sweep_idempotency, cutoff)
