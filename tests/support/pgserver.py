"""A throwaway PostgreSQL server for tests and benchmarks (stdlib only).

    with start_pg(tmp_path) as pg:
        pg.create_database("app")
        engine = create_async_engine(pg.url("app"))

PostgreSQL refuses to run as root, so as root the server runs as user ``postgres`` (via
``runuser``) in a directory it owns. The server listens on 127.0.0.1 only (no Unix socket),
with trust auth for superuser ``postgres``. fsync stays on: crash tests rely on it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

HOST = "127.0.0.1"
USER = "postgres"
DEFAULT_SETTINGS = {
    "listen_addresses": HOST,
    "unix_socket_directories": "",  # TCP only; avoids the ~107-byte socket path limit
    "max_connections": "200",  # several app replicas, each with a pool
}
_PORT_TAKEN = ("Address already in use", "could not create any TCP/IP sockets")


class PgServerError(RuntimeError):
    pass


def pg_wanted() -> bool:
    """False if MEMORY_TEST_SKIP_PG opts out of PostgreSQL tests; always True when CI=true."""
    if os.environ.get("CI", "").lower() == "true":
        return True
    return os.environ.get("MEMORY_TEST_SKIP_PG", "").lower() not in ("1", "true", "yes")


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl: from PATH, else the newest /usr/lib/postgresql/*/bin."""
    candidates = []
    if initdb := shutil.which("initdb"):
        candidates += [Path(initdb).resolve().parent, Path(initdb).parent]
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=lambda p: _version(p.parent.name), reverse=True)
    for bindir in candidates:
        if all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "createdb")):
            return bindir
    raise PgServerError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
        "/usr/lib/postgresql/*/bin; install PostgreSQL 15+ (Debian/Ubuntu: "
        "`apt-get install postgresql`), or set MEMORY_TEST_SKIP_PG=1 to skip these tests."
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an unreaped zombie (no init reaper in some containers) counts as dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class PgServer:
    """One PostgreSQL cluster in a fresh temp dir under ``base_dir`` (default: system temp)."""

    host = HOST
    user = USER

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        settings: Mapping[str, object] | None = None,
        keep_files: bool = False,
    ) -> None:
        self.bindir = find_bindir()
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.keep_files = keep_files
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir=base_dir))
        self.datadir = self.root / "data"
        self.logfile = self.root / "postgres.log"
        self.port = 0
        self.pid: int | None = None
        self._stopped = False

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL, e.g. postgresql+asyncpg://postgres@127.0.0.1:PORT/dbname."""
        return f"postgresql+asyncpg://{USER}@{HOST}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq/asyncpg DSN, e.g. postgresql://postgres@127.0.0.1:PORT/dbname."""
        return f"postgresql://{USER}@{HOST}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its SQLAlchemy URL."""
        cmd = [self.bindir / "createdb", "-h", HOST, "-p", str(self.port), "-U", USER, name]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise PgServerError(f"createdb {name} failed: {r.stderr.strip()}")
        return self.url(name)

    def start(self) -> PgServer:
        try:
            self._start()
        except BaseException:
            self.keep_files = True  # leave the log (its tail is in the error) for inspection
            self.stop()
            raise
        return self

    def _start(self) -> None:
        atexit.register(self.stop)
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(USER)
            except KeyError:
                raise PgServerError(f"running as root needs a {USER!r} system user") from None
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            for parent in self.root.parents:  # let the postgres user reach its directory
                mode = parent.stat().st_mode
                if not mode & stat.S_IXOTH:
                    parent.chmod(mode | stat.S_IXOTH)
        initdb = [self.bindir / "initdb", "-D", self.datadir, "-A", "trust", "-U", USER]
        r = self._run(*initdb, "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        if r.returncode:
            raise PgServerError(f"initdb failed:\n{r.stdout}{r.stderr}")
        for _ in range(5):  # a free port can be taken between probing and binding: retry
            self.port = _free_port()
            settings = {**self.settings, "port": self.port}
            opts = " ".join(f"-c {k}={shlex.quote(str(v))}" for k, v in settings.items())
            offset = self.logfile.stat().st_size if self.logfile.exists() else 0
            log = ""
            pg_ctl = [self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.logfile]
            r = self._run(*pg_ctl, "-o", opts, "-w", "-t", "60", "start")
            if r.returncode == 0:
                pidfile = self.datadir / "postmaster.pid"
                self.pid = int(pidfile.read_text().split("\n", 1)[0])
                return
            with contextlib.suppress(OSError), self.logfile.open("rb") as f:
                f.seek(offset)
                log = f.read().decode(errors="replace")
            if not any(msg in log for msg in _PORT_TAKEN):
                break
        tail = "\n".join(log.splitlines()[-30:])
        raise PgServerError(
            f"pg_ctl start failed (port {self.port}):\n{r.stdout}{r.stderr}\n"
            f"--- {self.logfile} ---\n{tail}"
        )

    def halt(self) -> None:
        """Stop the server but keep its data directory and port, for `start_again` (tests of
        a database that goes away and comes back)."""
        pg_ctl = [self.bindir / "pg_ctl", "-D", self.datadir]
        r = self._run(*pg_ctl, "-m", "fast", "-w", "-t", "30", "stop", timeout=40)
        if r.returncode:
            raise PgServerError(f"pg_ctl stop failed:\n{r.stdout}{r.stderr}")
        self.pid = None

    def start_again(self) -> PgServer:
        """Start a halted server on the same data directory and port."""
        settings = {**self.settings, "port": self.port}
        opts = " ".join(f"-c {k}={shlex.quote(str(v))}" for k, v in settings.items())
        pg_ctl = [self.bindir / "pg_ctl", "-D", self.datadir, "-l", self.logfile]
        r = self._run(*pg_ctl, "-o", opts, "-w", "-t", "60", "start")
        if r.returncode:
            raise PgServerError(f"pg_ctl start failed (port {self.port}):\n{r.stdout}{r.stderr}")
        self.pid = int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        return self

    def stop(self) -> None:
        """Fast shutdown (kills the postmaster if that fails); idempotent, also run atexit."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self.pid is None:
            pidfile = self.datadir / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError):
                self.pid = int(pidfile.read_text().split("\n", 1)[0])
        if self.pid is not None and _alive(self.pid):
            with contextlib.suppress(subprocess.TimeoutExpired):
                pg_ctl = [self.bindir / "pg_ctl", "-D", self.datadir]
                self._run(*pg_ctl, "-m", "fast", "-w", "-t", "30", "stop", timeout=40)
            for sig in (signal.SIGQUIT, signal.SIGKILL):  # only if pg_ctl did not finish it
                deadline = time.monotonic() + 5
                while _alive(self.pid) and time.monotonic() < deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, sig)
                    time.sleep(0.05)
        if not self.keep_files:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(a) for a in args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", USER, "--", *cmd]
        return subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=timeout)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def start_pg(
    base_dir: str | os.PathLike[str] | None = None,
    *,
    settings: Mapping[str, object] | None = None,
    keep_files: bool = False,
) -> Iterator[PgServer]:
    """Start a throwaway server (extra ``settings`` are postgres -c options); stop it on exit."""
    with PgServer(base_dir, settings=settings, keep_files=keep_files) as server:
        yield server
