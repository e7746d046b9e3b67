"""The hostile corpus (issue 20, "Must show"): hundreds of hand-crafted raw requests against a
real `memory-service serve` process, on SQLite and PostgreSQL, each on its own TCP connection.

For every entry: an answer or a close within 10 s (never a hung connection), never a 5xx, every
4xx with a body is the error envelope, no stack trace anywhere. Afterwards the victim workspace
(whose key sends the reads and the writes that must be refused) is exactly as it was; entries
that may write address a scratch workspace. The entries run concurrently, once per server, in
the `corpus` fixture; each is then a test of its own, so a regression names its entry.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.hostile_corpus import (
    Context,
    Entry,
    Outcome,
    app_routes,
    build,
    send,
    violations,
)
from tests.support.live import ADMIN, new_workspace
from tests.support.server import LiveServer

# A head not complete within 5 s is a 408 (the default, 30 s, is past the corpus's 10 s ceiling).
LIVE_SERVER_ENV = {"MEMORY_HEADER_TIMEOUT_SECONDS": "5", "MEMORY_BODY_TIMEOUT_SECONDS": "5"}
ADMIN_TOKEN = ADMIN["Authorization"].removeprefix("Bearer ")
DOOMED = "corpus-doomed"
MIN_ENTRIES = 200
MIN_PER_ROUTE = 8
CONCURRENCY = 48

# Built once at collection, with stand-in keys (ids, marks and counts do not depend on them).
COLLECTED = build(Context("msk_victim", "msk_scratch", DOOMED, ADMIN_TOKEN))


def _param(entry: Entry) -> Any:
    return pytest.param(entry.id, id=entry.id)


@dataclass
class Run:
    outcomes: dict[str, Outcome]
    entries: dict[str, Entry]
    before: dict[str, Any]
    after: dict[str, Any]


def _pages(server: LiveServer, path: str, headers: dict[str, str], item: str) -> list[Any]:
    out: list[Any] = []
    params: dict[str, str] = {"limit": "1000"}
    while True:
        r = httpx.get(f"{server.url}{path}", params=params, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body[item]
        if not body.get("nextCursor"):
            return out
        params["cursor"] = body["nextCursor"]


def snapshot(server: LiveServer, key: str, workspace: str) -> dict[str, Any]:
    """All a workspace holds: every KV entry with its value and headers, every memory, the block
    registry, usage, and its admin record."""
    h = {"Authorization": f"Bearer {key}"}
    kv = {}
    for item in _pages(server, "/api/kv", h, "items"):
        name = item["key"]
        r = httpx.get(f"{server.url}/api/kv/{quote(name, safe='')}", headers=h, timeout=30)
        kv[name] = (r.status_code, r.content, r.headers.get("etag"), r.headers.get("content-type"))
    usage = httpx.get(f"{server.url}/api/usage", headers=h, timeout=30).json()
    admin = httpx.get(f"{server.url}/admin/workspaces/{workspace}", headers=ADMIN, timeout=30)
    return {
        "kv": kv,
        "memories": _pages(server, "/api/memory/all", h, "memories"),
        "blocks": _pages(server, "/api/memory/blocks", h, "blocks"),
        "usage": usage,
        "admin": admin.json(),
    }


def seed(server: LiveServer, key: str) -> None:
    h = {"Authorization": f"Bearer {key}"}
    for name, value, ctype in (
        ("plain", b"hello", "text/plain"),
        ("binary", bytes(range(256)), "application/octet-stream"),
        ("x", b"the key finding 1 aims at", "text/plain"),
        ("corpus-key", b"the key every KV route entry addresses", "text/plain"),
        ("encoded", b"finding 3 aims here", "text/plain"),
        ("pipelined", b"not the scratch one", "text/plain"),
    ):
        r = httpx.put(
            f"{server.url}/api/kv/{name}", content=value, headers={**h, "Content-Type": ctype}
        )
        assert r.status_code == 201, r.text
    for conv, block, content in (("c", "default", "one"), ("corpus-c", "corpus-block", "two")):
        r = httpx.post(
            f"{server.url}/api/memory",
            json={"conversationId": conv, "blockId": block, "role": "user", "content": content},
            headers=h,
        )
        assert r.status_code == 200, r.text
    r = httpx.put(f"{server.url}/api/memory/blocks/b", json={"name": "Bee"}, headers=h)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def corpus(live_server: LiveServer) -> Iterator[Run]:
    victim_key = new_workspace(live_server, "victim")
    victim = _name_of(live_server, victim_key)
    scratch_key = new_workspace(live_server, "scratch")
    r = httpx.post(
        f"{live_server.url}/admin/workspaces", json={"name": DOOMED}, headers=ADMIN, timeout=30
    )
    assert r.status_code == 201, r.text
    seed(live_server, victim_key)
    before = snapshot(live_server, victim_key, victim)
    entries = build(Context(victim_key, scratch_key, DOOMED, ADMIN_TOKEN))
    assert [e.id for e in entries] == [e.id for e in COLLECTED]
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        results = list(pool.map(lambda e: send(live_server.port, e), entries))
    assert live_server.proc is not None and live_server.proc.poll() is None, "server died"
    after = snapshot(live_server, victim_key, victim)
    yield Run(
        {e.id: o for e, o in zip(entries, results, strict=True)},
        {e.id: e for e in entries},
        before,
        after,
    )


def _name_of(server: LiveServer, key: str) -> str:
    r = httpx.get(f"{server.url}/api/usage", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    listing = httpx.get(f"{server.url}/admin/workspaces", headers=ADMIN, timeout=30).json()
    names = [w["name"] for w in listing["workspaces"] if w["name"].startswith("victim-")]
    assert len(names) == 1, names
    return str(names[0])


@pytest.mark.parametrize("entry_id", [_param(e) for e in COLLECTED])
def test_entry(corpus: Run, entry_id: str) -> None:
    entry, outcome = corpus.entries[entry_id], corpus.outcomes[entry_id]
    problems = violations(entry, outcome)
    assert not problems, (problems, outcome.raw[:600])


def test_the_victim_workspace_is_unchanged(corpus: Run) -> None:
    assert corpus.after == corpus.before


def test_the_corpus_is_large_and_covers_every_route() -> None:
    ids = [e.id for e in COLLECTED]
    assert len(ids) == len(set(ids)), [i for i, n in Counter(ids).items() if n > 1]
    assert len(COLLECTED) >= MIN_ENTRIES, len(COLLECTED)
    per_route = Counter(e.route for e in COLLECTED)
    routes = app_routes()
    assert set(per_route) <= set(routes), set(per_route) - set(routes)
    thin = {r: per_route[r] for r in routes if per_route[r] < MIN_PER_ROUTE}
    assert not thin, thin


def test_the_corpus_ran_concurrently_within_the_ceiling(corpus: Run) -> None:
    """Each entry answered (or was closed) by itself: the slowest is under the ceiling, and no
    entry waited on another's (the run is not a sum of timeouts)."""
    slowest = max(o.seconds for o in corpus.outcomes.values())
    hung = [i for i, o in corpus.outcomes.items() if o.hung]
    assert not hung, hung
    assert slowest <= 10.5, slowest


def test_the_server_log_holds_no_traceback(corpus: Run, live_server: LiveServer) -> None:
    log = live_server.log_text()
    assert "Traceback" not in log, log[log.find("Traceback") - 2000 : log.find("Traceback") + 3000]


if os.environ.get("MEMORY_CORPUS_PRINT"):  # a local aid: print the corpus's size per route
    print(Counter(e.route for e in COLLECTED))
