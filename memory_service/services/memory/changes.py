"""Deletes and block names as transactions, each under the workspace's account lock (SQLite;
PostgreSQL runs the same rules as one function call each: pg_add.py, migration 0005)."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from ...storage import kv as kv_sql
from ...storage import memory as sql
from ...storage.memory import Filter
from ..kv import charge


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
