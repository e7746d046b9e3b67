"""The LangGraph store adapter against a live server on SQLite and PostgreSQL. LangGraph ships no
reusable suite for stores (langgraph-checkpoint-conformance, its only conformance package,
covers checkpointers; its own store tests are not packaged), so each op is tested here:
get/put/delete, search by namespace prefix with filters and limit/offset, list_namespaces with
prefix/suffix/wildcards/max_depth, TTL, exact namespaces whatever their characters, one request
per batch, and the async twins."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    PutOp,
    SearchOp,
)

from memory_service.client import AsyncMemoryServiceClient, MemoryServiceClient
from memory_service.client.adapters.langgraph import MemoryServiceStore
from tests.support.live import new_workspace
from tests.support.server import LiveServer


class Counting(httpx.Client):
    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.paths: list[str] = []

    def send(self, request: httpx.Request, **kw: object) -> httpx.Response:  # type: ignore[override]
        self.paths.append(request.url.path)
        return super().send(request, **kw)  # type: ignore[arg-type]


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[MemoryServiceClient]:
    http = Counting(base_url=live_server.url, timeout=30)
    with MemoryServiceClient(live_server.url, new_workspace(live_server), http=http) as c:
        yield c
    http.close()


@pytest.fixture
def store(client: MemoryServiceClient) -> MemoryServiceStore:
    return MemoryServiceStore(client)


def paths(client: MemoryServiceClient) -> list[str]:
    http = client._http
    assert isinstance(http, Counting)
    out, http.paths = http.paths, []
    return out


def test_put_get_update_delete(store: MemoryServiceStore) -> None:
    assert store.get(("users", "ada"), "prefs") is None
    store.put(("users", "ada"), "prefs", {"theme": "dark", "n": [1, {"x": None}]})
    first = store.get(("users", "ada"), "prefs")
    assert isinstance(first, Item)
    assert (first.namespace, first.key, first.value) == (
        ("users", "ada"),
        "prefs",
        {"theme": "dark", "n": [1, {"x": None}]},
    )
    assert first.created_at == first.updated_at
    time.sleep(0.01)
    store.put(("users", "ada"), "prefs", {"theme": "light"})
    second = store.get(("users", "ada"), "prefs")
    assert second is not None
    assert second.value == {"theme": "light"}
    assert second.created_at == first.created_at  # kept across updates
    assert second.updated_at > first.updated_at
    store.delete(("users", "ada"), "prefs")
    assert store.get(("users", "ada"), "prefs") is None
    store.delete(("users", "ada"), "prefs")  # deleting a missing item is no error


def test_namespaces_are_exact(store: MemoryServiceStore, client: MemoryServiceClient) -> None:
    odd = [("a/b",), ("a", "b"), ("100%",), ("100%25",), ("x:y",), ("x", ":y"), ("ünï 🔑", "\t")]
    for i, ns in enumerate(odd):
        store.put(ns, "k", {"i": i})
        store.put(ns, "k/:%\n", {"i": -i})
    for i, ns in enumerate(odd):
        got = store.get(ns, "k")
        assert got is not None and got.value == {"i": i} and got.namespace == ns
        tricky = store.get(ns, "k/:%\n")
        assert tricky is not None and tricky.value == {"i": -i} and tricky.key == "k/:%\n"
    assert sorted(store.list_namespaces()) == sorted(odd)
    assert [(it.namespace, it.key) for it in store.search(("a",))] == [
        (("a", "b"), "k"),
        (("a", "b"), "k/:%\n"),
    ]
    assert {it.namespace for it in store.search(("x",))} == {("x", ":y")}
    assert store.search(("100",)) == []
    # Keys and values another writer left under the root are not items (and break nothing).
    client.storage.set("langgraph-store/not-an-item", b"{")
    client.storage.set("langgraph-store/a/:not-json", b"\xff{")
    client.storage.set("langgraph-store/a/:not-a-doc", b'{"value": 1}')
    client.storage.set("langgraph-store/%FF/:bad-escape", b"{}")
    assert len(store.search((), limit=100)) == 2 * len(odd)
    assert store.get(("a",), "not-json") is None and store.get(("a",), "not-a-doc") is None


def test_labels_langgraph_refuses(store: MemoryServiceStore) -> None:
    for bad in [("a.b",), ("",), ("a\x00",)]:
        with pytest.raises(InvalidNamespaceError):
            store.batch([PutOp(bad, "k", {"v": 1})])
        with pytest.raises(InvalidNamespaceError):
            store.batch([GetOp(bad, "k")])
    with pytest.raises(InvalidNamespaceError):
        store.batch([PutOp((), "k", {"v": 1})])
    assert store.search(()) == []


def test_search_prefix_filter_limit_offset(store: MemoryServiceStore) -> None:
    for i in range(30):
        store.put(
            ("docs", "team" if i % 2 else "me"),
            f"d{i:02}",
            {
                "n": i,
                "kind": "note" if i % 3 else "todo",
                "meta": {"lang": "en" if i < 20 else "fr"},
            },
        )
    store.put(("docsx",), "other", {"n": 1, "kind": "note"})
    every = store.search(("docs",), limit=100)
    assert len(every) == 30
    assert {it.namespace for it in every} == {("docs", "me"), ("docs", "team")}
    assert all(it.score is None for it in every)
    assert len(store.search(("docs", "me"), limit=100)) == 15
    todos = store.search(("docs",), filter={"kind": "todo"}, limit=100)
    assert sorted(it.value["n"] for it in todos) == list(range(0, 30, 3))
    nested = store.search(("docs",), filter={"meta": {"lang": "fr"}, "kind": "note"}, limit=100)
    assert sorted(it.value["n"] for it in nested) == [i for i in range(20, 30) if i % 3]
    ranged = store.search(("docs",), filter={"n": {"$gte": 10, "$lt": 13}}, limit=100)
    assert sorted(it.value["n"] for it in ranged) == [10, 11, 12]
    ne = store.search(("docs", "me"), filter={"kind": {"$ne": "note"}}, limit=100)
    assert sorted(it.value["n"] for it in ne) == [0, 6, 12, 18, 24]
    # limit/offset page through the same order without gaps or repeats.
    pages = [store.search(("docs",), limit=7, offset=o) for o in range(0, 35, 7)]
    assert [len(pg) for pg in pages] == [7, 7, 7, 7, 2]
    keys = [it.key for pg in pages for it in pg]
    assert sorted(keys) == sorted(f"d{i:02}" for i in range(30)) and len(set(keys)) == 30
    assert keys == [it.key for it in every]
    filtered_page = store.search(("docs",), filter={"kind": "note"}, limit=5, offset=15)
    assert [it.key for it in filtered_page] == [
        it.key for it in store.search(("docs",), filter={"kind": "note"}, limit=100)
    ][15:20]
    # A query without a vector index is ignored, as LangGraph's InMemoryStore does.
    assert len(store.search(("docs",), query="anything", limit=3)) == 3
    with pytest.raises(ValueError, match="unsupported filter operator"):
        store.search(("docs",), filter={"n": {"$regex": "x"}})


def test_list_namespaces(store: MemoryServiceStore) -> None:
    names = [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("a", "x"),
        ("b", "b", "v1"),
        ("c", "v1"),
        ("a",),
    ]
    for ns in names:
        store.put(ns, "k", {"v": 1})
        store.put(ns, "k2", {"v": 2})
    assert store.list_namespaces() == sorted(names)
    assert store.list_namespaces(prefix=("a",)) == [
        ("a",),
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("a", "x"),
    ]
    assert store.list_namespaces(prefix=("a", "b")) == [("a", "b", "c"), ("a", "b", "d")]
    assert store.list_namespaces(suffix=("v1",)) == [("b", "b", "v1"), ("c", "v1")]
    assert store.list_namespaces(prefix=("*", "b")) == [
        ("a", "b", "c"),
        ("a", "b", "d"),
        ("b", "b", "v1"),
    ]
    assert store.list_namespaces(prefix=("a",), suffix=("*", "d")) == [("a", "b", "d")]
    assert store.list_namespaces(max_depth=1) == [("a",), ("b",), ("c",)]
    assert store.list_namespaces(prefix=("a",), max_depth=2) == [("a",), ("a", "b"), ("a", "x")]
    assert store.list_namespaces(limit=2, offset=1) == sorted(names)[1:3]
    store.delete(("a", "x"), "k")
    store.delete(("a", "x"), "k2")
    assert ("a", "x") not in store.list_namespaces()


def test_batch_is_one_request_per_kind(
    store: MemoryServiceStore, client: MemoryServiceClient
) -> None:
    ops = [PutOp(("ns", str(i % 3)), f"k{i}", {"i": i}) for i in range(1200)]
    assert store.batch(ops) == [None] * 1200
    # One read of what exists (created_at), then the sets: 1,000 + 200 keys.
    assert paths(client) == ["/api/kv-batch/get", "/api/kv-batch/get"] + ["/api/kv-batch/set"] * 2
    gets = [GetOp(("ns", str(i % 3)), f"k{i}") for i in range(0, 900, 2)] + [GetOp(("ns",), "no")]
    results = store.batch(gets)
    assert paths(client) == ["/api/kv-batch/get"]
    assert [r.value["i"] if isinstance(r, Item) else r for r in results] == list(
        range(0, 900, 2)
    ) + [None]
    # Reads see the store before the batch's writes; the last put on a key wins.
    mixed = store.batch(
        [
            PutOp(("ns", "0"), "k0", {"i": "new"}),
            GetOp(("ns", "0"), "k0"),
            PutOp(("ns", "0"), "k0", {"i": "newer"}),
            PutOp(("ns", "1"), "k1", None),
            SearchOp(("ns", "2"), limit=2),
            ListNamespacesOp(max_depth=2),
        ]
    )
    assert isinstance(mixed[1], Item) and mixed[1].value == {"i": 0}
    assert isinstance(mixed[4], list) and len(mixed[4]) == 2
    assert mixed[5] == [("ns", "0"), ("ns", "1"), ("ns", "2")]
    got = store.get(("ns", "0"), "k0")
    assert got is not None and got.value == {"i": "newer"}
    assert store.get(("ns", "1"), "k1") is None


def test_ttl(live_server: LiveServer) -> None:
    assert MemoryServiceStore.supports_ttl
    with MemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
        store = MemoryServiceStore(client, ttl={"default_ttl": 1.5 / 60})
        store.put(("t",), "short", {"v": 1}, ttl=1.5 / 60)  # 1.5 s
        store.put(("t",), "default", {"v": 2})  # the store's default: 1.5 s
        store.put(("t",), "forever", {"v": 3}, ttl=None)
        entry = client.storage.get_entry("langgraph-store/t/:short")
        assert entry.expires_at is not None
        assert client.storage.get_entry("langgraph-store/t/:forever").expires_at is None
        time.sleep(0.8)
        # A read that refreshes restarts "short"; one that does not leaves "default" running.
        assert store.get(("t",), "short") is not None
        assert store.get(("t",), "default", refresh_ttl=False) is not None
        time.sleep(0.9)
        assert store.get(("t",), "short", refresh_ttl=False) is not None
        assert store.get(("t",), "default") is None
        assert store.search(("t",), refresh_ttl=False) != []
        time.sleep(1.6)
        assert store.get(("t",), "short") is None
        assert [it.key for it in store.search(("t",))] == ["forever"]
        assert store.list_namespaces() == [("t",)]


async def test_async_twins(live_server: LiveServer) -> None:
    async with AsyncMemoryServiceClient(live_server.url, new_workspace(live_server)) as client:
        store = MemoryServiceStore(async_client=client)
        await store.aput(("u", "1"), "a", {"x": 1})
        await store.aput(("u", "2"), "b", {"x": 2})
        got = await store.aget(("u", "1"), "a")
        assert got is not None and got.value == {"x": 1}
        found = await store.asearch(("u",), filter={"x": {"$gt": 1}})
        assert [(it.namespace, it.key) for it in found] == [(("u", "2"), "b")]
        assert await store.alist_namespaces(prefix=("u",)) == [("u", "1"), ("u", "2")]
        await store.adelete(("u", "1"), "a")
        assert await store.aget(("u", "1"), "a") is None
        with pytest.raises(TypeError, match="no sync client"):
            store.get(("u",), "a")


def test_filter_semantics(store: MemoryServiceStore) -> None:
    """LangGraph's documented filter semantics (its InMemoryStore's): a bare value or a nested
    object is an exact match, a list matches an equal list, `$eq`/`$ne`/`$gt`/`$gte`/`$lt`/
    `$lte` compare, several conditions all hold; a field that is missing or not a number never
    satisfies a comparison (InMemoryStore raises TypeError there)."""
    docs = {
        "a": {"score": 5, "tags": ["x", "y"], "who": {"name": "ada", "age": 36}},
        "b": {"score": 4.5, "tags": ["y", "x"], "who": {"name": "bob", "age": 36}},
        "c": {"score": "high", "tags": ["x", "y", "z"]},
        "d": {"tags": ["x", "y"], "flag": True},
        "e": {"score": 5.0, "who": {"name": "ada"}},
    }
    for key, value in docs.items():
        store.put(("f",), key, value)

    def keys(flt: dict[str, object]) -> list[str]:
        return [it.key for it in store.search(("f",), filter=flt, limit=100)]

    assert keys({"tags": ["x", "y"]}) == ["a", "d"]
    assert keys({"who": {"name": "ada"}}) == ["a", "e"]
    assert keys({"who": {"name": "ada", "age": 36}}) == ["a"]
    assert keys({"score": 5}) == ["a", "e"]  # 5 == 5.0, as in Python and JSONB
    assert keys({"score": {"$eq": "high"}}) == ["c"]
    assert keys({"score": {"$ne": 5}}) == ["b", "c", "d"]
    assert keys({"score": {"$gt": 4.5}}) == ["a", "e"]
    assert keys({"score": {"$gte": 4.5, "$lt": 5}}) == ["b"]
    assert keys({"score": {"$lte": 100}, "tags": ["x", "y"]}) == ["a"]
    assert keys({"flag": True}) == ["d"]
    assert keys({"missing": None}) == ["a", "b", "c", "d", "e"]  # a missing field is None
    assert keys({"nope": 1}) == []
