"""Backup and restore: one JSON Lines file, streamed out of one snapshot; read back once, each
record held to the API's rules (backup_rules.py) as it is imported, in one transaction that
commits only when the whole file, checksum and all, has been found sound.

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
import contextlib
import hashlib
import json
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from ..clock import iso, now_ms
from ..settings import Settings
from ..storage import backup as sql
from ..storage.engines import one_off_engine
from ..storage.health import schema_revision
from ..storage.migrations import alembic_config
from .backup_rules import BackupError as BackupError  # (raised by both; the CLI catches it)
from .backup_rules import Checker

FORMAT = "memory-service-backup"
VERSION = 1
BATCH_ROWS = 500
BATCH_BYTES = 16 * 1024 * 1024

# A progress bar: (label, total units) -> context manager yielding update(n).
Progress = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


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

HEADER_FIELDS = frozenset(
    {"type", "format", "version", "schema", "createdAt", "workspace", "apiKeys", "counts"}
)
TRAILER_FIELDS = frozenset({"type", "counts", "sha256"})


@dataclass
class Plan:
    """What a file held, once it has been read whole, found sound and imported."""

    header: dict
    counts: Counter[str] = field(default_factory=Counter)
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
    unknown = record.keys() - HEADER_FIELDS
    if unknown:
        raise BackupError(f'line 1 (header), field "{sorted(unknown)[0]}": is not a header field')
    for name, ok in (
        ("createdAt", isinstance(record.get("createdAt"), str)),
        ("workspace", record.get("workspace") is None or isinstance(record["workspace"], str)),
        ("apiKeys", isinstance(record.get("apiKeys"), bool)),
        ("counts", isinstance(record.get("counts"), dict)),
    ):
        if not ok:
            raise BackupError(f'line 1 (header), field "{name}": is missing or of the wrong type')
    return record


def _check_trailer(trailer: dict, found: dict[str, int], header: dict) -> None:
    unknown = trailer.keys() - TRAILER_FIELDS
    if unknown:
        raise BackupError(f'trailer, field "{sorted(unknown)[0]}": is not a trailer field')
    found = {k: v for k, v in found.items() if v}
    for name, claimed in (("trailer", trailer.get("counts")), ("header", header["counts"])):
        if not isinstance(claimed, dict) or {k: v for k, v in claimed.items() if v} != found:
            raise BackupError(f"the records do not match the {name}'s counts: {claimed} != {found}")


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
            # 0 is no memory's id: a retry of that add is told its memory was deleted. (A ref
            # is of a memory of the same workspace, or of none in the file: backup_rules.)
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


def _refuse_existing(conn: Connection, name: str) -> None:
    if sql.existing_workspaces(conn, [name]):
        raise BackupError(
            f"workspace {name!r} already exists in the target database; import never merges: "
            "delete it first (`memory-service workspace delete NAME`) or import into another "
            "database"
        )


def _import_sync(
    conn: Connection,
    f: IO[bytes],
    total: int,
    database_url: str,
    settings: Settings,
    progress: Progress,
) -> Plan:
    """Read the file once, checking each record and importing it as it comes, in the caller's
    transaction; the checksum, the counts and each workspace's totals are checked as the file
    ends. Whatever is wrong raises, which rolls back all that was imported: the bytes checked are
    the bytes imported, and a file that changes meanwhile cannot slip in."""
    sha = hashlib.sha256()
    plan: Plan | None = None
    checker: Checker | None = None
    trailer: dict | None = None
    refused: BackupError | None = None
    importer = _Importer(conn)
    with progress("importing", total) as step:
        for number, line, record in _records(f):
            step(len(line))
            if trailer is not None:
                raise BackupError(
                    f"line {number}: records after the trailer: the file is corrupted"
                )
            if number == 1:
                plan = Plan(_check_header(record, database_url))
                checker = Checker(settings, record["workspace"], record["apiKeys"])
                sha.update(line)
                continue
            if record["type"] == "trailer":
                trailer = record
                continue
            sha.update(line)
            if refused is not None:
                continue  # read on only to tell a damaged file from an edited one
            assert plan is not None and checker is not None
            try:
                spec, params = checker.record(number, record)
                if spec is sql.WORKSPACE:
                    _refuse_existing(conn, params["name"])
                    plan.workspaces.append(params["name"])
                importer.add(spec, record, params)
            except BackupError as exc:
                refused = exc
    if plan is None or checker is None:
        raise BackupError("the file is empty")
    if trailer is None:
        raise BackupError(
            "the file ends without its trailer line: it is truncated (an export that did not "
            "finish, or an incomplete copy)"
        )
    if trailer.get("sha256") != sha.hexdigest():
        also = f" (the first record found wrong: {refused})" if refused else ""
        raise BackupError(f"checksum mismatch: the file is corrupted{also}")
    if refused is not None:
        raise refused
    checker.finish()
    _check_trailer(trailer, checker.counts, plan.header)
    importer.flush()
    plan.counts = checker.counts
    return plan


async def import_backup(
    database_url: str,
    source: Path | IO[bytes],
    *,
    settings: Settings | None = None,
    progress: Progress = _no_progress,
) -> Plan:
    """Import a backup file (a path, or a stream such as stdin) in one transaction: all of it
    or nothing. Every record is held to the API's rules (backup_rules), with the limits of
    `settings`.

    The database must be at the latest migration (the CLI migrates it first)."""
    settings = settings or Settings(database_url=database_url)
    if not isinstance(source, Path):
        return await _import(database_url, source, 0, settings, progress)
    try:
        f = source.open("rb")
    except OSError as exc:
        raise BackupError(f"cannot read {source}: {exc.strerror or exc}") from exc
    with f:
        info = os.fstat(f.fileno())
        total = info.st_size if stat.S_ISREG(info.st_mode) else 0  # (a pipe has no size)
        return await _import(database_url, f, total, settings, progress)


async def _import(
    database_url: str, f: IO[bytes], total: int, settings: Settings, progress: Progress
) -> Plan:
    engine = one_off_engine(
        database_url, sqlite_begin="BEGIN IMMEDIATE", busy_timeout_ms=BUSY_TIMEOUT_MS
    )
    try:
        async with engine.connect() as conn, conn.begin():
            revision = await conn.run_sync(schema_revision)
            if revision != _head(database_url):
                raise BackupError(f"the target database is at migration {revision}: migrate it")
            return await conn.run_sync(_import_sync, f, total, database_url, settings, progress)
    except BackupError:
        raise
    except Exception as exc:  # e.g. an API key hash that the target database already holds
        raise BackupError(
            f"import failed and was rolled back, nothing was imported: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from exc
    finally:
        await engine.dispose()
