"""Batch KV operations: get, exist, set and delete of up to MAX_BATCH_KEYS keys in one request,
each key with its own result, and a listing with values.

The single-key rules are reused, not restated: keys (`check_key`), media types, TTLs, the
conditional headers (`Preconditions`), `charge` and `sweep_account` for the quota. What a batch
adds is only how it groups them:

- Input is checked whole before anything runs: a bad key, TTL, media type, condition or value
  anywhere, or a key given twice, is a 400 (413 for a value over the size limit) naming the item,
  and nothing changes, atomic or not.
- A write batch is one transaction on both databases: the workspace row locked first, the
  entries of all its keys read in one statement, every decision made in Python by the same
  rules as a single write, then one statement per kind of change (delete expired rows, upsert,
  delete, save the account). On PostgreSQL these are plain statements in one transaction, not a
  server-side function: the lock is held over about five round trips for up to 1,000 keys (a
  single write's function holds it for one round trip per key), and the rules stay in one place
  (here and services/kv.py) instead of a plpgsql copy beside the Python one.
- `atomic`: any key that fails (412, 404, 413) fails the request with that key's error and the
  transaction rolls back, so nothing changes; the quota is decided on the batch's total. Without
  it each key stands alone, decided in request order: a key over the quota is a 413 of its own,
  later keys may still fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from ..storage import kv as sql
from .base import WorkspaceDataService
from .conditions import Preconditions
from .errors import (
    BadRequest,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    ServiceError,
    TooLarge,
)
from .kv import (
    DEFAULT_CONTENT_TYPE,
    INLINE_VALUE_BYTES,
    charge,
    check_key,
    check_ttl,
    plain_keys,
    prefix_upper_bound,
    sweep_account,
)
from .media_types import check_media_type

MAX_BATCH_KEYS = 1000
# Value bytes a batch get reads on the event loop's thread at most (SQLite; see get).
INLINE_BATCH_BYTES = 1024 * 1024


def at(index: int, exc: ServiceError, field: str = "items") -> ServiceError:
    """`exc` with the item it was about named first (same class and code; no headers, such as
    a 412's ETag, that would speak for one key as if for the whole request)."""
    return type(exc)(f"{field}[{index}]: {exc.message}", code=exc.code)


def _live(row: sql.BatchMeta | None, now: int) -> bool:
    return row is not None and (row.expires_at is None or row.expires_at > now)


def _no_duplicates(keys: list[bytes], field: str) -> None:
    if len(set(keys)) == len(keys):
        return
    seen: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        if key in seen:
            raise BadRequest(
                f"{field}[{i}]: key {key.decode('utf-8')!r} is also {field}[{seen[key]}]; "
                "each key may appear once per batch",
                code="duplicate_key",
            )
        seen[key] = i


def _count(keys: int) -> None:
    if keys > MAX_BATCH_KEYS:
        raise BadRequest(
            f"a batch holds at most {MAX_BATCH_KEYS} keys; this one has {keys}",
            code="too_many_keys",
        )


# --- results: one per key, in request order ------------------------------------------------------


@dataclass(slots=True)
class KeyFailure:
    """Why one key of a batch was not done: the status and code its single request answers."""

    status: int
    code: str
    error: str

    @classmethod
    def of(cls, exc: ServiceError) -> KeyFailure:
        return cls(exc.status, exc.code, exc.message)


NOT_FOUND = KeyFailure(404, "key_not_found", "key not found")


@dataclass(slots=True)
class SetItem:
    key: bytes
    value: bytes
    content_type: str
    expires_at: int | None
    conditions: Preconditions


@dataclass(slots=True)
class SetKey:
    status: int  # 201 created, 200 replaced, else the failure's
    version: int | None
    size: int | None
    created: bool | None
    expires_at: int | None
    failure: KeyFailure | None


@dataclass(slots=True)
class DeleteItem:
    key: bytes
    conditions: Preconditions


@dataclass(slots=True)
class DeletedKey:
    freed: int
    failure: KeyFailure | None


# --- transactions ---------------------------------------------------------------------------------


def get_many_txn(
    conn: Connection,
    workspace_id: int,
    keys: list[bytes],
    now: int,
    budget: int,
    inline: int = INLINE_VALUE_BYTES,
    first_only: bool = False,
) -> list[tuple[sql.BatchRead | None, bool]] | None:
    """Per key: (live entry with its value, or None; whether its value was left out because the
    answer already holds `budget` bytes of values). One snapshot; values only of what fits,
    those up to `inline` bytes read with the entries, larger ones by a second statement (or,
    `first_only`, None instead: read it all again elsewhere)."""
    sql.one_snapshot(conn)
    found = sql.read_many(conn, workspace_id, keys, now, inline)
    large: list[bytes] = []
    over: set[bytes] = set()
    for key in keys:
        entry = found.get(key)
        if entry is None:
            continue
        size = entry.size - len(key)
        if size > budget:
            over.add(key)
            found[key] = entry._replace(value=None)
        else:
            budget -= size
            if entry.value is None:
                large.append(key)
    if large and first_only:
        return None
    if large:
        for key, value in sql.values_of(conn, workspace_id, large).items():
            found[key] = found[key]._replace(value=value)
    return [(found.get(k), k in over) for k in keys]


def set_many_txn(
    conn: Connection, workspace_id: int, items: list[SetItem], atomic: bool, now: int
) -> list[SetKey]:
    account = sql.lock_account(conn, workspace_id)
    # A statement of its own after the lock (see lock_account_with_entry on READ COMMITTED).
    rows = sql.entry_metas(conn, workspace_id, [it.key for it in items])
    outcomes: list[SetKey | None] = [None] * len(items)
    passed: list[int] = []
    for i, it in enumerate(items):
        row = rows.get(it.key)
        try:
            it.conditions.check_write(row.version if row is not None and _live(row, now) else None)
        except ServiceError as exc:
            if atomic:
                raise at(i, exc) from None
            outcomes[i] = SetKey(exc.status, None, None, None, None, KeyFailure.of(exc))
        else:
            passed.append(i)
    # The keys' own expired rows go first, as in set_txn (a sweep must not free them twice).
    # An expired entry is invisible, so removing it is no change even for a key refused below.
    stale = [
        rows.pop(items[i].key)
        for i in passed
        if items[i].key in rows and not _live(rows[items[i].key], now)
    ]
    if stale:
        sql.delete_entries_many(conn, [r.id for r in stale])
        account.used -= sum(r.size for r in stale)

    def delta(i: int) -> int:
        old = rows.get(items[i].key)
        return len(items[i].key) + len(items[i].value) - (old.size if old else 0)

    if atomic:
        charge(conn, account, sum(delta(i) for i in passed), now)  # refused: nothing stored
        written = passed
    else:
        written = []
        swept = False
        for i in passed:
            d = delta(i)
            if d > 0 and account.used + d > account.quota and not swept:
                sweep_account(conn, account, now)
                swept = True
            if d > 0 and account.used + d > account.quota:
                refused = QuotaExceeded(
                    f"quota exceeded: this write needs {d} more bytes; "
                    f"{account.used} of {account.quota} bytes are used"
                )
                outcomes[i] = SetKey(413, None, None, None, None, KeyFailure.of(refused))
                continue
            account.used += d
            written.append(i)
    upserts = []
    for i in written:
        it = items[i]
        account.version_seq += 1
        size = len(it.key) + len(it.value)
        created = it.key not in rows
        outcomes[i] = SetKey(
            201 if created else 200, account.version_seq, size, created, it.expires_at, None
        )
        upserts.append(
            {
                "workspace_id": workspace_id,
                "key": it.key,
                "value": it.value,
                "content_type": it.content_type,
                "size": size,
                "version": account.version_seq,
                "expires_at": it.expires_at,
                "now": now,
            }
        )
    sql.upsert_entries(conn, upserts)
    sql.save_account(conn, account)
    return [o for o in outcomes if o is not None]


def delete_many_txn(
    conn: Connection, workspace_id: int, items: list[DeleteItem], atomic: bool, now: int
) -> list[DeletedKey]:
    account = sql.lock_account(conn, workspace_id)
    rows = sql.entry_metas(conn, workspace_id, [it.key for it in items])
    outcomes: list[DeletedKey] = []
    gone: list[sql.BatchMeta] = []
    for i, it in enumerate(items):
        row = rows.get(it.key)
        failure: ServiceError | None = None
        if row is None or not _live(row, now):  # absent: a 404 whatever the conditions
            failure = NotFound("key not found", code="key_not_found")
        else:
            try:
                it.conditions.check_write(row.version)
            except ServiceError as exc:
                failure = exc
        if failure is not None and atomic:
            raise at(i, failure)
        if row is not None and not isinstance(failure, PreconditionFailed):
            gone.append(row)  # an expired entry is removed too, freeing its bytes (delete_txn)
        if failure is None and row is not None:
            outcomes.append(DeletedKey(row.size, None))
        else:
            outcomes.append(DeletedKey(0, KeyFailure.of(failure) if failure else None))
    if gone:
        sql.delete_entries_many(conn, [r.id for r in gone])
        account.used -= sum(r.size for r in gone)
        sql.save_account(conn, account)
    return outcomes


# --- the service ----------------------------------------------------------------------------------


class KvBatchService(WorkspaceDataService):
    def _keys(self, keys: list[str], field: str = "items") -> list[bytes]:
        _count(len(keys))
        plain = plain_keys(keys, self.settings.max_key_bytes)
        if plain is not None:
            _no_duplicates(plain, field)
            return plain
        raw = []
        for i, key in enumerate(keys):
            try:
                raw.append(check_key(key, self.settings.max_key_bytes))
            except ServiceError as exc:
                raise at(i, exc, field) from None
        _no_duplicates(raw, field)
        return raw

    @property
    def value_budget(self) -> int:
        """Value bytes one answer carries at most: what a single GET may answer."""
        return self.settings.max_value_bytes

    async def get(
        self, workspace_id: int, keys: list[str]
    ) -> list[tuple[sql.BatchRead | None, KeyFailure | None]]:
        """Per key, in order: (the live entry or None, why it comes without its value)."""
        raw = self._keys(keys, "keys")
        now, budget = self.clock(), self.value_budget
        found = None
        if self.db.is_sqlite:
            # On the event loop's thread first, with values of at most INLINE_BATCH_BYTES in all:
            # under load, handing the read to a thread cost half of a batch's time (measured:
            # 380 against 760 batches of 100 a second), the reader threads and the loop taking
            # the GIL in turns. A batch with a larger value is read again in a thread.
            inline = max(1024, INLINE_BATCH_BYTES // max(1, len(raw)))
            found = await self.db.read(
                get_many_txn, workspace_id, raw, now, budget, inline, True, inline=True
            )
        if found is None:
            found = await self.db.read(get_many_txn, workspace_id, raw, now, budget)
            assert found is not None  # (only first_only gives up)
        over = KeyFailure(
            413,
            "batch_too_large",
            f"the answer already holds {self.value_budget} bytes of values: "
            "read this key alone or in a smaller batch",
        )
        return [
            (entry, NOT_FOUND if entry is None else over if too_large else None)
            for entry, too_large in found
        ]

    async def exist(self, workspace_id: int, keys: list[str]) -> list[sql.BatchRead | None]:
        raw = self._keys(keys, "keys")
        # Headers only, a few hundred bytes a key: on the event loop's thread (SQLite).
        found = await self.db.read(sql.read_many, workspace_id, raw, self.clock(), -1, inline=True)
        return [found.get(k) for k in raw]

    async def set(
        self, workspace_id: int, items: list[dict[str, Any]], atomic: bool
    ) -> list[SetKey]:
        """`items`: key, value (bytes), content_type, ttl, if_match, if_none_match."""
        raw = self._keys([it["key"] for it in items])
        now = self.clock()
        checked = []
        for i, (key, it) in enumerate(zip(raw, items, strict=True)):
            try:
                value: bytes = it["value"]
                if len(value) > self.settings.max_value_bytes:
                    raise TooLarge(
                        f"value is {len(value)} bytes; the maximum is "
                        f"{self.settings.max_value_bytes}",
                        code="value_too_large",
                    )
                ttl = check_ttl(it.get("ttl"))
                checked.append(
                    SetItem(
                        key=key,
                        value=value,
                        content_type=check_media_type(
                            it.get("content_type") or DEFAULT_CONTENT_TYPE
                        ),
                        expires_at=now + int(ttl * 1000) if ttl is not None else None,
                        conditions=Preconditions.parse(it.get("if_match"), it.get("if_none_match")),
                    )
                )
            except ServiceError as exc:
                raise at(i, exc) from None
        outcomes = await self.db.write(set_many_txn, workspace_id, checked, atomic, now)
        if self.metrics is not None:
            for one, o in zip(checked, outcomes, strict=True):
                if o.failure is None:
                    self.metrics.kv_written(len(one.value))
        return outcomes

    async def delete(
        self, workspace_id: int, items: list[dict[str, Any]], atomic: bool
    ) -> list[DeletedKey]:
        """`items`: key, if_match, if_none_match."""
        raw = self._keys([it["key"] for it in items])
        checked = []
        for i, (key, it) in enumerate(zip(raw, items, strict=True)):
            try:
                conditions = Preconditions.parse(it.get("if_match"), it.get("if_none_match"))
            except ServiceError as exc:
                raise at(i, exc) from None
            checked.append(DeleteItem(key, conditions))
        return await self.db.write(delete_many_txn, workspace_id, checked, atomic, self.clock())

    async def list_values(
        self,
        workspace_id: int,
        *,
        prefix: str = "",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[list[tuple[sql.ListedEntry, bytes]], str | None]:
        """A page of KvService.list with each entry's value. The cursors are the listing's own
        (kind `kv`): either listing continues the other's. A page also ends early, with a
        cursor, once its values reach the answer's budget (one value always fits)."""
        limit = self.page_limit(limit)
        raw_prefix = prefix.encode("utf-8", "surrogatepass")
        if len(raw_prefix) > self.settings.max_key_bytes:
            raise BadRequest(
                f"prefix is longer than {self.settings.max_key_bytes} bytes", code="invalid_prefix"
            )
        lower, inclusive = raw_prefix, True
        if cursor:
            await self.cursors.load()
            payload = self.cursors.open(cursor, "kv", workspace_id)
            if not isinstance(payload, list) or payload[1] != raw_prefix:
                raise BadRequest(
                    "cursor belongs to a listing with another prefix", code="invalid_cursor"
                )
            lower, inclusive = payload[0], False
        rows, more = await self.db.read(
            list_values_txn,
            workspace_id,
            lower,
            inclusive,
            prefix_upper_bound(raw_prefix),
            limit,
            self.clock(),
            self.value_budget,
        )
        next_cursor = None
        if more:
            await self.cursors.load()
            next_cursor = self.cursors.seal("kv", workspace_id, [rows[-1][0].key, raw_prefix])
        return rows, next_cursor


def list_values_txn(
    conn: Connection,
    workspace_id: int,
    lower: bytes,
    inclusive: bool,
    upper: bytes | None,
    limit: int,
    now: int,
    budget: int,
) -> tuple[list[tuple[sql.ListedEntry, bytes]], bool]:
    """(entries with values, whether more follow), in one snapshot."""
    sql.one_snapshot(conn)
    rows = sql.list_entries(conn, workspace_id, lower, inclusive, upper, limit + 1, now)
    more = len(rows) > limit
    page: list[sql.ListedEntry] = []
    for row in rows[:limit]:
        size = row.size - len(row.key)
        if page and size > budget:
            more = True
            break
        budget -= size
        page.append(row)
    values = sql.values_of(conn, workspace_id, [r.key for r in page]) if page else {}
    return [(r, values[r.key]) for r in page], more
