"""SQL for workspaces and API keys."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from .tables import api_key_t, workspace_t


def insert_workspace(conn: Connection, name: str, quota: int, now: int) -> int:
    result = conn.execute(
        insert(workspace_t)
        .values(name=name, quota_bytes=quota, used_bytes=0, version_seq=0, created_at=now)
        .returning(workspace_t.c.id)
    )
    workspace_id: int = result.scalar_one()
    return workspace_id


def workspace_by_name(conn: Connection, name: str) -> Row | None:
    result = conn.execute(select(workspace_t).where(workspace_t.c.name == name))
    return result.first()


def workspace_by_id(conn: Connection, workspace_id: int) -> Row | None:
    result = conn.execute(select(workspace_t).where(workspace_t.c.id == workspace_id))
    return result.first()


def list_workspaces(conn: Connection) -> list[Row]:
    active_keys = (
        select(func.count())
        .where(api_key_t.c.workspace_id == workspace_t.c.id, api_key_t.c.revoked_at.is_(None))
        .scalar_subquery()
        .label("active_keys")
    )
    result = conn.execute(select(workspace_t, active_keys).order_by(workspace_t.c.id))
    return list(result)


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


def key_by_hash(conn: Connection, key_hash: str) -> Row | None:
    """The live key with this hash and its workspace's name, or None."""
    result = conn.execute(
        select(api_key_t.c.id, api_key_t.c.workspace_id, workspace_t.c.name)
        .join(workspace_t, workspace_t.c.id == api_key_t.c.workspace_id)
        .where(api_key_t.c.key_hash == key_hash, api_key_t.c.revoked_at.is_(None))
    )
    return result.first()


def list_keys(conn: Connection, workspace_id: int) -> list[Row]:
    result = conn.execute(
        select(api_key_t).where(api_key_t.c.workspace_id == workspace_id).order_by(api_key_t.c.id)
    )
    return list(result)


def revoke_key(conn: Connection, key_id: int, now: int) -> Row | None:
    """Revoke a live key; returns (id, key_hash) or None when there was no such live key."""
    result = conn.execute(
        update(api_key_t)
        .where(api_key_t.c.id == key_id, api_key_t.c.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(api_key_t.c.id, api_key_t.c.key_hash)
    )
    return result.first()
