"""SQL for the key-value store and the per-workspace byte accounting it shares with memories."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    Executable,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from ..errors import WorkspaceGone
from .prepared import prepared
from .tables import kv_entry_t, workspace_t

E = kv_entry_t.c
W = workspace_t.c


# --- what the functions below return: tuples with names (a SQLAlchemy Row never leaves storage;
# building one of these from a row is a single tuple copy, cheap enough for the GET path) -------


class EntryMeta(NamedTuple):
    """A stored entry, expired or not, without its value: what a write decides on."""

    id: int
    size: int  # key + value bytes, as charged to the quota
    version: int
    expires_at: int | None


class StoredEntry(NamedTuple):
    """A live entry as GET and HEAD read it. `value` is None when it was not read: on HEAD, and
    on GET when larger than the inline limit (see get_value)."""

    value: bytes | None
    value_size: int
    content_type: str
    version: int
    expires_at: int | None
    updated_at: int


class ListedEntry(NamedTuple):
    """A live entry as a listing shows it."""

    key: bytes
    size: int
    content_type: str
    version: int
    expires_at: int | None
    updated_at: int


class Expired(NamedTuple):
    id: int
    size: int


class SetOutcome(NamedTuple):
    """ms_kv_set's answer; see migration 0004."""

    status: str
    version: int | None
    created: bool | None
    size: int | None
    used: int | None
    quota: int | None
    delta: int | None


class DeleteOutcome(NamedTuple):
    """ms_kv_delete's answer; see migration 0004."""

    status: str
    version: int | None
    live: bool | None
    freed: int | None


def live(now: int | ColumnElement[int]) -> ColumnElement[bool]:
    """Entries that have not expired. Every read applies it, so expiry never waits for a sweep."""
    return or_(E.expires_at.is_(None), E.expires_at > now)


# The hot statements are built once, with bind parameters: building and cache-keying a statement
# per call costs more than SQLite takes to run it.
_LOCK_ACCOUNT = prepared(
    select(W.used_bytes, W.quota_bytes, W.version_seq)
    .where(W.id == bindparam("ws"))
    .with_for_update()
)
_SAVE_ACCOUNT = prepared(
    update(workspace_t)
    .where(W.id == bindparam("ws"))
    .values(used_bytes=bindparam("used"), version_seq=bindparam("seq"))
)
# Not prepared: only PostgreSQL runs it (SQLite reads the entry with the account, below), and
# the driver path is SQLite's. tests/test_prepared.py wants every prepared statement run there.
_ENTRY_META = select(E.id, E.size, E.version, E.expires_at).where(
    E.workspace_id == bindparam("ws"), E.key == bindparam("key")
)
# The value only when it is at most :inline bytes (SQLite's length() of a blob reads no
# content), so that a large value is fetched separately, off the event loop.
_LIVE_ENTRY = (E.workspace_id == bindparam("ws"), E.key == bindparam("key"), live(bindparam("now")))
_ENTRY_HEADERS = (
    (E.size - func.length(E.key)).label("value_size"),
    E.content_type,
    E.version,
    E.expires_at,
    E.updated_at,
)
_GET_ENTRY = prepared(
    select(
        case((E.size - func.length(E.key) <= bindparam("inline"), E.value), else_=None).label(
            "value"
        ),
        *_ENTRY_HEADERS,
    ).where(*_LIVE_ENTRY)
)
_GET_VALUE = prepared(
    select(E.value).where(
        E.workspace_id == bindparam("ws"),
        E.key == bindparam("key"),
        E.version == bindparam("version"),
    )
)
_HEAD_ENTRY = prepared(select(*_ENTRY_HEADERS).where(*_LIVE_ENTRY))
_LOCK_ACCOUNT_WITH_ENTRY = prepared(
    select(W.used_bytes, W.quota_bytes, W.version_seq, E.id, E.size, E.version, E.expires_at)
    .select_from(
        workspace_t.outerjoin(kv_entry_t, and_(E.workspace_id == W.id, E.key == bindparam("key")))
    )
    .where(W.id == bindparam("ws"))
    .with_for_update(of=workspace_t)
)
_DELETE_ENTRY = prepared(delete(kv_entry_t).where(E.id == bindparam("id")))
_UPSERT_COLUMNS = (
    "value",
    "content_type",
    "size",
    "version",
    "expires_at",
    "updated_at",
    "created_at",
)  # an overwrite of an expired entry is a new entry


