"""SQL for workspaces and API keys."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from .tables import api_key_t, workspace_t

W = workspace_t.c
K = api_key_t.c


class WorkspaceRecord(NamedTuple):
    id: int
    name: str
    quota_bytes: int
    used_bytes: int
    created_at: int


class KeyRecord(NamedTuple):
    id: int
    prefix: str
    label: str
    created_at: int
    revoked_at: int | None


class KeyOwner(NamedTuple):
    """A live key's id and the workspace it opens."""

    id: int
    workspace_id: int
    workspace: str


_WORKSPACE = select(W.id, W.name, W.quota_bytes, W.used_bytes, W.created_at)
_KEY = select(K.id, K.prefix, K.label, K.created_at, K.revoked_at)


def insert_workspace(conn: Connection, name: str, quota: int, now: int) -> int:
    result = conn.execute(
        insert(workspace_t)
        .values(name=name, quota_bytes=quota, used_bytes=0, version_seq=0, created_at=now)
        .returning(workspace_t.c.id)
    )
    workspace_id: int = result.scalar_one()
    return workspace_id


def workspace_by_name(conn: Connection, name: str) -> WorkspaceRecord | None:
    row = conn.execute(_WORKSPACE.where(W.name == name)).first()
    return None if row is None else WorkspaceRecord._make(row)


def list_workspaces(conn: Connection) -> list[tuple[WorkspaceRecord, int]]:
    """Every workspace, with its number of live keys."""
    active_keys = (
        select(func.count())
        .where(K.workspace_id == W.id, K.revoked_at.is_(None))
        .scalar_subquery()
        .label("active_keys")
    )
    result = conn.execute(_WORKSPACE.add_columns(active_keys).order_by(W.id))
    return [(WorkspaceRecord._make(row[:-1]), row[-1]) for row in result]


def count_workspaces(conn: Connection) -> int:
    return (conn.execute(select(func.count()).select_from(workspace_t))).scalar_one()


def delete_workspace(conn: Connection, workspace_id: int) -> bool:
    result = conn.execute(delete(workspace_t).where(workspace_t.c.id == workspace_id))
    return result.rowcount > 0


def set_quota(conn: Connection, workspace_id: int, quota: int) -> None:
    conn.execute(
        update(workspace_t).where(workspace_t.c.id == workspace_id).values(quota_bytes=quota)
    )


def insert_key(
    conn: Connection, workspace_id: int, key_hash: str, prefix: str, label: str, now: int
) -> int:
    result = conn.execute(
        insert(api_key_t)
        .values(
            workspace_id=workspace_id, key_hash=key_hash, prefix=prefix, label=label, created_at=now
        )
        .returning(api_key_t.c.id)
    )
    key_id: int = result.scalar_one()
    return key_id


def key_by_hash(conn: Connection, key_hash: str) -> KeyOwner | None:
    """The live key with this hash and its workspace's name, or None."""
    row = conn.execute(
        select(K.id, K.workspace_id, W.name)
        .join(workspace_t, W.id == K.workspace_id)
        .where(K.key_hash == key_hash, K.revoked_at.is_(None))
    ).first()
    return None if row is None else KeyOwner._make(row)


def list_keys(conn: Connection, workspace_id: int) -> list[KeyRecord]:
    result = conn.execute(_KEY.where(K.workspace_id == workspace_id).order_by(K.id))
    return [KeyRecord._make(row) for row in result]


def revoke_key(conn: Connection, key_id: int, now: int) -> str | None:
    """Revoke a live key; returns its hash, or None when there was no such live key."""
    result = conn.execute(
        update(api_key_t)
        .where(K.id == key_id, K.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(K.key_hash)
    )
    return result.scalar()
