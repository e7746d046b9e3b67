"""The memory block API (SPEC 3): rules and transactions, layered on the KV store's accounting.

Every write locks the workspace's account first (storage.kv.lock_account), charges or frees the
bytes of the messages (services.kv.charge), and saves the account in the same transaction: one
quota and one workspace boundary for KV values and memories alike.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Row

from ..clock import now_ms
from ..settings import Settings
from ..storage import kv as kv_sql
from ..storage import memory as sql
from ..storage.database import Database
from ..storage.memory import Filter as Filter  # used by callers (http/memory.py) from here
from ..storage.memory_tables import ID_LENGTH
from ..storage.pg_batch import PgBatcher
from .cursors import Cursors, invalid_cursor
from .errors import BadRequest, Conflict, NotFound, QuotaExceeded, RateLimited, TooLarge
from .kv import charge
from .metrics import Metrics

ROLES = frozenset({"user", "assistant", "system"})
DEFAULT_BLOCK = "default"
IDEMPOTENCY_KEY_LENGTH = 255


# --- keys and ids --------------------------------------------------------------------------------


def _enc(part: str) -> str:
    # '%' first, so that the '%' of an encoded ':' is never encoded again.
    return part.replace("%", "%25").replace(":", "%3A")


def memory_key(conversation_id: str, block_id: str) -> str:
    """`conversationId:blockId` with '%' and ':' percent-encoded in each part.

    Neither encoded part contains ':', so the one ':' splits the key back into its parts, and
    percent-decoding each part gives back the ids: distinct pairs never share a key.
    """
    return f"{_enc(conversation_id)}:{_enc(block_id)}"


def check_id(value: str, what: str, max_chars: int = ID_LENGTH) -> str:
    """Ids and names: 1..max_chars characters of any Unicode but control characters."""
    if not value:
        raise BadRequest(f"{what} must not be empty", code="invalid_id")
    if len(value) > max_chars:
        raise BadRequest(
            f"{what} is {len(value)} characters; the maximum is {max_chars}", code="invalid_id"
        )
    if not value.isprintable() and any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise BadRequest(
            f"{what} must not contain control characters or lone surrogates", code="invalid_id"
        )
    return value


def conversation_of(conversation_id: str | None, legacy_id: str | None) -> str | None:
    """`conversationId`, or its legacy spelling `id`; both given must agree."""
    if conversation_id is not None and legacy_id is not None and conversation_id != legacy_id:
        raise BadRequest(
            "conversationId and id (its legacy alias) are both given and differ; send one",
            code="conflicting_ids",
        )
    value = conversation_id if conversation_id is not None else legacy_id
    return None if value is None else check_id(value, "conversationId")


# --- results -------------------------------------------------------------------------------------


@dataclass(slots=True)
class MessageOut:
    seq: int
    role: str
    content: str


@dataclass(slots=True)
class MemoryOut:
    id: int
    conversation_id: str
    block_id: str
    block_name: str | None
    message_count: int
    created_at: int
    updated_at: int
    messages: list[MessageOut] = field(default_factory=list)
    # The seq of the first message in `messages`: older ones exist when it is above 0.
    window_start: int = 0
    # Set (by the service, sealed) when older messages exist: pages back through them.
    data_cursor: str | None = None

    @property
    def key(self) -> str:
        return memory_key(self.conversation_id, self.block_id)


@dataclass(slots=True)
class MessagePage:
    memory: MemoryOut
    next_cursor: str | None = None


def _out(row: Row, messages: list[MessageOut], window_start: int) -> MemoryOut:
    return MemoryOut(
        id=row.id,
        conversation_id=row.conversation_id,
        block_id=row.block_id,
        block_name=row.block_name,
        message_count=row.message_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
        messages=messages,
        window_start=window_start,
    )


def _messages(rows: Sequence[Row]) -> list[MessageOut]:
    return [MessageOut(r.seq, r.role, r.content.decode("utf-8")) for r in rows]


def _snapshot(conn: Connection) -> None:
    """Make the statements of a read see one snapshot (PostgreSQL; SQLite reads already do)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


# --- add -----------------------------------------------------------------------------------------


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
    data = [MessageOut(first + i, m[0], m[1]) for i, m in enumerate(req.messages)]
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