def _upsert(insert_fn: Callable[[Table], SqliteInsert | PgInsert]) -> Executable:
    columns = ("workspace_id", "key", *_UPSERT_COLUMNS)
    stmt = insert_fn(kv_entry_t).values({name: bindparam(name) for name in columns})
    return stmt.on_conflict_do_update(
        index_elements=[E.workspace_id, E.key],
        set_={name: getattr(stmt.excluded, name) for name in _UPSERT_COLUMNS},
    )


_UPSERT = {"sqlite": prepared(_upsert(sqlite_insert)), "postgresql": _upsert(pg_insert)}


# PostgreSQL: each KV write is one call of a function made by migration 0004, run as a statement
# of its own (autocommit), so the workspace row lock is taken and released inside the database.
_PG_SET = text(
    "SELECT * FROM ms_kv_set(:ws, :key, :value, :content_type, :expires_at, :now,"
    " :im_any, :im_tags, :inm_any, :inm_tags)"
)
_PG_DELETE = text(
    "SELECT * FROM ms_kv_delete(:ws, :key, :now, :im_any, :im_tags, :inm_any, :inm_tags)"
)


def pg_set(conn: Connection, params: dict) -> SetOutcome:
    return SetOutcome._make(conn.execute(_PG_SET, params).one())


_PG_SET_MANY = text(
    "SELECT * FROM ms_kv_set_many(:ws, :key, :value, :content_type, :expires_at, :now,"
    " :im_any, :im_tags, :inm_any, :inm_tags)"
)
_MANY_TAGS = ("im_tags", "inm_tags")  # text (comma-separated) there: see migration 0004


def pg_set_many(conn: Connection, many: list[dict]) -> list[SetOutcome]:
    """ms_kv_set_many: pg_set for each of `many`, in order, in one statement."""
    columns = {
        name: [",".join(map(str, p[name])) if name in _MANY_TAGS else p[name] for p in many]
        for name in many[0]
    }
    return [SetOutcome._make(row) for row in conn.execute(_PG_SET_MANY, columns)]


def pg_delete(conn: Connection, params: dict) -> DeleteOutcome:
    return DeleteOutcome._make(conn.execute(_PG_DELETE, params).one())


@dataclass(slots=True)
class Account:
    """A workspace's counters, read under the workspace row lock for the rest of a transaction."""

    workspace_id: int
    used: int
    quota: int
    version_seq: int


def lock_account(conn: Connection, workspace_id: int) -> Account:
    """Lock the workspace row (PostgreSQL; SQLite writers are serialised already) and read it.

    Every write of a workspace takes this lock first, so quota checks, versions and
    compare-and-set decisions are made one at a time per workspace, on every replica.
    """
    row = conn.execute(_LOCK_ACCOUNT, {"ws": workspace_id}).first()
    if row is None:
        raise WorkspaceGone(workspace_id)
    return Account(workspace_id, row.used_bytes, row.quota_bytes, row.version_seq)


def lock_account_with_entry(
    conn: Connection, workspace_id: int, key: bytes
) -> tuple[Account, EntryMeta | None]:
    """lock_account and entry_meta: in one statement on SQLite (the hot path of every KV write).

    Not on PostgreSQL: in READ COMMITTED, a SELECT ... FOR UPDATE that waits for the lock
    re-reads only the locked row when it gets it; the rows it joins stay as in the snapshot taken
    before the wait, so an entry written by the transaction it waited for would be invisible (and
    If-None-Match, If-Match and the quota charge would be decided on stale data). A second
    statement, run once the lock is held, sees every commit made before it.
    """
    if conn.dialect.name != "sqlite":
        return lock_account(conn, workspace_id), entry_meta(conn, workspace_id, key)
    row = conn.execute(_LOCK_ACCOUNT_WITH_ENTRY, {"ws": workspace_id, "key": key}).first()
    if row is None:
        raise WorkspaceGone(workspace_id)
    account = Account(workspace_id, row.used_bytes, row.quota_bytes, row.version_seq)
    entry = EntryMeta(row.id, row.size, row.version, row.expires_at) if row.id is not None else None
    return account, entry


