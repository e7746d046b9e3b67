"""Every prepared statement gives, through storage/prepared.py's driver path, exactly what plain
SQLAlchemy gives: the same rows (values, their Python types, column names), the same rowcount
and lastrowid, the same error, and the same database afterwards.

The prepared path reads SQLAlchemy compiler internals (`positiontup`, `binds`,
`_result_columns`) and skips SQLAlchemy's parameter and result processing, so a new SQLAlchemy
version, or a statement whose types need processing, could make the two differ silently.

The statements are found, not listed: every module of the package is imported, which registers
every `prepared(...)` statement, and a workload through the real app (HTTP, in-process, on a
real SQLite file) records the parameters the service really passes to each. Each recorded
execution is then replayed both ways on that database, with each parameter in turn replaced by
edge values of its type (NULL, empty, unicode, extreme integers, binary), inside a transaction
that is rolled back. A prepared statement that the workload never runs fails the test: extend
`_workload` so that it runs.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sqlite3
import sys
from collections import defaultdict
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy.exc
from sqlalchemy import BigInteger, Integer, LargeBinary, String, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.sql.sqltypes import NullType

import memory_service
from memory_service.settings import sqlite_url
from memory_service.storage import prepared as prepared_module
from memory_service.storage.prepared import FastConnection
from tests.conftest import make_api

# Up to this many distinct recorded executions of each statement are replayed (each with every
# edge variant): enough to cover a hit, a miss and a batch, bounded in time.
REPLAYS_PER_STATEMENT = 4

INTS = [0, -1, 1, 2**63 - 1, -(2**63)]
STRINGS = ["", "ünïcødé ✓ 😀 \u0000 end", 'it\'s "quoted"; -- not SQL', "x" * 5000]
BYTES = [b"", b"\x00\xff\x00", bytes(range(256)), "é".encode()]


def _import_everything() -> None:
    """Import every module of the package, so every prepared statement is registered."""
    for info in pkgutil.walk_packages(memory_service.__path__, "memory_service."):
        if info.name.endswith("__main__"):  # runs the CLI
            continue
        importlib.import_module(info.name)


def _names() -> dict[int, str]:
    """id(statement) -> where it is defined (module.VARIABLE, or module.VARIABLE[dialect])."""
    names: dict[int, str] = {}
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("memory_service.") or module is None:
            continue
        for var, value in vars(module).items():
            label = f"{module_name.removeprefix('memory_service.')}.{var}"
            if id(value) in prepared_module._REGISTRY:
                names.setdefault(id(value), label)
            elif isinstance(value, dict):
                for k, v in value.items():
                    if id(v) in prepared_module._REGISTRY:
                        names.setdefault(id(v), f"{label}[{k!r}]")
    return names


_import_everything()
STATEMENTS = {key: entry[0] for key, entry in prepared_module._REGISTRY.items()}
NAMES = _names()


def test_statements_are_found() -> None:
    # The package's prepared statements live in storage/kv.py and storage/memory.py today; a
    # registry this small would mean the discovery above stopped working.
    assert len(STATEMENTS) >= 15
    modules = {NAMES.get(k, "?").split(".")[1] for k in STATEMENTS}
    assert {"kv", "memory"} <= modules, NAMES
    assert all(k in NAMES for k in STATEMENTS), "a prepared statement not bound to a name"


# --- the workload: the real app, recording what reaches FastConnection.execute ------------------


async def _workload(c: Any, h: dict[str, str]) -> None:
    """Drive every route that runs a prepared statement, with the inputs that reach the edges
    of each (misses, expiry, large values, conditions, batches, idempotent replays)."""
    big = bytes(range(256)) * 400  # > INLINE_VALUE_BYTES: read by a second statement
    for key, body, ctype in [
        ("plain", b"hello", "text/plain"),
        ("ünï/cødé key", "✓ 😀".encode(), "text/plain; charset=utf-8"),
        ("empty", b"", "application/octet-stream"),
        ("binary", b"\x00\xff" * 10, "application/octet-stream"),
        ("big", big, "application/octet-stream"),
    ]:
        path = f"/api/kv/{quote(key, safe='')}"
        r = await c.put(path, content=body, headers={**h, "Content-Type": ctype})
        assert r.status_code == 201, r.text
        assert (await c.get(path, headers=h)).content == body
        assert (await c.head(path, headers=h)).status_code == 200
    r = await c.put("/api/kv/plain", content=b"again", headers={**h, "If-Match": '"999"'})
    assert r.status_code == 412, r.text  # a refused write: the account and entry were read
    etag = (await c.get("/api/kv/plain", headers=h)).headers["etag"]
    r = await c.put("/api/kv/plain", content=b"again", headers={**h, "If-Match": etag})
    assert r.status_code == 200, r.text
    r = await c.put("/api/kv/ttl?ttl=1", content=b"short-lived", headers=h)
    assert r.status_code == 201, r.text
    assert (await c.get("/api/kv/missing", headers=h)).status_code == 404
    assert (await c.head("/api/kv/missing", headers=h)).status_code == 404
    assert (await c.delete("/api/kv/empty", headers=h)).status_code == 200
    assert (await c.delete("/api/kv/empty", headers=h)).status_code == 404

    async def add(body: dict, headers: dict[str, str] | None = None) -> dict:
        r = await c.post("/api/memory", json=body, headers={**h, **(headers or {})})
        assert r.status_code == 200, r.text
        return r.json()

    await add({"conversationId": "c1", "role": "user", "content": "hello"})
    await add({"conversationId": "c1", "role": "assistant", "content": "hi ✓ 😀"})
    await add(
        {
            "conversationId": "c1",
            "blockId": "notes",
            "blockName": "Notes",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": ""},
                {"role": "user", "content": "x" * 3000},
            ],
        }
    )
    await add({"conversationId": "c2", "blockId": "notes", "role": "user", "content": "a"})
    once = {"conversationId": "c3", "role": "user", "content": "once"}
    first = await add(once, {"Idempotency-Key": "k-1"})
    again = await add(once, {"Idempotency-Key": "k-1"})
    assert again["replayed"] is True and first["memories"] == again["memories"]
    r = await c.put("/api/memory/blocks/notes", json={"name": "Renamed ✓"}, headers=h)
    assert r.status_code == 200, r.text
    r = await c.put("/api/memory/blocks/unused", json={"name": "Never used"}, headers=h)
    assert r.status_code == 200, r.text
    # Every combination of the three filters (one page statement each), and windows that leave
    # the leading system message out (keepSystem reads it on its own).
    for query in (
        {"conversationId": "c1"},
        {"conversationId": "c1", "blockId": "notes"},
        {"conversationId": "missing"},
        {"blockName": "Renamed ✓"},
        {"blockId": "notes"},
        {"blockId": "notes", "blockName": "Renamed ✓"},
        {"conversationId": "c1", "blockName": "Renamed ✓"},
        {"conversationId": "c1", "blockId": "notes", "blockName": "Renamed ✓"},
        {"conversationId": "c1", "blockId": "notes", "lastN": "1", "keepSystem": "true"},
    ):
        r = await c.get("/api/memory", params=query, headers=h)
        assert r.status_code == 200, r.text
    r = await c.get("/api/memory/all", params={"lastN": "2", "keepSystem": "true"}, headers=h)
    assert r.status_code == 200, r.text
    cursor = None
    for _ in range(10):  # every page of one memory's messages, newest first
        params = {"conversationId": "c1", "blockId": "notes", "limit": "1"}
        if cursor:
            params["cursor"] = cursor
        r = await c.get("/api/memory/messages", params=params, headers=h)
        assert r.status_code == 200, r.text
        cursor = r.json()["nextCursor"]
        if cursor is None:
            break
    r = await c.get("/api/memory/messages", params={"conversationId": "missing"}, headers=h)
    assert r.status_code == 404, r.text


Recorded = tuple[int, Any]  # (id of the statement, the parameters given)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Recorded]]]:
    db = tmp_path_factory.mktemp("prepared") / "memory.db"
    url = sqlite_url(db)
    calls: list[Recorded] = []
    original = FastConnection.execute

    def recording(self: FastConnection, stmt: Any, params: Any = None) -> Any:
        if id(stmt) in STATEMENTS:
            copy = [dict(p) for p in params] if isinstance(params, list) else dict(params or {})
            calls.append((id(stmt), copy))
        return original(self, stmt, params)

    async def run() -> None:
        api, _app = await make_api(url)
        async with api.client:
            h = await api.workspace("prepared-ws")
            await _workload(api.client, h)

    FastConnection.execute = recording
    try:
        asyncio.run(run())
    finally:
        FastConnection.execute = original
    yield url, calls


def test_the_workload_runs_every_prepared_statement(recorded: tuple[str, list[Recorded]]) -> None:
    _url, calls = recorded
    missed = sorted(
        NAMES.get(k, str(STATEMENTS[k])) for k in STATEMENTS.keys() - {k for k, _ in calls}
    )
    assert not missed, f"prepared statements the workload never ran (extend _workload): {missed}"


# --- replay, both ways -------------------------------------------------------------------------


def _bind_types(stmt: Any, dialect: Any) -> dict[str, Any]:
    """Each bind parameter's type as compiled (an INSERT's values take their column's type)."""
    binds = stmt.compile(dialect=dialect).binds
    return {b.key: b.type for b in binds.values()}


