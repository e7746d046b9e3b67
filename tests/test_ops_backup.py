"""Backup and restore: SQLite -> PostgreSQL -> SQLite, exact; a damaged file imports nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from memory_service.services import backup as backup_service
from memory_service.settings import sqlite_url
from memory_service.storage import backup as backup_sql
from memory_service.storage.memory_tables import (
    memory_block_t,
    memory_idempotency_t,
    memory_message_t,
    memory_t,
)
from memory_service.storage.migrations import upgrade
from memory_service.storage.tables import api_key_t, kv_entry_t, workspace_t
from tests.conftest import make_api
from tests.support.server import cli

BINARY = bytes(range(256)) * 40


async def populate(database_url: str) -> dict[str, dict[str, str]]:
    """Two workspaces with every kind of data; returns their auth headers."""
    api, _ = await make_api(database_url)
    async with api.client as c:
        alpha = await api.workspace("alpha")
        beta = await api.workspace("beta", quota=50_000)

        async def put(ws: dict, key: str, body: bytes, **kw) -> None:  # noqa: ANN003
            r = await c.put(f"/api/kv/{key}", content=body, **{"headers": ws, **kw})
            assert r.status_code in (200, 201), r.text

        async def add(ws: dict, body: dict, **kw) -> None:  # noqa: ANN003
            r = await c.post("/api/memory", json=body, **{"headers": ws, **kw})
            assert r.status_code == 200, r.text

        await put(alpha, "blob", BINARY, headers={**alpha, "Content-Type": "application/x-thing"})
        await put(alpha, "%D0%BA%D0%BB%D1%8E%D1%87%2F..%25_%3A", "значение".encode())
        await put(alpha, "ttl", b"expires later", params={"ttl": 3600})
        await put(alpha, "over", b"first")
        await put(alpha, "over", b"second", headers={**alpha, "Content-Type": "text/plain"})
        await put(alpha, "gone", b"deleted")
        assert (await c.delete("/api/kv/gone", headers=alpha)).status_code == 200
        await put(alpha, "empty", b"")
        for i in range(12):
            await put(beta, f"page/{i:02d}", f"value {i}".encode() * (i + 1))

        await add(alpha, {"conversationId": "c1", "role": "system", "content": "be brief"})
        await add(alpha, {"conversationId": "c1", "role": "user", "content": "nul \x00 and ✓"})
        await add(alpha, {"conversationId": "c1", "role": "assistant", "content": "ok"})
        await add(
            alpha,
            {
                "conversationId": "c1",
                "blockId": "b2",
                "blockName": "Planner",
                "role": "user",
                "content": "plan",
            },
        )
        batch = [{"role": "user" if i % 2 else "assistant", "content": f"m{i}"} for i in range(30)]
        await add(alpha, {"conversationId": "c:2%", "blockId": "b2", "messages": batch})
        idem = {**alpha, "Idempotency-Key": "once"}
        await add(alpha, {"conversationId": "c3", "role": "user", "content": "x"}, headers=idem)
        await add(
            alpha,
            {"conversationId": "doomed", "role": "user", "content": "x"},
            headers={**alpha, "Idempotency-Key": "doomed-key"},
        )
        r = await c.delete("/api/memory", params={"conversationId": "doomed"}, headers=alpha)
        assert r.json()["deletedCount"] == 1
        await add(beta, {"id": "legacy", "blockName": "Notes", "role": "user", "content": "b"})
        return {"alpha": alpha, "beta": beta}


async def dump(database_url: str) -> dict:
    """Everything stored, by workspace name and natural keys (never database ids)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            ws = {r.id: r for r in await conn.execute(select(workspace_t))}
            mem = {r.id: r for r in await conn.execute(select(memory_t))}

            def rows(result, drop=("id",)) -> list:  # noqa: ANN001
                return sorted(
                    tuple(
                        ws[v].name
                        if k == "workspace_id"
                        else (mem[v].conversation_id, mem[v].block_id)
                        if k == "memory_id" and v in mem
                        else v
                        for k, v in r._mapping.items()
                        if k not in drop
                    )
                    for r in result
                )

            return {
                "workspace": rows(await conn.execute(select(workspace_t))),
                "api_key": rows(await conn.execute(select(api_key_t))),
                "kv": rows(await conn.execute(select(kv_entry_t))),
                "memory": rows(await conn.execute(select(memory_t))),
                "message": rows(await conn.execute(select(memory_message_t))),
                "block": rows(await conn.execute(select(memory_block_t))),
                "idempotency": rows(
                    await conn.execute(select(memory_idempotency_t)), drop=("memory_id",)
                ),
                "deleted_memory_refs": sorted(
                    r.key
                    for r in await conn.execute(select(memory_idempotency_t))
                    if r.memory_id not in mem
                ),
            }
    finally:
        await engine.dispose()


