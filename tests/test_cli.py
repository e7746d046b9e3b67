"""The `memory-service` command as an operator runs it: `python -m memory_service ...` in
subprocesses on a temporary SQLite file, with a live server on the same file seeing the effects."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.server import LiveServer, cli, free_port, remember_key

AUTH_CACHE_SECONDS = 1.0


def run(*args: str, url: str, check: bool = True) -> subprocess.CompletedProcess:
    return cli(*args, "--database-url", url, check=check)


def run_json(*args: str, url: str) -> object:
    return json.loads(run(*args, "--json", url=url).stdout)


def wait_for_status(url: str, headers: dict, status: int, within: float) -> float:
    """Seconds until GET url answers `status`; fails if that takes longer than `within`."""
    start = time.monotonic()
    while True:
        got = httpx.get(url, headers=headers).status_code
        waited = time.monotonic() - start
        if got == status:
            return waited
        assert waited < within, f"still {got} after {waited:.1f}s, expected {status}"
        time.sleep(0.05)


def test_workspace_and_key_lifecycle(sqlite_database_url: str, tmp_path: Path) -> None:
    url = sqlite_database_url
    env = {"MEMORY_AUTH_CACHE_SECONDS": str(AUTH_CACHE_SECONDS)}
    server = LiveServer(url, tmp_path, env=env).start()
    try:
        created = run_json("workspace", "create", "acme", "--quota", "5000", url=url)
        first = {"Authorization": f"Bearer {remember_key(created['key'])}"}
        assert created["workspace"]["name"] == "acme"
        assert created["workspace"]["quota_bytes"] == 5000

        # Names are checked, and taken names refused, with a message and a failing exit code.
        for bad, why in [("acme", "already exists"), ("../x", "workspace name must be")]:
            r = run("workspace", "create", bad, url=url, check=False)
            assert r.returncode != 0 and "Traceback" not in r.stderr
            assert why in r.stderr, r.stderr

        made = run_json("key", "create", "acme", "--label", "ci", url=url)
        second = {"Authorization": f"Bearer {remember_key(made['key'])}"}
        listed = run("key", "list", "acme", "--json", url=url).stdout
        keys = json.loads(listed)
        assert [(k["label"], k["revoked_at"]) for k in keys] == [("initial", None), ("ci", None)]
        assert created["key"] not in listed and made["key"] not in listed  # never the secrets

        # Both keys reach the same workspace on the live server.
        r = httpx.put(f"{server.url}/api/kv/shared", content=b"0123456789", headers=second)
        assert r.status_code == 201
        assert httpx.get(f"{server.url}/api/kv/shared", headers=first).content == b"0123456789"

        # A key revoked by another process stops working within the auth cache bound.
        assert httpx.get(f"{server.url}/api/usage", headers=second).status_code == 200
        run("key", "revoke", str(made["keyId"]), url=url)
        wait_for_status(f"{server.url}/api/usage", second, 401, AUTH_CACHE_SECONDS + 2)
        assert httpx.get(f"{server.url}/api/usage", headers=first).status_code == 200

        # A quota set by the CLI is enforced at once by the server.
        assert "100" in run("workspace", "quota", "acme", "100", url=url).stdout
        r = httpx.put(f"{server.url}/api/kv/big", content=b"x" * 200, headers=first)
        assert r.status_code == 413 and r.json()["code"] == "quota_exceeded"
        assert httpx.get(f"{server.url}/api/usage", headers=first).json() == {
            "success": True,
            "message": f"{len('shared') + 10} of 100 bytes used",
            "workspace": "acme",
            "used": len("shared") + 10,
            "quota": 100,
        }
        (acme,) = [w for w in run_json("workspace", "list", url=url) if w["name"] == "acme"]
        assert (acme["quota_bytes"], acme["used_bytes"], acme["active_keys"]) == (100, 16, 1)

        # Deleting the workspace takes its keys with it.
        run("workspace", "delete", "acme", "--yes", url=url)
        wait_for_status(f"{server.url}/api/usage", first, 401, AUTH_CACHE_SECONDS + 2)
    finally:
        server.stop()


def serve_once(url: str | None, tmp_path: Path, run_no: int, env: dict | None = None) -> str:
    """Start `serve` (default workspace creation on), wait until it answers, stop it; its stdout.

    Not a LiveServer: the key printed on first start is meant for the operator's terminal, and
    LiveServer logs are checked for keys at the end of the session.
    """
    port = free_port()
    out = tmp_path / f"serve-{run_no}.out"
    with open(out, "w") as stdout, open(tmp_path / f"serve-{run_no}.err", "w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "memory_service",
                "serve",
                "--port",
                str(port),
                *(["--database-url", url] if url else []),
            ],
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, "MEMORY_ADMIN_TOKEN": "", **(env or {})},
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, (tmp_path / f"serve-{run_no}.err").read_text()
                assert time.monotonic() < deadline, "serve did not start"
                try:
                    httpx.get(f"http://127.0.0.1:{port}/api/usage", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            text = out.read_text()
            key = text.split("shown only this once:", 1)[1].split()[0] if "once" in text else ""
            if key:  # the printed key works
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/usage",
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert r.status_code == 200 and r.json()["workspace"] == "default"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    return out.read_text()


def test_first_serve_prints_the_default_key_once(sqlite_database_url: str, tmp_path: Path) -> None:
    first = serve_once(sqlite_database_url, tmp_path, 1)
    assert "Created workspace 'default'" in first and "msk_" in first
    second = serve_once(sqlite_database_url, tmp_path, 2)
    assert "Created workspace" not in second and "msk_" not in second
    assert "listening on" in second
    names = [w["name"] for w in run_json("workspace", "list", url=sqlite_database_url)]
    assert names == ["default"]


def test_first_start_on_a_fresh_machine_uses_the_default_file(tmp_path: Path) -> None:
    """The README's `./dev serve` with no configuration: the default SQLite file's folder does
    not exist yet on a fresh machine."""
    home = tmp_path / "fresh-home"
    env = {"XDG_DATA_HOME": str(home), "MEMORY_DATABASE_URL": ""}
    first = serve_once(None, tmp_path, 1, env=env)
    assert "Created workspace 'default'" in first and "msk_" in first
    assert (home / "memory-service" / "memory.db").is_file()
