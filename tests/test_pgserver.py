import asyncio
import socket

import asyncpg
import pytest

from tests.support.pgserver import pg_wanted, start_pg

pytestmark = pytest.mark.skipif(not pg_wanted(), reason="MEMORY_TEST_SKIP_PG is set")


async def _server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("select version()")
    finally:
        await conn.close()


def test_throwaway_server_starts_serves_and_stops(tmp_path):
    with start_pg(tmp_path) as pg:
        assert pg.url("memtest") == f"postgresql+asyncpg://postgres@127.0.0.1:{pg.port}/memtest"
        pg.create_database("memtest")
        version = asyncio.run(_server_version(pg.dsn("memtest")))
        assert version.startswith("PostgreSQL ")
        assert int(version.split()[1].split(".")[0]) >= 15, version
    with pytest.raises(OSError), socket.create_connection((pg.host, pg.port), timeout=2):
        pass
    assert not pg.root.exists()
