"""Fixtures: every test runs against real databases in a temp directory: an SQLite file, and a
PostgreSQL 15 server the suite starts itself (MEMORY_TEST_SKIP_PG=1 opts out locally, never in CI).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from litestar.testing import AsyncTestClient

from memory_service.app import create_app
from memory_service.clock import now_ms
from memory_service.settings import Settings, sqlite_url
from memory_service.storage.migrations import upgrade
from tests.support.live import live_server  # noqa: F401  (the live-server fixture, for every test)
from tests.support.pgserver import PgServer, pg_wanted

ADMIN_TOKEN = "memory-service-test-admin-token-0123456789"
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    if not pg_wanted():
        pytest.skip("PostgreSQL tests skipped (MEMORY_TEST_SKIP_PG=1)")
    # In the system temp dir, not pytest's: every pytest session (each xdist worker too) resets
    # /tmp/pytest-of-$USER to mode 700, which would lock the `postgres` user out of its files.
    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:  # noqa: ANN001
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "memory.db")
    pg: PgServer = request.getfixturevalue("pg")
    return pg.create_database(f"t{next(_db_counter)}")


@pytest.fixture
def sqlite_database_url(tmp_path) -> str:  # noqa: ANN001
    return sqlite_url(tmp_path / "memory.db")


@dataclass
class FakeClock:
    """Milliseconds that tests can move forward, to pass a TTL without sleeping."""

    offset: int = 0

    def __call__(self) -> int:
        return now_ms() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += int(seconds * 1000)


@dataclass
class Api:
    client: AsyncTestClient
    clock: FakeClock
    settings: Settings
    admin: dict[str, str] = field(
        default_factory=lambda: {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )

    async def workspace(self, name: str, quota: int | None = None) -> dict[str, str]:
        """Create a workspace through the admin API; returns headers carrying its key."""
        body: dict = {"name": name}
        if quota is not None:
            body["quotaBytes"] = quota
        r = await self.client.post("/admin/workspaces", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['key']}"}


async def stored_bytes(database_url: str, workspace: str) -> int:
    """Recount, straight from the tables, the bytes a workspace really stores."""
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from memory_service.storage.memory_tables import memory_block_t, memory_message_t, memory_t
    from memory_service.storage.tables import kv_entry_t, workspace_t

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            ws = select(workspace_t.c.id).where(workspace_t.c.name == workspace).scalar_subquery()
            kv = await conn.execute(
                select(func.coalesce(func.sum(kv_entry_t.c.size), 0)).where(
                    kv_entry_t.c.workspace_id == ws
                )
            )
            # Memory messages count too (the memory rows' own `bytes` column is not trusted).
            messages = await conn.execute(
                select(func.coalesce(func.sum(memory_message_t.c.size), 0))
                .select_from(memory_message_t.join(memory_t))
                .where(memory_t.c.workspace_id == ws)
            )
            # And the memories' ids and the block registry's names, charged like KV keys.
            ids = await conn.execute(
                select(memory_t.c.conversation_id, memory_t.c.block_id).where(
                    memory_t.c.workspace_id == ws
                )
            )
            names = await conn.execute(
                select(memory_block_t.c.block_id, memory_block_t.c.name).where(
                    memory_block_t.c.workspace_id == ws
                )
            )
            other = sum(len(a.encode()) + len(b.encode()) for a, b in [*ids, *names])
            return int(kv.scalar_one()) + int(messages.scalar_one()) + other
    finally:
        await engine.dispose()


async def make_api(database_url: str, **overrides: object) -> tuple[Api, object]:
    await upgrade(database_url)
    # Overrides may replace the defaults too (e.g. admin_token=None turns the admin API off).
    overrides = {"admin_token": ADMIN_TOKEN, "sweep_interval_seconds": 0, **overrides}
    settings = Settings(database_url=database_url, **overrides)
    clock = FakeClock()
    app = create_app(settings, clock=clock)
    return Api(AsyncTestClient(app), clock, settings), app


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    """The real app over a real database of each kind, driven in-process through ASGI."""
    made, _ = await make_api(database_url)
    async with made.client:
        yield made


@pytest.fixture
async def sqlite_api(sqlite_database_url: str) -> AsyncIterator[Api]:
    made, _ = await make_api(sqlite_database_url)
    async with made.client:
        yield made


@pytest.fixture(scope="session", autouse=True)
def _no_secrets_in_server_logs() -> Iterator[None]:
    """After the whole run: no log of any live server holds an API key or the admin token."""
    yield
    from tests.support.server import secrets_in_logs

    leaks = secrets_in_logs((ADMIN_TOKEN,))
    assert not leaks, f"secrets found in server logs: {leaks}"
