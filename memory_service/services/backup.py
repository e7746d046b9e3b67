"""Backup and restore: one JSON Lines file, streamed out of one snapshot and checked whole before
anything of it is imported, in one transaction.

File layout, one JSON object per line:

    {"type": "header", "format": "memory-service-backup", "version": 1, "schema": "<migration>",
     "createdAt": "...", "workspace": null | "<name>", "apiKeys": true, "counts": {...}}
    {"type": "workspace", "name": ..., "quota_bytes": ..., "used_bytes": ..., ...}
    {"type": "api_key", "workspace": "<name>", "key_hash": ..., ...}     (hashes, never keys)
    {"type": "kv", "workspace": "<name>", "key": <base64>, "value": <base64>, ...}
    {"type": "block", "workspace": "<name>", "block_id": ..., "name": ...}
    {"type": "memory", "workspace": "<name>", "ref": <id in the source>, ...}
    {"type": "message", "memory": <ref>, "seq": 0, "role": ..., "content": <base64>, ...}
    {"type": "idempotency", "workspace": "<name>", "memory": <ref>, ...}
    {"type": "trailer", "counts": {...}, "sha256": "<sha256 of every line before this one>"}

Columns are written as stored (binary columns in base64, times in epoch milliseconds), so a
restore is exact: bytes, content types, versions, expiry times, message order, block names,
usage and version counters all come back as they were.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from alembic.script import ScriptDirectory
from sqlalchemy import Column
from sqlalchemy.engine import Connection

from ..clock import iso, now_ms
from ..storage import backup as sql
from ..storage.engines import one_off_engine
from ..storage.health import schema_revision
from ..storage.migrations import alembic_config
from .errors import ServiceError
from .media_types import check_media_type

FORMAT = "memory-service-backup"
VERSION = 1
BATCH_ROWS = 500
BATCH_BYTES = 16 * 1024 * 1024

# A progress bar: (label, total units) -> context manager yielding update(n).
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


class BackupError(Exception):
    """A backup that cannot be made, or a file that will not be imported (nothing was)."""


@contextlib.contextmanager
def _no_progress(_label: str, _total: int) -> Iterator[Callable[[int], None]]:
    yield lambda _n: None


# --- engines -------------------------------------------------------------------------------------

# A backup runs beside a serving process: wait this long for its writer rather than fail.
BUSY_TIMEOUT_MS = 30_000


def _head(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def _known_revision(url: str, revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(alembic_config(url)).get_revision(revision) is not None
    except Exception:  # alembic raises for unknown or malformed ids
        return False


# --- records -------------------------------------------------------------------------------------


def _line(record: dict) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def encode(spec: sql.Spec, row: sql.Record, workspace: str | None) -> dict:
    record: dict[str, Any] = {"type": spec.kind}
    if spec.parent == "workspace":
        record["workspace"] = workspace
    if spec.ref_column:
        record["ref"] = row[spec.ref_column]
    if spec.memory_column:
        record["memory"] = row[spec.memory_column]
    for col in spec.columns:
        value = row[col.name]
        if value is not None and sql.is_binary(col):
            value = base64.b64encode(value).decode("ascii")
        record[col.name] = value
    return record


def _fields(spec: sql.Spec) -> frozenset[str]:
    extra = {"type"}
    if spec.parent == "workspace":
        extra.add("workspace")
    if spec.ref_column:
        extra.add("ref")
    if spec.memory_column:
        extra.add("memory")
    return frozenset({c.name for c in spec.columns} | extra)


_FIELDS = {spec.kind: _fields(spec) for spec in sql.SPECS}


def _decode_column(col: Column, value: Any, where: str) -> Any:
    if value is None:
        if not col.nullable:
            raise BackupError(f"{where}: {col.name} must not be null")
        return None
    if sql.is_binary(col):
        if not isinstance(value, str):
            raise BackupError(f"{where}: {col.name} must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BackupError(f"{where}: {col.name} is not valid base64") from exc
    try:
        kind = col.type.python_type
    except NotImplementedError:
        return value
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise BackupError(f"{where}: {col.name} must be an integer")
    elif kind is str:
        if not isinstance(value, str):
            raise BackupError(f"{where}: {col.name} must be a string")
        length = getattr(col.type, "length", None)
        if length is not None and len(value) > length:
            raise BackupError(f"{where}: {col.name} is longer than {length} characters")
    return value


def decode(spec: sql.Spec, record: dict, where: str) -> dict:
    """The table row of a record, checked against the table's columns (ids not yet mapped)."""
    unknown = record.keys() - _FIELDS[spec.kind]
    if unknown:
        raise BackupError(f"{where}: unknown field(s) {sorted(unknown)} in a {spec.kind} record")
    params: dict[str, Any] = {}
    for col in spec.columns:
        if col.name in record:
            params[col.name] = _decode_column(col, record[col.name], where)
        elif col.nullable and col.default is None and col.server_default is None:
            params[col.name] = None
        elif col.default is None and col.server_default is None:
            raise BackupError(f"{where}: a {spec.kind} record lacks {col.name}")
    if "content_type" in params:  # served back as a header: the KV API's own rule
        try:
            check_media_type(params["content_type"])
        except ServiceError as exc:
            raise BackupError(f"{where}: {exc.message}") from exc
    for name, kind in (("workspace", str), ("ref", int), ("memory", int)):
        if name in _FIELDS[spec.kind]:
            value = record.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise BackupError(f"{where}: a {spec.kind} record needs {name!r}")
    return params


