"""The Dify plugin (integrations/dify), packed as a user packs it, unpacked as Dify unpacks it,
and its own tests (integrations/dify/tests) run in the plugin's environment against a live
service: the SDK's entity models and class loader read it, and every tool class runs with the
SDK's ToolRuntime and Session, each message checked."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

from memory_service.settings import sqlite_url
from tests.support.difyenv import DIFY, dify_python, pack
from tests.support.live import new_workspace
from tests.support.server import LiveServer


def test_the_package_layout(tmp_path: Path) -> None:
    package = pack(tmp_path)
    assert package.name.endswith(".difypkg") and package.parent == tmp_path
    names = zipfile.ZipFile(package).namelist()
    for required in (
        "manifest.yaml",
        "main.py",
        "requirements.txt",
        "README.md",
        "PRIVACY.md",
        "_assets/icon.svg",
        "provider/memory_service.yaml",
        "provider/memory_service.py",
        "tools/memory_get.yaml",
        "tools/memory_get.py",
        "memory_service/client/sync.py",
    ):
        assert required in names, required
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]
    assert "pack.py" not in names
    # the same bytes every time: a package can be compared and cached
    assert pack(tmp_path / "again").read_bytes() == package.read_bytes()


def test_the_plugin_runs_in_dify_sdk_against_a_live_service(tmp_path: Path) -> None:
    python = dify_python()
    plugin = tmp_path / "plugin"
    with zipfile.ZipFile(pack(tmp_path / "dist")) as zf:
        zf.extractall(plugin)
    with LiveServer(sqlite_url(tmp_path / "memory.db"), tmp_path) as server:
        env = {
            **os.environ,
            "PYTHONPATH": str(plugin),  # the vendored client, not this checkout's
            "MEMORY_SERVICE_URL": server.url,
            "MEMORY_SERVICE_KEY": new_workspace(server, "dify"),
            "MEMORY_SERVICE_OTHER_KEY": new_workspace(server, "dify-other"),
        }
        done = subprocess.run(
            [
                str(python),
                *("-m", "pytest", str(DIFY / "tests")),
                *("-c", str(DIFY / "tests" / "pytest.ini"), "-q"),
            ],
            cwd=plugin,  # as the plugin daemon runs it
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]