def run_cli(*args: str) -> object:
    return cli(*args, check=False)


def test_backup_covers_every_table() -> None:
    covered = {spec.table.name for spec in backup_sql.SPECS}
    assert covered | backup_sql.NOT_BACKED_UP >= backup_sql.all_tables()
    assert covered == backup_sql.all_tables() - backup_sql.NOT_BACKED_UP


async def test_round_trip_sqlite_postgresql_sqlite(tmp_path, pg, monkeypatch) -> None:  # noqa: ANN001
    source = sqlite_url(tmp_path / "source.db")
    await upgrade(source)
    headers = await populate(source)
    before = await dump(source)
    assert len(before["message"]) == 36 and len(before["kv"]) == 17
    assert before["deleted_memory_refs"] == ["doomed-key"]

    # SQLite -> PostgreSQL through the CLI, as an operator would.
    first = tmp_path / "first.jsonl"
    r = run_cli("backup", "export", str(first), "--database-url", source)
    assert r.returncode == 0, r.stderr
    assert "36 message" in r.stdout
    middle = pg.create_database("restored")
    r = run_cli("backup", "import", str(first), "--database-url", middle)
    assert r.returncode == 0, r.stderr
    assert await dump(middle) == before

    # PostgreSQL -> SQLite in-process, with tiny pages so that paging is exercised.
    monkeypatch.setattr(backup_sql, "PAGE_ROWS", 4)
    monkeypatch.setattr(backup_sql, "PAGE_BYTES", 3000)
    monkeypatch.setattr(backup_service, "BATCH_ROWS", 3)
    second = tmp_path / "second.jsonl"
    counts = await backup_service.export_backup(middle, second)
    assert counts["message"] == 36
    last = sqlite_url(tmp_path / "last.db")
    await upgrade(last)
    await backup_service.import_backup(last, second)
    assert await dump(last) == before

    # The restored service answers as the original did: old keys work, data reads back exact.
    api, _ = await make_api(last)
    async with api.client as c:
        alpha = headers["alpha"]
        r = await c.get("/api/kv/blob", headers=alpha)
        assert r.content == BINARY and r.headers["content-type"] == "application/x-thing"
        r = await c.get("/api/memory", params={"conversationId": "c1"}, headers=alpha)
        memories = {m["blockId"]: m for m in r.json()["memories"]}
        assert [m["content"] for m in memories["default"]["data"]] == [
            "be brief",
            "nul \x00 and ✓",
            "ok",
        ]
        assert memories["b2"]["blockName"] == "Planner"
        # Versions and sequence numbers go on from where they were, never reused.
        r = await c.put("/api/kv/over", content=b"third", headers=alpha)
        alpha_seq = next(w for w in before["workspace"] if w[0] == "alpha")[3]
        assert r.json()["version"] == alpha_seq + 1
        r = await c.post(
            "/api/memory",
            json={"conversationId": "c1", "role": "user", "content": "again"},
            headers=alpha,
        )
        assert r.json()["memories"][0]["data"][0]["seq"] == 3
        # A retried idempotent add is still recognised, also for the deleted memory.
        retry = {**alpha, "Idempotency-Key": "doomed-key"}
        r = await c.post(
            "/api/memory",
            json={"conversationId": "doomed", "role": "user", "content": "x"},
            headers=retry,
        )
        assert r.status_code == 409 and r.json()["code"] == "idempotent_memory_deleted"
        usage = (await c.get("/api/usage", headers=headers["beta"])).json()
        assert usage["used"] == next(w for w in before["workspace"] if w[0] == "beta")[2]


@pytest.fixture(scope="module")
async def exported(tmp_path_factory) -> tuple[str, Path]:  # noqa: ANN001
    """A populated SQLite database and its backup file, made once for the tests below."""
    tmp_path = tmp_path_factory.mktemp("exported")
    source = sqlite_url(tmp_path / "src.db")
    await upgrade(source)
    await populate(source)
    path = tmp_path / "backup.jsonl"
    await backup_service.export_backup(source, path)
    return source, path


def rewrite(path: Path, edit, tmp_dir: Path) -> Path:  # noqa: ANN001
    """The file with its records edited, given a valid trailer again (checksum recomputed)."""
    lines = [json.loads(line) for line in path.read_bytes().splitlines()]
    body = [json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in edit(lines[:-1])]
    trailer = {**lines[-1], "sha256": hashlib.sha256(b"".join(body)).hexdigest()}
    out = tmp_dir / "edited.jsonl"
    out.write_bytes(b"".join(body) + json.dumps(trailer).encode() + b"\n")
    return out


