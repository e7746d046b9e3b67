"""The per-workspace key-value store: validation, versions, conditional writes, TTL, quota."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy.engine import Connection

from ..errors import WorkspaceGone
from ..settings import Settings
from ..storage import kv as sql
from ..storage import pg_writes
from ..storage.database import Database
from ..storage.pg_batch import PgBatcher
from .base import WorkspaceDataService
from .conditions import Preconditions, Tags
from .errors import BadRequest, Conflict, NotFound, QuotaExceeded, TooLarge
from .media_types import check_media_type
from .shapes import KvItem, kv_item
from .text import has_control

DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Values up to this size are read on the event loop's thread (SQLite); larger ones in a thread.
INLINE_VALUE_BYTES = 64 * 1024
MIN_TTL_SECONDS = 0.001
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600


def check_key(key: str, max_bytes: int) -> bytes:
    """A key is 1..max_bytes bytes of UTF-8 with no control characters; opaque otherwise."""
    if key.isascii() and key.isprintable():  # most keys: one check (ASCII controls are not
        raw = key.encode("ascii")  # printable), then on to the length
        if 0 < len(raw) <= max_bytes:
            return raw
    raw = key.encode("utf-8", "surrogatepass")
    if not raw:
        raise BadRequest("key must not be empty", code="invalid_key")
    if len(raw) > max_bytes:
        raise BadRequest(f"key is {len(raw)} bytes; the maximum is {max_bytes}", code="invalid_key")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest("key is not valid UTF-8", code="invalid_key") from exc
    if has_control(key):
        raise BadRequest("key must not contain control characters", code="invalid_key")
    return raw


def check_value_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise TooLarge(f"value is {size} bytes; the maximum is {max_bytes}", code="value_too_large")


def plain_keys(keys: list[str], max_bytes: int) -> list[bytes] | None:
    """check_key's first case for many keys at once: all printable ASCII of a valid length (one
    check of them all), or None: check each with check_key."""
    joined = "".join(keys)
    if not (joined.isascii() and joined.isprintable()):
        return None
    raw = [key.encode("ascii") for key in keys]
    return raw if all(0 < len(key) <= max_bytes for key in raw) else None


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with `prefix`."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


@dataclass(slots=True)
class Written:
    version: int
    created: bool
    size: int
    expires_at: int | None


@dataclass(slots=True)
class Value:
    value: bytes
    content_type: str
    version: int
    expires_at: int | None
    updated_at: int


def check_ttl(ttl: float | None) -> float | None:
    if ttl is None:
        return None
    # Expiry is kept in milliseconds: a shorter TTL would expire before it was stored.
    if not (MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS):
        raise BadRequest(
            f"ttl must be a number of seconds from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}",
            code="invalid_ttl",
        )
    return ttl


def charge(conn: Connection, account: sql.Account, delta: int, now: int) -> None:
    """Charge `delta` bytes to the locked account, or refuse before anything is stored.

    Expired entries still occupy rows until swept; when they stand between a write and the quota,
    sweep them here, in the same transaction, so that expiry frees bytes exactly when it happens.
    """
    if delta > 0 and account.used + delta > account.quota:
        sweep_account(conn, account, now)
        if account.used + delta > account.quota:
            raise QuotaExceeded(
                f"quota exceeded: this write needs {delta} more bytes; "
                f"{account.used} of {account.quota} bytes are used",
            )
    account.used += delta


def sweep_account(conn: Connection, account: sql.Account, now: int) -> int:
    freed = 0
    while rows := sql.expired_entries(conn, now, workspace_id=account.workspace_id):
        sql.delete_entries(conn, [r.id for r in rows])
        gone = sum(r.size for r in rows)
        account.used -= gone
        freed += gone
    return freed


def _is_live(row: sql.EntryMeta | None, now: int) -> bool:
    return row is not None and (row.expires_at is None or row.expires_at > now)


@dataclass(slots=True)
class SetRequest:
    workspace_id: int
    key: bytes
    value: bytes
    content_type: str
    expires_at: int | None
    conditions: Preconditions
    now: int


def set_txn(conn: Connection, req: SetRequest) -> Written:
    account, row = sql.lock_account_with_entry(conn, req.workspace_id, req.key)
    live = _is_live(row, req.now)
    req.conditions.check_write(row.version if row is not None and live else None)
    if row is not None and not live:
        # The key's own expired row goes first: charge() may sweep expired rows, and a delta
        # taken against a row the sweep then deletes would free its bytes twice.
        sql.delete_entry(conn, row.id)
        account.used -= row.size
        row = None
    size = len(req.key) + len(req.value)
    charge(conn, account, size - (row.size if row else 0), req.now)
    account.version_seq += 1
    sql.upsert_entry(
        conn,
        workspace_id=req.workspace_id,
        key=req.key,
        value=req.value,
        content_type=req.content_type,
        size=size,
        version=account.version_seq,
        expires_at=req.expires_at,
        now=req.now,
    )
    sql.save_account(conn, account)
    return Written(account.version_seq, not live, size, req.expires_at)


_BIGINT = range(-(2**63), 2**63)


def _tag_versions(tags: Tags | None, strong_only: bool) -> tuple[bool | None, list[int]]:
    """A parsed conditional header as ms_kv_set/ms_kv_delete take it: (None: absent, or `*`)
    and the versions its tags can match. A tag matches version v only if it is exactly str(v),
    so tags that are not a canonical decimal integer can match nothing and are left out."""
    if tags is None:
        return None, []
    versions = []
    for weak, opaque in tags.tags:
        if weak and strong_only:
            continue
        # (length first: a tag of thousands of digits is not converted, nor can it match)
        canonical = (
            0 < len(opaque) <= 19
            and opaque.isascii()
            and opaque.isdigit()
            and (opaque == "0" or opaque[0] != "0")
        )
        if canonical and int(opaque) in _BIGINT:
            versions.append(int(opaque))
    return tags.any, versions


def _pg_conditions(conditions: Preconditions) -> dict:
    im_any, im_tags = _tag_versions(conditions.if_match, strong_only=True)
    inm_any, inm_tags = _tag_versions(conditions.if_none_match, strong_only=False)
    return {"im_any": im_any, "im_tags": im_tags, "inm_any": inm_any, "inm_tags": inm_tags}


def _refused(status: str, current: int | None, conditions: Preconditions, ws: int) -> NoReturn:
    """Turn a refusal of ms_kv_set/ms_kv_delete into the error the Python rules raise."""
    if status == "gone":
        raise WorkspaceGone(ws)
    if status == "precondition":
        conditions.check_write(current)  # decides as the function did, and raises the 412
    raise RuntimeError(f"write function answered {status!r} for version {current}")


async def pg_set(sets: PgBatcher, req: SetRequest) -> Written:
    """set_txn on PostgreSQL, as one function call, with others waiting at the same moment
    (see migration 0004 and storage/pg_batch.py)."""
    params = {
        "ws": req.workspace_id,
        "key": req.key,
        "value": req.value,
        "content_type": req.content_type,
        "expires_at": req.expires_at,
        "now": req.now,
        **_pg_conditions(req.conditions),
    }
    row = await sets.submit(params)
    if row.status == "ok":
        return Written(row.version, row.created, row.size, req.expires_at)
    if row.status == "quota":
        raise QuotaExceeded(
            f"quota exceeded: this write needs {row.delta} more bytes; "
            f"{row.used} of {row.quota} bytes are used",
        )
    _refused(row.status, row.version, req.conditions, req.workspace_id)


async def pg_delete(
    db: Database, workspace_id: int, key: bytes, conditions: Preconditions, now: int
) -> tuple[bool, int]:
    """delete_txn on PostgreSQL, as one statement (see migration 0004)."""
    params = {"ws": workspace_id, "key": key, "now": now, **_pg_conditions(conditions)}
    row = await db.write_statement(sql.pg_delete, params)
    if row.status == "ok":
        assert row.live is not None and row.freed is not None  # (set when status is ok)
        return row.live, row.freed
    _refused(row.status, row.version, conditions, workspace_id)


def delete_txn(
    conn: Connection, workspace_id: int, key: bytes, conditions: Preconditions, now: int
) -> tuple[bool, int]:
    """Returns (was live, bytes freed). An expired entry is removed too, freeing its bytes."""
    account, row = sql.lock_account_with_entry(conn, workspace_id, key)
    live = _is_live(row, now)
    # An absent key is a 404 whatever the conditions (RFC 9110 13.2.1).
    if row is not None and live:
        conditions.check_write(row.version)
    if row is None:
        return False, 0
    sql.delete_entry(conn, row.id)
    account.used -= row.size
    sql.save_account(conn, account)
    return live, row.size


def usage_txn(conn: Connection, workspace_id: int, now: int) -> dict:
    account = sql.lock_account(conn, workspace_id)
    if sweep_account(conn, account, now):
        sql.save_account(conn, account)
    return {"used": account.used, "quota": account.quota}


def sweep_workspace_txn(conn: Connection, workspace_id: int, now: int) -> int:
    try:
        account = sql.lock_account(conn, workspace_id)
    except WorkspaceGone:  # deleted meanwhile
        return 0
    freed = sweep_account(conn, account, now)
    if freed:
        sql.save_account(conn, account)
    return freed


class KvService(WorkspaceDataService):
    def __init__(self, db: Database, settings: Settings, **kwargs: Any) -> None:
        super().__init__(db, settings, **kwargs)
        self._pg_sets = None if db.is_sqlite else PgBatcher(db, sql.pg_set, sql.pg_set_many)

    def key(self, key: str) -> bytes:
        return check_key(key, self.settings.max_key_bytes)

    async def set(
        self,
        workspace_id: int,
        key: str,
        value: bytes,
        *,
        content_type: str | None = None,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> Written:
        raw_key = self.key(key)
        ttl = check_ttl(ttl)
        check_value_size(len(value), self.settings.max_value_bytes)
        conditions = Preconditions.parse(if_match, if_none_match)
        stored_type = check_media_type(content_type or DEFAULT_CONTENT_TYPE)
        now = self.clock()
        req = SetRequest(
            workspace_id=workspace_id,
            key=raw_key,
            value=value,
            content_type=stored_type,
            expires_at=now + int(ttl * 1000) if ttl is not None else None,
            conditions=conditions,
            now=now,
        )
        if self._pg_sets is None:  # SQLite
            written = await self.db.write(set_txn, req)
        else:
            written = await pg_set(self._pg_sets, req)
        if self.metrics is not None:
            self.metrics.kv_written(len(value))
        return written

    async def get(self, workspace_id: int, key: str) -> Value:
        raw_key = self.key(key)
        for _ in range(5):
            row = await self.db.read_statement(
                sql.get_entry, workspace_id, raw_key, self.clock(), INLINE_VALUE_BYTES
            )
            if row is None:
                raise NotFound("key not found", code="key_not_found")
            value = row.value
            if value is None:  # large: read it off the event loop, at the version just seen
                value = await self.db.read(sql.get_value, workspace_id, raw_key, row.version)
                if value is None:
                    continue  # overwritten in between: read the new version
            return Value(value, row.content_type, row.version, row.expires_at, row.updated_at)
        raise Conflict("key is being rewritten too fast to read; retry", code="busy_key")

    async def head(self, workspace_id: int, key: str) -> sql.StoredEntry:
        """The live entry's headers (its `value` is None)."""
        row = await self.db.read_statement(
            sql.head_entry, workspace_id, self.key(key), self.clock()
        )
        if row is None:
            raise NotFound("key not found", code="key_not_found")
        return row

    async def exists(self, workspace_id: int, key: str) -> bool:
        try:
            await self.head(workspace_id, key)
        except NotFound:
            return False
        return True

    async def delete(
        self,
        workspace_id: int,
        key: str,
        *,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> int:
        """Delete a live entry; returns the bytes freed."""
        raw_key = self.key(key)
        conditions = Preconditions.parse(if_match, if_none_match)
        if self.db.is_sqlite:
            live, freed = await self.db.write(
                delete_txn, workspace_id, raw_key, conditions, self.clock()
            )
        else:
            live, freed = await pg_delete(self.db, workspace_id, raw_key, conditions, self.clock())
        if not live:
            raise NotFound("key not found", code="key_not_found")
        return freed

    async def list(
        self,
        workspace_id: int,
        *,
        prefix: str = "",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[list[KvItem], str | None]:
        limit = self.page_limit(limit)
        raw_prefix = prefix.encode("utf-8", "surrogatepass")
        if len(raw_prefix) > self.settings.max_key_bytes:
            raise BadRequest(
                f"prefix is longer than {self.settings.max_key_bytes} bytes", code="invalid_prefix"
            )
        lower, inclusive = raw_prefix, True
        if cursor:
            await self.cursors.load()
            payload = self.cursors.open(cursor, "kv", workspace_id)
            # Sealed by this service, so well-formed; a cursor of another prefix is refused.
            if not isinstance(payload, list) or payload[1] != raw_prefix:
                raise BadRequest(
                    "cursor belongs to a listing with another prefix", code="invalid_cursor"
                )
            lower, inclusive = payload[0], False
        rows = await self.db.read(
            sql.list_entries,
            workspace_id,
            lower,
            inclusive,
            prefix_upper_bound(raw_prefix),
            limit + 1,
            self.clock(),
        )
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            await self.cursors.load()
            next_cursor = self.cursors.seal("kv", workspace_id, [rows[-1].key, raw_prefix])
        return [kv_item(r) for r in rows], next_cursor

    async def usage(self, workspace_id: int) -> dict:
        """Exact usage: expired entries are swept first, so their bytes are never counted."""
        if self.db.is_sqlite:
            return await self.db.write(usage_txn, workspace_id, self.clock())
        row = await self._pg_sweep(workspace_id, self.clock())
        if row.status == "gone":
            raise WorkspaceGone(workspace_id)
        return {"used": row.used, "quota": row.quota}

    async def _pg_sweep(self, workspace_id: int, now: int) -> pg_writes.Swept:
        """usage_txn and sweep_workspace_txn on PostgreSQL: one ms_kv_sweep call (migration
        0005), so the workspace lock is held for one round trip."""
        row = await self.db.write_statement(pg_writes.kv_sweep, {"ws": workspace_id, "now": now})
        if row.status not in ("ok", "gone"):
            raise RuntimeError(f"ms_kv_sweep answered {row.status!r}")
        return row

    async def sweep(self, limit_workspaces: int = 100) -> int:
        """Background sweep: delete expired entries and free their bytes. Returns bytes freed."""
        now = self.clock()
        ids = await self.db.read(sql.workspaces_with_expired, now, limit_workspaces)
        freed = 0
        for ws_id in ids:
            if self.db.is_sqlite:
                freed += await self.db.write(sweep_workspace_txn, ws_id, now)
            else:  # (a workspace deleted meanwhile frees 0)
                freed += (await self._pg_sweep(ws_id, now)).freed or 0
        return freed
