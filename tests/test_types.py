"""The type checker is part of the suite: mypy on memory_service/, configured in pyproject.toml
([tool.mypy]), must report nothing. A new error fails this test with mypy's own report."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_is_clean_on_the_package(tmp_path: Path) -> None:
    # The cache goes in the test's own directory: runs never share (or commit) a stale one.
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"mypy found problems:\n{report}"
    assert report.startswith("Success: no issues found"), report


def test_the_configuration_is_strict() -> None:
    """The checks the project relies on stay switched on (and mypy checks the package, not a
    file list that a new module could miss)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["files"] == ["memory_service"]
    assert config["strict"] is True
    # strict implies these; none is switched back off.
    for flag in (
        "check_untyped_defs",
        "disallow_untyped_defs",
        "disallow_incomplete_defs",
        "warn_unused_ignores",
        "warn_redundant_casts",
        "warn_return_any",
        "strict_equality",
    ):
        assert config.get(flag, True) is True, flag
    assert config.get("no_implicit_optional", True) is True
    assert config.get("ignore_missing_imports", False) is False
    # Per-module relaxations would be for third-party packages without types; there are none.
    assert "overrides" not in config
