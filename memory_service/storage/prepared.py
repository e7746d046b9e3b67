"""Prepared statements: the hot statements, built once at import and, on SQLite, run straight on
the driver.

SQLAlchemy's per-execution work (events, parameter processing, result set-up) costs ten times
what SQLite takes to run an indexed statement (about 20 us against 2 us here), and the service's
hot paths are a few such statements each. `prepared(stmt)` marks a module-level statement; on
SQLite `FastConnection` runs marked statements with SQL compiled once per statement, and every
other statement through SQLAlchemy as usual. PostgreSQL always goes through SQLAlchemy.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy.engine import Connection
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

S = TypeVar("S", bound=Executable)

# id(statement) -> [statement, compiled form or None, record type or None]. The statement is
# held, so its id is never reused by another object.
_REGISTRY: dict[int, list[Any]] = {}


def prepared(stmt: S, record: type[tuple] | None = None) -> S:
    """Mark a statement built once (at import) as one to run on the driver on SQLite.

    `record` (a NamedTuple whose fields are the statement's columns, in order) is the type of its
    rows on every database when read with `records()`."""
    _REGISTRY[id(stmt)] = [stmt, None, record]
    return stmt


def records(conn: Any, stmt: Executable, params: Any = None) -> list:
    """The rows of a prepared statement as its record type: made by the driver's fetch on the
    prepared path, converted from SQLAlchemy's rows otherwise."""
    result = conn.execute(stmt, params)
    if isinstance(result, RawResult):
        return result._rows
    record = _REGISTRY[id(stmt)][2]
    return [record._make(r) for r in result] if record is not None else list(result)


def first_record(conn: Any, stmt: Executable, params: Any = None) -> Any | None:
    """The first row of `records()`, or None."""
    found = records(conn, stmt, params)
    return found[0] if found else None


class _Compiled:
    __slots__ = ("sql", "names", "row_type")

    def __init__(self, stmt: ClauseElement, dialect: Any, record: Any = None) -> None:
        # A statement compiles to a SQLCompiler, whose internals are read here (see pyproject's
        # bound on SQLAlchemy; tests/test_prepared.py runs every statement both ways).
        compiled = cast(SQLCompiler, stmt.compile(dialect=dialect))
        binds = compiled.binds
        if compiled.positiontup is None or any(
            b.expanding or b.value is not None or b.callable is not None for b in binds.values()
        ):
            # e.g. IN lists, literal values, column defaults: give every value as a bindparam
            raise ValueError(f"statement cannot be prepared (bound values or lists): {stmt}")
        self.sql = str(compiled)
        self.names = tuple(binds[name].key for name in compiled.positiontup)
        keys = [col[0] for col in compiled._result_columns] if compiled._result_columns else []
        if record is not None and list(record._fields) != keys:  # (a NamedTuple)
            raise ValueError(f"{record.__name__} fields {record._fields} are not columns {keys}")
        self.row_type = record or (namedtuple("Row", keys, rename=True) if keys else None)


class RawResult:
    """The part of SQLAlchemy's Result the storage functions use."""

    __slots__ = ("_rows", "rowcount", "lastrowid")

    def __init__(self, rows: list, rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def __iter__(self) -> Iterator:
        return iter(self._rows)

    def all(self) -> list:
        return list(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) != 1:
            from sqlalchemy.exc import MultipleResultsFound, NoResultFound

            raise (NoResultFound if not self._rows else MultipleResultsFound)(
                f"expected one row, got {len(self._rows)}"
            )
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]


class FastConnection:
    """A SQLite connection: prepared statements on the driver, anything else via SQLAlchemy."""

    __slots__ = ("sa", "raw", "dialect")

    def __init__(self, sa: Connection) -> None:
        self.sa = sa
        # The driver's connection (SQLite's), set while `sa` is open: FastConnection is SQLite's.
        self.raw = cast(sqlite3.Connection, sa.connection.dbapi_connection)
        self.dialect = sa.dialect

    def execute(self, stmt: Any, params: Any = None) -> Any:
        entry = _REGISTRY.get(id(stmt))
        if entry is None:
            return self.sa.execute(stmt, params)
        compiled = entry[1]
        if compiled is None:
            compiled = entry[1] = _Compiled(stmt, self.dialect, entry[2])
        names = compiled.names
        if isinstance(params, Sequence) and not isinstance(params, dict):
            cur = self.raw.executemany(compiled.sql, [[p[n] for n in names] for p in params])
            return RawResult([], cur.rowcount, None)
        cur = self.raw.execute(compiled.sql, [params[n] for n in names] if params else ())
        row_type = compiled.row_type
        rows = [row_type._make(r) for r in cur.fetchall()] if row_type is not None else []
        return RawResult(rows, cur.rowcount, cur.lastrowid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sa, name)
