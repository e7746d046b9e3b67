"""Settings, read from the environment only when asked (never at import time)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
# The admin token and a cursor secret guard everything: long enough that guessing is hopeless.
MIN_SECRET_CHARS = 32


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "memory-service"


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _flag(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "on", "yes"):
        return True
    if raw in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{name} must be on or off, got {raw!r}")


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _public_url(env: dict[str, str]) -> str | None:
    raw = env.get("MEMORY_PUBLIC_URL", "").strip().rstrip("/")
    if not raw:
        return None
    if not raw.startswith(("http://", "https://")) or raw[-3:] == "://":
        raise ValueError(f"MEMORY_PUBLIC_URL must be an absolute http(s) URL, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. `Settings.from_env()` documents the variable names."""

    database_url: str = ""
    admin_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # KV limits
    max_value_bytes: int = 25 * MiB
    default_quota_bytes: int = 100 * MiB
    max_key_bytes: int = 512
    # Listing and memory limits
    max_page_size: int = 1000
    default_page_size: int = 100
    max_message_page: int = 1000
    max_content_bytes: int = 256 * 1024
    max_batch_messages: int = 1000
    # A page of memories ends early (with a nextCursor) once it holds this many messages.
    max_response_messages: int = 10_000
    # How long an add remembers its Idempotency-Key (a retry within it appends nothing).
    idempotency_ttl_seconds: float = 24 * 3600.0
    # How many Idempotency-Keys one workspace may have remembered at once (rows kept for the TTL).
    max_idempotency_keys: int = 10_000
    # How long a replica may keep trusting an API key it has already checked; a revoked key stops
    # working on every replica within this many seconds.
    auth_cache_seconds: float = 5.0
    sweep_interval_seconds: float = 30.0
    sqlite_busy_timeout_ms: int = 10_000
    sqlite_synchronous: str = "NORMAL"
    pg_pool_size: int = 10
    log_level: str = "INFO"
    access_log: bool = True
    # A request head (request line + headers) larger than this, or not complete within this
    # many seconds, is refused (431 / 408) and its connection closed: see http/protocol.py.
    max_header_bytes: int = 64 * 1024
    header_timeout_seconds: float = 30.0
    # A request body not received whole within this many seconds of its head is refused (408)
    # and its connection closed: the bound is on the total time, however steadily bytes come.
    body_timeout_seconds: float = 30.0
    # Pages of memories recently read, reused while their memory rows are unchanged
    # (services/memory/read_cache.py): at most this many MiB per process; 0 turns it off.
    read_cache_mb: int = 32
    # Per-workspace token bucket (per replica): requests per second and burst. 0 turns it off.
    rate_limit_rps: float = 0.0
    rate_limit_burst: int = 0
    # How long /ready waits for the database before answering 503.
    ready_timeout_seconds: float = 3.0
    # The service's absolute URL as clients reach it (behind a proxy); the served OpenAPI
    # document names it in `servers`. Unset: the origin each request reached.
    public_url: str | None = None
    # Cursors are sealed with the database's secret (migration 0003) unless this is set; every
    # replica must then have the same value. A cursor older than the lifetime is refused.
    cursor_secret: str | None = None
    cursor_ttl_seconds: float = 7 * 24 * 3600.0
    # Failed credentials (unknown API keys, wrong admin tokens) per client address: a bucket of
    # this many, refilled at this rate per second; when empty, such requests get 429 at once.
    auth_failure_burst: int = 30
    auth_failure_rate: float = 1.0
    # How long an unknown API key is remembered as unknown (no database lookup meanwhile).
    auth_negative_cache_seconds: float = 2.0

    def __post_init__(self) -> None:
        for name, value in (
            ("MEMORY_ADMIN_TOKEN", self.admin_token),
            ("MEMORY_CURSOR_SECRET", self.cursor_secret),
        ):
            if value is not None and len(value) < MIN_SECRET_CHARS:
                raise ValueError(
                    f"{name} must be at least {MIN_SECRET_CHARS} characters (it has "
                    f"{len(value)}): generate one with "
                    "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        if self.read_cache_mb < 0:
            raise ValueError("MEMORY_READ_CACHE_MB must be 0 (off) or more")
        if not 0 < self.body_timeout_seconds < math.inf:
            raise ValueError("MEMORY_BODY_TIMEOUT_SECONDS must be a number of seconds above 0")
        if self.auth_failure_burst < 1 or self.auth_failure_rate <= 0:
            raise ValueError(
                "MEMORY_AUTH_FAILURE_BURST must be at least 1 and MEMORY_AUTH_FAILURE_RATE above 0"
            )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        env = dict(os.environ if env is None else env)
        url = env.get("MEMORY_DATABASE_URL") or sqlite_url(default_data_dir() / "memory.db")
        settings = cls(
            database_url=url,
            admin_token=env.get("MEMORY_ADMIN_TOKEN") or None,
            host=env.get("MEMORY_HOST", "127.0.0.1"),
            port=_int(env, "MEMORY_PORT", 8080),
            max_value_bytes=_int(env, "MEMORY_MAX_VALUE_BYTES", 25 * MiB),
            default_quota_bytes=_int(env, "MEMORY_DEFAULT_QUOTA_BYTES", 100 * MiB),
            max_page_size=_int(env, "MEMORY_MAX_PAGE_SIZE", 1000),
            default_page_size=_int(env, "MEMORY_DEFAULT_PAGE_SIZE", 100),
            max_message_page=_int(env, "MEMORY_MAX_MESSAGE_PAGE", 1000),
            max_content_bytes=_int(env, "MEMORY_MAX_CONTENT_BYTES", 256 * 1024),
            max_batch_messages=_int(env, "MEMORY_MAX_BATCH_MESSAGES", 1000),
            max_response_messages=_int(env, "MEMORY_MAX_RESPONSE_MESSAGES", 10_000),
            idempotency_ttl_seconds=_float(env, "MEMORY_IDEMPOTENCY_TTL_SECONDS", 24 * 3600.0),
            max_idempotency_keys=_int(env, "MEMORY_MAX_IDEMPOTENCY_KEYS", 10_000),
            auth_cache_seconds=_float(env, "MEMORY_AUTH_CACHE_SECONDS", 5.0),
            sweep_interval_seconds=_float(env, "MEMORY_SWEEP_INTERVAL_SECONDS", 30.0),
            sqlite_synchronous=env.get("MEMORY_SQLITE_SYNCHRONOUS", "NORMAL").upper(),
            pg_pool_size=_int(env, "MEMORY_PG_POOL_SIZE", 10),
            log_level=env.get("MEMORY_LOG_LEVEL", "INFO").upper(),
            access_log=_flag(env, "MEMORY_ACCESS_LOG", True),
            max_header_bytes=_int(env, "MEMORY_MAX_HEADER_BYTES", 64 * 1024),
            header_timeout_seconds=_float(env, "MEMORY_HEADER_TIMEOUT_SECONDS", 30.0),
            body_timeout_seconds=_float(env, "MEMORY_BODY_TIMEOUT_SECONDS", 30.0),
            read_cache_mb=_int(env, "MEMORY_READ_CACHE_MB", 32),
            rate_limit_rps=_float(env, "MEMORY_RATE_LIMIT_RPS", 0.0),
            rate_limit_burst=_int(env, "MEMORY_RATE_LIMIT_BURST", 0),
            public_url=_public_url(env),
            cursor_secret=env.get("MEMORY_CURSOR_SECRET") or None,
            cursor_ttl_seconds=_float(env, "MEMORY_CURSOR_TTL_SECONDS", 7 * 24 * 3600.0),
            auth_failure_burst=_int(env, "MEMORY_AUTH_FAILURE_BURST", 30),
            auth_failure_rate=_float(env, "MEMORY_AUTH_FAILURE_RATE", 1.0),
            auth_negative_cache_seconds=_float(env, "MEMORY_AUTH_NEGATIVE_CACHE_SECONDS", 2.0),
        )
        return replace(settings, **overrides) if overrides else settings

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def sqlite_url(path: Path | str) -> str:
    return f"sqlite+aiosqlite:///{Path(path).resolve()}"
