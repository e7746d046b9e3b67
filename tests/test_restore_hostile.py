"""A restore trusts nothing in the file (issue 20, point 5): a hand-edited backup whose checksum
is recomputed the way the format does is held to the API's own rules, record by record and field
by field; a refused file names its first bad record, changes nothing in the database (a full dump
of every table is compared), and the unmodified file still restores exactly. The file is read
once: the bytes checked are the bytes imported."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import MetaData, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from memory_service.services import backup as backup_service
from memory_service.services.backup import BackupError
from memory_service.settings import Settings, sqlite_url
from memory_service.storage.migrations import upgrade
from tests.conftest import make_api
from tests.support.server import cli
from tests.test_ops_backup import BINARY, dump, populate

# Limits of the restores below, set to what the backup holds at most, so that one byte or one
# record more is over them (the API's limits, from the same settings the API would use).
MAX_VALUE = len(BINARY)
MAX_IDEMPOTENCY_KEYS = 2


def limits(url: str) -> Settings:
    return Settings(
        database_url=url, max_value_bytes=MAX_VALUE, max_idempotency_keys=MAX_IDEMPOTENCY_KEYS
    )


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --- the data and its backup ---------------------------------------------------------------------


async def populate_more(url: str) -> None:
    """Beyond tests.test_ops_backup.populate: a labelled key that is revoked, a media type with
    parameters and a time to live, a renamed block."""
    api, _ = await make_api(url)
    async with api.client as c:
        r = await c.post(
            "/admin/workspaces/alpha/keys", json={"label": "ci runner"}, headers=api.admin
        )
        assert r.status_code == 201, r.text
        r = await c.delete(f"/admin/keys/{r.json()['keyInfo']['id']}", headers=api.admin)
        assert r.status_code == 200, r.text
        r = await c.post("/admin/workspaces/alpha/keys", json={"label": "t"}, headers=api.admin)
        alpha = {"Authorization": f"Bearer {r.json()['key']}"}
        r = await c.put(
            "/api/kv/typed",
            content=b"caf\xc3\xa9",
            params={"ttl": 7200},
            headers={**alpha, "Content-Type": 'text/plain; charset="utf-8"'},
        )
        assert r.status_code == 201, r.text
        r = await c.put("/api/memory/blocks/b2", json={"name": "Planner v2"}, headers=alpha)
        assert r.status_code == 200, r.text


async def resident(url: str) -> None:
    """What a target database holds before a restore: another workspace, with data."""
    api, _ = await make_api(url)
    async with api.client as c:
        h = await api.workspace("resident")
        assert (await c.put("/api/kv/mine", content=b"kept", headers=h)).status_code == 201
        body = {"conversationId": "r1", "blockName": "Home", "role": "user", "content": "hi"}
        assert (await c.post("/api/memory", json=body, headers=h)).status_code == 200


@dataclass
class Made:
    backup: Path  # alpha and beta, every kind of record
    resident: Path  # the target's own workspace
    expected: dict  # tests.test_ops_backup.dump of a target holding both, restored
    headers: dict[str, dict[str, str]]
    source: str


@pytest.fixture(scope="module")
async def made(tmp_path_factory) -> Made:  # noqa: ANN001
    tmp = tmp_path_factory.mktemp("hostile")
    source = sqlite_url(tmp / "source.db")
    await upgrade(source)
    headers = await populate(source)
    await populate_more(source)
    path = tmp / "backup.jsonl"
    await backup_service.export_backup(source, path)
    home = sqlite_url(tmp / "resident.db")
    await upgrade(home)
    await resident(home)
    resident_path = tmp / "resident.jsonl"
    await backup_service.export_backup(home, resident_path)
    both = sqlite_url(tmp / "both.db")
    await upgrade(both)
    for p in (resident_path, path):
        await backup_service.import_backup(both, p, settings=limits(both))
    return Made(path, resident_path, await dump(both), headers, source)


async def full_dump(url: str) -> dict[str, list]:
    """Every row of every table, all columns and ids (SQLite's id counters too)."""
    engine = create_async_engine(url)

    def read(sync) -> dict[str, list]:  # noqa: ANN001
        meta = MetaData()
        meta.reflect(sync)
        out = {
            name: sorted((tuple(row) for row in sync.execute(select(table))), key=repr)
            for name, table in meta.tables.items()
        }
        if sync.dialect.name == "sqlite":
            out["sqlite_sequence"] = sorted(
                tuple(r) for r in sync.execute(text("SELECT name, seq FROM sqlite_sequence"))
            )
        return out

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(read)
    finally:
        await engine.dispose()


async def target(url: str, made: Made) -> dict[str, list]:
    """The database restores go into, with its resident workspace; returns its full dump."""
    await upgrade(url)
    await backup_service.import_backup(url, made.resident, settings=limits(url))
    return await full_dump(url)


# --- editing a backup the way an attacker would --------------------------------------------------


def load(path: Path) -> tuple[list[dict], dict]:
    records = [json.loads(line) for line in path.read_bytes().splitlines()]
    return records[:-1], records[-1]


def write(path: Path, records: list[dict], trailer: dict) -> None:
    """The records with a trailer made as the export makes it: true counts, and the SHA-256 of
    every line before it."""
    body = b"".join(
        json.dumps(r, separators=(",", ":")).encode() + b"\n"  # (any JSON escape, \u0000 too)
        for r in records
    )
    counts = Counter(r.get("type") for r in records[1:])
    trailer = {"counts": dict(counts), **trailer, "sha256": hashlib.sha256(body).hexdigest()}
    path.write_bytes(body + json.dumps(trailer).encode() + b"\n")


def find(records: list[dict], kind: str, n: int = 0, **match: Any) -> tuple[int, dict]:
    """The n-th record of a kind matching the fields given: (its line number, the record)."""
    found = [
        (i + 1, r)
        for i, r in enumerate(records)
        if r["type"] == kind and all(r.get(k) == v for k, v in match.items())
    ]
    return found[n]


def insert(records: list[dict], line: int, record: dict) -> int:
    """Insert a record at a line (the header's counts follow); returns that line."""
    records.insert(line - 1, record)
    records[0]["counts"][record["type"]] = records[0]["counts"].get(record["type"], 0) + 1
    return line


Edit = Callable[[list[dict], dict], int | None]  # -> the line of the record to be named


def setf(kind: str, name: str, value: Any, n: int = 0, /, **match: Any) -> Edit:
    def edit(records: list[dict], _trailer: dict) -> int:
        line, r = find(records, kind, n, **match)
        if value is DELETE:
            del r[name]
        else:
            r[name] = value
        return line

    return edit


DELETE = object()


def kv_bytes(key: bytes | None = None, value: bytes | None = None, n: int = 0) -> Edit:
    """A KV entry's key or value replaced, its size recomputed to match (a careful forger)."""

    def edit(records: list[dict], _trailer: dict) -> int:
        line, r = find(records, "kv", n, workspace="alpha")
        if key is not None:
            r["key"] = b64(key)
        if value is not None:
            r["value"] = b64(value)
        r["size"] = len(base64.b64decode(r["key"])) + len(base64.b64decode(r["value"]))
        return line

    return edit


def message_content(content: bytes, n: int = 0) -> Edit:
    def edit(records: list[dict], _trailer: dict) -> int:
        line, r = find(records, "message", n)
        r["content"] = b64(content)
        r["size"] = len(r["role"]) + len(content)
        return line

    return edit


def same_as(kind: str, name: str, n: int, m: int, **match: Any) -> Edit:
    """Field `name` of the n-th record made equal to the m-th's: a duplicate."""

    def edit(records: list[dict], _trailer: dict) -> int:
        _, first = find(records, kind, m, **match)
        line, r = find(records, kind, n, **match)
        r[name] = first[name]
        return line

    return edit


def chain(*edits: Edit, named: int = 0) -> Edit:
    def edit(records: list[dict], trailer: dict) -> int | None:
        lines = [e(records, trailer) for e in edits]
        return lines[named]

    return edit


def header(name: str, value: Any) -> Edit:
    def edit(records: list[dict], _trailer: dict) -> None:
        records[0][name] = value

    return edit


def count_off(records: list[dict], _trailer: dict) -> None:
    records[0]["counts"]["kv"] -= 1


def trailer_field(name: str, value: Any) -> Edit:
    def edit(_records: list[dict], trailer: dict) -> None:
        trailer[name] = value

    return edit


def moved(kind: str, after: str) -> Edit:
    """The first alpha record of `kind` moved to just after alpha's last `after` record."""

    def edit(records: list[dict], _trailer: dict) -> int:
        line, r = find(records, kind, workspace="alpha")
        del records[line - 1]
        last = max(
            i for i, x in enumerate(records) if x["type"] == after and x["workspace"] == "alpha"
        )
        last += 1
        records.insert(last, r)
        return last + 1

    return edit


def key_before_workspaces(records: list[dict], _trailer: dict) -> int:
    line, r = find(records, "api_key")
    del records[line - 1]
    records.insert(1, r)
    return 2


def added(kind: str, at: str, **fields: Any) -> Edit:
    """A copy of the first record of `kind` (fields replaced) inserted after the last `at`."""

    def edit(records: list[dict], _trailer: dict) -> int:
        _, r = find(records, kind)
        last = max(i for i, x in enumerate(records) if x["type"] == at) + 1
        return insert(records, last + 1, {**copy.deepcopy(r), **fields})

    return edit


def header_names_alpha(records: list[dict], _trailer: dict) -> int:
    records[0]["workspace"] = "alpha"
    return find(records, "workspace", name="beta")[0]


def header_says_no_keys(records: list[dict], _trailer: dict) -> int:
    records[0]["apiKeys"] = False
    return find(records, "api_key")[0]


def block_twice(records: list[dict], _trailer: dict) -> int:
    line, r = find(records, "block", workspace="alpha")
    return insert(records, line + 1, {**r, "name": "Another"})


def idempotency_of_beta_to_alpha(records: list[dict], _trailer: dict) -> int:
    _, r = find(records, "idempotency", key="once")
    last = max(i for i, x in enumerate(records) if x["type"] == "message") + 1
    return insert(records, last + 1, {**r, "workspace": "beta", "key": "beta-once"})


def alpha_memory_ref(records: list[dict], _trailer: dict) -> int:
    """A beta message moved onto a memory of alpha (a cross-workspace pointer)."""
    _, memory = find(records, "memory", workspace="alpha")
    _, beta = find(records, "memory", workspace="beta")
    line, r = find(records, "message", memory=beta["ref"])
    r["memory"] = memory["ref"]
    return line


def idempotency_to_a_later_workspace(records: list[dict], _trailer: dict) -> int:
    _, beta = find(records, "memory", workspace="beta")
    line, r = find(records, "idempotency", key="once")
    r["memory"] = beta["ref"]
    return line


@dataclass(frozen=True)
class Case:
    id: str
    edit: Edit
    kind: str | None  # the record named: "line N (kind record), field ..."; None: file-level
    field: str  # the field named (or, file-level, a fragment of the message)
    rule: str  # a fragment of the rule stated


ALPHA = {"workspace": "alpha"}
CONTENT_LIMIT = Settings().max_content_bytes

CASES = [
    # workspace records
    Case("ws-empty-name", setf("workspace", "name", ""), "workspace", "name", "invalid_name"),
    Case(
        "ws-nul-name", setf("workspace", "name", "al\x00pha"), "workspace", "name", "invalid_name"
    ),
    Case("ws-newline-name", setf("workspace", "name", "a\nb"), "workspace", "name", "invalid_name"),
    Case("ws-null-name", setf("workspace", "name", None), "workspace", "name", "must not be null"),
    Case("ws-twice", setf("workspace", "name", "alpha", name="beta"), "workspace", "name", "twice"),
    Case("ws-quota-neg", setf("workspace", "quota_bytes", -1), "workspace", "quota_bytes", "is -1"),
    Case(
        "ws-quota-huge",
        setf("workspace", "quota_bytes", 2**63),
        "workspace",
        "quota_bytes",
        "between 0 and 9223372036854775807",
    ),
    Case(
        "ws-used-zero", setf("workspace", "used_bytes", 0), "workspace", "used_bytes", "recounted"
    ),
    Case("ws-used-neg", setf("workspace", "used_bytes", -5), "workspace", "used_bytes", "is -5"),
    Case(
        "ws-used-more",
        setf("workspace", "used_bytes", 10**9),
        "workspace",
        "used_bytes",
        "recounted",
    ),
    Case(
        "ws-used-missing",  # (a column with a default: taken as 0, then recounted)
        setf("workspace", "used_bytes", DELETE),
        "workspace",
        "used_bytes",
        "is 0, but the workspace's records hold",
    ),
    Case(
        "ws-version-seq-low",
        setf("workspace", "version_seq", 2),
        "workspace",
        "version_seq",
        "versions (ETags) would be reused",
    ),
    Case(
        "ws-version-seq-neg", setf("workspace", "version_seq", -1), "workspace", "version_seq", "-1"
    ),
    Case(
        "ws-created-str",
        setf("workspace", "created_at", "yesterday"),
        "workspace",
        "created_at",
        "must be an integer",
    ),
    Case(
        "ws-created-float",
        setf("workspace", "created_at", 1.5),
        "workspace",
        "created_at",
        "must be an integer",
    ),
    Case("ws-bool", setf("workspace", "quota_bytes", True), "workspace", "quota_bytes", "integer"),
    Case("ws-extra", setf("workspace", "admin", True), "workspace", "admin", "is not a field"),
    Case(
        "ws-missing",
        setf("workspace", "quota_bytes", DELETE),
        "workspace",
        "quota_bytes",
        "missing",
    ),
    # API keys
    Case("key-hash-short", setf("api_key", "key_hash", "0" * 63), "api_key", "key_hash", "hex"),
    Case("key-hash-upper", setf("api_key", "key_hash", "A" * 64), "api_key", "key_hash", "hex"),
    Case(
        "key-hash-twice",
        same_as("api_key", "key_hash", 1, 0),
        "api_key",
        "key_hash",
        "appears twice",
    ),
    Case("key-prefix-nl", setf("api_key", "prefix", "msk_\n12345"), "api_key", "prefix", "prefix"),
    Case("key-prefix-empty", setf("api_key", "prefix", ""), "api_key", "prefix", "prefix"),
    Case("key-label-nl", setf("api_key", "label", "a\nb"), "api_key", "label", "control"),
    Case(
        "key-label-long", setf("api_key", "label", "x" * 129), "api_key", "label", "maximum is 128"
    ),
    Case(
        "key-revoked-early",
        setf("api_key", "revoked_at", 5, label="ci runner"),
        "api_key",
        "revoked_at",
        "before created_at",
    ),
    Case("key-created-neg", setf("api_key", "created_at", -1), "api_key", "created_at", "is -1"),
    Case("key-other-ws", setf("api_key", "workspace", "beta"), "api_key", "workspace", "follows"),
    Case(
        "key-ws-int", setf("api_key", "workspace", 7), "api_key", "workspace", "name of a workspace"
    ),
    Case("key-not-declared", header_says_no_keys, "api_key", "type", '"apiKeys": false'),
    # KV entries
    Case("kv-key-not-utf8", kv_bytes(key=b"\xff\xfe"), "kv", "key", "not valid UTF-8"),
    Case("kv-key-2000", kv_bytes(key=b"k" * 2000), "kv", "key", "2000 bytes; the maximum is 512"),
    Case("kv-key-nul", kv_bytes(key=b"a\x00b"), "kv", "key", "control characters"),
    Case("kv-key-newline", kv_bytes(key=b"a\nb"), "kv", "key", "control characters"),
    Case("kv-key-empty", kv_bytes(key=b""), "kv", "key", "must not be empty"),
    Case("kv-key-not-b64", setf("kv", "key", "not base64!"), "kv", "key", "not valid base64"),
    Case("kv-key-twice", same_as("kv", "key", 1, 0, **ALPHA), "kv", "key", "appears twice"),
    Case(
        "kv-value-big",
        kv_bytes(value=b"v" * (MAX_VALUE + 1), n=1),
        "kv",
        "value",
        "value_too_large",
    ),
    Case("kv-value-null", setf("kv", "value", None), "kv", "value", "must not be null"),
    Case(
        "kv-type-crlf",
        setf("kv", "content_type", "text/plain\r\nX-Injected: 1"),
        "kv",
        "content_type",
        "invalid_content_type",
    ),
    Case(
        "kv-type-word", setf("kv", "content_type", "text"), "kv", "content_type", "invalid_content"
    ),
    Case(
        "kv-type-long",
        setf("kv", "content_type", "a/" + "b" * 300),
        "kv",
        "content_type",
        "maximum is 255",
    ),
    Case("kv-size-zero", setf("kv", "size", 0), "kv", "size", "key and value hold"),
    Case("kv-size-neg", setf("kv", "size", -1), "kv", "size", "is -1"),
    Case("kv-size-more", setf("kv", "size", 10**6), "kv", "size", "key and value hold"),
    Case("kv-version-zero", setf("kv", "version", 0), "kv", "version", "versions start at 1"),
    Case("kv-version-neg", setf("kv", "version", -3), "kv", "version", "is -3"),
    Case("kv-version-twice", same_as("kv", "version", 1, 0, **ALPHA), "kv", "version", "twice"),
    Case("kv-expires-str", setf("kv", "expires_at", "soon"), "kv", "expires_at", "integer"),
    Case("kv-created-str", setf("kv", "created_at", "0"), "kv", "created_at", "integer"),
    Case("kv-updated-early", setf("kv", "updated_at", 1), "kv", "updated_at", "before created_at"),
    Case("kv-other-ws", setf("kv", "workspace", "nobody"), "kv", "workspace", "follows"),
    # the block registry
    Case("block-id-nl", setf("block", "block_id", "b\n2"), "block", "block_id", "control"),
    Case("block-name-empty", setf("block", "name", ""), "block", "name", "must not be empty"),
    Case("block-name-long", setf("block", "name", "x" * 300), "block", "name", "maximum is 256"),
    Case("block-name-surrogate", setf("block", "name", "a\ud800"), "block", "name", "surrogate"),
    Case("block-other-ws", setf("block", "workspace", "beta"), "block", "workspace", "follows"),
    Case("block-updated-neg", setf("block", "updated_at", -1), "block", "updated_at", "is -1"),
    Case("block-twice", block_twice, "block", "block_id", "appears twice"),
    # memories
    Case(
        "mem-next-seq-low",
        setf("memory", "next_seq", 1, conversation_id="c1", block_id="default"),
        "memory",
        "next_seq",
        "holds its message of seq 1",
    ),
    Case(
        "mem-next-seq-high",
        setf("memory", "next_seq", 99, conversation_id="c1", block_id="default"),
        "memory",
        "next_seq",
        "the file holds 3 messages",
    ),
    Case("mem-next-seq-neg", setf("memory", "next_seq", -1), "memory", "next_seq", "is -1"),
    Case(
        "mem-count",
        setf("memory", "message_count", 2, conversation_id="c1", block_id="default"),
        "memory",
        "message_count",
        "the file holds 3 messages",
    ),
    Case("mem-bytes-zero", setf("memory", "bytes", 0), "memory", "bytes", "ids and messages hold"),
    Case("mem-bytes-neg", setf("memory", "bytes", -1), "memory", "bytes", "is -1"),
    Case(
        "mem-conv-nul",
        setf("memory", "conversation_id", "c\x001"),
        "memory",
        "conversation_id",
        "control",
    ),
    Case(
        "mem-conv-nl",
        setf("memory", "conversation_id", "c\n1"),
        "memory",
        "conversation_id",
        "control",
    ),
    Case(
        "mem-conv-empty",
        setf("memory", "conversation_id", ""),
        "memory",
        "conversation_id",
        "empty",
    ),
    Case(
        "mem-conv-long",
        setf("memory", "conversation_id", "c" * 257),
        "memory",
        "conversation_id",
        "256",
    ),
    Case("mem-block-nl", setf("memory", "block_id", "\n"), "memory", "block_id", "control"),
    Case(
        "mem-pair-twice",
        chain(setf("memory", "conversation_id", "c1", 1), setf("memory", "block_id", "default", 1)),
        "memory",
        "conversation_id",
        "appears twice",
    ),
    Case("mem-ref-twice", same_as("memory", "ref", 1, 0), "memory", "ref", "appears twice"),
    Case("mem-ref-neg", setf("memory", "ref", -1), "memory", "ref", "is -1"),
    Case("mem-other-ws", setf("memory", "workspace", "beta"), "memory", "workspace", "follows"),
    Case("mem-created-neg", setf("memory", "created_at", -1), "memory", "created_at", "is -1"),
    Case("mem-updated-early", setf("memory", "updated_at", 1), "memory", "updated_at", "before"),
    # messages
    Case("msg-not-utf8", message_content(b"ok \xff"), "message", "content", "not valid UTF-8"),
    Case(
        "msg-surrogate", message_content(b"\xed\xa0\x80"), "message", "content", "not valid UTF-8"
    ),
    Case(
        "msg-too-big",
        message_content(b"y" * (CONTENT_LIMIT + 1)),
        "message",
        "content",
        "content_too_large",
    ),
    Case("msg-role-unknown", setf("message", "role", "hacker"), "message", "role", "invalid_role"),
    Case("msg-role-empty", setf("message", "role", ""), "message", "role", "invalid_role"),
    Case("msg-size-zero", setf("message", "size", 0), "message", "size", "role and content hold"),
    Case("msg-size-neg", setf("message", "size", -1), "message", "size", "is -1"),
    Case("msg-size-int32", setf("message", "size", 2**31), "message", "size", "2147483647"),
    Case("msg-seq-gap", setf("message", "seq", 5, 1), "message", "seq", "must be 1"),
    Case("msg-seq-twice", setf("message", "seq", 0, 1), "message", "seq", "must be 1"),
    Case("msg-seq-neg", setf("message", "seq", -1), "message", "seq", "is -1"),
    Case("msg-memory-unknown", setf("message", "memory", 999), "message", "memory", "no memory"),
    Case(
        "msg-memory-of-alpha",
        alpha_memory_ref,
        "message",
        "memory",
        "no memory of workspace 'beta'",
    ),
    Case(
        "msg-created-float", setf("message", "created_at", 1.5), "message", "created_at", "integer"
    ),
    Case("msg-extra", setf("message", "workspace", "alpha"), "message", "workspace", "not a field"),
    # idempotency records
    Case("idem-key-nl", setf("idempotency", "key", "a\nb"), "idempotency", "key", "control"),
    Case(
        "idem-key-long",
        setf("idempotency", "key", "k" * 256),
        "idempotency",
        "key",
        "maximum is 255",
    ),
    Case("idem-key-twice", same_as("idempotency", "key", 1, 0), "idempotency", "key", "twice"),
    Case(
        "idem-too-many",
        added("idempotency", "idempotency", key="third"),
        "idempotency",
        "key",
        f"one more than the {MAX_IDEMPOTENCY_KEYS}",
    ),
    Case(
        "idem-hash",
        setf("idempotency", "request_hash", "nothex"),
        "idempotency",
        "request_hash",
        "hex",
    ),
    Case("idem-count-zero", setf("idempotency", "count", 0), "idempotency", "count", "1 to"),
    Case("idem-count-big", setf("idempotency", "count", 5000), "idempotency", "count", "1 to"),
    Case(
        "idem-first-seq",
        setf("idempotency", "first_seq", 5, key="once"),
        "idempotency",
        "first_seq",
        "next_seq",
    ),
    Case(
        "idem-memory-of-alpha",
        idempotency_of_beta_to_alpha,
        "idempotency",
        "memory",
        "a memory of workspace 'alpha'",
    ),
    Case(
        "idem-memory-of-beta",
        idempotency_to_a_later_workspace,
        "idempotency",
        "memory",
        "a memory of workspace 'beta'",
    ),
    Case(
        "idem-created-neg", setf("idempotency", "created_at", -1), "idempotency", "created_at", "-1"
    ),
    Case("idem-memory-neg", setf("idempotency", "memory", -1), "idempotency", "memory", "is -1"),
    Case(
        "idem-other-ws",
        setf("idempotency", "workspace", "beta"),
        "idempotency",
        "workspace",
        "follows",
    ),
    # order and kinds
    Case(
        "order-kv-late", moved("kv", "memory"), "kv", "type", "comes after the workspace's memory"
    ),
    Case("order-key-first", key_before_workspaces, "api_key", "type", "before any workspace"),
    Case(
        "order-unknown-type",
        added("kv", "kv", type="secret"),
        "secret",
        "type",
        "not a record type",
    ),
    # header and trailer (file-level)
    Case(
        "header-extra",
        header("owner", "me"),
        None,
        'line 1 (header), field "owner"',
        "not a header",
    ),
    Case("header-ws", header_names_alpha, "workspace", "name", "the header says"),
    Case("header-keys-str", header("apiKeys", "yes"), None, 'field "apiKeys"', "wrong type"),
    Case("header-version", header("version", 2), None, "version 2 is not supported", ""),
    Case("header-counts", count_off, None, "the header's counts", ""),
    Case(
        "trailer-extra", trailer_field("note", "x"), None, 'trailer, field "note"', "not a trailer"
    ),
    Case("trailer-counts", trailer_field("counts", {"kv": 1}), None, "the trailer's counts", ""),
]


def craft(made: Made, case: Case, tmp: Path) -> tuple[Path, int | None]:
    records, trailer = load(made.backup)
    trailer = {"type": "trailer"}  # (true counts and checksum: write)
    line = case.edit(records, trailer)
    path = tmp / f"{case.id}.jsonl"
    write(path, records, trailer)
    return path, line


def assert_names(message: str, case: Case, line: int | None) -> None:
    if case.kind is None:
        assert case.field in message and case.rule in message, message
        return
    assert message.startswith(f'line {line} ({case.kind} record), field "{case.field}": '), message
    assert case.rule in message, message


async def test_the_cases_cover_every_field_of_every_record(made: Made) -> None:
    """Every field the file carries is edited by at least one case (a new column needs one)."""
    records, _ = load(made.backup)
    fields = {(r["type"], name) for r in records[1:] for name in r if name != "type"}
    edited = {(c.kind, c.field) for c in CASES if c.kind is not None}
    assert fields - edited == set()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_a_crafted_file_is_refused_and_changes_nothing(
    tmp_path: Path, database_url: str, made: Made, case: Case
) -> None:
    before = await target(database_url, made)
    path, line = craft(made, case, tmp_path)
    with pytest.raises(BackupError) as refused:
        await backup_service.import_backup(database_url, path, settings=limits(database_url))
    assert_names(str(refused.value), case, line)
    assert await full_dump(database_url) == before
    # The file as it was made still restores, and reads back exactly.
    await backup_service.import_backup(database_url, made.backup, settings=limits(database_url))
    assert await dump(database_url) == made.expected


async def test_a_record_after_the_trailer_is_refused(
    tmp_path: Path, database_url: str, made: Made
) -> None:
    before = await target(database_url, made)
    lines = made.backup.read_bytes().splitlines(keepends=True)
    path = tmp_path / "after.jsonl"
    path.write_bytes(b"".join([*lines, lines[1]]))
    with pytest.raises(BackupError, match=f"line {len(lines) + 1}: records after the trailer"):
        await backup_service.import_backup(database_url, path, settings=limits(database_url))
    assert await full_dump(database_url) == before


CLI_CASES = [
    c
    for c in CASES
    if c.id
    in {
        "mem-next-seq-low",
        "kv-key-not-utf8",
        "ws-used-neg",
        "msg-role-unknown",
        "kv-version-twice",
    }
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
async def test_the_cli_names_the_first_bad_record(
    tmp_path: Path, database_url: str, made: Made, case: Case
) -> None:
    before = await target(database_url, made)
    path, line = craft(made, case, tmp_path)
    r = cli("backup", "import", str(path), "--database-url", database_url, check=False)
    assert r.returncode == 1, r.stdout
    error = r.stderr.splitlines()[-1]
    assert error.startswith("Error: ")
    assert_names(error.removeprefix("Error: "), case, line)
    assert "Traceback" not in r.stderr
    assert await full_dump(database_url) == before


async def test_an_edited_file_whose_checksum_is_not_recomputed_says_corrupted(
    tmp_path: Path, database_url: str, made: Made
) -> None:
    """An edit without the checksum recomputed is a damaged file, and said so first (with the
    first bad record for the curious)."""
    before = await target(database_url, made)
    data = made.backup.read_bytes()
    path = tmp_path / "damaged.jsonl"
    path.write_bytes(data.replace(b'"role":"user"', b'"role":"uber"', 1))
    with pytest.raises(BackupError) as refused:
        await backup_service.import_backup(database_url, path, settings=limits(database_url))
    message = str(refused.value)
    assert message.startswith("checksum mismatch: the file is corrupted (the first record")
    assert 'field "role"' in message
    assert await full_dump(database_url) == before


# --- read once -----------------------------------------------------------------------------------


async def test_a_file_replaced_during_the_restore_is_never_read(
    tmp_path: Path, database_url: str, made: Made
) -> None:
    """The file is swapped for a forged one (next_seq below its messages) as soon as the restore
    has read its first line (the progress hook): a restore that checked one file and imported
    another would store the forgery. The bytes imported are the bytes checked."""
    await target(database_url, made)
    path = tmp_path / "swapped.jsonl"
    path.write_bytes(made.backup.read_bytes())
    case = next(c for c in CASES if c.id == "mem-next-seq-low")
    forged, _ = craft(made, case, tmp_path)
    swaps: list[str] = []

    @contextlib.contextmanager
    def swapping(label: str, _total: int) -> Iterator[Callable[[int], None]]:
        def step(_n: int) -> None:
            if not swaps:
                os.replace(forged, path)
                swaps.append(label)

        yield step

    await backup_service.import_backup(
        database_url, path, settings=limits(database_url), progress=swapping
    )
    assert swaps  # (the swap happened, after the first line was read)
    assert await dump(database_url) == made.expected  # the file as it was when opened


async def test_restore_from_standard_input(tmp_path: Path, database_url: str, made: Made) -> None:
    """`backup import -` reads a pipe, which can be read only once: checked and imported from
    the same bytes. A forged file through the pipe is refused the same way."""
    before = await target(database_url, made)
    case = next(c for c in CASES if c.id == "kv-key-2000")
    forged, line = craft(made, case, tmp_path)
    r = cli_stdin(forged, database_url)
    assert r.returncode == 1
    assert_names(r.stderr.splitlines()[-1].removeprefix("Error: "), case, line)
    assert await full_dump(database_url) == before
    r = cli_stdin(made.backup, database_url)
    assert r.returncode == 0, r.stderr
    assert "imported standard input" in r.stdout
    # (the CLI runs with the default limits; the file is within them)
    assert await dump(database_url) == made.expected


def cli_stdin(path: Path, database_url: str):  # noqa: ANN201
    import subprocess
    import sys

    with path.open("rb") as f:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "memory_service",
                "backup",
                "import",
                "-",
                "--database-url",
                database_url,
            ],
            stdin=f,
            capture_output=True,
            text=True,
            timeout=120,
        )


async def test_the_restored_workspaces_answer_as_the_source_does(
    database_url: str, made: Made
) -> None:
    """After a refused file, the good one restores and every read answers as on the source."""
    await target(database_url, made)
    await backup_service.import_backup(database_url, made.backup, settings=limits(database_url))
    answers = []
    for url in (made.source, database_url):
        api, _ = await make_api(url)
        got = {}
        async with api.client as c:
            for name, h in made.headers.items():
                r = await c.get("/api/memory/all", headers=h)
                assert r.status_code == 200, r.text
                got[name, "all"] = r.json()
                r = await c.get("/api/kv", headers=h)
                assert r.status_code == 200, r.text
                got[name, "keys"] = r.json()
                for item in r.json()["items"]:
                    value = await c.get(f"/api/kv/{quote(item['key'], safe='')}", headers=h)
                    kept = {k: value.headers.get(k) for k in ("content-type", "etag")}
                    got[name, item["key"]] = (value.status_code, value.content, kept)
        answers.append(got)
    assert answers[0] == answers[1]
