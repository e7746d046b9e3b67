"""Migration 0002 creates exactly the memory tables the models declare, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

from memory_service.storage import tables  # noqa: F401  (registers every table)
from memory_service.storage.migrations import upgrade

MEMORY_TABLES = {"memory", "memory_message", "memory_block", "memory_idempotency"}


def _diff(sync_conn) -> list:  # noqa: ANN001
    ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
    return compare_metadata(ctx, SQLModel.metadata)


def _touches_memory(change) -> bool:  # noqa: ANN001
    text = repr(change)
    return any(name in text for name in MEMORY_TABLES)


async def test_migrated_memory_tables_match_the_models(database_url: str) -> None:
    await upgrade(database_url)
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    assert names >= MEMORY_TABLES
    assert [d for d in diff if _touches_memory(d)] == []
