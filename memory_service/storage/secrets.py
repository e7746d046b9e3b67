"""The server-wide secrets table (migration 0003)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from .tables import server_secret_t


def secret(conn: Connection, name: str) -> bytes | None:
    return conn.execute(
        select(server_secret_t.c.value).where(server_secret_t.c.name == name)
    ).scalar()