def save_account(conn: Connection, account: Account) -> None:
    conn.execute(
        _SAVE_ACCOUNT,
        {"ws": account.workspace_id, "used": account.used, "seq": account.version_seq},
    )


def entry_meta(conn: Connection, workspace_id: int, key: bytes) -> EntryMeta | None:
    """The stored entry (expired or not) without its value."""
    row = conn.execute(_ENTRY_META, {"ws": workspace_id, "key": key}).first()
    return None if row is None else EntryMeta._make(row)


def upsert_entry(
    conn: Connection,
    *,
    workspace_id: int,
    key: bytes,
    value: bytes,
    content_type: str,
    size: int,
    version: int,
    expires_at: int | None,
    now: int,
) -> None:
    params = {
        "workspace_id": workspace_id,
        "key": key,
        "value": value,
        "content_type": content_type,
        "size": size,
        "version": version,
        "expires_at": expires_at,
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(_UPSERT[conn.dialect.name], params)


def delete_entry(conn: Connection, entry_id: int) -> None:
    conn.execute(_DELETE_ENTRY, {"id": entry_id})


def get_entry(
    conn: Connection, workspace_id: int, key: bytes, now: int, inline_max: int
) -> StoredEntry | None:
    """The live entry; its `value` is None when larger than `inline_max` (see get_value)."""
    params = {"ws": workspace_id, "key": key, "now": now, "inline": inline_max}
    row = conn.execute(_GET_ENTRY, params).first()
    return None if row is None else StoredEntry._make(row)


def get_value(conn: Connection, workspace_id: int, key: bytes, version: int) -> bytes | None:
    """The value of exactly that version (None if it changed since)."""
    return conn.execute(_GET_VALUE, {"ws": workspace_id, "key": key, "version": version}).scalar()


def head_entry(conn: Connection, workspace_id: int, key: bytes, now: int) -> StoredEntry | None:
    """The live entry without its value."""
    row = conn.execute(_HEAD_ENTRY, {"ws": workspace_id, "key": key, "now": now}).first()
    return None if row is None else StoredEntry(None, *row)


def list_entries(
    conn: Connection,
    workspace_id: int,
    lower: bytes,
    lower_inclusive: bool,
    upper: bytes | None,
    limit: int,
    now: int,
) -> list[ListedEntry]:
    """Live entries with lower <=/< key < upper, in byte order of the key."""
    conds = [E.workspace_id == workspace_id, live(now)]
    conds.append(E.key >= lower if lower_inclusive else E.key > lower)
    if upper is not None:
        conds.append(E.key < upper)
    result = conn.execute(
        select(E.key, E.size, E.content_type, E.version, E.expires_at, E.updated_at)
        .where(and_(*conds))
        .order_by(E.key)
        .limit(limit)
    )
    return [ListedEntry._make(row) for row in result]


def expired_entries(
    conn: Connection, now: int, *, workspace_id: int, limit: int = 1000
) -> list[Expired]:
    stmt = select(E.id, E.size).where(E.workspace_id == workspace_id, E.expires_at <= now)
    result = conn.execute(stmt.order_by(E.id).limit(limit))
    return [Expired._make(row) for row in result]


def delete_entries(conn: Connection, ids: list[int]) -> None:
    conn.execute(delete(kv_entry_t).where(E.id.in_(ids)))


def workspaces_with_expired(conn: Connection, now: int, limit: int) -> list[int]:
    result = conn.execute(
        select(E.workspace_id).where(E.expires_at <= now).group_by(E.workspace_id).limit(limit)
    )
    return [r[0] for r in result]


def stored_bytes(conn: Connection, workspace_id: int) -> int:
    """Recount of what the workspace stores in KV entries (for checks, not for the hot path)."""
    result = conn.execute(
        select(func.coalesce(func.sum(E.size), 0)).where(E.workspace_id == workspace_id)
    )
    return int(result.scalar_one())


# --- batches (services/kv_batch.py): a few set-based statements per batch, never one per key ---

# Keys per IN list: far under SQLite's 32766 bound variables, and a statement PostgreSQL plans
# once per size. A batch of 1,000 keys is two statements per step.
_IN_CHUNK = 500


def _chunks(keys: list[bytes]) -> list[list[bytes]]:
    return [keys[i : i + _IN_CHUNK] for i in range(0, len(keys), _IN_CHUNK)]


class BatchMeta(NamedTuple):
    """A stored entry (expired or not) as a batch write decides on it."""

    key: bytes
    id: int
    size: int
    version: int
    expires_at: int | None


def one_snapshot(conn: Connection) -> None:
    """A read of several statements sees one snapshot: SQLite's read transactions do already;
    PostgreSQL's READ COMMITTED takes one per statement, so ask for REPEATABLE READ (the
    transaction's first statement; a read-only one never fails to serialize)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def entry_metas(conn: Connection, workspace_id: int, keys: list[bytes]) -> dict[bytes, BatchMeta]:
    """The stored entries (expired or not) of `keys`, without values, by key."""
    found: dict[bytes, BatchMeta] = {}
    for chunk in _chunks(keys):
        stmt = select(E.key, E.id, E.size, E.version, E.expires_at).where(
            E.workspace_id == workspace_id, E.key.in_(chunk)
        )
        for row in conn.execute(stmt):
            found[row.key] = BatchMeta._make(row)
    return found


class BatchRead(NamedTuple):
    """A live entry as a batch read sees it; `value` is None when larger than the inline limit
    (read it with values_of) or not asked for."""

    key: bytes
    size: int  # key + value bytes
    content_type: str
    version: int
    expires_at: int | None
    updated_at: int
    value: bytes | None


# SQLite runs this one on the driver: an IN list cannot be a prepared statement (its number of
# parameters varies), and through SQLAlchemy a read of 100 keys cost 1.1 ms against 0.18 ms on
# the driver (measured), most of a batch get. The statement is what _BATCH_READ says.
_BATCH_READ_SQLITE = (
    "SELECT key, size, content_type, version, expires_at, updated_at,"
    " CASE WHEN size - length(key) <= ? THEN value END FROM kv_entry"
    " WHERE workspace_id = ? AND (expires_at IS NULL OR expires_at > ?) AND key IN ({})"
)


def read_many(
    conn: Connection, workspace_id: int, keys: list[bytes], now: int, inline: int
) -> dict[bytes, BatchRead]:
    """The live entries of `keys` by key, each with its value when at most `inline` bytes
    (inline < 0: no values)."""
    found: dict[bytes, BatchRead] = {}
    raw = getattr(conn, "raw", None)  # (storage/prepared.py's FastConnection: SQLite's)
    for chunk in _chunks(keys):
        if raw is not None:
            sql = _BATCH_READ_SQLITE.format(",".join("?" * len(chunk)))
            rows = raw.execute(sql, [inline, workspace_id, now, *chunk]).fetchall()
        else:
            value = case((E.size - func.length(E.key) <= inline, E.value), else_=None)
            stmt = select(
                E.key, E.size, E.content_type, E.version, E.expires_at, E.updated_at, value
            ).where(E.workspace_id == workspace_id, live(now), E.key.in_(chunk))
            rows = list(conn.execute(stmt))
        for row in rows:
            found[row[0]] = BatchRead._make(row)
    return found


def values_of(conn: Connection, workspace_id: int, keys: list[bytes]) -> dict[bytes, bytes]:
    """The values of `keys` (read in the snapshot their entries were read in: one_snapshot)."""
    found: dict[bytes, bytes] = {}
    for chunk in _chunks(keys):
        stmt = select(E.key, E.value).where(E.workspace_id == workspace_id, E.key.in_(chunk))
        for key, value in conn.execute(stmt):
            found[key] = value
    return found


def upsert_entries(conn: Connection, rows: list[dict]) -> None:
    """upsert_entry for each of `rows` (its keyword arguments, `workspace_id` ... `now`), as
    one statement run over all of them (the driver's executemany)."""
    if not rows:
        return
    params = [
        {
            "workspace_id": r["workspace_id"],
            "key": r["key"],
            "value": r["value"],
            "content_type": r["content_type"],
            "size": r["size"],
            "version": r["version"],
            "expires_at": r["expires_at"],
            "created_at": r["now"],
            "updated_at": r["now"],
        }
        for r in rows
    ]
    conn.execute(_UPSERT[conn.dialect.name], params)


def delete_entries_many(conn: Connection, ids: list[int]) -> None:
    for i in range(0, len(ids), _IN_CHUNK):
        delete_entries(conn, ids[i : i + _IN_CHUNK])
