"""Every engine the service opens, and the PRAGMAs of every SQLite connection, in one place.

Three kinds of engine: the serving process's SQLite engines (sync, on the stdlib driver, run by
`database.Database`'s threads), its PostgreSQL pool (asyncpg), and one-off async engines for the
migrations and for backup export/import, which run once and are disposed of.

Every SQLite connection is opened the same way (`sqlite_pragmas`): autocommit at the driver level,
since a deferred transaction that reads then writes fails at once with "database is locked" where
BEGIN IMMEDIATE would have waited, so each engine begins its transactions itself; WAL, checked,
since readers must never block the writer; foreign keys on where the schema's cascades are relied
upon.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..settings import Settings


def sqlite_pragmas(
    dbapi_conn: Any,
    *,
    busy_timeout_ms: int | None = None,
    synchronous: str | None = None,
    foreign_keys: bool = True,
) -> None:
    """Set up one new SQLite connection (the stdlib driver's, or aiosqlite's adapter of it)."""
    dbapi_conn.isolation_level = None
    mode = dbapi_conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise RuntimeError(f"SQLite refused WAL mode (got {mode!r})")
    if synchronous is not None:
        dbapi_conn.execute(f"PRAGMA synchronous={synchronous}")
    if busy_timeout_ms is not None:
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    dbapi_conn.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")


def make_sqlite_folder(database_url: str) -> None:
    """The default file lives in a folder that a fresh machine does not have yet."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def sync_sqlite_url(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="sqlite").render_as_string(hide_password=False)


def sqlite_engine(
    settings: Settings, *, pool_size: int, busy_timeout_ms: int | None = None
) -> Engine:
    """A serving engine: the stdlib driver, used from the database threads (database.py)."""
    busy = settings.sqlite_busy_timeout_ms if busy_timeout_ms is None else busy_timeout_ms
    engine = create_engine(
        sync_sqlite_url(settings.database_url),
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"timeout": busy / 1000, "check_same_thread": False},
    )
    sync = settings.sqlite_synchronous

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        sqlite_pragmas(dbapi_conn, busy_timeout_ms=busy, synchronous=sync)

    return engine


def pg_engine(settings: Settings) -> AsyncEngine:
    """A fixed pool of PostgreSQL connections, kept open and reused.

    No overflow: connections opened past the pool size under a burst were closed again when
    returned, so steady load opened and closed connections all the time (a fork on the server
    each). No `pool_pre_ping`: it cost a round trip per checkout. A connection that died while in
    the pool (server restart, idle kill) is caught at checkout without a round trip, from the
    driver's own state (the server's goodbye closes the socket, which asyncpg sees), and replaced;
    one that dies during a request makes that request a 503 and invalidates the pool's older
    connections, so the next request gets a new one.
    """
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.pg_pool_size,
        max_overflow=0,
        pool_pre_ping=False,
    )

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, _record: object, _proxy: object) -> None:
        raw = dbapi_conn._connection
        if raw.is_closed():
            raise DisconnectionError("connection closed while in the pool")
        if raw._loop is not asyncio.get_running_loop():
            # Made on another event loop (an app driven from two loops, as test clients do):
            # unusable here, so replaced, as the ping that used to run here replaced it.
            raise DisconnectionError("connection belongs to another event loop")

    return engine


def one_off_engine(
    database_url: str,
    *,
    sqlite_begin: str,
    busy_timeout_ms: int | None = None,
    foreign_keys: bool = True,
) -> AsyncEngine:
    """An engine for one job (a migration run, a backup export or import), disposed of after it.

    On SQLite every transaction begins with `sqlite_begin`: the driver would begin none before a
    SELECT or DDL (so two reads would not share a snapshot, and a failed migration would leave
    half its changes), nor an immediate one for writing."""
    engine = create_async_engine(database_url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
            sqlite_pragmas(dbapi_conn, busy_timeout_ms=busy_timeout_ms, foreign_keys=foreign_keys)

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql(sqlite_begin)

    return engine
