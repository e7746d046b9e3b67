"""PostgreSQL connections: a fixed pool reused under load, and a restarted server survived."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest

from tests.conftest import make_api
from tests.support.pgserver import PgServer, pg_wanted
from tests.support.server import LiveServer, create_workspace

pytestmark = pytest.mark.skipif(not pg_wanted(), reason="PostgreSQL tests skipped")


async def backends(pg: PgServer, dbname: str) -> set[tuple[int, object]]:
    """The open sessions of database `dbname`: (backend pid, start time) of each."""
    conn = await asyncpg.connect(pg.dsn("postgres"))
    try:
        rows = await conn.fetch(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE datname = $1", dbname
        )
        return {(r["pid"], r["backend_start"]) for r in rows}
    finally:
        await conn.close()


async def test_steady_load_reuses_a_fixed_pool(pg: PgServer, tmp_path) -> None:  # noqa: ANN001
    """48 concurrent clients on a live server with a pool of 3: the three connections are opened
    once and reused; none is opened and closed per burst (overflow)."""
    dbname = f"pool_reuse_{uuid.uuid4().hex[:8]}"
    url = pg.create_database(dbname)
    key = create_workspace(url, "w")
    ws = {"Authorization": f"Bearer {key}"}
    with LiveServer(url, tmp_path, env={"MEMORY_PG_POOL_SIZE": "3"}) as server:
        limits = httpx.Limits(max_connections=48)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:

            async def burst(round_: int) -> None:
                async def one(i: int) -> None:
                    r = await client.put(f"/api/kv/k{i}", content=b"%d" % round_, headers=ws)
                    assert r.status_code == (201 if round_ == 0 else 200), r.text
                    assert (await client.get(f"/api/kv/k{i}", headers=ws)).status_code == 200

                await asyncio.gather(*(one(i) for i in range(48)))

            await burst(0)  # the pool fills up
            before = await backends(pg, dbname)
            for round_ in range(1, 6):
                await burst(round_)
            after = await backends(pg, dbname)
    assert len(before) == 3
    assert after == before  # the same three sessions: not one opened (or closed) under the load


async def test_first_write_after_a_restart_succeeds(tmp_path) -> None:  # noqa: ANN001
    """Every pooled connection died with the server; the first request after it is back, a write,
    gets a live connection (dead ones are dropped at checkout, without a ping round trip)."""
    with PgServer(tmp_path) as pg:
        api, _ = await make_api(pg.create_database("restart"), pg_pool_size=4)
        async with api.client:
            ws = await api.workspace("w")
            await asyncio.gather(
                *(api.client.put(f"/api/kv/k{i}", content=b"x", headers=ws) for i in range(8))
            )
            pg.halt()
            pg.start_again()
            for i in range(8):  # each pooled connection in turn: none of them is a 503
                r = await api.client.put(f"/api/kv/k{i}", content=b"after", headers=ws)
                assert r.status_code == 200, r.text
            assert (await api.client.get("/api/kv/k0", headers=ws)).content == b"after"