def _size(params: dict) -> int:
    return sum(len(v) for v in params.values() if isinstance(v, bytes | str))


# --- export --------------------------------------------------------------------------------------


class _Writer:
    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()

    def write(self, record: dict) -> None:
        line = _line(record)
        self.sha.update(line)
        self.out.write(line)


def _export_sync(
    conn: Connection,
    out: IO[bytes],
    workspace: str | None,
    with_keys: bool,
    head: str | None,
    progress: Progress,
) -> dict[str, int]:
    revision = schema_revision(conn)
    if revision != head:
        raise BackupError(
            f"the database is at migration {revision}, this release at {head}: "
            "run `memory-service migrate` first (or export with the release that matches)"
        )
    workspaces = sql.workspaces(conn, workspace)
    if workspace is not None and not workspaces:
        raise BackupError(f"workspace {workspace!r} not found")
    ids = [w["id"] for w in workspaces]
    specs = [s for s in sql.SPECS if with_keys or s is not sql.API_KEY]
    counts = {s.kind: sql.count(conn, s, ids) for s in specs}
    writer = _Writer(out)
    writer.write(
        {
            "type": "header",
            "format": FORMAT,
            "version": VERSION,
            "schema": head,
            "createdAt": iso(now_ms()),
            "workspace": workspace,
            "apiKeys": with_keys,
            "counts": counts,
        }
    )
    written = dict.fromkeys(counts, 0)
    with progress("exporting", sum(counts.values())) as step:
        for ws in workspaces:
            writer.write(encode(sql.WORKSPACE, ws, None))
            written["workspace"] += 1
            step(1)
            for spec in specs[1:]:
                for row in sql.rows(conn, spec, ws["id"]):
                    writer.write(encode(spec, row, ws["name"]))
                    written[spec.kind] += 1
                    step(1)
    if written != counts:  # cannot happen within one snapshot; never write a wrong trailer
        raise BackupError(f"the database changed during the export: {counts} != {written}")
    trailer = {"type": "trailer", "counts": written, "sha256": writer.sha.hexdigest()}
    out.write(_line(trailer))
    return written


