"""Run Alembic migrations programmatically (the CLI's `migrate`, and `serve` at start-up)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from .engines import make_sqlite_folder, one_off_engine

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
    make_sqlite_folder(database_url)
    # Each migration in a real transaction on SQLite, so a failed one leaves the database as it
    # was. Foreign keys off, as SQLite's default: batch mode rebuilds a table by copy, drop and
    # rename, and a drop with them on would cascade into the rows that refer to it.
    engine = one_off_engine(database_url, sqlite_begin="BEGIN IMMEDIATE", foreign_keys=False)
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


async def current_revision(conn: AsyncConnection) -> str | None:
    return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