def truncated_mid_line(data: bytes) -> bytes:
    return data[: len(data) // 2]


def without_trailer(data: bytes) -> bytes:
    return b"".join(data.splitlines(keepends=True)[:-1])


def flipped_value(data: bytes) -> bytes:
    i = data.index(b'"value":"') + 12  # a character inside a base64 value: still valid JSON
    return data[:i] + (b"B" if data[i : i + 1] != b"B" else b"C") + data[i + 1 :]


def broken_json(data: bytes) -> bytes:
    i = data.index(b'{"type":"kv"')
    return data[:i] + b"[" + data[i + 1 :]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (truncated_mid_line, "truncated"),
        (without_trailer, "truncated"),
        (flipped_value, "checksum mismatch"),
        (broken_json, "not valid JSON"),
    ],
)
async def test_damaged_file_is_refused_and_imports_nothing(
    tmp_path,
    exported,
    damage,
    message,  # noqa: ANN001
) -> None:
    _, path = exported
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(damage(path.read_bytes()))
    target = sqlite_url(tmp_path / "target.db")
    r = run_cli("backup", "import", str(bad), "--database-url", target)
    assert r.returncode == 1
    assert message in r.stderr
    assert await dump(target) == await dump_empty(tmp_path)


async def dump_empty(tmp_path: Path) -> dict:
    url = sqlite_url(tmp_path / "empty.db")
    await upgrade(url)
    return await dump(url)


async def test_existing_workspace_is_refused_and_nothing_is_imported(tmp_path, exported) -> None:  # noqa: ANN001
    _, path = exported
    target = sqlite_url(tmp_path / "target.db")
    r = run_cli("workspace", "create", "beta", "--database-url", target)
    assert r.returncode == 0
    before = await dump(target)
    r = run_cli("backup", "import", str(path), "--database-url", target)
    assert r.returncode == 1
    assert "'beta' already exist" in r.stderr
    assert await dump(target) == before  # not even alpha, which was free


async def test_a_failure_midway_rolls_everything_back(tmp_path, database_url, exported) -> None:  # noqa: ANN001
    """A file that is sound but clashes inside the database (a key hash that the target already
    holds, which the file cannot know) fails at the insert: the import is one transaction, so
    nothing stays."""
    _, path = exported
    r = run_cli("workspace", "create", "resident", "--database-url", database_url)
    assert r.returncode == 0, r.stderr
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            held = (await conn.execute(select(api_key_t.c.key_hash))).scalar_one()
    finally:
        await engine.dispose()
    before = await dump(database_url)

    def clash(records: list[dict]) -> list[dict]:
        last = [r for r in records if r["type"] == "api_key"][-1]
        last["key_hash"] = held
        return records

    edited = rewrite(path, clash, tmp_path)
    r = run_cli("backup", "import", str(edited), "--database-url", database_url)
    assert r.returncode == 1
    assert "rolled back, nothing was imported" in r.stderr
    assert await dump(database_url) == before


async def test_export_of_one_workspace_without_keys(tmp_path, exported) -> None:  # noqa: ANN001
    source, _ = exported
    path = tmp_path / "beta.jsonl"
    r = run_cli(
        "backup",
        "export",
        str(path),
        "--workspace",
        "beta",
        "--without-keys",
        "--database-url",
        source,
    )
    assert r.returncode == 0, r.stderr
    kinds = [json.loads(line)["type"] for line in path.read_bytes().splitlines()]
    assert kinds.count("workspace") == 1 and "api_key" not in kinds and kinds.count("kv") == 12
    target = sqlite_url(tmp_path / "beta.db")
    r = run_cli("backup", "import", str(path), "--database-url", target)
    assert r.returncode == 0, r.stderr
    assert "key create" in r.stdout  # keys must be made anew
    restored = await dump(target)
    original = await dump(source)
    assert restored["kv"] == [row for row in original["kv"] if row[0] == "beta"]
    assert restored["api_key"] == []
    r = run_cli("backup", "export", str(path), "--workspace", "nobody", "--database-url", source)
    assert r.returncode == 1 and "'nobody' not found" in r.stderr


async def test_a_content_type_http_cannot_carry_is_refused_on_import(tmp_path, exported) -> None:  # noqa: ANN001
    """A backup file (checksum and all) naming a media type with CR/LF: refused like the KV API
    refuses it, nothing imported (issue #9, finding 3: every path that stores one)."""
    _, path = exported

    def inject(records: list[dict]) -> list[dict]:
        for r in records:
            if r.get("type") == "kv":
                r["content_type"] = "text/plain\r\nX-Injected: 1"
                break
        return records

    bad = rewrite(path, inject, tmp_path)
    target = sqlite_url(tmp_path / "target.db")
    r = run_cli("backup", "import", str(bad), "--database-url", target)
    assert r.returncode == 1
    assert "content type must be a media type" in r.stderr
    assert await dump(target) == await dump_empty(tmp_path)