async def export_backup(
    database_url: str,
    path: Path,
    *,
    workspace: str | None = None,
    with_keys: bool = True,
    progress: Progress = _no_progress,
) -> dict[str, int]:
    """Write every workspace (or one) to `path`, from one consistent snapshot, streaming.

    The file appears under its name only when complete (written beside it, then renamed)."""
    head = _head(database_url)
    partial = path.with_name(path.name + ".partial")
    engine = one_off_engine(database_url, sqlite_begin="BEGIN", busy_timeout_ms=BUSY_TIMEOUT_MS)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            with partial.open("wb") as out:
                async with conn.begin():
                    counts = await conn.run_sync(
                        _export_sync, out, workspace, with_keys, head, progress
                    )
                out.flush()
                os.fsync(out.fileno())
        os.replace(partial, path)
        return counts
    finally:
        partial.unlink(missing_ok=True)
        await engine.dispose()


# --- import --------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a file holds, known once it has been read whole and found sound."""

    header: dict
    counts: Counter = field(default_factory=Counter)
    workspaces: list[str] = field(default_factory=list)


def _records(f: IO[bytes]) -> Iterator[tuple[int, bytes, dict]]:
    for number, line in enumerate(f, 1):
        where = f"line {number}"
        if not line.endswith(b"\n"):
            raise BackupError(f"{where} is incomplete: the file is truncated")
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise BackupError(f"{where} is not valid JSON: the file is corrupted") from exc
        if not isinstance(record, dict) or not isinstance(record.get("type"), str):
            raise BackupError(f"{where} is not a backup record: the file is corrupted")
        yield number, line, record


def check_file(path: Path, database_url: str, progress: Progress = _no_progress) -> Plan:
    """Read the whole file and check it: checksum, counts, every record against its table, and
    that every reference points to a record before it. Raises BackupError; imports nothing."""
    sha = hashlib.sha256()
    plan: Plan | None = None
    trailer: dict | None = None
    workspaces: set[str] = set()
    memories: set[int] = set()
    try:
        total = path.stat().st_size
        f = path.open("rb")
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with f, progress("checking", total) as step:
        for number, line, record in _records(f):
            step(len(line))
            where = f"line {number}"
            kind = record["type"]
            if trailer is not None:
                raise BackupError(f"{where}: records after the trailer: the file is corrupted")
            if number == 1:
                plan = Plan(_check_header(record, database_url))
                sha.update(line)
                continue
            if kind == "trailer":
                trailer = record
                continue
            sha.update(line)
            spec = sql.BY_KIND.get(kind)
            if spec is None:
                raise BackupError(f"{where}: unknown record type {kind!r}")
            params = decode(spec, record, where)
            assert plan is not None
            if spec is sql.WORKSPACE:
                name = params["name"]
                if name in workspaces:
                    raise BackupError(f"{where}: workspace {name!r} appears twice")
                workspaces.add(name)
                plan.workspaces.append(name)
            elif spec.parent == "workspace" and record["workspace"] not in workspaces:
                raise BackupError(f"{where}: refers to a workspace not declared before it")
            if spec is sql.MEMORY:
                if record["ref"] in memories:
                    raise BackupError(f"{where}: memory ref {record['ref']} appears twice")
                memories.add(record["ref"])
            elif spec is sql.MESSAGE and record["memory"] not in memories:
                raise BackupError(f"{where}: a message of a memory not declared before it")
            plan.counts[kind] += 1
    if plan is None:
        raise BackupError(f"{path} is empty")
    if trailer is None:
        raise BackupError(
            "the file ends without its trailer line: it is truncated (an export that did not "
            "finish, or an incomplete copy)"
        )
    if trailer.get("sha256") != sha.hexdigest():
        raise BackupError("checksum mismatch: the file is corrupted")
    found = {k: v for k, v in plan.counts.items() if v}
    for name, claimed in (("trailer", trailer.get("counts")), ("header", plan.header["counts"])):
        if not isinstance(claimed, dict) or {k: v for k, v in claimed.items() if v} != found:
            raise BackupError(f"the records do not match the {name}'s counts: {claimed} != {found}")
    return plan