def _one_plain_message(req: AddRequest) -> bool:
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
    """add_txn for `_one_plain_message` on PostgreSQL, as one function call (migration 0004)."""
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
        raise kv_sql.WorkspaceGone(req.workspace_id)
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
    oldest = sql.oldest_idempotency(conn, ws) or req.now
    wait = max(1, -(-(oldest - req.idempotency_cutoff) // 1000))
    raise RateLimited(
        f"this workspace already holds {limit} idempotency keys (MEMORY_MAX_IDEMPOTENCY_KEYS); "
        f"retry in {wait} s, when the oldest expires, or add without Idempotency-Key",
        code="idempotency_keys_exhausted",
        headers={"Retry-After": str(wait)},
    )


def _replay(conn: Connection, req: AddRequest, record: Row) -> MemoryOut:
    """The answer of the add that first used this idempotency key; appends nothing."""
    if record.request_hash != req.request_hash:
        raise Conflict(
            "Idempotency-Key was already used with a different request; use a new key",
            code="idempotency_key_reused",
        )
    row = sql.memory_by_id(conn, req.workspace_id, record.memory_id)
    if row is None:
        raise Conflict(
            "the add with this Idempotency-Key succeeded, but its memory has been deleted since",
            code="idempotent_memory_deleted",
        )
    first, end = record.first_seq, record.first_seq + record.count
    memory = _out(row, _messages(sql.message_range(conn, row.id, first, end)), 0)
    _extend(conn, memory, first, end, req.last_n, req.keep_system)
    return memory


def _extend(
    conn: Connection, memory: MemoryOut, first: int, end: int, last_n: int, keep_system: bool
) -> None:
    """Widen an add's answer [first, end) to the last `last_n` messages up to `end`, keep the
    leading system message if asked, and set the cursor to what lies before."""
    start = max(0, min(first, end - last_n))
    if start < first:
        memory.messages[:0] = _messages(sql.message_range(conn, memory.id, start, first))
    memory.window_start = start
    if keep_system and start > 0:
        memory.messages[:0] = _messages(sql.message_range(conn, memory.id, 0, 1))[:1]
        if memory.messages[0].role != "system":
            del memory.messages[0]


# --- reads ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    size: int  # at most this many of the newest messages per memory
    keep_system: bool


# A read of at most this many messages, none larger than INLINE_MESSAGE_BYTES, runs on the event
# loop's thread (SQLite): less than the hop to a reader thread costs. Larger reads go to threads.
INLINE_MESSAGES = 100
INLINE_MESSAGE_BYTES = 16 * 1024


def read_page_txn(
    conn: Connection,
    workspace_id: int,
    flt: Filter,
    after: int,
    limit: int,
    window: Window,
    budget: int,
    inline: bool = False,
) -> tuple[list[MemoryOut], int | None] | None:
    """A page of memories (id > after, in id order) with their windows of messages, in two
    queries whatever the page's size; returns (memories, the id to continue after, or None).

    `inline`: give up (return None) rather than read more than a small read may.
    """
    _snapshot(conn)
    rows = sql.memory_page(conn, workspace_id, flt, after, limit + 1)
    more = len(rows) > limit
    picked: list[Row] = []
    total = 0
    for row in rows[:limit]:
        size = min(row.message_count, window.size)
        if picked and total + size > budget:
            more = True
            break
        picked.append(row)
        total += size
    if not picked:
        return [], None
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
        by_id[r.memory_id].append(MessageOut(r.seq, r.role, r.content.decode("utf-8")))
    for r in heads:
        by_id[r.memory_id].insert(0, MessageOut(r.seq, r.role, r.content.decode("utf-8")))
    memories = [_out(row, by_id[row.id], starts[row.id]) for row in picked]
    return memories, (picked[-1].id if more else None)


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
    memory = _out(row, _messages(sql.message_range(conn, row.id, start, end)), start)
    return MessagePage(memory)


# --- delete and the block registry ---------------------------------------------------------------


def delete_txn(conn: Connection, workspace_id: int, flt: Filter) -> tuple[int, int]:
    """Delete the matching memories now; returns (memories deleted, bytes freed)."""
    account = kv_sql.lock_account(conn, workspace_id)
    count, freed = sql.count_matching(conn, workspace_id, flt)
    if count:
        deleted = sql.delete_matching(conn, workspace_id, flt)
        if deleted != count:  # impossible under the workspace lock; never miscount the quota
            raise RuntimeError(f"deleted {deleted} memories, expected {count}")
        account.used -= freed
        kv_sql.save_account(conn, account)
    return count, freed


def count_txn(conn: Connection, workspace_id: int, flt: Filter) -> tuple[int, int]:
    return sql.count_matching(conn, workspace_id, flt)


def set_block_txn(
    conn: Connection, workspace_id: int, block_id: str, name: str | None, now: int
) -> None:
    # A registry entry is charged to the quota (block id + name, as a KV entry's key + value);
    # the lock orders a rename with the adds that may name the block too.
    account = kv_sql.lock_account(conn, workspace_id)
    old = sql.block_name(conn, workspace_id, block_id)
    charge(conn, account, sql.name_bytes(block_id, name) - sql.name_bytes(block_id, old), now)
    sql.set_block_name(conn, workspace_id, block_id, name, now)
    kv_sql.save_account(conn, account)


# --- the service ---------------------------------------------------------------------------------


def _filter_tag(flt: Filter) -> str:
    """A short fingerprint of a filter, kept in cursors so that one is not reused elsewhere."""
    raw = json.dumps([flt.conversation_id, flt.block_id, flt.block_name]).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


class MemoryService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Callable[[], int] = now_ms,
        *,
        metrics: Metrics | None = None,
        cursors: Cursors | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.metrics = metrics  # memories created, messages appended (issue #6)
        self.cursors = cursors or Cursors(db, settings)
        self._pg_adds = None if db.is_sqlite else PgBatcher(db, sql.pg_add, sql.pg_add_many)

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

    def page_limit(self, limit: int | None) -> int:
        if limit is None:
            return self.settings.default_page_size
        if not 1 <= limit <= self.settings.max_page_size:
            raise BadRequest(
                f"limit must be between 1 and {self.settings.max_page_size}", code="invalid_limit"
            )
        return limit

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
        out = []
        limit = self.settings.max_content_bytes
        for i, (r, c) in enumerate(pairs):
            where = f"messages[{i}]." if batch is not None else ""
            if r not in ROLES:
                raise BadRequest(
                    f"{where}role must be user, assistant or system, not {r!r}",
                    code="invalid_role",
                )
            try:
                raw = c.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise BadRequest(
                    f"{where}content is not valid Unicode", code="invalid_content"
                ) from exc
            if len(raw) > limit:
                raise TooLarge(
                    f"{where}content is {len(raw)} bytes; the maximum is {limit}",
                    code="content_too_large",
                )
            out.append((r, c, raw, len(r) + len(raw)))
        return out

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
        conv = conversation_of(conversation_id, legacy_id)
        if conv is None:
            raise BadRequest(
                "conversationId is required (or its legacy alias id)",
                code="missing_conversation_id",
            )
        block = DEFAULT_BLOCK if block_id is None else check_id(block_id, "blockId")
        name = None if block_name is None else check_id(block_name, "blockName")
        msgs = self._checked_messages(role, content, messages)
        window = self.window(last_n, keep_system)
        request_hash = None
        if idempotency_key is not None:
            check_id(idempotency_key, "Idempotency-Key", IDEMPOTENCY_KEY_LENGTH)
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
        if self._pg_adds is not None and _one_plain_message(req):
            memory, replayed = await pg_add(self._pg_adds, req), False
        else:
            memory, replayed = await self.db.write(add_txn, req)
        await self._seal_data_cursors(workspace_id, [memory])
        if self.metrics is not None and not replayed:
            created = memory.message_count == len(msgs)  # the memory holds only this add
            self.metrics.messages_added(len(msgs), memories_created=int(created))
        return memory, replayed

    async def get(
        self,
        workspace_id: int,
        flt: Filter | None,
        *,
        limit: int | None = None,
        cursor: str | None = None,
        last_n: int | None = None,
        keep_system: bool = False,
    ) -> tuple[list[MemoryOut], str | None]:
        """Matching memories (every memory when `flt` is None), a page at a time."""
        limit = self.page_limit(limit)
        window = self.window(last_n, keep_system)
        tag = _filter_tag(flt or Filter())
        after = 0
        if cursor:
            await self.cursors.load()
            # Sealed by this service for this workspace, so well-formed: [after id, filter tag].
            after, cursor_tag = self.cursors.open(cursor, "memories", workspace_id)
            if cursor_tag != tag:
                raise BadRequest(
                    "cursor belongs to a listing with other filters", code="invalid_cursor"
                )
        # A page stops early (with a nextCursor) once it holds this many messages, so that a
        # response stays bounded however many memories and messages a page could name.
        budget = max(self.settings.max_response_messages, window.size)
        args = (workspace_id, flt or Filter(), after, limit, window, budget)
        page: tuple[list[MemoryOut], int | None] | None = None
        if self.db.is_sqlite:  # a small read first, on the loop's thread; else in a thread
            page = await self.db.read(read_page_txn, *args, True, inline=True)
        if page is None:
            page = await self.db.read(read_page_txn, *args)
        assert page is not None  # only the inline read gives up (None); a thread's read waits
        memories, next_after = page
        await self._seal_data_cursors(workspace_id, memories)
        next_cursor = None
        if next_after is not None:
            await self.cursors.load()
            next_cursor = self.cursors.seal("memories", workspace_id, [next_after, tag])
        return memories, next_cursor

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
        conv = conversation_of(conversation_id, legacy_id)
        if conv is None:
            raise BadRequest(
                "conversationId is required (or its legacy alias id)",
                code="missing_conversation_id",
            )
        block = DEFAULT_BLOCK if block_id is None else check_id(block_id, "blockId")
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
        return await self.db.write(delete_txn, workspace_id, flt)

    async def set_block(self, workspace_id: int, block_id: str, name: str | None) -> int:
        """Name a block (None forgets its name); returns the time of the change."""
        check_id(block_id, "blockId")
        if name is not None:
            check_id(name, "name")
        now = self.clock()
        await self.db.write(set_block_txn, workspace_id, block_id, name, now)
        return now

    async def list_blocks(
        self, workspace_id: int, *, limit: int | None = None, cursor: str | None = None
    ) -> tuple[list[Row], str | None]:
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

    async def sweep_idempotency(self) -> int:
        """Forget idempotency records past their time; returns how many."""
        cutoff = self.clock() - int(self.settings.idempotency_ttl_seconds * 1000)
        return await self.db.write(sql.sweep_idempotency, cutoff)
