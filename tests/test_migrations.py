"""Migrations: a database made at the first revision, with data in it, upgrades to head keeping
every byte; and the models and the migrations describe the same schema (`alembic check`).

The data is written with plain SQL in the shape revision 0001 defined (the code of later
revisions cannot run against the old schema); what it must look like afterwards is checked
through the HTTP API of the current code.
"""

from __future__ import annotations

import asyncio
import hashlib
from urllib.parse import quote

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from memory_service.storage.migrations import alembic_config, upgrade
from tests.conftest import make_api, stored_bytes

FIRST = "0001"
NOW = 1_790_000_000_000  # ms, a fixed past instant
FAR = 4_000_000_000_000  # an expiry far in the future

# (workspace, quota, {key: (value, content type, version, expires_at)}, [(secret, revoked)])
FIXTURE = [
    (
        "acme",
        10_000_000,
        {
            "greeting": (b"hello", "text/plain", 3, None),
            "bin/\u00fcml\U0001f511": (bytes(range(256)) * 8, "application/octet-stream", 5, None),
            "100%_a:b": (b"", "application/x-empty", 7, FAR),
            "big": (b"\x00\xff" * 40_000, "image/png", 8, None),
        },
        [("msk_acme-live-key", False), ("msk_acme-revoked-key", True), ("msk_acme-two", False)],
    ),
    ("empty-ws", 1234, {}, [("msk_empty-key", False)]),
    (
        "beta",
        2**40,
        {"greeting": (b"beta's own", "text/plain", 1, None)},
        [("msk_beta-key", False)],
    ),
]


def sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def fill_at_first_revision(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for ws_id, (name, quota, entries, keys) in enumerate(FIXTURE, start=1):
                used = sum(len(k.encode()) + len(v[0]) for k, v in entries.items())
                seq = max((v[2] for v in entries.values()), default=0)
                await conn.execute(
                    text(
                        "INSERT INTO workspace (id, name, quota_bytes, used_bytes, version_seq,"
                        " created_at) VALUES (:id, :name, :quota, :used, :seq, :now)"
                    ),
                    {
                        "id": ws_id,
                        "name": name,
                        "quota": quota,
                        "used": used,
                        "seq": seq,
                        "now": NOW,
                    },
                )
                for secret, revoked in keys:
                    await conn.execute(
                        text(
                            "INSERT INTO api_key (workspace_id, key_hash, prefix, label,"
                            " created_at, revoked_at) VALUES (:ws, :hash, :prefix, :label, :now,"
                            " :revoked)"
                        ),
                        {
                            "ws": ws_id,
                            "hash": sha256(secret),
                            "prefix": secret[:10],
                            "label": "from-0001",
                            "now": NOW,
                            "revoked": NOW if revoked else None,
                        },
                    )
                for key, (value, ctype, version, expires) in entries.items():
                    raw = key.encode()
                    await conn.execute(
                        text(
                            "INSERT INTO kv_entry (workspace_id, key, value, content_type, size,"
                            " version, expires_at, created_at, updated_at) VALUES (:ws, :key,"
                            " :value, :ctype, :size, :version, :expires, :now, :now)"
                        ),
                        {
                            "ws": ws_id,
                            "key": raw,
                            "value": value,
                            "ctype": ctype,
                            "size": len(raw) + len(value),
                            "version": version,
                            "expires": expires,
                            "now": NOW,
                        },
                    )
            if engine.dialect.name == "postgresql":  # explicit ids: move the sequences on
                for table in ("workspace", "api_key", "kv_entry"):
                    await conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                            f" (SELECT MAX(id) FROM {table}))"
                        )
                    )
    finally:
        await engine.dispose()


