"""What a restore accepts: each record of a backup file checked against the API's own rules (the
validators of services.kv, .memory, .workspaces and .media_types, never a copy of them), and the
records checked against each other: sizes and usage recomputed from the bytes, versions unique
and within the workspace's counter, sequence numbers dense and matching the memory's counters,
ids, keys and names unique. A hand-edited file with its checksum recomputed can store nothing
that the API would refuse, nor a counter that the service would trip over later.

A workspace's records follow its workspace record, in the order of storage.backup.SPECS (as the
export writes them), so what is remembered to check them is one workspace's worth.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Column, Integer
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from ..settings import Settings
from ..storage import backup as sql
from ..storage.memory import id_bytes, name_bytes
from .errors import ServiceError
from .kv import check_key, check_value_size
from .media_types import check_media_type
from .memory import IDEMPOTENCY_KEY_LENGTH, check_id, check_message
from .workspaces import check_key_hash, check_key_prefix, check_label, check_name, check_quota

T = TypeVar("T")

# Every integer of the schema (times, sizes, counters, versions, seqs) is at least 0.
_INT_MAX: dict[type, int] = {Integer: 2**31 - 1, BigInteger: 2**63 - 1}
# What MemoryService.add stores as an idempotency record's request hash (a SHA-256 hex digest).
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ORDER = {spec.kind: i for i, spec in enumerate(sql.SPECS)}


class BackupError(Exception):
    """A backup that cannot be made, or a file that will not be imported (nothing was)."""


@dataclass(frozen=True)
class Where:
    """A record of the file, for the messages that name it."""

    line: int
    kind: str

    def bad(self, name: str, rule: str) -> BackupError:
        return BackupError(f'line {self.line} ({self.kind} record), field "{name}": {rule}')


def _api(where: Where, name: str, check: Callable[..., T], *args: Any) -> T:
    """`check(*args)`, one of the API's validators, its refusal turned into the file's."""
    try:
        return check(*args)
    except ServiceError as exc:
        raise where.bad(name, f"{exc.message} (the API refuses it: {exc.code})") from exc


def _utf8(where: Where, name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise where.bad(name, f"is not valid UTF-8 (byte {exc.start})") from exc


# --- one record against its table ----------------------------------------------------------------


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


def _integer(where: Where, name: str, value: Any, most: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise where.bad(name, "must be an integer")
    if not 0 <= value <= most:
        raise where.bad(name, f"is {value}; it must be between 0 and {most}")
    return value


def _decode_column(col: Column, value: Any, where: Where) -> Any:
    if value is None:
        if not col.nullable:
            raise where.bad(col.name, "must not be null")
        return None
    if sql.is_binary(col):
        if not isinstance(value, str):
            raise where.bad(col.name, "must be a base64 string")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise where.bad(col.name, "is not valid base64") from exc
    most = _INT_MAX.get(type(col.type))
    if most is not None:
        return _integer(where, col.name, value, most)
    if not isinstance(value, str):
        raise where.bad(col.name, "must be a string")
    length = getattr(col.type, "length", None)
    if length is not None and len(value) > length:
        raise where.bad(col.name, f"is {len(value)} characters; the maximum is {length}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, which JSON can spell and SQL cannot
        raise where.bad(col.name, "is not valid Unicode (a lone surrogate)") from exc
    return value


def decode(spec: sql.Spec, record: dict, where: Where) -> dict:
    """The table row of a record (ids not yet mapped), each column of the right type."""
    unknown = record.keys() - _FIELDS[spec.kind]
    if unknown:
        raise where.bad(sorted(unknown)[0], f"is not a field of a {spec.kind} record")
    params: dict[str, Any] = {}
    for col in spec.columns:
        if col.name in record:
            params[col.name] = _decode_column(col, record[col.name], where)
        elif isinstance(col.default, ScalarElementColumnDefault):
            # (a column added with a default after the file was made: checked as that value)
            params[col.name] = col.default.arg
        elif col.nullable and col.server_default is None:
            params[col.name] = None
        else:
            raise where.bad(col.name, "is missing")
    if "workspace" in _FIELDS[spec.kind] and not isinstance(record.get("workspace"), str):
        raise where.bad("workspace", "must be the name of a workspace")
    for name in ("ref", "memory"):
        if name in _FIELDS[spec.kind]:
            _integer(where, name, record.get(name), _INT_MAX[BigInteger])
    return params


# --- the records together ------------------------------------------------------------------------


@dataclass
class _Memory:
    where: Where
    params: dict
    seen: int = 0  # messages so far, which is also the seq the next one must have
    size: int = 0  # their bytes, as recomputed


@dataclass
class _Workspace:
    where: Where
    params: dict
    stage: int = 0  # the place in SPECS of the last record kind seen
    used: int = 0  # bytes stored, as recomputed from the records
    keys: dict[bytes, int] = field(default_factory=dict)  # KV key -> line
    versions: dict[int, int] = field(default_factory=dict)  # KV version -> line
    blocks: dict[str, int] = field(default_factory=dict)
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)
    memories: dict[int, _Memory] = field(default_factory=dict)  # by ref
    idempotency: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        name: str = self.params["name"]
        return name


def _twice(where: Where, name: str, what: str, first: int) -> BackupError:
    return where.bad(name, f"{what} appears twice (first on line {first})")


class Checker:
    """Checks a file's records in order; `record` answers a record's table row or raises."""

    def __init__(self, settings: Settings, only: str | None, with_keys: bool) -> None:
        self.settings = settings
        self.only = only  # the header's workspace: the file holds that one alone
        self.with_keys = with_keys
        self.counts: Counter[str] = Counter()
        self.workspaces: dict[str, int] = {}  # name -> line
        self.refs: dict[int, str] = {}  # memory ref -> its workspace
        self.key_hashes: dict[str, int] = {}
        # Refs of idempotency records whose memory was deleted (not in the file): a memory of
        # another workspace may not come with that ref later (ids are unique in the source).
        self.dangling: dict[int, tuple[str, Where]] = {}
        self.ws: _Workspace | None = None

    def record(self, line: int, record: dict) -> tuple[sql.Spec, dict]:
        kind = record["type"]
        where = Where(line, kind)
        spec = sql.BY_KIND.get(kind)
        if spec is None:
            raise where.bad("type", f"{kind!r} is not a record type of this format")
        params = decode(spec, record, where)
        if spec is sql.WORKSPACE:
            self._close()
            self._workspace(where, params)
        else:
            ws = self._of_current(where, spec, record)
            check = getattr(self, f"_{kind}")
            check(ws, where, params, record)
        self.counts[kind] += 1
        return spec, params

    def finish(self) -> None:
        """At the end of the file: the last workspace's totals."""
        self._close()

    # --- order ------------------------------------------------------------------------------
    def _of_current(self, where: Where, spec: sql.Spec, record: dict) -> _Workspace:
        ws = self.ws
        if ws is None:
            raise where.bad("type", "comes before any workspace record")
        if spec.parent == "workspace" and record["workspace"] != ws.name:
            raise where.bad(
                "workspace",
                f"is {record['workspace']!r}, but it follows the records of workspace "
                f"{ws.name!r} (line {ws.where.line}): a workspace's records follow it",
            )
        if _ORDER[spec.kind] < ws.stage:
            raise where.bad(
                "type",
                f"comes after the workspace's {sql.SPECS[ws.stage].kind} records (a "
                f"workspace's records come in the order {', '.join(s.kind for s in sql.SPECS)})",
            )
        ws.stage = _ORDER[spec.kind]
        return ws

    # --- each kind --------------------------------------------------------------------------
    def _workspace(self, where: Where, p: dict) -> None:
        _api(where, "name", check_name, p["name"])
        name = p["name"]
        if name in self.workspaces:
            raise _twice(where, "name", f"workspace {name!r}", self.workspaces[name])
        if self.only is not None and name != self.only:
            raise where.bad(
                "name", f"is {name!r}, but the header says the file holds {self.only!r}"
            )
        _api(where, "quota_bytes", check_quota, p["quota_bytes"])
        self.workspaces[name] = where.line
        self.ws = _Workspace(where, p)

    def _api_key(self, ws: _Workspace, where: Where, p: dict, _record: dict) -> None:
        if not self.with_keys:
            raise where.bad("type", 'an API key in a file whose header says "apiKeys": false')
        _api(where, "key_hash", check_key_hash, p["key_hash"])
        if p["key_hash"] in self.key_hashes:
            raise _twice(where, "key_hash", "this key", self.key_hashes[p["key_hash"]])
        self.key_hashes[p["key_hash"]] = where.line
        _api(where, "prefix", check_key_prefix, p["prefix"])
        _api(where, "label", check_label, p["label"])
        if p["revoked_at"] is not None and p["revoked_at"] < p["created_at"]:
            raise where.bad("revoked_at", "is before created_at")

    def _kv(self, ws: _Workspace, where: Where, p: dict, _record: dict) -> None:
        key = _utf8(where, "key", p["key"])
        _api(where, "key", check_key, key, self.settings.max_key_bytes)
        if p["key"] in ws.keys:
            raise _twice(where, "key", f"key {key!r}", ws.keys[p["key"]])
        ws.keys[p["key"]] = where.line
        _api(where, "value", check_value_size, len(p["value"]), self.settings.max_value_bytes)
        _api(where, "content_type", check_media_type, p["content_type"])
        size = len(p["key"]) + len(p["value"])
        if p["size"] != size:
            raise where.bad("size", f"is {p['size']}, but key and value hold {size} bytes")
        version, counter = p["version"], ws.params["version_seq"]
        if version < 1:
            raise where.bad("version", f"is {version}; versions start at 1")
        if version > counter:
            raise ws.where.bad(
                "version_seq",
                f"is {counter}, but line {where.line} holds a KV entry of version {version}: "
                "every write takes its version from this counter, so versions (ETags) would "
                "be reused",
            )
        if version in ws.versions:
            raise _twice(where, "version", f"version {version}", ws.versions[version])
        ws.versions[version] = where.line
        if p["updated_at"] < p["created_at"]:
            raise where.bad("updated_at", "is before created_at")
        ws.used += size

    def _block(self, ws: _Workspace, where: Where, p: dict, _record: dict) -> None:
        block = _api(where, "block_id", check_id, p["block_id"], "blockId")
        _api(where, "name", check_id, p["name"], "blockName")
        if block in ws.blocks:
            raise _twice(where, "block_id", f"block {block!r}", ws.blocks[block])
        ws.blocks[block] = where.line
        ws.used += name_bytes(block, p["name"])

    def _memory(self, ws: _Workspace, where: Where, p: dict, record: dict) -> None:
        conv = _api(where, "conversation_id", check_id, p["conversation_id"], "conversationId")
        block = _api(where, "block_id", check_id, p["block_id"], "blockId")
        if (conv, block) in ws.pairs:
            raise _twice(where, "conversation_id", "this memory", ws.pairs[conv, block])
        ws.pairs[conv, block] = where.line
        ref = record["ref"]
        if ref in self.refs:
            raise where.bad("ref", f"memory ref {ref} appears twice")  # (in any workspace)
        self.refs[ref] = ws.name
        dangling = self.dangling.get(ref)
        if dangling is not None and dangling[0] != ws.name:
            raise dangling[1].bad(
                "memory", f"is {ref}, a memory of workspace {ws.name!r} (line {where.line})"
            )
        if p["updated_at"] < p["created_at"]:
            raise where.bad("updated_at", "is before created_at")
        ws.memories[ref] = _Memory(where, p)
        ws.used += id_bytes(conv, block)

    def _message(self, ws: _Workspace, where: Where, p: dict, record: dict) -> None:
        memory = ws.memories.get(record["memory"])
        if memory is None:
            raise where.bad(
                "memory",
                f"is {record['memory']}, no memory of workspace {ws.name!r} before it",
            )
        seq, next_seq = p["seq"], memory.params["next_seq"]
        if seq != memory.seen:
            raise where.bad(
                "seq",
                f"is {seq}, but the messages of a memory are numbered 0, 1, 2, ... in order: "
                f"this one must be {memory.seen}",
            )
        if seq >= next_seq:
            raise memory.where.bad(
                "next_seq",
                f"is {next_seq}, but line {where.line} holds its message of seq {seq}: "
                "next_seq is the number of the memory's messages",
            )
        content = _utf8(where, "content", p["content"])
        try:
            _, _, raw, size = check_message(p["role"], content, self.settings.max_content_bytes)
        except ServiceError as exc:
            name = "role" if exc.code == "invalid_role" else "content"
            raise where.bad(name, f"{exc.message} (the API refuses it: {exc.code})") from exc
        if p["size"] != size:
            raise where.bad("size", f"is {p['size']}, but role and content hold {size} bytes")
        memory.seen += 1
        memory.size += size
        ws.used += size

    def _idempotency(self, ws: _Workspace, where: Where, p: dict, record: dict) -> None:
        key = _api(where, "key", check_id, p["key"], "Idempotency-Key", IDEMPOTENCY_KEY_LENGTH)
        if key in ws.idempotency:
            raise _twice(where, "key", f"Idempotency-Key {key!r}", ws.idempotency[key])
        ws.idempotency[key] = where.line
        limit = self.settings.max_idempotency_keys
        if len(ws.idempotency) > limit:
            raise where.bad(
                "key", f"is one more than the {limit} idempotency keys a workspace keeps"
            )
        if not _SHA256_HEX.fullmatch(p["request_hash"]):
            raise where.bad("request_hash", "must be 64 lowercase hex digits (SHA-256)")
        most = self.settings.max_batch_messages
        if not 1 <= p["count"] <= most:
            raise where.bad("count", f"is {p['count']}; an add appends 1 to {most} messages")
        ref = record["memory"]
        memory = ws.memories.get(ref)
        if memory is not None:  # (else the memory was deleted since: a retry is told so)
            end, next_seq = p["first_seq"] + p["count"], memory.params["next_seq"]
            if end > next_seq:
                raise where.bad(
                    "first_seq",
                    f"is {p['first_seq']} with count {p['count']}: messages up to seq {end - 1}, "
                    f"but the memory's next_seq is {next_seq} (line {memory.where.line})",
                )
        elif ref in self.refs:  # a memory of a workspace before this one
            raise where.bad("memory", f"is {ref}, a memory of workspace {self.refs[ref]!r}")
        else:  # or of one after it: refused when that memory comes
            self.dangling.setdefault(ref, (ws.name, where))

    # --- a workspace's totals ---------------------------------------------------------------
    def _close(self) -> None:
        ws, self.ws = self.ws, None
        if ws is None:
            return
        used = ws.params["used_bytes"]
        if used != ws.used:
            raise ws.where.bad(
                "used_bytes",
                f"is {used}, but the workspace's records hold {ws.used} bytes "
                "(usage is recounted from the bytes, never taken from the file)",
            )
        for memory in ws.memories.values():
            p, seen = memory.params, memory.seen
            if seen == 0:
                raise memory.where.bad("message_count", "a memory holds at least one message")
            for name in ("next_seq", "message_count"):
                if p[name] != seen:
                    raise memory.where.bad(
                        name, f"is {p[name]}, but the file holds {seen} messages of this memory"
                    )
            size = memory.size + id_bytes(p["conversation_id"], p["block_id"])
            if p["bytes"] != size:
                raise memory.where.bad(
                    "bytes", f"is {p['bytes']}, but its ids and messages hold {size} bytes"
                )