def _edges(sa_type: Any) -> list[Any]:
    if isinstance(sa_type, Integer | BigInteger):
        return [None, *INTS]
    if isinstance(sa_type, String):
        return [None, *STRINGS]
    if isinstance(sa_type, LargeBinary):
        return [None, *BYTES]
    return [None, *INTS, *STRINGS, *BYTES]  # untyped: anything a caller could pass


def _variants(stmt: Any, params: Any, dialect: Any) -> Iterator[Any]:
    yield params
    types = _bind_types(stmt, dialect)
    first = params[0] if isinstance(params, list) else params
    for name in first:
        for value in _edges(types.get(name, NullType())):
            if isinstance(params, list):
                yield [{**params[0], name: value}, *params[1:]]
            else:
                yield {**params, name: value}


def _value(v: Any) -> tuple[str, Any]:
    return type(v).__name__, v


def _outcome(result: Any, returns_rows: bool) -> tuple:
    rows = result.all() if returns_rows else []
    # The rowcount of a statement that returns rows is the driver's count so far (SQLAlchemy
    # documents it as unreliable with RETURNING, and the storage functions never read it then):
    # compared for plain UPDATE, DELETE and INSERT only.
    rowcount = None if returns_rows else result.rowcount
    return (
        [(tuple(r._fields), [_value(v) for v in r]) for r in rows],
        rowcount,
        result.lastrowid,
    )