async def current_revision(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    finally:
        await engine.dispose()


def test_there_is_one_line_of_revisions_starting_at_0001() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, "several heads: merge the branches"
    bases = script.get_bases()
    assert bases == [FIRST]


async def test_upgrade_from_first_revision_keeps_all_data(database_url: str) -> None:
    await upgrade(database_url, FIRST)
    assert await current_revision(database_url) == FIRST
    await fill_at_first_revision(database_url)

    api, _ = await make_api(database_url)  # upgrades to head, as `serve` does
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert await current_revision(database_url) == head
    async with api.client as c:
        r = await c.get("/admin/workspaces", headers=api.admin)
        workspaces = {w["name"]: w for w in r.json()["workspaces"]}
        assert set(workspaces) == {name for name, *_ in FIXTURE}
        for name, quota, entries, keys in FIXTURE:
            ws = workspaces[name]
            used = sum(len(k.encode()) + len(v[0]) for k, v in entries.items())
            assert (ws["quotaBytes"], ws["usedBytes"]) == (quota, used), ws
            assert ws["activeKeys"] == sum(1 for _, revoked in keys if not revoked)
            listed = (await c.get(f"/admin/workspaces/{name}/keys", headers=api.admin)).json()
            assert sorted(k["prefix"] for k in listed["keys"]) == sorted(s[:10] for s, _ in keys)

            for secret, revoked in keys:
                h = {"Authorization": f"Bearer {secret}"}
                r = await c.get("/api/usage", headers=h)
                if revoked:
                    assert r.status_code == 401
                    continue
                assert r.status_code == 200, r.text
                assert (r.json()["used"], r.json()["quota"]) == (used, quota)
                for key, (value, ctype, version, expires) in entries.items():
                    r = await c.get("/api/kv/" + quote(key, safe=""), headers=h)
                    assert r.status_code == 200, (key, r.text)
                    assert r.content == value
                    assert r.headers["content-type"].split(";")[0] == ctype
                    assert r.headers["etag"] == f'"{version}"'
                    assert ("x-expires-at" in r.headers) == (expires is not None)
                page = (await c.get("/api/kv", headers=h)).json()
                assert sorted(i["key"] for i in page["items"]) == sorted(entries)

        # The upgraded database takes new writes: versions go on from where they were.
        h = {"Authorization": "Bearer msk_acme-two"}
        r = await c.put(
            "/api/kv/greeting", content=b"hello again", headers={**h, "If-Match": '"3"'}
        )
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 9
        r = await c.post("/admin/workspaces", json={"name": "new-after-upgrade"}, headers=api.admin)
        assert r.status_code == 201, r.text
        new_key = {"Authorization": f"Bearer {r.json()['key']}"}
        assert (await c.put("/api/kv/x", content=b"x", headers=new_key)).status_code == 201
        used = (await c.get("/api/usage", headers=h)).json()["used"]
        assert used == await stored_bytes(database_url, "acme")


def _alembic_check(url: str) -> None:
    """`alembic check`: autogenerate against the database finds nothing to do."""
    command.check(alembic_config(url))  # raises AutogenerateDiffsDetected on any drift


def test_models_and_migrations_agree(database_url: str) -> None:
    asyncio.run(upgrade(database_url))
    _alembic_check(database_url)


def test_models_and_migrations_agree_after_upgrading_from_first_revision(
    database_url: str,
) -> None:
    asyncio.run(upgrade(database_url, FIRST))
    asyncio.run(fill_at_first_revision(database_url))
    asyncio.run(upgrade(database_url))
    _alembic_check(database_url)


def test_upgrade_is_idempotent(database_url: str) -> None:
    asyncio.run(upgrade(database_url))
    asyncio.run(upgrade(database_url))  # a replica restarting finds nothing to do
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    assert asyncio.run(current_revision(database_url)) == head


def test_alembic_check_detects_drift(sqlite_database_url: str) -> None:
    """The check is not vacuous: a database missing one index of the models is noticed."""
    from alembic.util.exc import AutogenerateDiffsDetected

    asyncio.run(upgrade(sqlite_database_url))
    engine = create_async_engine(sqlite_database_url)

    async def drop_index() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("DROP INDEX ix_kv_entry_expires_at"))
        await engine.dispose()

    asyncio.run(drop_index())
    with pytest.raises(AutogenerateDiffsDetected):
        _alembic_check(sqlite_database_url)


async def _downgrade(url: str, revision: str) -> None:
    """`alembic downgrade` on one connection, as storage/migrations.py upgrades."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:

            def _run(sync_conn) -> None:  # noqa: ANN001
                cfg = alembic_config(url)
                cfg.attributes["connection"] = sync_conn
                command.downgrade(cfg, revision)

            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


async def _write_functions(url: str) -> list[str]:
    """The server-side write functions the database holds (none on SQLite)."""
    if url.startswith("sqlite"):
        return []
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT proname FROM pg_proc WHERE proname LIKE 'ms\\_%' ORDER BY proname")
            )
            return [r[0] for r in rows]
    finally:
        await engine.dispose()


FUNCTIONS_0004 = ["ms_kv_delete", "ms_kv_set", "ms_kv_set_many", "ms_memory_add"]
FUNCTIONS_0004 += ["ms_memory_add_many"]
FUNCTIONS_0005 = ["ms_block_set", "ms_kv_sweep", "ms_memory_append", "ms_memory_append_many"]
FUNCTIONS_0005 += ["ms_memory_delete"]


async def test_write_functions_downgrade_and_upgrade_again(database_url: str) -> None:
    """0005 and 0004 go down cleanly (their functions dropped, nothing else), and up again; the
    service then writes through them as before."""
    pg = not database_url.startswith("sqlite")
    await upgrade(database_url)
    assert await _write_functions(database_url) == (
        sorted(FUNCTIONS_0004 + FUNCTIONS_0005) if pg else []
    )
    await _downgrade(database_url, "0004")
    assert await current_revision(database_url) == "0004"
    assert await _write_functions(database_url) == (sorted(FUNCTIONS_0004) if pg else [])
    await _downgrade(database_url, "0003")
    assert await _write_functions(database_url) == []
    await upgrade(database_url)
    assert await _write_functions(database_url) == (
        sorted(FUNCTIONS_0004 + FUNCTIONS_0005) if pg else []
    )
    api, _ = await make_api(database_url)
    async with api.client:
        h = await api.workspace("w")
        body = {"conversationId": "c", "role": "user", "content": "x", "blockName": "n"}
        for replayed in (False, True):
            r = await api.client.post(
                "/api/memory", json=body, headers={**h, "Idempotency-Key": "k"}
            )
            assert r.status_code == 200 and r.json()["replayed"] is replayed, r.text
        used = (await api.client.get("/api/usage", headers=h)).json()["used"]
        assert used == await stored_bytes(database_url, "w")
