"""The Dify plugin on the runner its manifest declares (`meta.runner.version`, Python 3.12) with
the newest `dify_plugin` SDK the package index serves (0.8 and later need Python 3.12: they say
`Requires-Python >=3.12` and use PEP 695 generics, a SyntaxError on 3.11).

tests/test_dify_plugin.py runs the plugin's tests on this suite's Python (3.11) with the newest
SDK that installs there (0.7.4). This file runs the same tests on the declared runner, in
`.venv-dify-runner`, when an interpreter of that version is on the machine:
`MEMORY_TEST_DIFY_RUNNER_PYTHON=/path/to/python3.12`, or `python3.12` on PATH. None is to be had
from the registries CI reaches (see integrations/dify/README.md, "Tests"), so the test says so
by skipping with that reason; the checks of the manifest below run everywhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml

from memory_service.settings import sqlite_url
from tests.support.difyenv import DIFY, REPO, TEST_REQUIREMENTS, pack
from tests.support.live import new_workspace
from tests.support.server import LiveServer

VENV = REPO / ".venv-dify-runner"


def runner_version() -> str:
    manifest = yaml.safe_load((DIFY / "manifest.yaml").read_text())
    runner = manifest["meta"]["runner"]
    assert runner["language"] == "python"
    return str(runner["version"])


def runner_python() -> Path | None:
    wanted = runner_version()
    found = os.environ.get("MEMORY_TEST_DIFY_RUNNER_PYTHON") or shutil.which(f"python{wanted}")
    if not found:
        return None
    probe = subprocess.run(
        [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:  # e.g. a pyenv shim of a version that is not installed
        return None
    version = probe.stdout.strip()
    assert version == wanted, f"{found} is Python {version}, the manifest declares {wanted}"
    return Path(found)


def newest_sdk_requirements() -> list[str]:
    """requirements.txt with the dify_plugin pin lifted: the newest SDK the index serves."""
    out = []
    for line in (DIFY / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        out.append("dify_plugin" if re.match(r"dify[_-]plugin\b", line) else line)
    return out


def test_the_manifest_declares_python_312() -> None:
    assert runner_version() == "3.12"
    assert "dify_plugin" in newest_sdk_requirements()
    assert not [
        r for r in newest_sdk_requirements() if r.startswith("dify_plugin") and r != "dify_plugin"
    ]


def test_the_plugin_on_its_declared_runner_with_the_newest_sdk(tmp_path: Path) -> None:
    base = runner_python()
    if base is None:
        pytest.skip(
            f"no Python {runner_version()} here (set MEMORY_TEST_DIFY_RUNNER_PYTHON): Debian "
            "bookworm/trixie/sid carry none, and the npm and PyPI packages that hold one "
            "download it from outside the registries"
        )
    wanted = newest_sdk_requirements() + TEST_REQUIREMENTS
    stamp = VENV / f".installed-{hashlib.sha256(str(wanted).encode()).hexdigest()[:16]}"
    python = VENV / "bin" / "python"
    if not stamp.exists():
        subprocess.run([str(base), "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "--upgrade", *wanted], check=True, timeout=900)
        stamp.touch()
    sdk = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('dify_plugin'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    plugin = tmp_path / "plugin"
    with zipfile.ZipFile(pack(tmp_path / "dist")) as zf:
        zf.extractall(plugin)
    with LiveServer(sqlite_url(tmp_path / "memory.db"), tmp_path) as server:
        env = {
            **os.environ,
            "PYTHONPATH": str(plugin),
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
            cwd=plugin,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    report = f"dify_plugin {sdk}:\n" + done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, report
    assert " passed" in done.stdout and "skipped" not in done.stdout, report
