"""/health and /ready: no key needed, no data said; /ready follows the database away and back."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from memory_service.storage.migrations import head_revision
from tests.conftest import make_api
from tests.support.pgserver import PgServer, pg_wanted


async def set_revision(database_url: str, revision: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    finally:
        await engine.dispose()


def assert_not_ready(r, reason: str) -> None:  # noqa: ANN001
    assert r.status_code == 503
    body = r.json()
    assert body["success"] is False and body["code"] == "not_ready"
    assert reason in body["error"]


async def test_probes_need_no_key_and_say_nothing_else(api) -> None:  # noqa: ANN001
    await api.workspace("private-name")
    for path, status, message in (("/health", "ok", "Serving"), ("/ready", "ready", "Ready")):
        r = await api.client.get(path)
        assert r.status_code == 200
        assert r.json() == {"success": True, "message": message, "status": status}


async def test_not_ready_while_the_schema_is_behind(api) -> None:  # noqa: ANN001
    head = head_revision(api.settings.database_url)
    await set_revision(api.settings.database_url, "0001")
    assert_not_ready(await api.client.get("/ready"), "memory-service migrate")
    assert (await api.client.get("/health")).status_code == 200
    await set_revision(api.settings.database_url, head)
    assert (await api.client.get("/ready")).status_code == 200


async def test_sqlite_file_gone_and_back(sqlite_api) -> None:  # noqa: ANN001
    ws = await sqlite_api.workspace("w")
    assert (await sqlite_api.client.put("/api/kv/k", content=b"v", headers=ws)).status_code == 201
    path = make_url(sqlite_api.settings.database_url).database
    moved = path + ".moved"
    os.rename(path, moved)
    try:
        assert_not_ready(await sqlite_api.client.get("/ready"), "database unreachable")
        assert (await sqlite_api.client.get("/health")).status_code == 200
    finally:
        os.rename(moved, path)
    assert (await sqlite_api.client.get("/ready")).status_code == 200
    assert (await sqlite_api.client.get("/api/kv/k", headers=ws)).content == b"v"


async def test_postgresql_server_down_and_back(tmp_path) -> None:  # noqa: ANN001
    if not pg_wanted():
        pytest.skip("PostgreSQL tests skipped (MEMORY_TEST_SKIP_PG=1)")
    with PgServer(tmp_path) as pg:  # its own server: stopping it must not hurt other tests
        api, _ = await make_api(pg.create_database("ready"), ready_timeout_seconds=5)
        async with api.client:
            ws = await api.workspace("w")
            r = await api.client.put("/api/kv/k", content=b"before", headers=ws)
            assert r.status_code == 201
            assert (await api.client.get("/ready")).status_code == 200
            pg.halt()
            assert_not_ready(await api.client.get("/ready"), "database unreachable")
            assert (await api.client.get("/health")).status_code == 200
            pg.start_again()
            assert (await api.client.get("/ready")).status_code == 200
            r = await api.client.put("/api/kv/k", content=b"after", headers=ws)
            assert r.status_code == 200
            assert (await api.client.get("/api/kv/k", headers=ws)).content == b"after"
