"""The fast paths (http/fast_path.py: KV get and set, batch get, memory add and get) answer
exactly what the Litestar handlers answer.

Two apps over one database: the default one, which serves those requests by the fast paths, and
one with an allow-all guard on the app, which turns them off (a guard is one of their blockers)
and so serves every request through Litestar's router and the controllers. The same requests,
odd ones included (encoded and invalid keys, paths Litestar normalises, odd Host headers, every
credential and conditional header, lenient queries and bodies, bodies cut short), go to both,
sent as raw ASGI scopes so that no client tidies them first. Writes go to a workspace of each
app's own, made alike. Every status, header (but the request id) and body byte must
be the same, and so must what the requests leave behind: the metrics (route labels, refusals,
auth failures), the auth-failure bound and the rate limit, which both apps reach in step.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import re
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

import memory_service.app as app_module
from memory_service.http.fast_path import blockers, fast_paths_of, route_handler
from memory_service.http.kv_batch_get import KvBatchGetFastPath
from memory_service.http.kv_get import KvGetFastPath
from memory_service.http.kv_set import KvSetFastPath
from memory_service.http.memory_add import MemoryAddFastPath
from memory_service.http.memory_get import MemoryGetFastPath
from tests.conftest import Api, make_api


async def allow(_connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    return None


@contextmanager
def guarded_litestar() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(app_module, "Litestar", functools.partial(Litestar, guards=[allow]))
        yield


def scope_of(
    raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]], method: str = "GET"
) -> dict:
    """The scope uvicorn (httptools) makes of such a request line and headers."""
    path = raw_path.decode("ascii")
    if "%" in path:
        path = urllib.parse.unquote(path)
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": headers,
        "state": {},
    }


async def answer(
    app: Litestar, scope: dict, received: list[dict] | None = None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """What `app` answers; `received`: the messages its receive() gives (an empty body)."""
    sent: list[dict] = []
    pending = list(received or [{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)  # as a server does: nothing more until the client sends
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *body = sent
    assert start["type"] == "http.response.start"
    headers = [(n, v) for n, v in start["headers"] if n != b"x-request-id"]
    return start["status"], headers, b"".join(m.get("body", b"") for m in body)


def counters(app: Litestar) -> dict[str, float]:
    """The metrics' counters (durations vary by nature; counts must not). Page reads count as
    one total: whether a page came from an app's read cache depends on what that app read
    before, not on the request."""
    text = app.state.services.metrics.exposition().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("memory_") and "duration" not in line and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            if name.startswith("memory_page_reads_total{"):
                name = "memory_page_reads_total"
            found[name] = found.get(name, 0.0) + float(value)
    return found


class Pair:
    """The fast app and the Litestar-only app, running, over one database."""

    def __init__(self, fast: tuple[Api, Litestar], slow: tuple[Api, Litestar]) -> None:
        (self.api, self.fast), (self.slow_api, self.slow) = fast, slow
        self.seen: list[int] = []
        self.counted: tuple[dict[str, float], dict[str, float]] | None = None

    async def same(
        self,
        raw_path: bytes,
        headers: list[tuple[bytes, bytes]],
        query: bytes = b"",
        get: bool = False,
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if self.counted is None:  # what the seeding left, before the first compared request
            self.counted = counters(self.fast), counters(self.slow)
        fast = await answer(self.fast, scope_of(raw_path, query, headers))
        slow = await answer(self.slow, scope_of(raw_path, query, headers))
        if get:  # memory answers carry sealed cursors: random by nature
            fast, slow = (a[:2] + (comparable(a[2]),) for a in (fast, slow))
        assert fast == slow, (raw_path, query, headers)
        self.seen.append(fast[0])
        return fast

    def assert_same_counts(self, route: str = 'route="/api/kv/{key}"') -> None:
        """The compared requests counted the same: by route and status, refusals, failures."""
        assert self.counted is not None
        deltas = []
        for app, before in zip((self.fast, self.slow), self.counted, strict=True):
            after = counters(app)
            deltas.append({k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k)})
        assert deltas[0] == deltas[1]
        assert any(route in name for name in deltas[0]), deltas[0]


async def make_pair(database_url: str, **overrides: object) -> Pair:
    api, fast = await make_api(database_url, **overrides)
    with guarded_litestar():
        slow_api, slow = await make_api(database_url, **overrides)
    assert {type(p) for p in fast_paths_of(fast)} == {
        KvBatchGetFastPath,
        KvGetFastPath,
        KvSetFastPath,
        MemoryAddFastPath,
        MemoryGetFastPath,
    }
    assert fast_paths_of(slow) == []
    for operation in ("kvGet", "kvSet", "memoryAdd", "memoryGet", "kvBatchGet"):
        assert blockers(slow, route_handler(slow, operation)) == ["guards"]
    return Pair((api, fast), (slow_api, slow))


KEYS = ["k", "text", "page", "ttl", "big", "ünï/κλειδί 🔑", "a/b/", "a%2Fb", "100%", " sp "]


async def seed(api: Api) -> dict[str, bytes]:
    """Workspaces and entries that both apps read; the credentials to read them with (every
    entry is at version 1, so `"1"` is a matching tag)."""
    c = api.client
    good = await api.workspace("fast-a")
    other = await api.workspace("fast-b")
    revoked = await api.workspace("fast-revoked")
    for key in (await c.get("/admin/workspaces/fast-revoked/keys", headers=api.admin)).json()[
        "keys"
    ]:
        assert (await c.delete(f"/admin/keys/{key['id']}", headers=api.admin)).status_code == 200
    gone = await api.workspace("fast-gone")
    assert (await c.delete("/admin/workspaces/fast-gone", headers=api.admin)).status_code == 200
    bodies = {
        "k": (b"\x00value\xff", "application/octet-stream", ""),
        "text": ("grüße".encode(), "text/plain; charset=utf-8", ""),
        "page": (b"<script>x</script>", "text/html", ""),
        "ttl": (b"soon", "application/json", "?ttl=3600"),
        "big": (bytes(range(256)) * 300, "application/octet-stream", ""),
        "ünï/κλειδί 🔑": (b"unicode", "text/plain", ""),
        "a/b/": (b"slash", "text/plain", ""),
        "a%2Fb": (b"percent", "text/plain", ""),
        "100%": (b"hundred", "text/plain", ""),
        " sp ": (b"spaces", "text/plain", ""),
    }
    for key, (body, content_type, query) in bodies.items():
        path = "/api/kv/" + urllib.parse.quote(key, safe="") + query
        r = await c.put(path, content=body, headers={**good, "Content-Type": content_type})
        assert r.status_code == 201, r.text
    r = await c.put("/api/kv/k", content=b"b's", headers=other)
    assert r.status_code == 201, r.text
    return {
        "good": good["Authorization"].encode(),
        "other": other["Authorization"].encode(),
        "revoked": revoked["Authorization"].encode(),
        "gone": gone["Authorization"].encode(),
    }


def paths() -> list[bytes]:
    quoted = [urllib.parse.quote(k, safe="").encode() for k in KEYS]
    odd = [
        b"missing",
        b"a/b",
        b"a/b//",
        b"a//b",
        b"%2F",
        b"%2F%2F",
        b"a%2Fb",
        b"a%252Fb",
        b"%ff",
        b"%c3%28",
        b"%00",
        b"%01key",
        b"x" * 513,
        b"%E2%80%8B",
        b"..",
        b"../k",
        b"k/..",
        b"%20sp%20",
        b"k?",
    ]
    return [b"/api/kv/" + p for p in quoted + odd] + [b"/api/kv/", b"/api/kv", b"/api/kv//"]


def header_sets(creds: dict[str, bytes]) -> list[list[tuple[bytes, bytes]]]:
    good = creds["good"]
    token = good.split(b" ", 1)[1]
    return [
        [],
        [(b"authorization", good)],
        [(b"authorization", good), (b"host", b"example.com:8080")],
        [(b"authorization", good), (b"host", b"[::1]:80")],
        [(b"authorization", good), (b"host", b"bad host")],
        [(b"authorization", good), (b"host", b"h\xc3\xa9")],
        [(b"authorization", good), (b"host", b"")],
        [(b"authorization", b"bearer " + token)],
        [(b"authorization", b"Bearer   " + token + b"  ")],
        [(b"authorization", b"Basic " + token)],
        [(b"authorization", b"Bearer ")],
        [(b"authorization", b"")],
        [(b"authorization", b""), (b"x-api-key", token)],
        [(b"x-api-key", token)],
        [(b"x-api-key", b"")],
        [(b"x-api-key", b"ms_wrong")],
        [(b"authorization", b"Bearer ms_wrong"), (b"x-api-key", token)],
        [(b"authorization", good), (b"authorization", b"Bearer ms_wrong")],
        [(b"authorization", b"Bearer ms_wrong"), (b"authorization", good)],
        [(b"authorization", creds["other"])],
        [(b"authorization", creds["revoked"])],
        [(b"authorization", creds["gone"])],
        [(b"authorization", b"Bearer \xff\xfe")],
        [(b"authorization", good), (b"if-none-match", b'"1"')],
        [(b"authorization", good), (b"if-none-match", b'W/"1"')],
        [(b"authorization", good), (b"if-none-match", b"*")],
        [(b"authorization", good), (b"if-none-match", b'"999"')],
        [(b"authorization", good), (b"if-none-match", b"")],
        [(b"authorization", good), (b"if-none-match", b"garbage")],
        [(b"authorization", good), (b"if-none-match", b'"1"'), (b"if-none-match", b'"2"')],
        [(b"authorization", good), (b"if-match", b'"1"')],
        [(b"authorization", good), (b"if-match", b'"999"')],
        [(b"authorization", good), (b"if-match", b'W/"1"')],
        [(b"authorization", good), (b"if-match", b"*")],
        [(b"authorization", good), (b"if-match", b"bad")],
        [(b"authorization", good), (b"if-match", b'"1"'), (b"if-none-match", b'"1"')],
        [(b"authorization", good), (b"x-request-id", b"client-id-1")],
    ]


QUERIES = [b"", b"x=1", b"%ff", b"ttl=1", b"a=%e2%82%ac"]


async def test_every_request_is_answered_alike(database_url: str) -> None:
    # A high failure bound first: every credential and path is compared before the bound.
    pair = await make_pair(database_url, auth_failure_burst=10_000)
    async with pair.api.client, pair.slow_api.client:
        creds = await seed(pair.api)
        for path in paths():
            for headers in header_sets(creds):
                for query in QUERIES if headers == [(b"authorization", creds["good"])] else [b""]:
                    await pair.same(path, headers, query)
        # The answers covered what they should: values, 304, 404, 400, 401, 412, the long way.
        assert {200, 304, 400, 401, 404, 412} <= set(pair.seen), sorted(set(pair.seen))
        ok = await pair.same(b"/api/kv/page", [(b"authorization", creds["good"])])
        assert (b"content-disposition", b"attachment") in ok[1]
        ttl = await pair.same(b"/api/kv/ttl", [(b"authorization", creds["good"])])
        assert any(name == b"x-expires-at" for name, _ in ttl[1])
        big = await pair.same(b"/api/kv/big", [(b"authorization", creds["good"])])
        assert big[0] == 200 and len(big[2]) == 256 * 300
        pair.assert_same_counts()


async def test_the_bounds_are_reached_in_step(database_url: str) -> None:
    """Wrong keys from one address reach the failure bound (429) on the same request in both
    apps, and a workspace's rate limit runs out on the same request too."""
    seeder, _ = await make_api(database_url)  # seeded apart: its writes charge no limit here
    async with seeder.client:
        creds = await seed(seeder)
    pair = await make_pair(
        database_url, auth_failure_burst=3, rate_limit_rps=0.001, rate_limit_burst=4
    )
    async with pair.api.client, pair.slow_api.client:
        good = [(b"authorization", creds["other"])]
        statuses = [(await pair.same(b"/api/kv/k", good))[0] for _ in range(6)]
        assert statuses[:4] == [200] * 4 and statuses[-1] == 429, statuses
        # (After this, the address's unverified keys are refused too: the good one is cached.)
        statuses = []
        for n in range(6):
            wrong = [(b"authorization", b"Bearer ms_wrong%d" % n)]
            statuses.append((await pair.same(b"/api/kv/k", wrong))[0])
        assert statuses[:3] == [401, 401, 401] and statuses[-1] == 429, statuses
        pair.assert_same_counts()