def _check_header(record: dict, database_url: str) -> dict:
    if record.get("type") != "header" or record.get("format") != FORMAT:
        raise BackupError("not a memory-service backup file (no header line)")
    if record.get("version") != VERSION:
        raise BackupError(
            f"backup format version {record.get('version')!r} is not supported "
            f"(this release reads version {VERSION})"
        )
    schema = record.get("schema")
    if not isinstance(schema, str) or not _known_revision(database_url, schema):
        raise BackupError(
            f"the backup was made at migration {schema!r}, unknown to this release: "
            "import it with the release that made it (or a newer one)"
        )
    if not isinstance(record.get("counts"), dict):
        raise BackupError("the header has no counts: the file is corrupted")
    return record


class _Importer:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.workspace_ids: dict[str, int] = {}
        self.memory_ids: dict[int, int] = {}
        self.spec: sql.Spec | None = None
        self.batch: list[dict] = []
        # Per row of the batch, what its new id is filed under: a memory's ref in the file
        # (int), or a workspace's name (str), by the table being imported.
        self.refs: list[Any] = []
        self.bytes = 0

    def add(self, spec: sql.Spec, record: dict, params: dict) -> None:
        if spec is not self.spec or (self.batch and params.keys() != self.batch[0].keys()):
            self.flush()
            self.spec = spec
        if spec.parent == "workspace":
            params["workspace_id"] = self.workspace_ids[record["workspace"]]
        if spec is sql.MESSAGE:
            params["memory_id"] = self.memory_ids[record["memory"]]
        elif spec is sql.IDEMPOTENCY:
            # 0 is no memory's id: a retry of that add is told its memory was deleted.
            params["memory_id"] = self.memory_ids.get(record["memory"], 0)
        self.batch.append(params)
        if spec.ref_column:
            self.refs.append(record["ref"])
        if spec is sql.WORKSPACE:
            self.refs.append(params["name"])
        self.bytes += _size(params)
        if len(self.batch) >= BATCH_ROWS or self.bytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        spec, batch = self.spec, self.batch
        if spec is None or not batch:
            return
        if spec is sql.WORKSPACE or spec.ref_column:
            ids = sql.insert_returning_ids(self.conn, spec, batch)
            target = self.workspace_ids if spec is sql.WORKSPACE else self.memory_ids
            target.update(zip(self.refs, ids, strict=True))
        else:
            sql.insert_rows(self.conn, spec, batch)
        self.batch, self.refs, self.bytes = [], [], 0


def _import_sync(conn: Connection, path: Path, plan: Plan, progress: Progress) -> None:
    clash = sql.existing_workspaces(conn, plan.workspaces)
    if clash:
        raise BackupError(
            f"workspace(s) {', '.join(repr(n) for n in clash)} already exist in the target "
            "database; import never merges: delete them first (`memory-service workspace "
            "delete NAME`) or import into another database"
        )
    importer = _Importer(conn)
    with path.open("rb") as f, progress("importing", path.stat().st_size) as step:
        for number, line, record in _records(f):
            step(len(line))
            if record["type"] in ("header", "trailer"):
                continue
            spec = sql.BY_KIND[record["type"]]
            importer.add(spec, record, decode(spec, record, f"line {number}"))
        importer.flush()


async def import_backup(
    database_url: str, path: Path, *, progress: Progress = _no_progress
) -> Plan:
    """Check the whole file, then import it in one transaction: all of it or nothing.

    The database must be at the latest migration (the CLI migrates it first)."""
    plan = check_file(path, database_url, progress)
    engine = one_off_engine(
        database_url, sqlite_begin="BEGIN IMMEDIATE", busy_timeout_ms=BUSY_TIMEOUT_MS
    )
    try:
        async with engine.connect() as conn, conn.begin():
            revision = await conn.run_sync(schema_revision)
            if revision != _head(database_url):
                raise BackupError(f"the target database is at migration {revision}: migrate it")
            await conn.run_sync(_import_sync, path, plan, progress)
    except BackupError:
        raise
    except Exception as exc:  # e.g. an API key hash that the target database already holds
        raise BackupError(
            f"import failed and was rolled back, nothing was imported: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from exc
    finally:
        await engine.dispose()
    return plan
