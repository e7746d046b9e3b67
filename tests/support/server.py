"""A real `memory-service serve` process for tests: started as a user would, stopped by pid."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# Every log a LiveServer wrote this session, and every API key the helpers here handed out: at the
# end of the session tests/conftest.py checks that no log holds a key (or the admin token).
SERVER_LOGS: list[Path] = []
ISSUED_KEYS: set[str] = set()
# An API key as the service makes them (msk_ + 32 random bytes in URL-safe base64).
API_KEY_RE = re.compile(r"msk_[A-Za-z0-9_\-]{43}")


def remember_key(key: str) -> str:
    """Note a key a test created (e.g. over the admin API) for the end-of-session log check."""
    ISSUED_KEYS.add(key)
    return key


def secrets_in_logs(extra_secrets: tuple[str, ...] = ()) -> list[str]:
    """Where a server log holds an API key (issued here, or anything shaped like one) or one of
    `extra_secrets`; empty when none does."""
    found = []
    secrets = [*ISSUED_KEYS, *extra_secrets]
    for path in SERVER_LOGS:
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        found += [f"{path}: {s[:8]}..." for s in secrets if s in text]
        found += [f"{path}: {m[:8]}..." for m in API_KEY_RE.findall(text)]
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memory_service", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=check,
        timeout=120,
    )


def create_workspace(database_url: str, name: str, quota: int | None = None) -> str:
    """Create a workspace through the CLI; returns its API key."""
    args = ["workspace", "create", name, "--database-url", database_url, "--json"]
    if quota is not None:
        args += ["--quota", str(quota)]
    return remember_key(json.loads(cli(*args).stdout)["key"])


class LiveServer:
    def __init__(
        self,
        database_url: str,
        log_dir: Path,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        command: list[str] | None = None,
        cwd: Path | None = None,
        default_workspace: bool = False,
    ) -> None:
        self.database_url = database_url
        # How to run the service (default: this interpreter's package, `python -m memory_service`).
        self.command = command or [sys.executable, "-m", "memory_service"]
        self.cwd = cwd
        self.default_workspace = default_workspace
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "MEMORY_ADMIN_TOKEN": "memory-service-test-admin-token-0123456789",
            **(env or {}),
        }
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> LiveServer:
        self.starts += 1
        log_path = self.log_dir / f"server-{self.port}-{self.starts}.log"
        SERVER_LOGS.append(log_path)
        log = open(log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                *self.command,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--database-url",
                self.database_url,
                *([] if self.default_workspace else ["--no-default-workspace"]),
            ],
            cwd=self.cwd,
            # The default workspace's key is printed on stdout (never logged): kept apart.
            stdout=open(self.stdout_path, "w") if self.default_workspace else log,  # noqa: SIM115
            stderr=log if self.default_workspace else subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_text()}")
            try:
                httpx.get(f"{self.url}/health", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log_text()}")

    @property
    def stdout_path(self) -> Path:
        return self.log_dir / f"server-{self.port}-{self.starts}.stdout"

    def log_text(self) -> str:
        return "".join(
            p.read_text() for p in sorted(self.log_dir.glob(f"server-{self.port}-*.log"))
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
