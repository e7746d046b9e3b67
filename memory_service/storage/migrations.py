"""Run Alembic migrations programmatically (the CLI's `migrate`, and `serve` at start-up)."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATION_LOCK = 0x6D656D6F  # pg_advisory_xact_lock key ("memo") that serialises migrations


def script_location() -> Path:
    """The migrations folder. Installs (wheel, sdist, editable) carry the top-level alembic/
    folder as the package `memory_service.migrations`; a checkout used without any install
    (only on sys.path) has just the folder itself, next to the package."""
    spec = importlib.util.find_spec("memory_service.migrations")
    for folder in (spec and spec.submodule_search_locations) or []:
        if (Path(folder) / "env.py").is_file():
            return Path(folder)
    checkout = Path(__file__).resolve().parents[2] / "alembic"
    if (checkout / "env.py").is_file():
        return checkout
    raise RuntimeError("the migrations are missing: memory_service.migrations is not installed")


def alembic_config(database_url: str) -> Config:
    # No alembic.ini: everything Alembic needs is set here (the ini is for the alembic CLI).
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    cfg.attributes["database_url"] = database_url
    return cfg


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the database to `revision`, sharing one connection with Alembic."""
    cfg = alembic_config(database_url)
    engine = create_async_engine(database_url)
    if engine.dialect.name == "sqlite":
        # The default file lives in a folder that a fresh machine does not have yet.
        path = engine.url.database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        _transactional_sqlite(engine)
    try:
        async with engine.connect() as conn:

            def _run(sync_conn: Connection) -> None:
                if sync_conn.dialect.name == "postgresql":
                    # Replicas started together would all migrate at once and fail on each
                    # other's DDL: one at a time (held until commit); the others then find the
                    # schema current. (SQLite's BEGIN IMMEDIATE serialises them already.)
                    sync_conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, revision)

            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


def _transactional_sqlite(engine: AsyncEngine) -> None:
    """Let SQLite run each migration in a real transaction (the driver would not open one before
    DDL), so a failed migration leaves the database as it was."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA journal_mode=WAL")

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


async def current_revision(conn: AsyncConnection) -> str | None:
    return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
