"""A real `memory-service serve` process for tests: started as a user would, stopped by pid."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


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
    return json.loads(cli(*args).stdout)["key"]


class LiveServer:
    def __init__(
        self,
        database_url: str,
        log_dir: Path,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.database_url = database_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "MEMORY_ADMIN_TOKEN": "test-admin-token", **(env or {})}
        self.log_dir = log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> LiveServer:
        self.starts += 1
        log = open(self.log_dir / f"server-{self.port}-{self.starts}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "memory_service",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--database-url",
                self.database_url,
                "--no-default-workspace",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_text()}")
            try:
                httpx.get(f"{self.url}/api/usage", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log_text()}")

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
