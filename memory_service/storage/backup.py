"""SQL for backup and restore: every table of the schema, read in bounded pages and written in
batches. Which tables and columns go into a backup is declared here, once (`SPECS`); a column
added to a table by a migration is carried along without further change, and a new table fails
`test_backup_covers_every_table` until it is declared.

Rows are exported without their database ids (a restore gets new ones); a row names its
workspace by name and its memory by the memory's id in the source database (`ref`), which the
restore maps to the new id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, ColumnElement, LargeBinary, Table, func, insert, select, tuple_
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from .memory_tables import memory_block_t, memory_idempotency_t, memory_message_t, memory_t
from .tables import api_key_t, kv_entry_t, workspace_t

# Rows of a page, and bytes of large values fetched at once: export memory stays bounded.
PAGE_ROWS = 1000
PAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Spec:
    """How one table goes into a backup file."""

    kind: str  # the record's "type"
    table: Table
    # Columns not written as such: ids and the references rewritten as `workspace` / `memory`.
    dropped: frozenset[str]
    parent: str | None  # "workspace" (by name) or "memory" (by ref); None for workspaces
    order: tuple[str, ...]  # a unique key to page by, within the parent
    size_column: str | None = None  # bounds the bytes of a page when values can be large
    ref_column: str | None = None  # written as "ref": how later records name this row
    memory_column: str | None = None  # written as "memory": the ref of a memory
    columns: tuple[Column, ...] = field(init=False)

    def __post_init__(self) -> None:
        cols = tuple(c for c in self.table.c if c.name not in self.dropped)
        object.__setattr__(self, "columns", cols)
        clash = {c.name for c in cols} & RESERVED_FIELDS
        assert not clash, f"column names {clash} clash with record fields"


# A row of any table as it goes into (or comes out of) a backup: its values by column name.
Record = dict[str, Any]

RESERVED_FIELDS = frozenset({"type", "workspace", "ref", "memory"})

WORKSPACE = Spec("workspace", workspace_t, frozenset({"id"}), None, ("id",))
API_KEY = Spec("api_key", api_key_t, frozenset({"id", "workspace_id"}), "workspace", ("id",))
KV = Spec(
    "kv", kv_entry_t, frozenset({"id", "workspace_id"}), "workspace", ("id",), size_column="size"
)
BLOCK = Spec("block", memory_block_t, frozenset({"workspace_id"}), "workspace", ("block_id",))
MEMORY = Spec(
    "memory", memory_t, frozenset({"id", "workspace_id"}), "workspace", ("id",), ref_column="id"
)
MESSAGE = Spec(
    "message",
    memory_message_t,
    frozenset({"memory_id"}),
    "memory",
    ("memory_id", "seq"),
    size_column="size",
    memory_column="memory_id",
)
# An idempotency record may name a memory deleted since (its retry is then told so).
IDEMPOTENCY = Spec(
    "idempotency",
    memory_idempotency_t,
    frozenset({"workspace_id", "memory_id"}),
    "workspace",
    ("key",),
    memory_column="memory_id",
)
# In file order: every record comes after what it refers to.
SPECS = (WORKSPACE, API_KEY, KV, BLOCK, MEMORY, MESSAGE, IDEMPOTENCY)
BY_KIND = {s.kind: s for s in SPECS}
# Tables a backup leaves out on purpose: the server-wide secret belongs to the server, not to a
# workspace (a restored workspace's old cursors are simply refused).
NOT_BACKED_UP: frozenset[str] = frozenset({"alembic_version", "server_secret"})


def all_tables() -> set[str]:
    return set(SQLModel.metadata.tables)


def is_binary(column: Column) -> bool:
    return isinstance(column.type, LargeBinary)


# --- export --------------------------------------------------------------------------------------


def _scope(spec: Spec, workspace_id: int) -> ColumnElement[bool]:
    """The rows of one workspace (messages through their memory)."""
    if spec.parent == "memory":
        owner = select(memory_t.c.id).where(memory_t.c.workspace_id == workspace_id)
        return spec.table.c.memory_id.in_(owner.scalar_subquery())
    return spec.table.c.workspace_id == workspace_id


def workspaces(conn: Connection, name: str | None) -> list[Record]:
    stmt = select(workspace_t).order_by(workspace_t.c.id)
    if name is not None:
        stmt = stmt.where(workspace_t.c.name == name)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def count(conn: Connection, spec: Spec, workspace_ids: list[int]) -> int:
    if spec is WORKSPACE:
        return len(workspace_ids)
    total = 0
    for ws in workspace_ids:
        stmt = select(func.count()).select_from(spec.table).where(_scope(spec, ws))
        total += conn.execute(stmt).scalar_one()
    return total


def _key(cols: list[Column]) -> ColumnElement[Any]:
    return cols[0] if len(cols) == 1 else tuple_(*cols)


def _value(key: tuple) -> Any:
    return key[0] if len(key) == 1 else tuple_(*key)


def rows(conn: Connection, spec: Spec, workspace_id: int) -> Iterator[Record]:
    """Every row of the table for the workspace, in key order, a bounded page at a time.

    Within one snapshot (the export's transaction), so the pages and groups never overlap or
    miss a row."""
    t = spec.table
    key_cols = [t.c[name] for name in spec.order]
    key = _key(key_cols)
    refs = [t.c[name] for name in (spec.ref_column, spec.memory_column) if name]
    wanted = list(dict.fromkeys([*spec.columns, *refs, *key_cols]))
    last: tuple | None = None
    while True:
        where = [_scope(spec, workspace_id)]
        if last is not None:
            where.append(key > _value(last))
        if spec.size_column is None:
            stmt = select(*wanted).where(*where).order_by(*key_cols).limit(PAGE_ROWS)
            page = [dict(r._mapping) for r in conn.execute(stmt)]
            yield from page
            keys = [tuple(r[name] for name in spec.order) for r in page]
        else:
            # Keys and sizes first, then the rows in runs of bounded bytes (a run is a key range
            # of the same snapshot, so it holds exactly the rows of the run).
            size = t.c[spec.size_column]
            stmt = select(*key_cols, size).where(*where).order_by(*key_cols).limit(PAGE_ROWS)
            sized = [(tuple(r[: len(key_cols)]), r[-1]) for r in conn.execute(stmt)]
            keys = [k for k, _ in sized]
            for lo, hi in _runs(sized):
                run = select(*wanted).where(
                    _scope(spec, workspace_id), key >= _value(lo), key <= _value(hi)
                )
                yield from (dict(r._mapping) for r in conn.execute(run.order_by(*key_cols)))
        if len(keys) < PAGE_ROWS:
            return
        last = keys[-1]


def _runs(sized: list[tuple[tuple, int]]) -> Iterator[tuple[tuple, tuple]]:
    """(first key, last key) of consecutive rows holding at most PAGE_BYTES (or one row)."""
    first: tuple | None = None
    prev: tuple = ()  # set with `first`, always, before it is yielded
    total = 0
    for k, nbytes in sized:
        if first is not None and total + nbytes > PAGE_BYTES:
            yield first, prev
            first, total = None, 0
        if first is None:
            first = k
        prev = k
        total += nbytes
    if first is not None:
        yield first, prev


# --- import --------------------------------------------------------------------------------------


def existing_workspaces(conn: Connection, names: list[str]) -> list[str]:
    found: list[str] = []
    for i in range(0, len(names), 500):
        chunk = names[i : i + 500]
        stmt = select(workspace_t.c.name).where(workspace_t.c.name.in_(chunk))
        found += [r[0] for r in conn.execute(stmt)]
    return sorted(found)


def insert_returning_ids(conn: Connection, spec: Spec, params: list[dict]) -> list[int]:
    """Insert rows and return their new ids, in the order given."""
    stmt = insert(spec.table).returning(spec.table.c.id, sort_by_parameter_order=True)
    return [r[0] for r in conn.execute(stmt, params)]


def insert_rows(conn: Connection, spec: Spec, params: list[dict]) -> None:
    if params:
        conn.execute(insert(spec.table), params)
