"""The nightly-sized fuzz run: schemathesis's own CLI against a real server, every operation.

    ./.venv/bin/python -m tests.support.fuzz_nightly [--examples 100] [--database-url URL]
        [--checks LIST] [--seed N]

Starts `memory-service serve` on a fresh SQLite file (or the given database), creates a workspace
with some data, then runs `schemathesis run openapi.yaml --continue-on-failure` twice: the
workspace API with the workspace's key, the admin API with the admin token. Exits non-zero when
schemathesis found anything; its reports go to ./schemathesis-report/.

Default checks: no 5xx (not_a_server_error) and the conformance checks the CI run uses
(status codes, content types, response schemas). `--checks all` adds schemathesis's stateful and
negative-data checks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

from memory_service.settings import sqlite_url
from tests.support.server import LiveServer, create_workspace

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "memory-service-test-admin-token-0123456789"
DEFAULT_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100, help="examples per operation")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--checks", default=DEFAULT_CHECKS)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or sqlite_url(Path(tmp) / "memory.db")
        create_workspace(url, f"seed-{uuid.uuid4().hex[:6]}")  # migrates
        env = {"MEMORY_ADMIN_TOKEN": ADMIN_TOKEN, "MEMORY_ACCESS_LOG": "off"}
        with LiveServer(url, Path(tmp), env=env) as server:
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            r = httpx.post(
                f"{server.url}/admin/workspaces", json={"name": "fuzz"}, headers=admin, timeout=30
            )
            r.raise_for_status()
            key = r.json()["key"]
            h = {"Authorization": f"Bearer {key}"}
            httpx.put(f"{server.url}/api/kv/a", content=b"v", headers=h)
            httpx.post(
                f"{server.url}/api/memory",
                json={"conversationId": "c", "role": "user", "content": "hi", "blockName": "n"},
                headers=h,
            )
            failed = False
            runs = (
                ("workspace API", key, ("--exclude-path-regex", "^/admin")),
                ("admin API", ADMIN_TOKEN, ("--include-path-regex", "^/admin")),
            )
            for label, token, paths in runs:
                header = f"Authorization: Bearer {token}"
                print(f"--- schemathesis: {label}, {args.examples} examples per operation")
                cmd = [
                    sys.executable, "-m", "schemathesis.cli", "run", str(ROOT / "openapi.yaml"),
                    "--url", server.url, "-H", header, *paths,
                    "--max-examples", str(args.examples), "--continue-on-failure",
                    "--checks", args.checks, "--workers", "2",
                    # (schemathesis 4.32's coverage phase crashes inside itself, a KeyError, on
                    # kvSet's binary body: the other phases cover every operation.)
                    "--phases", "examples,fuzzing,stateful",
                    "--report", "junit", "--report-dir", "schemathesis-report",
                ]  # fmt: skip
                if args.seed is not None:
                    cmd += ["--seed", str(args.seed)]
                failed |= subprocess.run(cmd, env={**os.environ}).returncode != 0
            log = server.log_text()
            if "Traceback" in log:
                print("the server logged a traceback:\n" + log[-5000:])
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
