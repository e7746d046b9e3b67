"""A plain install works (SPEC 8): the sdist and the wheel built from it carry the migrations, and
the installed package, in a fresh virtualenv away from the checkout, serves an empty SQLite file
and an empty PostgreSQL database, through the console script and through `python -m`.

Offline and fast: the wheel is built without build isolation (setuptools comes with the [test]
extra) and installed without its dependencies, which the fresh virtualenv reads from this test
virtualenv's site-packages (a .pth path entry: its .pth files, the checkout's editable install
among them, are not processed there). `pip check` then holds the wheel's declared dependencies to
what is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memory_service.settings import sqlite_url
from tests.support.pgserver import PgServer
from tests.support.server import API_KEY_RE, LiveServer, remember_key

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = sorted(p.name for p in (ROOT / "alembic" / "versions").glob("*.py"))


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env() -> dict[str, str]:
    """The environment without anything that points back at the checkout or the test venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    return env


class Install:
    def __init__(self, home: Path, venv: Path, wheel: Path) -> None:
        self.home = home  # a working directory outside the checkout
        self.venv = venv
        self.wheel = wheel
        self.python = venv / "bin" / "python"
        self.script = venv / "bin" / "memory-service"


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    work = tmp_path_factory.mktemp("packaging")
    dist = work / "dist"
    # The sdist, from the checkout; then the wheel, from the unpacked sdist: so the wheel proves
    # that the sdist carries everything too.
    sdist_name = run(
        sys.executable,
        "-c",
        "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))",
        dist,
        cwd=ROOT,
    ).split()[-1]
    with tarfile.open(dist / sdist_name) as tar:
        tar.extractall(work / "src", filter="data")
    (src,) = (work / "src").iterdir()
    run(
        sys.executable,
        *("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"),
        *("-w", dist, src),
        cwd=work,
    )
    (wheel,) = dist.glob("*.whl")

    venv = work / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=work)
    fresh_site = Path(
        run(
            venv / "bin" / "python",
            *("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"),
            cwd=work,
        ).strip()
    )
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (fresh_site / "zz_test_venv_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    pip = (sys.executable, "-m", "pip", "--python", venv / "bin" / "python")
    run(*pip, "install", "--no-deps", "--no-index", "-q", wheel, cwd=work)
    home = work / "home"
    home.mkdir()
    yield Install(home, venv, wheel)


def test_sdist_and_wheel_carry_the_migrations(install: Install) -> None:
    names = set(zipfile.ZipFile(install.wheel).namelist())
    for needed in ("env.py", "script.py.mako", *(f"versions/{m}" for m in MIGRATIONS)):
        assert f"memory_service/migrations/{needed}" in names, needed
    assert "memory_service/py.typed" in names
    assert not any(n.startswith("alembic/") for n in names)  # never a top-level `alembic` package


def test_wheel_carries_every_file_of_the_package(install: Install) -> None:
    """Data files too (tool definitions, UI assets): a type that pyproject's package-data does
    not list would be missing from every install."""
    tracked = run("git", "ls-files", "memory_service", cwd=ROOT).split()
    if not tracked:  # not a git checkout: every file on disk
        tracked = [
            str(p.relative_to(ROOT))
            for p in (ROOT / "memory_service").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
    names = set(zipfile.ZipFile(install.wheel).namelist())
    missing = sorted(set(tracked) - names)
    assert not missing, f"not in the wheel: {missing}"


def test_installed_package_is_the_wheel_and_its_dependencies_hold(install: Install) -> None:
    where = run(
        install.python,
        "-c",
        "import memory_service, memory_service.storage.migrations as m; "
        "print(memory_service.__file__); print(m.script_location())",
        cwd=install.home,
        env=clean_env(),
    ).split()
    site = str(install.venv)
    assert where[0].startswith(site), where  # not the checkout
    assert where[1].startswith(site) and where[1].endswith("memory_service/migrations"), where
    run(sys.executable, "-m", "pip", "--python", install.python, "check", cwd=install.home)


def test_python_dash_m_works_like_the_console_script(install: Install) -> None:
    env = clean_env()
    by_script = run(install.script, "--help", cwd=install.home, env=env)
    by_module = run(install.python, "-m", "memory_service", "--help", cwd=install.home, env=env)
    assert "serve" in by_script and "migrate" in by_script
    assert by_module == by_script
    assert run(install.python, "-m", "memory_service", "--version", cwd=install.home, env=env) == (
        run(install.script, "--version", cwd=install.home, env=env)
    )


def add_and_read(server: LiveServer) -> None:
    """The newcomer's path: the key printed on first start, one memory added and read back."""
    printed = server.stdout_path.read_text()
    keys = set(API_KEY_RE.findall(printed))
    assert len(keys) == 1, printed
    auth = {"Authorization": f"Bearer {remember_key(keys.pop())}"}
    body = {"conversationId": "user-1", "role": "user", "content": "hello from a wheel"}
    added = httpx.post(f"{server.url}/api/memory", json=body, headers=auth, timeout=30)
    assert added.status_code == 200, added.text
    assert added.json()["success"] is True
    got = httpx.get(
        f"{server.url}/api/memory", params={"conversationId": "user-1"}, headers=auth, timeout=30
    )
    assert got.status_code == 200, got.text
    (memory,) = got.json()["memories"]
    assert memory["data"] == [{"role": "user", "content": "hello from a wheel", "seq": 0}]
    ready = httpx.get(f"{server.url}/ready", timeout=30)
    assert ready.status_code == 200, ready.text


def test_installed_console_script_serves_an_empty_sqlite_file(
    install: Install, tmp_path: Path
) -> None:
    url = sqlite_url(tmp_path / "fresh" / "memory.db")
    server = LiveServer(
        url,
        tmp_path,
        command=[str(install.script)],
        cwd=install.home,
        env=clean_env(),
        default_workspace=True,
    )
    with server:
        add_and_read(server)


def test_installed_python_dash_m_serves_an_empty_postgresql_database(
    install: Install, pg: PgServer, tmp_path: Path
) -> None:
    url = pg.create_database("packaging")
    server = LiveServer(
        url,
        tmp_path,
        command=[str(install.python), "-m", "memory_service"],
        cwd=install.home,
        env=clean_env(),
        default_workspace=True,
    )
    with server:
        add_and_read(server)
