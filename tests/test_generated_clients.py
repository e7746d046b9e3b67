"""Clients generated from the committed openapi.yaml by the tools people reach for work without
hand edits (SPEC 8): openapi-python-client, and openapi-typescript + openapi-fetch type-checked
with `tsc --strict`. Each generator must print no warning, and each client runs a smoke program
(tests/clients/*/smoke.*) against a live server: memory add, get, getAll, message pages and
delete; KV set, get, exists, conditional set, list and delete; an error narrowed by `success`.

The npm packages are pinned in tests/clients/ts (package-lock.json) and installed by `.ci/run`
(`npm ci`); a local run installs them on first use. Without node a local run skips the
TypeScript half; CI never does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memory_service.settings import sqlite_url
from tests.support.live import new_workspace
from tests.support.server import LiveServer

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "openapi.yaml"
CLIENTS = ROOT / "tests" / "clients"
TS = CLIENTS / "ts"
BIN = Path(sys.executable).parent


def run(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{output}"
    return output


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose message pages hold 3 messages, so a short memory has older ones."""
    tmp = tmp_path_factory.mktemp("clients-server")
    env = {"MEMORY_MAX_MESSAGE_PAGE": "3", "MEMORY_SWEEP_INTERVAL_SECONDS": "0"}
    with LiveServer(sqlite_url(tmp / "memory.db"), tmp, env=env) as server:
        yield server


def smoke_env(server: LiveServer) -> dict[str, str]:
    """Each program in a workspace of its own (the block registry is per workspace)."""
    key = new_workspace(server, "clients")
    return {"MEMORY_URL": server.url, "MEMORY_KEY": key, "RUN": uuid.uuid4().hex[:8]}


def test_python_client_generates_cleanly_and_passes_the_smoke_program(
    live: LiveServer, tmp_path: Path
) -> None:
    out = tmp_path / "memory_service_client"
    output = run(
        [BIN / "openapi-python-client", "generate", "--path", SPEC, "--meta", "none"]
        + ["--output-path", out],
        cwd=tmp_path,
        # Its post-generation hooks run ruff, from this virtualenv.
        env={"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert "warning" not in output.lower(), output
    assert "error" not in output.lower(), output
    ops = sorted(p.stem for p in (out / "api" / "memory").glob("memory_*.py"))
    assert ops == [
        "memory_add",
        "memory_block_list",
        "memory_block_set",
        "memory_conversations",
        "memory_delete",
        "memory_get",
        "memory_get_all",
        "memory_messages",
    ]
    printed = run(
        [sys.executable, CLIENTS / "python" / "smoke.py"],
        cwd=tmp_path,
        env={**smoke_env(live), "PYTHONPATH": str(tmp_path)},
    )
    assert printed.splitlines()[-2:] == [
        "missing_filter: give at least one of conversationId (or id), blockId, blockName",
        "python smoke: ok",
    ], printed


def node_tools() -> Path:
    """tests/clients/ts/node_modules, installed from the lock file if it is not yet."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node and npm are required in CI (.ci/run installs them)")
        pytest.skip("node/npm not installed")
    version = run(["node", "--version"], cwd=TS).strip()
    assert int(version.lstrip("v").split(".")[0]) >= 20, version
    installed = TS / "node_modules" / ".package-lock.json"
    lock = TS / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        run(["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline"], cwd=TS)
    return TS / "node_modules"


def test_typescript_client_generates_cleanly_type_checks_strict_and_passes_the_smoke_program(
    live: LiveServer, tmp_path: Path
) -> None:
    modules = node_tools()
    work = tmp_path / "ts"
    work.mkdir()
    for name in ("smoke.ts", "tsconfig.json", "package.json"):
        shutil.copy(TS / name, work / name)
    (work / "node_modules").symlink_to(modules, target_is_directory=True)

    output = run([modules / ".bin" / "openapi-typescript", SPEC, "-o", work / "api.d.ts"], work)
    lines = [line for line in output.splitlines() if line.strip()]
    # Its banner and the one line of the file written: no warning, no lint finding.
    assert len(lines) == 2 and lines[0].startswith("✨ openapi-typescript"), output
    assert "→" in lines[1] and "api.d.ts" in lines[1], output

    config = json.loads((work / "tsconfig.json").read_text())
    assert config["compilerOptions"]["strict"] is True
    assert run([modules / ".bin" / "tsc", "-p", work], work).strip() == ""

    printed = run(["node", work / "dist" / "smoke.js"], work, env=smoke_env(live))
    assert printed.splitlines()[-2:] == [
        "missing_filter: give at least one of conversationId (or id), blockId, blockName",
        "typescript smoke: ok",
    ], printed
