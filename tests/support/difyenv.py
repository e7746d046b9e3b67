"""The virtualenv the Dify plugin's tests run in (`.venv-dify`, made on first use).

The `dify_plugin` SDK monkey-patches the standard library with gevent as soon as it is imported
and pins its own httpx, pydantic, werkzeug and flask; it cannot share the service's environment
(or its test process). The environment is rebuilt when the plugin's requirements change, and is
made once even with several test workers (a file lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DIFY = REPO / "integrations" / "dify"
VENV = REPO / ".venv-dify"
# What the plugin's tests need beyond the plugin's own requirements.
TEST_REQUIREMENTS = ["pytest>=8", "jsonschema>=4.18", "pyyaml>=6"]


def dify_python() -> Path:
    wanted = (DIFY / "requirements.txt").read_bytes() + "\n".join(TEST_REQUIREMENTS).encode()
    stamp = VENV / f".installed-{hashlib.sha256(wanted).hexdigest()[:16]}"
    python = VENV / "bin" / "python"
    if stamp.exists():
        return python
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(REPO / ".venv-dify.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            if not python.exists():
                venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
            subprocess.run(
                [
                    str(python),
                    *("-m", "pip", "install", "--disable-pip-version-check", "-q"),
                    *("-r", str(DIFY / "requirements.txt")),
                    *TEST_REQUIREMENTS,
                ],
                check=True,
                timeout=900,
            )
            for old in VENV.glob(".installed-*"):
                old.unlink()
            stamp.touch()
    return python


def pack(out: Path) -> Path:
    """The documented one-liner: `python integrations/dify/pack.py --out DIR`."""
    done = subprocess.run(
        [sys.executable, str(DIFY / "pack.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return Path(done.stdout.strip())
