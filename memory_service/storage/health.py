"""Readiness probes: can this process reach its database, and at which migration is it?"""

from __future__ import annotations

import asyncio
import sqlite3
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from .database import Database

_REVISION = text("SELECT version_num FROM alembic_version")


def schema_revision(conn: Connection) -> str | None:
    return conn.execute(_REVISION).scalar()


def _sqlite_revision(path: str, timeout: float) -> str | None:
    # A fresh connection to the file at its path (never create it: mode=rw): the process's open
    # connections would go on reading a file that was moved or deleted under them.
    conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=timeout)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
    finally:
        conn.close()


async def database_revision(db: Database, limit_seconds: float) -> str | None:
    """The migration the database is at; raises when it does not answer within the limit."""
    if db.is_sqlite:
        path = make_url(db.settings.database_url).database or ""
        loop = asyncio.get_running_loop()
        call = loop.run_in_executor(None, _sqlite_revision, path, limit_seconds)
        return await asyncio.wait_for(call, limit_seconds)
    return await asyncio.wait_for(db.read(schema_revision), limit_seconds)