def _error(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, sqlalchemy.exc.DBAPIError):  # SQLAlchemy wraps the driver's error
        exc = exc.orig
    return type(exc).__name__, str(exc)


def _dump(raw: sqlite3.Connection) -> dict[str, list]:
    tables = [r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: sorted(raw.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


def _returns_rows(stmt: Any) -> bool:
    return len(stmt.exported_columns) > 0  # selected or RETURNING columns


def _run(conn: Connection, fast: FastConnection, way: str, stmt: Any, params: Any) -> tuple:
    raw = fast.raw
    raw.execute("BEGIN")
    try:
        try:
            result = fast.execute(stmt, params) if way == "prepared" else conn.execute(stmt, params)
            answer: tuple = ("ok", _outcome(result, _returns_rows(stmt)))
        except Exception as exc:  # both ways must fail alike
            answer = ("error", _error(exc))
        return answer, _dump(raw)
    finally:
        if raw.in_transaction:
            raw.execute("ROLLBACK")
        if conn.in_transaction():
            conn.rollback()


@pytest.fixture(scope="module")
def connection(recorded: tuple[str, list[Recorded]]) -> Iterator[tuple[Connection, FastConnection]]:
    url, _calls = recorded
    engine = create_engine(make_url(url).set(drivername="sqlite"))

    # As the service's own connections: transactions begun explicitly, foreign keys enforced.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    with engine.connect() as conn:
        yield conn, FastConnection(conn)
    engine.dispose()


def _replays(calls: list[Recorded]) -> dict[int, list[Any]]:
    chosen: dict[int, list[Any]] = defaultdict(list)
    for key, params in calls:
        if params not in chosen[key] and len(chosen[key]) < REPLAYS_PER_STATEMENT:
            chosen[key].append(params)
    return chosen


@pytest.mark.parametrize(
    "key", sorted(STATEMENTS, key=lambda k: NAMES.get(k, "")), ids=lambda k: NAMES.get(k, str(k))
)
def test_prepared_and_plain_agree(
    key: int,
    recorded: tuple[str, list[Recorded]],
    connection: tuple[Connection, FastConnection],
) -> None:
    _url, calls = recorded
    conn, fast = connection
    stmt = STATEMENTS[key]
    replays = _replays(calls).get(key)
    if not replays:
        pytest.fail(f"{NAMES.get(key)} never ran in the workload")
    compared = 0
    for params in replays:
        for variant in _variants(stmt, params, conn.dialect):
            prepared_answer = _run(conn, fast, "prepared", stmt, variant)
            plain_answer = _run(conn, fast, "plain", stmt, variant)
            assert prepared_answer == plain_answer, (
                f"{NAMES.get(key)} with {variant!r}:\n"
                f"prepared: {prepared_answer[0]!r}\nplain:    {plain_answer[0]!r}"
            )
            compared += 1
    assert compared > len(replays)  # the edge variants ran, not only the recorded calls