# Every path of up to three of these pieces after /api/kv/: slashes Litestar merges or strips,
# encodings of them, invalid and control bytes, dots.
PIECES = ["k", "a", "/", "//", "%2F", "%ff", "%00", "%25", "%20", "..", ".", "%C3%BC", "~", "%"]


async def test_every_short_path_is_answered_alike(sqlite_database_url: str) -> None:
    pair = await make_pair(sqlite_database_url)
    async with pair.api.client, pair.slow_api.client:
        creds = await seed(pair.api)
        await pair.api.client.put(
            "/api/kv/a%2Fk", content=b"x", headers={"Authorization": creds["good"].decode()}
        )
        good = [(b"authorization", creds["good"])]
        for n in range(4):
            for pieces in itertools.product(PIECES, repeat=n):
                await pair.same(b"/api/kv/" + "".join(pieces).encode(), good)
        assert {200, 400, 404} <= set(pair.seen), sorted(set(pair.seen))
        pair.assert_same_counts()


# --- POST /api/memory ------------------------------------------------------------------------


class WorkspacePair:
    """The fast app and the Litestar-only app over one database, each writing to a workspace of
    its own (made alike), so that both see the same memories and entries grow."""

    def __init__(self, pair: Pair, keys: tuple[bytes, bytes]) -> None:
        self.pair = pair
        self.keys = keys

    async def same(
        self,
        body: bytes | list[dict],
        headers: list[tuple[bytes, bytes]],
        length: bool = True,
        method: str = "POST",
        raw_path: bytes = b"/api/memory",
        query: bytes = b"",
    ) -> tuple[int, list[tuple[bytes, bytes]], object]:
        """`headers` may hold b"{key}", the app's own workspace key. `body`: the bytes, sent in
        one message with their Content-Length, or the messages themselves."""
        if self.pair.counted is None:
            self.pair.counted = counters(self.pair.fast), counters(self.pair.slow)
        answers = []
        for app, key in zip((self.pair.fast, self.pair.slow), self.keys, strict=True):
            sent = [(n, v.replace(b"{key}", key)) for n, v in headers]
            if isinstance(body, bytes):
                received = [{"type": "http.request", "body": body, "more_body": False}]
                if length:
                    sent.append((b"content-length", b"%d" % len(body)))
            else:
                received = body
            scope = scope_of(raw_path, query, sent, method=method)
            status, got, raw = await answer(app, scope, received)
            answers.append((status, got, comparable(raw)))
        assert answers[0] == answers[1], (method, raw_path, query, body[:100], headers)
        self.pair.seen.append(answers[0][0])
        return answers[0]


