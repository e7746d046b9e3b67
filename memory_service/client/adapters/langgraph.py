"""LangGraph on memory-service (`pip install 'memory-service[langgraph]'`).

`MemoryServiceStore` is a LangGraph `BaseStore` (long-term memory) on the KV store: an item
`(namespace, key)` is the KV key

    root + enc(label1) + "/" + ... + enc(labelN) + "/" + ":" + enc(key)

where `enc` percent-encodes `%`, `/`, `:` and control characters (the idea of SPEC 3's memory
`key`), so every label and key is exact: `("a/b",)` and `("a", "b")`, `"100%"` and `"100%25"`
are different namespaces, and a search of the prefix `("a",)` never reaches `("ab",)`. The value
is a JSON document of the item's value, its timestamps and its TTL.

What it does with each op, in one `batch`:
- GetOp: one batch get for all of them (per 1,000 keys).
- SearchOp: lists the entries under the namespace prefix with their values, filters on value
  fields (exact values, nested objects, `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`), then
  `offset`/`limit`, in key order. There is no vector index: a `query` is ignored (every
  `score` is None), as LangGraph's own InMemoryStore does without an index.
- PutOp: one atomic batch set (one batch get first keeps `created_at` of items that exist);
  `value=None` is one batch delete. The last op on a key wins.
- ListNamespacesOp: prefix/suffix conditions with `*`, `max_depth`, `limit`/`offset`.
- TTL (`supports_ttl`): a put's `ttl` (minutes) is the KV entry's time to live, enforced by the
  server (an expired item is never returned); a read with `refresh_ttl` sets the entry again,
  unchanged, with its TTL restarted (one more batch request, only for items that have a TTL).
Reads see the store as it was before the batch's writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
)

from .. import _protocol as p
from ..aio import AsyncMemoryServiceClient
from ..sync import MemoryServiceClient
from ._plans import Plan, arun, chunks, list_page, raise_batch_error, run

__all__ = ["MemoryServiceStore"]

JSON = "application/json"


def enc(label: str) -> str:
    out: list[str] = []
    for ch in label:
        if ch in "%/:" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
            out.extend(f"%{b:02X}" for b in ch.encode())
        else:
            out.append(ch)
    return "".join(out)


def dec(text: str) -> str:
    return unquote(text, errors="strict")


def check_labels(namespace: tuple[str, ...]) -> None:
    for label in namespace:
        if not isinstance(label, str) or not label:
            raise InvalidNamespaceError(
                f"namespace labels must be non-empty strings, got {label!r} in {namespace}"
            )
        if "." in label or "\x00" in label:
            raise InvalidNamespaceError(
                f"namespace label {label!r} in {namespace} holds '.' or NUL, which LangGraph "
                "refuses"
            )


class _Doc:
    __slots__ = ("value", "created_at", "updated_at", "ttl")

    def __init__(
        self, value: dict[str, Any], created_at: str, updated_at: str, ttl: float | None
    ) -> None:
        self.value, self.created_at, self.updated_at, self.ttl = value, created_at, updated_at, ttl

    @classmethod
    def parse(cls, raw: bytes) -> _Doc | None:
        """The document of an entry the store wrote; None for another writer's value."""
        try:
            d = json.loads(raw)
            doc = cls(d["value"], d["created_at"], d["updated_at"], d.get("ttl"))
        except (ValueError, TypeError, KeyError):
            return None
        return doc if isinstance(doc.value, dict) else None

    def dump(self) -> bytes:
        return json.dumps(
            {
                "value": self.value,
                "created_at": self.created_at,
                "updated_at": self.updated_at,
                "ttl": self.ttl,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()


def _matches(value: Any, wanted: Any) -> bool:
    """LangGraph's filter semantics (those of its InMemoryStore and PostgresStore)."""
    if isinstance(wanted, dict):
        if any(k.startswith("$") for k in wanted):
            return all(_operator(value, op, arg) for op, arg in wanted.items())
        return isinstance(value, dict) and all(_matches(value.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list | tuple):
        return (
            isinstance(value, list | tuple)
            and len(value) == len(wanted)
            and all(_matches(a, b) for a, b in zip(value, wanted, strict=True))
        )
    return bool(value == wanted)


def _operator(value: Any, op: str, arg: Any) -> bool:
    if op == "$eq":
        return bool(value == arg)
    if op == "$ne":
        return bool(value != arg)
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        a = float(arg)
        return {"$gt": value > a, "$gte": value >= a, "$lt": value < a, "$lte": value <= a}[op]
    raise ValueError(f"unsupported filter operator {op!r} (use $eq, $ne, $gt, $gte, $lt, $lte)")


def _condition_matches(cond: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(cond.path)
    if len(namespace) < len(path):
        return False
    if cond.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif cond.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise ValueError(f"unsupported match type {cond.match_type!r}")
    return all(want == "*" or have == want for have, want in pairs)


class MemoryServiceStore(BaseStore):
    """A LangGraph `BaseStore` on the memory-service KV store (see the module's docstring).

    `MemoryServiceStore(client=..., async_client=..., root="langgraph-store/", ttl=None)`:
    `batch` (and get/put/search/delete/list_namespaces) need the sync client, `abatch` (and
    the `a*` methods) the async one. `root` keeps the store's keys apart from other KV keys;
    `ttl` is LangGraph's TTLConfig (`default_ttl` in minutes, `refresh_on_read`).
    """

    supports_ttl = True

    def __init__(
        self,
        client: MemoryServiceClient | None = None,
        *,
        async_client: AsyncMemoryServiceClient | None = None,
        root: str = "langgraph-store/",
        ttl: TTLConfig | None = None,
    ) -> None:
        if client is None and async_client is None:
            raise TypeError("MemoryServiceStore needs client= or async_client=")
        self._client = client
        self._aclient = async_client
        self.root = root
        self.ttl_config = ttl

    # --- keys ------------------------------------------------------------------------------------

    def _ns_prefix(self, namespace: tuple[str, ...]) -> str:
        return self.root + "".join(enc(label) + "/" for label in namespace)

    def _key(self, namespace: tuple[str, ...], key: str) -> str:
        return self._ns_prefix(namespace) + ":" + enc(key)

    def _split(self, full: str) -> tuple[tuple[str, ...], str] | None:
        """(namespace, key) of a KV key of this store; None for a key that is not one."""
        if not full.startswith(self.root):
            return None
        ns_part, sep, key = full[len(self.root) :].partition(":")
        if not sep or (ns_part and not ns_part.endswith("/")):
            return None
        try:
            return tuple(dec(label) for label in ns_part.split("/")[:-1]), dec(key)
        except UnicodeDecodeError:  # not a key this store wrote
            return None

    # --- the batch -------------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        return run(self._client, self._batch(list(ops)), "MemoryServiceStore")

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await arun(self._aclient, self._batch(list(ops)), "MemoryServiceStore")

    def _batch(self, ops: list[Op]) -> Plan[list[Result]]:
        for op in ops:
            if isinstance(op, GetOp | PutOp):
                check_labels(op.namespace)
            elif isinstance(op, SearchOp):
                check_labels(op.namespace_prefix)
            elif isinstance(op, ListNamespacesOp):
                for cond in op.match_conditions or ():
                    check_labels(tuple(x for x in cond.path if x != "*"))
            else:
                raise ValueError(f"unknown operation type {type(op).__name__}")
            if isinstance(op, PutOp) and not op.namespace:
                raise InvalidNamespaceError("namespace cannot be empty")

        results: list[Result] = [None] * len(ops)
        # Entries read with refresh_ttl whose TTL restarts: KV key -> (raw value, etag, ttl).
        refresh: dict[str, tuple[bytes, str, float]] = {}

        gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
        if gets:
            found = yield from self._get_many([self._key(op.namespace, op.key) for _, op in gets])
            for i, op in gets:
                full = self._key(op.namespace, op.key)
                if full in found:
                    raw, etag, doc = found[full]
                    results[i] = self._item(Item, op.namespace, op.key, doc)
                    if op.refresh_ttl and doc.ttl is not None:
                        refresh[full] = (raw, etag, doc.ttl)

        for i, op in enumerate(ops):
            if isinstance(op, SearchOp):
                results[i] = yield from self._search(op, refresh)
            elif isinstance(op, ListNamespacesOp):
                results[i] = yield from self._list_namespaces(op)

        if refresh:
            items = [
                p.SetItem(k, raw, content_type=JSON, ttl=ttl * 60, if_match=etag)
                for k, (raw, etag, ttl) in refresh.items()
            ]
            for chunk in chunks(items):
                # Not atomic: an item written meanwhile keeps its new value and TTL (412).
                yield p.storage_set_many(chunk)

        puts: dict[str, PutOp] = {}
        for op in ops:
            if isinstance(op, PutOp):
                full = self._key(op.namespace, op.key)
                puts.pop(full, None)
                puts[full] = op
        if puts:
            yield from self._write(puts)
        return results

    def _item(self, cls: type[Item], namespace: tuple[str, ...], key: str, doc: _Doc) -> Any:
        created = datetime.fromisoformat(doc.created_at)
        updated = datetime.fromisoformat(doc.updated_at)
        if cls is SearchItem:
            return SearchItem(namespace, key, doc.value, created, updated)
        return Item(
            value=doc.value, key=key, namespace=namespace, created_at=created, updated_at=updated
        )

    def _get_many(self, keys: list[str]) -> Plan[dict[str, tuple[bytes, str, _Doc]]]:
        found: dict[str, tuple[bytes, str, _Doc]] = {}
        for chunk in chunks(dict.fromkeys(keys)):
            answers: list[p.BatchValue] = yield p.storage_get_many(chunk)
            for r in answers:
                if r.status == 200 and r.value is not None:
                    doc = _Doc.parse(r.value)
                    if doc is not None:
                        found[r.key] = (r.value, r.etag or "", doc)
                elif r.status != 404:
                    raise_batch_error(r.key, r.status, r.code, r.error)
        return found

    def _search(
        self, op: SearchOp, refresh: dict[str, tuple[bytes, str, float]]
    ) -> Plan[list[SearchItem]]:
        prefix = self._ns_prefix(op.namespace_prefix)
        stop = None if op.filter else op.offset + op.limit
        matched: list[tuple[str, SearchItem, p.KvValueItem, _Doc]] = []
        cursor: str | None = None
        while stop is None or len(matched) < stop:
            page: p.KvValuePage = yield list_page(prefix, cursor, values=True)
            for entry in page.items:
                where = self._split(entry.key)
                doc = None if where is None else _Doc.parse(entry.value)
                if where is None or doc is None:
                    continue
                if op.filter and not all(
                    _matches(doc.value.get(k), v) for k, v in op.filter.items()
                ):
                    continue
                item = self._item(SearchItem, where[0], where[1], doc)
                matched.append((entry.key, item, entry, doc))
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        kept = matched[op.offset : op.offset + op.limit]
        if op.refresh_ttl:
            for full, _, entry, doc in kept:
                if doc.ttl is not None:
                    refresh[full] = (entry.value, entry.etag, doc.ttl)
        return [item for _, item, _, _ in kept]

    def _list_namespaces(self, op: ListNamespacesOp) -> Plan[list[tuple[str, ...]]]:
        # Only the keys under the literal head of a prefix condition need reading.
        head: tuple[str, ...] = ()
        for cond in op.match_conditions or ():
            if cond.match_type == "prefix":
                literal = []
                for label in cond.path:
                    if label == "*":
                        break
                    literal.append(label)
                if len(literal) > len(head):
                    head = tuple(literal)
        seen: set[tuple[str, ...]] = set()
        cursor: str | None = None
        while True:
            page: p.KvPage = yield list_page(self._ns_prefix(head), cursor, values=False)
            for entry in page.items:
                where = self._split(entry.key)
                if where is not None:
                    seen.add(where[0])
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        names = [
            ns for ns in seen if all(_condition_matches(c, ns) for c in op.match_conditions or ())
        ]
        if op.max_depth is not None:
            names = list({ns[: op.max_depth] for ns in names})
        return sorted(names)[op.offset : op.offset + op.limit]

    def _write(self, puts: dict[str, PutOp]) -> Plan[None]:
        now = datetime.now(UTC).isoformat()
        stores = {k: op for k, op in puts.items() if op.value is not None}
        deletes = [k for k, op in puts.items() if op.value is None]
        if stores:
            existing = yield from self._get_many(list(stores))
            items = []
            for full, op in stores.items():
                assert op.value is not None
                created = existing[full][2].created_at if full in existing else now
                ttl = op.ttl if isinstance(op.ttl, int | float) else None
                doc = _Doc(dict(op.value), created, now, ttl)
                seconds = ttl * 60 if ttl is not None else None
                items.append(p.SetItem(full, doc.dump(), content_type=JSON, ttl=seconds))
            for chunk in chunks(items):
                yield p.storage_set_many(chunk, atomic=True)
        for gone in chunks(deletes):
            done: p.BatchDeleted = yield p.storage_delete_many(gone)
            for r in done.results:
                if r.status not in (200, 404):
                    raise_batch_error(r.key, r.status, r.code, r.error)
        return None
