"""PostgreSQL: the writes made by one server-side function call each (migration 0005).

Each is run as a statement of its own (Database.write_statement, autocommit) or with others
arriving at the same moment (storage/pg_batch.py), so the workspace row lock it takes is held
within one round trip. See the migration for what each function decides and returns.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.engine import Connection

_APPEND_ARGS = (
    ":ws, :conv, :block, :name, :name_bytes, {messages}, :ids, :key, :hash, :cutoff,"
    " :max_keys, :last_n, :keep_system, :now"
)
_APPEND = text(
    "SELECT * FROM ms_memory_append("
    + _APPEND_ARGS.format(messages=":roles, :contents, :sizes")
    + ")"
)
_APPEND_MANY = text(
    "SELECT * FROM ms_memory_append_many("
    + _APPEND_ARGS.format(messages=":counts, :roles, :contents, :sizes")
    + ")"
)
_MESSAGE_COLUMNS = ("roles", "contents", "sizes")  # one list per add; flattened in a batch
_DELETE = text("SELECT * FROM ms_memory_delete(:ws, :conv, :block, :name)")
_BLOCK_SET = text("SELECT * FROM ms_block_set(:ws, :block, :name, :name_bytes, :now)")
_KV_SWEEP = text("SELECT * FROM ms_kv_sweep(:ws, :now)")


class Appended(NamedTuple):
    """What ms_memory_append answers: `status` ok or replay, else why nothing was written (the
    figures of a refusal in used/quota/delta, or the oldest idempotency record's time)."""

    status: str
    memory_id: int | None
    first_seq: int | None
    message_count: int | None
    created_at: int | None
    updated_at: int | None
    block_name: str | None
    created: bool | None
    window_start: int | None
    seqs: list[int] | None  # the window read back (lastN, keepSystem, or the replayed add)
    roles: list[str] | None
    contents: list[bytes] | None
    used: int | None
    quota: int | None
    delta: int | None
    oldest: int | None


class Deleted(NamedTuple):
    status: str
    deleted: int | None
    freed: int | None


class Charged(NamedTuple):
    """ms_block_set: the account after, or, refused, the figures of why."""

    status: str
    used: int | None
    quota: int | None
    delta: int | None


class Swept(NamedTuple):
    """ms_kv_sweep: the account after freeing the expired entries' bytes."""

    status: str
    used: int | None
    quota: int | None
    freed: int | None


def append(conn: Connection, params: dict) -> Appended:
    return Appended._make(conn.execute(_APPEND, params).one())


def append_many(conn: Connection, many: list[dict]) -> list[Appended]:
    """ms_memory_append_many: `append` for each of `many`, in order, in one statement."""
    columns: dict[str, list] = {
        name: [p[name] for p in many] for name in many[0] if name not in _MESSAGE_COLUMNS
    }
    columns["counts"] = [len(p["roles"]) for p in many]
    for name in _MESSAGE_COLUMNS:
        columns[name] = [item for p in many for item in p[name]]
    return [Appended._make(r) for r in conn.execute(_APPEND_MANY, columns)]


def delete_memories(conn: Connection, params: dict) -> Deleted:
    """ms_memory_delete."""
    return Deleted._make(conn.execute(_DELETE, params).one())


def set_block(conn: Connection, params: dict) -> Charged:
    """ms_block_set."""
    return Charged._make(conn.execute(_BLOCK_SET, params).one())


def kv_sweep(conn: Connection, params: dict) -> Swept:
    """ms_kv_sweep."""
    return Swept._make(conn.execute(_KV_SWEEP, params).one())


# Administration: each write of a workspace's own row (or of a row that references it, which
# locks it too) as one statement naming the workspace, so the lookup by name and the write are
# one round trip. Each returns the id written, or None when no workspace has that name.
_SET_QUOTA = text("UPDATE workspace SET quota_bytes = :quota WHERE name = :name RETURNING id")
_DELETE_WORKSPACE = text("DELETE FROM workspace WHERE name = :name RETURNING id")
_INSERT_KEY = text(
    "INSERT INTO api_key (workspace_id, key_hash, prefix, label, created_at)"
    " SELECT w.id, CAST(:hash AS varchar), CAST(:prefix AS varchar), CAST(:label AS varchar),"
    " CAST(:now AS bigint) FROM workspace w WHERE w.name = :name RETURNING id"
)


# A new workspace and its first key, in one statement (a unique name taken by another raises
# IntegrityError, as the two inserts did).
_CREATE_WORKSPACE = text(
    "WITH ws AS (INSERT INTO workspace (name, quota_bytes, used_bytes, version_seq, created_at)"
    " VALUES (:name, :quota, 0, 0, :now) RETURNING id)"
    " INSERT INTO api_key (workspace_id, key_hash, prefix, label, created_at)"
    " SELECT ws.id, CAST(:hash AS varchar), CAST(:prefix AS varchar), 'initial',"
    " CAST(:now AS bigint) FROM ws RETURNING id"
)


def create_workspace(conn: Connection, params: dict) -> int:
    """The new workspace's first key's id."""
    key_id: int = conn.execute(_CREATE_WORKSPACE, params).scalar_one()
    return key_id


def set_quota(conn: Connection, params: dict) -> int | None:
    return conn.execute(_SET_QUOTA, params).scalar()


def delete_workspace(conn: Connection, params: dict) -> int | None:
    return conn.execute(_DELETE_WORKSPACE, params).scalar()


def insert_key(conn: Connection, params: dict) -> int | None:
    return conn.execute(_INSERT_KEY, params).scalar()