def comparable(raw: bytes) -> object:
    """The answer's JSON with what differs by nature between two adds made apart (the instant,
    a cursor's random nonce) replaced by what it is."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(body, dict) and isinstance(body.get("expiresAt"), str):
        body["expiresAt"] = "<time>" if TIME.fullmatch(body["expiresAt"]) else body["expiresAt"]
    if isinstance(body, dict) and body.get("nextCursor"):
        body["nextCursor"] = f"<cursor of {len(body['nextCursor'])}>"
    for result in body.get("results", []) if isinstance(body, dict) else []:
        if isinstance(result, dict) and isinstance(result.get("updatedAt"), str):
            result["updatedAt"] = (
                "<time>" if TIME.fullmatch(result["updatedAt"]) else "<not a time>"
            )
    for memory in body.get("memories", []) if isinstance(body, dict) else []:
        for name in ("createdAt", "updatedAt"):
            memory[name] = "<time>" if TIME.fullmatch(memory[name]) else memory[name]
        if memory.get("dataCursor"):
            memory["dataCursor"] = f"<cursor of {len(memory['dataCursor'])}>"
    return body


TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def add(**fields: object) -> bytes:
    return json.dumps(fields).encode()


ADD_BODIES = [
    add(conversationId="c1", role="user", content="hello"),
    add(conversationId="c1", role="assistant", content="hi there", lastN=5),
    add(conversationId="c1", blockId="b", blockName="notes", role="user", content="x"),
    add(id="c2", role="user", content="legacy id"),
    add(id="c2", conversationId="c3", role="user", content="ids disagree"),
    add(conversationId="c1", messages=[{"role": "system", "content": "s"}] * 3, keepSystem=True),
    add(conversationId="c1", messages=[]),
    add(conversationId="c1", role="user", content="both", messages=[{"role": "u", "content": "m"}]),
    add(conversationId="c1", role="user", content="lenient lastN", lastN="3"),
    add(conversationId="c1", role="user", content="float lastN", lastN=2.0),
    add(conversationId="c1", role="user", content="negative", lastN=-1),
    add(conversationId="c1", role="user", content="huge", lastN=10**30),
    add(conversationId="c1", role="user", content="unknown field", extra=1),
    add(conversationId="c1", role="user"),
    add(conversationId="c1", role="user", content=5),
    add(conversationId="c1", messages=[{"role": "user"}]),
    add(conversationId="", role="user", content="empty id"),
    add(conversationId="\u0001", role="user", content="control"),
    add(conversationId="c" * 300, role="user", content="long id"),
    add(role="user", content="no id"),
    add(conversationId="c4", role="user", content="ü🔑\u0000"),
    b'{"conversationId": "c1", "role": "user", "content": "dup", "content": "last"}',
    b'{"conversationId": "c1", "role": "user", "content": "\\ud800 lone"}',
    b'{"conversationId": "c1", "role": "user", "content": "\xff\xfe"}',
    b"",
    b"null",
    b"[]",
    b"{",
    b"not json",
    b"[" * 5000 + b"]" * 5000,
    add(conversationId="c1", role="user", content="x" * 100_000),
]


async def test_every_add_is_answered_alike(database_url: str) -> None:
    pair = await make_pair(database_url, auth_failure_burst=10_000)
    async with pair.api.client, pair.slow_api.client:
        keys = []
        for name in ("add-fast", "add-slow"):
            keys.append((await pair.api.workspace(name, quota=150_000))["Authorization"].encode())
        adds = WorkspacePair(pair, (keys[0], keys[1]))
        key = (b"authorization", b"{key}")
        good = [key, (b"content-type", b"application/json")]
        for body in ADD_BODIES:
            await adds.same(body, good)
        one = ADD_BODIES[0]
        for headers in [
            [],
            [(b"authorization", b"Bearer ms_wrong")],
            [(b"x-api-key", b"ms_wrong")],
            [key, (b"content-type", b"text/plain")],
            [key, (b"host", b"bad host")],
            [key, (b"idempotency-key", b"k1")],
            [key, (b"idempotency-key", b"k1")],  # a replay
            [
                (b"authorization", b"{key}"),
                (b"idempotency-key", b"k1"),
                (b"idempotency-key", b"k2"),
            ],
            [
                (b"authorization", b"{key}"),
                (b"idempotency-key", b"k2"),
                (b"idempotency-key", b"k1"),
            ],
            [key, (b"idempotency-key", b"")],
            [key, (b"idempotency-key", b"caf\xe9")],
            [key, (b"idempotency-key", b"k" * 256)],
            [key, (b"content-length", b"999999999")],
            [key, (b"content-length", b"abc")],
            [key, (b"transfer-encoding", b"chunked")],
        ]:
            await adds.same(one, headers)
        # The same key with another body: 409.
        await adds.same(ADD_BODIES[1], [key, (b"idempotency-key", b"k1")])
        # No Content-Length (chunked), a body in pieces, a client that leaves mid-body.
        await adds.same(one, [key], length=False)
        pieces = [
            {"type": "http.request", "body": one[:10], "more_body": True},
            {"type": "http.request", "body": one[10:], "more_body": False},
        ]
        await adds.same(pieces, [key, (b"content-length", b"%d" % len(one))])
        left = [
            {"type": "http.request", "body": one[:10], "more_body": True},
            {"type": "http.disconnect"},
        ]
        await adds.same(left, [key, (b"content-length", b"%d" % len(one))])
        assert {200, 400, 401, 409, 413} <= set(pair.seen), sorted(set(pair.seen))
        pair.assert_same_counts(route='route="/api/memory"')
        # Both workspaces hold the same memories now.
        reads = []
        for key in keys:
            r = await pair.api.client.get(
                "/api/memory/all", headers={"Authorization": key.decode()}
            )
            reads.append(comparable(r.content))
        assert reads[0] == reads[1]


# --- GET /api/memory -------------------------------------------------------------------------

GET_QUERIES = [
    b"conversationId=c1",
    b"conversationId=c1&lastN=20",
    b"conversationId=c1&lastN=0",
    b"conversationId=c1&lastN=3&keepSystem=true",
    b"conversationId=c1&lastN=3&keepSystem=false",
    b"conversationId=c1&lastN=3&keepSystem=1",
    b"conversationId=c1&lastN=3&keepSystem=yes",
    b"conversationId=c1&lastN=3&keepSystem=True",
    b"conversationId=c1&lastN=3&keepSystem=",
    b"conversationId=c1&lastN=007",
    b"conversationId=c1&lastN=-1",
    b"conversationId=c1&lastN=1001",
    b"conversationId=c1&lastN=99999999999",
    b"conversationId=c1&lastN=abc",
    b"conversationId=c1&lastN=",
    b"conversationId=c1&lastN=2.0",
    b"conversationId=c1&limit=1",
    b"conversationId=c1&limit=0",
    b"conversationId=c1&limit=1001",
    b"conversationId=c1&limit=x",
    b"conversationId=c1&conversationId=c2",
    b"conversationId=c1&lastN=1&lastN=2",
    b"conversationId=",
    b"conversationId",
    b"conversationId=%ff",
    b"conversationId=a+b",
    b"conversationId=a%20b",
    b"conversationId=%C3%BC%F0%9F%94%91",
    b"conversationId=%01",
    b"id=c1",
    b"id=c1&conversationId=c1",
    b"id=c1&conversationId=c2",
    b"blockName=notes",
    b"blockName=notes&lastN=2",
    b"blockName=none",
    b"blockId=b",
    b"blockId=b&lastN=1",
    b"conversationId=big",
    b"conversationId=big&lastN=5",
    b"cursor=garbage",
    b"conversationId=c1&cursor=",
    b"",
    b"unknown=1",
    b"conversationId=c1&unknown=1",
    b"conversationId=c1;lastN=2",
    b"conversationId=c1&&lastN=2",
    b"&conversationId=c1",
    b"conversationId=c1#frag",
]


async def test_every_memory_get_is_answered_alike(database_url: str) -> None:
    pair = await make_pair(database_url, auth_failure_burst=10_000)
    async with pair.api.client, pair.slow_api.client:
        c = pair.api.client
        good = await pair.api.workspace("get-a")
        other = await pair.api.workspace("get-b")
        adds = [
            {"conversationId": "c1", "messages": [{"role": "system", "content": "be brief"}]},
            {
                "conversationId": "c1",
                "messages": [{"role": "user", "content": f"m{i}"} for i in range(8)],
            },
            {
                "conversationId": "c1",
                "blockId": "b",
                "blockName": "notes",
                "role": "user",
                "content": "n",
            },
            {"conversationId": "c2", "blockId": "b", "role": "assistant", "content": "c2"},
            {"conversationId": "a b", "role": "user", "content": "space"},
            {"conversationId": "ü🔑", "role": "user", "content": "unicode"},
            {"conversationId": "big", "messages": [{"role": "user", "content": "x"}] * 1000},
            {"conversationId": "big", "messages": [{"role": "user", "content": "y"}] * 200},
        ]
        for body in adds:
            assert (await c.post("/api/memory", json=body, headers=good)).status_code == 200
        assert (await c.post("/api/memory", json=adds[0], headers=other)).status_code == 200
        token = good["Authorization"].encode()
        page = await c.get("/api/memory?conversationId=c1&limit=1", headers=good)
        next_cursor = page.json()["nextCursor"].encode()
        queries = [*GET_QUERIES, b"conversationId=c1&limit=1&cursor=" + next_cursor]
        for query in queries:
            await pair.same(b"/api/memory", [(b"authorization", token)], query, get=True)
        for headers in [
            [],
            [(b"authorization", b"Bearer ms_wrong")],
            [(b"x-api-key", token.split(b" ")[1])],
            [(b"authorization", other["Authorization"].encode())],
            [(b"authorization", token), (b"host", b"bad host")],
        ]:
            await pair.same(b"/api/memory", headers, b"conversationId=c1&lastN=20", get=True)
        for path in [b"/api/memory/", b"/api/memory//", b"/api/memory/all"]:
            await pair.same(path, [(b"authorization", token)], b"lastN=2", get=True)
        assert {200, 400, 401} <= set(pair.seen), sorted(set(pair.seen))
        pair.assert_same_counts(route='route="/api/memory"')


# --- PUT /api/kv/{key} ------------------------------------------------------------------------

SET_PATHS = [b"k", b"%C3%BC%2F%F0%9F%94%91", b"a%2Fb", b"%ff", b"%01", b"k/", b"a//b", b"x" * 513]
SET_QUERIES = [
    b"",
    b"ttl=10",
    b"ttl=0",
    b"ttl=1.5",
    b"ttl=0.0001",
    b"ttl=-1",
    b"ttl=abc",
    b"ttl=1e3",
    b"ttl=",
    b"ttl=10&ttl=20",
    b"ttl=999999999999",
    b"contentType=text/plain",
    b"contentType=",
    b"contentType=bad%20type",
    b"contentType=text/html&ttl=5",
    b"unknown=1",
]


async def test_every_kv_set_is_answered_alike(database_url: str) -> None:
    # A small value limit: the service's 413 (within Litestar's body limit) and Litestar's own.
    pair = await make_pair(database_url, auth_failure_burst=10_000, max_value_bytes=100_000)
    async with pair.api.client, pair.slow_api.client:
        keys = []
        for name in ("set-fast", "set-slow"):
            keys.append((await pair.api.workspace(name, quota=400_000))["Authorization"].encode())
        sets = WorkspacePair(pair, (keys[0], keys[1]))
        key = (b"authorization", b"{key}")

        async def put(path: bytes, body: bytes, headers: list, query: bytes = b"", **kw: object):
            return await sets.same(
                body, headers, method="PUT", raw_path=b"/api/kv/" + path, query=query, **kw
            )

        for path in SET_PATHS:
            await put(path, b"v", [key])
        for query in SET_QUERIES:
            await put(b"q", b"value", [key, (b"content-type", b"text/plain")], query)
        for body in [b"", b"\x00\xff", bytes(1000), bytes(100_000), bytes(100_001), bytes(170_000)]:
            await put(b"sized", body, [key])
        for headers in [
            [],
            [(b"authorization", b"Bearer ms_wrong")],
            [(b"x-api-key", b"ms_wrong")],
            [key, (b"content-type", b"text/html")],
            [key, (b"content-type", b"text/plain; charset=utf-8")],
            [key, (b"content-type", b"bad type")],
            [key, (b"content-type", b"")],
            [key, (b"content-type", b"a/b"), (b"content-type", b"c/d")],
            [key, (b"if-match", b'"1"')],
            [key, (b"if-match", b'"999"')],
            [key, (b"if-match", b"*")],
            [key, (b"if-none-match", b"*")],
            [key, (b"if-none-match", b'"999"')],
            [key, (b"if-none-match", b"bad")],
            [key, (b"if-match", b'"2"'), (b"if-match", b'"999"')],
            [key, (b"host", b"bad host")],
            [key, (b"expect", b"100-continue")],
            [key, (b"transfer-encoding", b"chunked")],
            [key, (b"content-length", b"abc")],
        ]:
            await put(b"cond", b"data", headers)
        await put(b"cond", b"data", [key], length=False)
        pieces = [
            {"type": "http.request", "body": b"da", "more_body": True},
            {"type": "http.request", "body": b"ta", "more_body": False},
        ]
        await put(b"cond", pieces, [key, (b"content-length", b"4")])
        left = [
            {"type": "http.request", "body": b"da", "more_body": True},
            {"type": "http.disconnect"},
        ]
        await put(b"cond", left, [key, (b"content-length", b"4")])
        assert {200, 201, 400, 401, 412, 413} <= set(pair.seen), sorted(set(pair.seen))
        pair.assert_same_counts(route='route="/api/kv/{key}"')
        # Both workspaces hold the same entries now.
        lists = []
        for k in keys:
            r = await pair.api.client.get(
                "/api/kv?limit=1000", headers={"Authorization": k.decode()}
            )
            lists.append([(i["key"], i["size"], i["version"]) for i in r.json()["items"]])
        assert lists[0] == lists[1] and len(lists[0]) >= 5


# --- POST /api/kv-batch/get ----------------------------------------------------------------------

BATCH_BODIES = [
    json.dumps({"keys": ["k", "missing", "ünï/κλειδί 🔑", "big", "ttl"]}).encode(),
    json.dumps({"keys": []}).encode(),
    json.dumps({"keys": ["k", "k"]}).encode(),
    json.dumps({"keys": ["", "k"]}).encode(),
    json.dumps({"keys": ["a\u0001"]}).encode(),
    json.dumps({"keys": ["x" * 513]}).encode(),
    json.dumps({"keys": [f"k{i}" for i in range(1001)]}).encode(),
    json.dumps({"keys": "k"}).encode(),
    json.dumps({"keys": [1]}).encode(),
    json.dumps({"keys": ["k"], "extra": 1}).encode(),
    # A member given twice: a 400 duplicate_member, whichever value would win.
    b'{"keys": ["k"], "keys": ["big"]}',
    b'{"keys": ["k"], "keys": ["k"]}',
    b'{"keys": ["\\ud800"]}',
    b'{"keys": ["\xff"]}',
    b"",
    b"null",
    b"{",
    b"[" * 5000 + b"]" * 5000,
]


async def test_every_batch_get_is_answered_alike(database_url: str) -> None:
    pair = await make_pair(database_url, auth_failure_burst=10_000)
    async with pair.api.client, pair.slow_api.client:
        keys = []
        for name in ("batch-fast", "batch-slow"):
            h = await pair.api.workspace(name)
            for key, value in [("k", b"\x00v"), ("ünï/κλειδί 🔑", b"u"), ("big", b"b" * 100_000)]:
                path = "/api/kv/" + urllib.parse.quote(key, safe="")
                assert (
                    await pair.api.client.put(path, content=value, headers=h)
                ).status_code == 201
            keys.append(h["Authorization"].encode())
        batches = WorkspacePair(pair, (keys[0], keys[1]))
        key = (b"authorization", b"{key}")
        good = [key, (b"content-type", b"application/json")]
        path = b"/api/kv-batch/get"
        codes = []
        for body in BATCH_BODIES:
            status, _, got = await batches.same(body, good, raw_path=path)
            codes.append((status, got.get("code") if isinstance(got, dict) else None))
        assert codes[10] == codes[11] == (400, "duplicate_member"), codes
        one = BATCH_BODIES[0]
        refusals = []
        for headers in [
            [],
            [(b"authorization", b"Bearer ms_wrong")],
            [(b"x-api-key", b"{key}")],
            [key, (b"x-api-key", b"{key}")],
            [key, (b"authorization", b"{key}")],
            [key, (b"content-encoding", b"gzip")],
            [key, (b"content-encoding", b"identity")],
            [key, (b"content-encoding", b"gzip"), (b"content-encoding", b"br")],
            [(b"authorization", b"Bearer ms_wrong"), (b"content-encoding", b"gzip")],
            [key, (b"content-type", b"text/plain")],
            [key, (b"host", b"bad host")],
            [key, (b"content-length", b"999999999")],
            [key, (b"content-length", b"abc")],
            [key, (b"transfer-encoding", b"chunked")],
            [key, (b"expect", b"100-continue")],
        ]:
            status, _, got = await batches.same(one, headers, raw_path=path)
            refusals.append((status, got.get("code") if isinstance(got, dict) else None))
        assert refusals[3] == refusals[4] == (400, "ambiguous_credentials"), refusals
        assert refusals[5] == (415, "unsupported_content_encoding"), refusals
        assert refusals[6][0] == 200, refusals
        assert refusals[8][0] == 401, refusals
        await batches.same(one, [key], length=False, raw_path=path)
        pieces = [
            {"type": "http.request", "body": one[:10], "more_body": True},
            {"type": "http.request", "body": one[10:], "more_body": False},
        ]
        await batches.same(pieces, [key, (b"content-length", b"%d" % len(one))], raw_path=path)
        left = [
            {"type": "http.request", "body": one[:10], "more_body": True},
            {"type": "http.disconnect"},
        ]
        await batches.same(left, [key, (b"content-length", b"%d" % len(one))], raw_path=path)
        assert {200, 400, 401, 415} <= set(pair.seen), sorted(set(pair.seen))
        pair.assert_same_counts(route='route="/api/kv-batch/get"')
