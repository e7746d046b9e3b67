"""Engines and transactions.

Storage functions are plain synchronous SQLAlchemy Core functions taking a `Connection`; a
transaction is one such function. How it runs depends on the database:

- SQLite (the embedded default) runs each whole transaction in one hop to a database thread, over
  the stdlib driver. A per-statement async driver (aiosqlite) pays a thread hop per statement (about
  70 us each here), which made a five-statement write cost several plain inserts. Writes go through
  one writer thread that commits in groups: it takes every write waiting, runs each inside its own
  SAVEPOINT within one BEGIN IMMEDIATE transaction, commits once, and only then answers each caller.
  Reads use a small pool of reader threads and see WAL snapshots, never blocked by the writer.
- PostgreSQL runs the same functions through the async engine (asyncpg) with `run_sync`; writers
  take row locks explicitly, so any number of replicas can share the database.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from ..errors import StorageUnavailable
from ..settings import Settings
from .engines import make_sqlite_folder, pg_engine, sqlite_engine
from .prepared import FastConnection

T = TypeVar("T")
Txn = Callable[..., T]
log = logging.getLogger("memory_service.storage")
# "database is locked" and other driver-level faults: SQLAlchemy's for statements it runs, the
# driver's own for the prepared statements that run straight on it (storage/prepared.py).
DRIVER_ERRORS = (OperationalError, sqlite3.OperationalError)


def _reset_bookkeeping(conn: FastConnection) -> None:
    """End SQLAlchemy's own transaction on this connection: bookkeeping only, since the driver
    is in autocommit mode (transactions are begun and ended on it directly)."""
    if conn.sa.in_transaction():
        conn.sa.rollback()


def _statement(conn: FastConnection, fn: Txn[T], args: tuple) -> T:
    """Run `fn`, one statement, in SQLite's own implicit transaction: a statement sees one
    snapshot without BEGIN and COMMIT around it (two driver calls less per point read)."""
    try:
        return fn(conn, *args)
    finally:
        _reset_bookkeeping(conn)


def _transaction(conn: FastConnection, begin: str, fn: Txn[T], args: tuple) -> T:
    """Run `fn` in one SQLite transaction, begun and ended on the driver.

    SQLAlchemy's own transaction on this connection is bookkeeping only (pysqlite's begin is a
    no-op with autocommit on), so it is reset after the driver's transaction has ended.
    """
    raw = conn.raw
    try:
        raw.execute(begin)
        try:
            result = fn(conn, *args)
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise
        raw.execute("COMMIT")
        return result
    finally:
        _reset_bookkeeping(conn)


class _GroupCommitWriter:
    """One thread, one connection, many writes per commit."""

    def __init__(self, engine: Engine, max_batch: int = 256) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._pending: list[tuple[Txn, tuple, asyncio.Future, asyncio.AbstractEventLoop]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._dead = False  # the thread has ended other than by close(): no write can land
        self._inflight: list = []  # the batch being committed, answered if the thread dies
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return not self._dead and self._thread.is_alive()

    def submit(self, fn: Txn[T], args: tuple) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("database is closed")
            if not self.alive:
                raise StorageUnavailable("the database writer has stopped; restart the service")
            self._pending.append((fn, args, fut, loop))
        # The writer clears the flag under the lock only when it has taken everything pending, so
        # when it is still set, the writer will see this write without being woken again.
        if not self._wake.is_set():
            self._wake.set()
        return fut

    def _run(self) -> None:
        conn = None
        try:
            conn = FastConnection(self.engine.connect())
            while True:
                self._wake.wait()
                with self._lock:
                    batch = self._pending[: self.max_batch]
                    del self._pending[: self.max_batch]
                    if not self._pending:
                        self._wake.clear()
                    closed = self._closed
                if batch:
                    self._inflight = batch
                    self._commit(conn, batch)
                    self._inflight = []
                elif closed:
                    return
        except BaseException:
            log.exception("the SQLite writer thread stopped; writes now fail with 503")
            raise
        finally:
            with self._lock:
                if not self._closed or self._pending:
                    self._dead = True
                stranded, self._pending = self._inflight + self._pending, []
                self._inflight = []
            # Whoever still waits is told now, instead of waiting forever.
            _settle_by_loop(stranded, (False, StorageUnavailable("the database writer stopped")))
            if conn is not None:
                conn.sa.close()

    def _commit(self, conn: FastConnection, batch: list) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            if len(batch) == 1:  # alone in its transaction: a failure rolls it all back
                fn, args, _fut, _loop = batch[0]
                outcomes.append((True, _transaction(conn, "BEGIN IMMEDIATE", fn, args)))
            else:
                outcomes = _transaction(conn, "BEGIN IMMEDIATE", _each_in_a_savepoint, (batch,))
        except Exception as exc:  # the transaction failed: nothing of the batch happened
            outcomes = [(False, exc)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for outcome, (_fn, _args, fut, loop) in zip(outcomes, batch, strict=True):
            by_loop.setdefault(loop, []).append((fut, outcome))
        _call_back(by_loop)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)


def _each_in_a_savepoint(conn: FastConnection, batch: list) -> list[tuple[bool, Any]]:
    """Each write in its own savepoint, so one that fails leaves the others whole."""
    raw = conn.raw
    outcomes: list[tuple[bool, Any]] = []
    for fn, args, _fut, _loop in batch:
        raw.execute("SAVEPOINT w")
        try:
            result = fn(conn, *args)
        except Exception as exc:  # the caller gets it; the others go on
            raw.execute("ROLLBACK TO w")
            raw.execute("RELEASE w")
            outcomes.append((False, exc))
        else:
            raw.execute("RELEASE w")
            outcomes.append((True, result))
    return outcomes


def _raise_if_unreachable(exc: Exception) -> None:
    """PostgreSQL that cannot be reached (refused, reset, timed out, a connection that died) is
    a 503 for the request at hand, not a 500: the request was fine, the service is not."""
    if isinstance(exc, OSError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        raise StorageUnavailable(f"the database cannot be reached ({type(exc).__name__})") from exc


def _call_back(by_loop: dict[asyncio.AbstractEventLoop, list]) -> None:
    for loop, settled in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_all, settled)
        except RuntimeError:  # that loop is closed: nobody there is waiting any more
            log.warning("a write finished after its event loop closed; its caller was gone")


def _settle_by_loop(batch: list, outcome: tuple[bool, Any]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for _fn, _args, fut, loop in batch:
        by_loop.setdefault(loop, []).append((fut, outcome))
    _call_back(by_loop)


def _settle_all(settled: list[tuple[asyncio.Future, tuple[bool, Any]]]) -> None:
    for fut, (ok, value) in settled:
        if fut.done():  # the caller went away (cancelled); the write stands regardless
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class Database:
    """The process's engines. Created by the app factory; `dispose()` at shutdown."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.is_sqlite = settings.is_sqlite
        if self.is_sqlite:
            make_sqlite_folder(settings.database_url)
            self._readers = 4
            self._read_engine = sqlite_engine(settings, pool_size=self._readers)
            self._write_engine = sqlite_engine(settings, pool_size=1)
            self._read_pool = ThreadPoolExecutor(self._readers, thread_name_prefix="sqlite-read")
            self._local = threading.local()
            # Never blocks the event loop for long: a busy inline read falls back to a thread.
            self._inline_engine = sqlite_engine(settings, pool_size=1, busy_timeout_ms=20)
            self._inline_conn: FastConnection | None = None
            self._read_conns: list[FastConnection] = []
            self._writer: _GroupCommitWriter | None = None
        else:
            self.engine = pg_engine(settings)
            self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def writable(self) -> bool:
        """False once this process can no longer write (SQLite: its writer thread stopped)."""
        return not self.is_sqlite or self._writer is None or self._writer.alive

    async def write(self, fn: Txn[T], *args: Any) -> T:
        """Run `fn(conn, *args)` in a write transaction; it commits before this returns."""
        if self.is_sqlite:
            if self._writer is None:
                self._writer = _GroupCommitWriter(self._write_engine)
            return await self._writer.submit(fn, args)
        try:
            async with self.engine.begin() as conn:
                return await conn.run_sync(fn, *args)
        except Exception as exc:
            _raise_if_unreachable(exc)
            raise

    async def write_statement(self, fn: Txn[T], *args: Any) -> T:
        """PostgreSQL: run `fn(conn, *args)`, one statement, alone in its transaction (autocommit):
        one round trip, no BEGIN or COMMIT, so any lock it takes is held within the database
        only. For writes made by one server-side function (migration 0004)."""
        try:
            async with self._autocommit.connect() as conn:
                return await conn.run_sync(fn, *args)
        except Exception as exc:
            _raise_if_unreachable(exc)
            raise

    async def read_statement(self, fn: Txn[T], *args: Any) -> T:
        """A read that is one statement of bounded size (an indexed point read): on PostgreSQL
        alone in its transaction (autocommit, one round trip instead of BEGIN, SELECT, COMMIT;
        one statement sees one snapshot anyway); on SQLite an inline read, likewise alone."""
        if self.is_sqlite:
            try:
                return self._inline_read(fn, args, alone=True)
            except DRIVER_ERRORS:
                return await self.read(fn, *args)  # busy: wait for it in a reader thread
        return await self.write_statement(fn, *args)

    async def read(self, fn: Txn[T], *args: Any, inline: bool = False) -> T:
        """Run `fn(conn, *args)` in a read transaction (one consistent snapshot).

        `inline` (SQLite only) runs it on the event loop's own thread: an indexed point read of a
        small row takes ~30 us on a WAL database, less than handing it to a thread. Only for
        reads of bounded size; scans and large values go to the reader threads.
        """
        if self.is_sqlite:
            if inline:
                try:
                    return self._inline_read(fn, args)
                except DRIVER_ERRORS:
                    pass  # busy (locked, WAL recovery): wait for it in a reader thread instead
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._read_pool, self._read_sync, fn, args)
        try:
            async with self.engine.connect() as conn, conn.begin():
                return await conn.run_sync(fn, *args)
        except Exception as exc:
            _raise_if_unreachable(exc)
            raise

    def _inline_read(self, fn: Txn[T], args: tuple, alone: bool = False) -> T:
        if self._inline_conn is None:
            self._inline_conn = FastConnection(self._inline_engine.connect())
        if alone:
            return _statement(self._inline_conn, fn, args)
        return _transaction(self._inline_conn, "BEGIN", fn, args)

    def _read_sync(self, fn: Txn[T], args: tuple) -> T:
        # Each reader thread keeps its connection: a pool checkout costs as much as the query.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = FastConnection(self._read_engine.connect())
            self._read_conns.append(conn)
        return _transaction(conn, "BEGIN", fn, args)

    async def dispose(self) -> None:
        if self.is_sqlite:
            if self._writer is not None:
                await asyncio.get_running_loop().run_in_executor(None, self._writer.close)
            self._read_pool.shutdown(wait=True)
            for conn in self._read_conns:
                conn.sa.close()
            if self._inline_conn is not None:
                self._inline_conn.sa.close()
            self._inline_engine.dispose()
            self._read_engine.dispose()
            self._write_engine.dispose()
        else:
            await self.engine.dispose()
