"""Workspaces, API keys and authentication."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..clock import iso, now_ms
from ..settings import Settings
from ..storage import pg_writes
from ..storage import workspaces as sql
from ..storage.database import Database
from .auth_failures import FailureLimiter
from .errors import BadRequest, Conflict, NotFound, Unauthorized
from .text import has_control

KEY_PREFIX = "msk_"
SHOWN_CHARS = 6  # of a key after KEY_PREFIX, kept as its `prefix` so that lists can show it
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Column limits: quotas are BIGINT, key ids INTEGER. Beyond them a database raises (a 500).
MAX_QUOTA = 2**63 - 1
MAX_KEY_ID = 2**31 - 1


def hash_key(secret: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Principal:
    workspace_id: int
    workspace: str
    key_id: int


@dataclass(frozen=True, slots=True)
class CreatedKey:
    id: int
    workspace: str
    secret: str
    prefix: str


class WorkspaceService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # key hash -> (principal, monotonic deadline). Bounded staleness: a key revoked on
        # another replica is trusted here for at most `auth_cache_seconds`.
        self._cache: dict[str, tuple[Principal, float]] = {}
        # key hash -> monotonic deadline: keys just found unknown, not looked up again meanwhile.
        self._unknown: dict[str, float] = {}
        self.failures = FailureLimiter(settings.auth_failure_burst, settings.auth_failure_rate)

    # --- authentication -------------------------------------------------------------------
    async def authenticate(self, secret: str | None, client: str | None = None) -> Principal:
        """The principal of an API key. `client` (the caller's address) bounds failures: past
        the bound, unverified keys from it are refused with 429 before any lookup."""
        if not secret:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
        digest = hash_key(secret)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and hit[1] > now:
            return hit[0]
        if client is not None:
            self.failures.check(client)
        unknown_until = self._unknown.get(digest)
        if unknown_until is not None and unknown_until > now:
            row = None
        else:
            row = await self.db.read_statement(sql.key_by_hash, digest)
        if row is None:
            self._cache.pop(digest, None)
            if client is not None:
                self.failures.failed(client)
            if self.settings.auth_negative_cache_seconds > 0:
                if len(self._unknown) > 10_000:
                    self._unknown = {k: t for k, t in self._unknown.items() if t > now}
                    if len(self._unknown) > 10_000:
                        self._unknown.clear()
                self._unknown[digest] = now + self.settings.auth_negative_cache_seconds
            raise Unauthorized("invalid or revoked API key")
        principal = Principal(row.workspace_id, row.workspace, row.id)
        if self.settings.auth_cache_seconds > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (principal, now + self.settings.auth_cache_seconds)
        return principal

    # --- administration ---------------------------------------------------------------------
    def _check_quota(self, quota: int | None) -> int:
        return self.settings.default_quota_bytes if quota is None else check_quota(quota)

    async def create_workspace(
        self, name: str, quota: int | None = None
    ) -> tuple[dict, CreatedKey]:
        check_name(name)
        quota = self._check_quota(quota)
        try:
            if self.db.is_sqlite:
                key = await self.db.write(_create_workspace_txn, name, quota, now_ms())
            else:  # one statement (storage/pg_writes.py)
                secret, prefix = _new_key()
                params = {"name": name, "quota": quota, "now": now_ms()}
                params |= {"hash": hash_key(secret), "prefix": prefix}
                key_id = await self.db.write_statement(pg_writes.create_workspace, params)
                key = CreatedKey(key_id, name, secret, prefix)
        except IntegrityError as exc:
            raise Conflict(f"workspace {name!r} already exists", code="workspace_exists") from exc
        return await self.describe(name), key

    async def ensure_default(self) -> CreatedKey | None:
        """On an empty database, create the `default` workspace; returns its key, once."""
        if await self.db.read(sql.count_workspaces) > 0:
            return None
        try:
            _, key = await self.create_workspace("default")
        except Conflict:
            return None  # another replica won the race
        return key

    async def describe(self, name: str) -> dict:
        return await self.db.read(_describe_txn, name)

    async def list_workspaces(self) -> list[dict]:
        rows = await self.db.read(sql.list_workspaces)
        return [workspace_view(r, active_keys) for r, active_keys in rows]

    async def _pg_by_name(
        self, fn: Callable[[Connection, dict], int | None], name: str, **params: object
    ) -> int:
        """PostgreSQL: one statement that names the workspace (storage/pg_writes.py), so the
        lock it takes on the workspace's row is held for that round trip only."""
        ws_id = None
        if NAME_RE.fullmatch(name):  # (as _workspace_by_name: PostgreSQL refuses NUL)
            ws_id = await self.db.write_statement(fn, {"name": name, **params})
        if ws_id is None:
            raise NotFound(f"workspace {name!r} not found", code="workspace_not_found")
        return ws_id

    async def delete_workspace(self, name: str) -> None:
        if self.db.is_sqlite:
            ws_id = await self.db.write(_delete_workspace_txn, name)
        else:
            ws_id = await self._pg_by_name(pg_writes.delete_workspace, name)
        self._cache = {k: v for k, v in self._cache.items() if v[0].workspace_id != ws_id}

    async def set_quota(self, name: str, quota: int) -> dict:
        quota = self._check_quota(quota)
        if self.db.is_sqlite:
            await self.db.write(_set_quota_txn, name, quota)
        else:
            await self._pg_by_name(pg_writes.set_quota, name, quota=quota)
        return await self.describe(name)

    async def create_key(self, name: str, label: str = "") -> CreatedKey:
        check_label(label)
        if self.db.is_sqlite:
            return await self.db.write(_create_key_txn, name, label, now_ms())
        secret, prefix = _new_key()
        params = {"hash": hash_key(secret), "prefix": prefix, "label": label, "now": now_ms()}
        key_id = await self._pg_by_name(pg_writes.insert_key, name, **params)
        return CreatedKey(key_id, name, secret, prefix)

    async def list_keys(self, name: str) -> list[dict]:
        return await self.db.read(_list_keys_txn, name)

    async def revoke_key(self, key_id: int) -> None:
        key_hash = None
        if 0 < key_id <= MAX_KEY_ID:
            if self.db.is_sqlite:
                key_hash = await self.db.write(sql.revoke_key, key_id, now_ms())
            else:  # one statement: no BEGIN and COMMIT around it
                key_hash = await self.db.write_statement(sql.revoke_key, key_id, now_ms())
        if key_hash is None:
            raise NotFound(f"no live API key with id {key_id}", code="key_not_found")
        self._cache.pop(key_hash, None)


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise BadRequest(
            "workspace name must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
            code="invalid_name",
        )


def check_quota(quota: int) -> int:
    if not 0 <= quota <= MAX_QUOTA:
        raise BadRequest(f"quotaBytes must be between 0 and {MAX_QUOTA}", code="invalid_quota")
    return quota


def check_label(label: str) -> None:
    if len(label) > 128:
        raise BadRequest("label must be at most 128 characters", code="invalid_label")
    if has_control(label):
        raise BadRequest("label must not contain control characters", code="invalid_label")


# What hash_key and _new_key make: a restore stores nothing else as a key's hash and prefix.
_KEY_HASH_RE = re.compile(r"[0-9a-f]{64}")
_KEY_PREFIX_RE = re.compile(re.escape(KEY_PREFIX) + rf"[A-Za-z0-9_-]{{{SHOWN_CHARS}}}")


def check_key_hash(key_hash: str) -> None:
    if not _KEY_HASH_RE.fullmatch(key_hash):
        raise BadRequest("a key hash is 64 lowercase hex digits (SHA-256)", code="invalid_key")


def check_key_prefix(prefix: str) -> None:
    if not _KEY_PREFIX_RE.fullmatch(prefix):
        raise BadRequest(
            f"a key prefix is {KEY_PREFIX!r} and the next {SHOWN_CHARS} characters of the key",
            code="invalid_key",
        )


def _workspace_by_name(conn: Connection, name: str) -> sql.WorkspaceRecord | None:
    # A name that could never have been created is not looked up (PostgreSQL refuses NUL).
    return sql.workspace_by_name(conn, name) if NAME_RE.fullmatch(name) else None


def _workspace_id(conn: Connection, name: str) -> int:
    row = _workspace_by_name(conn, name)
    if row is None:
        raise NotFound(f"workspace {name!r} not found", code="workspace_not_found")
    workspace_id: int = row.id
    return workspace_id


def _new_key() -> tuple[str, str]:
    """A new key's secret and the prefix of it that lists show."""
    secret = new_secret()
    return secret, secret[: len(KEY_PREFIX) + SHOWN_CHARS]


def _insert_key(conn: Connection, ws_id: int, ws_name: str, label: str, now: int) -> CreatedKey:
    secret, prefix = _new_key()
    key_id = sql.insert_key(conn, ws_id, hash_key(secret), prefix, label, now)
    return CreatedKey(key_id, ws_name, secret, prefix)


def _create_workspace_txn(conn: Connection, name: str, quota: int, now: int) -> CreatedKey:
    ws_id = sql.insert_workspace(conn, name, quota, now)
    return _insert_key(conn, ws_id, name, "initial", now)


def _create_key_txn(conn: Connection, name: str, label: str, now: int) -> CreatedKey:
    return _insert_key(conn, _workspace_id(conn, name), name, label, now)


def _describe_txn(conn: Connection, name: str) -> dict:
    row = _workspace_by_name(conn, name)
    if row is None:
        raise NotFound(f"workspace {name!r} not found", code="workspace_not_found")
    keys = sql.list_keys(conn, row.id)
    return workspace_view(row, sum(1 for k in keys if k.revoked_at is None))


def _delete_workspace_txn(conn: Connection, name: str) -> int:
    ws_id = _workspace_id(conn, name)
    sql.delete_workspace(conn, ws_id)
    return ws_id


def _set_quota_txn(conn: Connection, name: str, quota: int) -> None:
    sql.set_quota(conn, _workspace_id(conn, name), quota)


def _list_keys_txn(conn: Connection, name: str) -> list[dict]:
    return [key_view(r, name) for r in sql.list_keys(conn, _workspace_id(conn, name))]


def workspace_view(row: sql.WorkspaceRecord, active_keys: int) -> dict:
    return {
        "name": row.name,
        "quota_bytes": row.quota_bytes,
        "used_bytes": row.used_bytes,
        "active_keys": active_keys,
        "created_at": iso(row.created_at),
    }


def key_view(row: sql.KeyRecord, workspace: str) -> dict:
    return {
        "id": row.id,
        "workspace": workspace,
        "prefix": row.prefix,
        "label": row.label,
        "created_at": iso(row.created_at),
        "revoked_at": iso(row.revoked_at),
    }
