"""The differential isolation test: workspace B's whole answers are the same whether or not
workspace A is busy with the same ids, names and keys, and A's are the same whether or not B is.

Each example is a random program (seeded: reproducible) for each of two workspaces over every
endpoint: memory adds (single, batch, named, idempotent, windowed), gets with every filter, getAll,
message pages, deletes (and dry runs), the block registry, the conversation listing, KV
set/get/head/delete/list with conditions, content types and TTLs, the batch KV operations (atomic
or per key, with per-key conditions) and the listing with values, usage, the explorer's counts,
and every tool; plus clock
jumps that both see. The programs draw ids, names, keys and prefixes from one small pool, so
they collide all the time.
Three worlds (three databases of the kind under test) run them:

- world 1: B's program alone (A's workspace exists, idle);
- world 2: A's and B's programs interleaved, step by step;
- world 3: A's program alone.

B's transcript in worlds 1 and 2 must be identical, answer by answer: status, the headers that
carry data (ETag, Content-Type, Content-Disposition, X-Value-Length, Retry-After) and every body
field, tool streams line by line, after normalising wall-clock timestamps and cursors (sealed with
a fresh nonce each time, so only their presence is compared). The same for A in worlds 3 and 2.
After each program, a full snapshot of each workspace (every key and value, every memory with all
its messages, the registry, usage) must match across worlds too.

Bounded for CI: MEMORY_ISOLATION_PROGRAMS programs (default 30) of MEMORY_ISOLATION_STEPS steps
per workspace (default 50) per database, seed MEMORY_ISOLATION_SEED (default 1). The README gives
the longer run.
"""

from __future__ import annotations

import base64
import json
import os
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from memory_service.settings import sqlite_url
from tests.conftest import Api, make_api

pytestmark = pytest.mark.asyncio

PROGRAMS = int(os.environ.get("MEMORY_ISOLATION_PROGRAMS", "30"))
STEPS = int(os.environ.get("MEMORY_ISOLATION_STEPS", "50"))
SEED = int(os.environ.get("MEMORY_ISOLATION_SEED", "1"))

CONVS = ["c1", "c2", "c%_:x", "\u00fc\U0001f511"]
BLOCKS = [None, "b1", "b:2", "default"]
NAMES = ["n1", "n2", "n%_"]
KEYS = ["k1", "k2", "dir/k3", "dir/%_", "\u00fcml"]
PREFIXES = ["", "k", "dir/", "zz", "\u00fc"]
IDEMS = ["i1", "i2", "i3"]
CONTENTS = ["hi", "", "h\u00e9llo", "x" * 60, "<b>bold</b>"]
TYPES = [None, "text/plain", "text/html", "application/json; charset=utf-8", "image/svg+xml"]
TTLS = [None, None, 100, 1000]
ADVANCES = [45, 130, 1300]  # seconds; sums stay 10 s or more away from every TTL
ROLES = ["user", "assistant", "system"]
QUOTA = 700  # small enough that programs reach it now and then

TIME_KEYS = {"createdAt", "updatedAt", "expiresAt", "created_at", "updated_at", "expires_at"}
CURSOR_KEYS = {"nextCursor", "dataCursor", "next_cursor", "data_cursor", "cursor"}
DATA_HEADERS = (
    "etag",
    "content-type",
    "content-disposition",
    "x-value-length",
    "retry-after",
    "x-content-type-options",
    "content-security-policy",
)


def normalise(value: Any) -> Any:
    """Wall-clock times and cursors become markers (whether one is there is kept)."""
    if isinstance(value, dict):
        name = value.get("variable_name")
        out = {}
        for k, v in value.items():
            if k in TIME_KEYS and v is not None:
                out[k] = "<time>"
            elif k in CURSOR_KEYS and v is not None:
                out[k] = "<cursor>"
            elif k == "variable_value" and v is not None and name in TIME_KEYS | CURSOR_KEYS:
                out[k] = "<time>" if name in TIME_KEYS else "<cursor>"
            else:
                out[k] = normalise(v)
        return out
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def kv_path(key: str) -> str:
    return "/api/kv/" + quote(key, safe="")


# --- programs ------------------------------------------------------------------------------------


def _maybe(rng: random.Random, value: Any, p: float = 0.5) -> Any:
    return value if rng.random() < p else None


def _filter(rng: random.Random) -> dict:
    while True:
        flt = {
            "conversationId": _maybe(rng, rng.choice(CONVS)),
            "blockId": _maybe(rng, rng.choice([b for b in BLOCKS if b])),
            "blockName": _maybe(rng, rng.choice(NAMES), 0.3),
        }
        flt = {k: v for k, v in flt.items() if v is not None}
        if flt:
            return flt


def random_op(rng: random.Random) -> dict:
    kind = rng.choices(
        [
            "m_add", "m_batch", "m_get", "m_all", "m_next", "m_messages", "m_delete",
            "blk_set", "blk_list", "kv_put", "kv_get", "kv_head", "kv_del", "kv_list",
            "kv_next", "usage", "stats", "tool", "kvb_set", "kvb_get", "kvb_exist",
            "kvb_del", "kvb_list", "m_convs",
        ],
        weights=[10, 3, 6, 3, 2, 2, 2, 3, 1, 8, 5, 2, 3, 3, 2, 1, 2, 8, 4, 3, 2, 2, 2, 3],
    )[0]  # fmt: skip
    op: dict = {"kind": kind}
    if kind in ("m_add", "m_batch"):
        op["body"] = body = {"conversationId": rng.choice(CONVS)}
        if (block := rng.choice(BLOCKS)) is not None:
            body["blockId"] = block
        if rng.random() < 0.3:
            body["blockName"] = rng.choice(NAMES)
        if kind == "m_add":
            body["role"], body["content"] = rng.choice(ROLES), rng.choice(CONTENTS)
        else:
            body["messages"] = [
                {"role": rng.choice(ROLES), "content": rng.choice(CONTENTS)}
                for _ in range(rng.randint(1, 3))
            ]
        if rng.random() < 0.3:
            body["lastN"] = rng.randint(0, 4)
        op["idem"] = _maybe(rng, rng.choice(IDEMS), 0.3)
    elif kind == "m_get":
        op["params"] = {**_filter(rng)}
        if rng.random() < 0.4:
            op["params"]["lastN"] = rng.randint(0, 3)
        if rng.random() < 0.3:
            op["params"]["keepSystem"] = "true"
        if rng.random() < 0.4:
            op["params"]["limit"] = rng.randint(1, 3)
    elif kind == "m_all":
        op["params"] = {"limit": rng.randint(1, 4)} if rng.random() < 0.7 else {}
    elif kind == "stats":  # the explorer's counts: the whole workspace, or a delete's filter
        op["params"] = _filter(rng) if rng.random() < 0.5 else {}
    elif kind == "m_messages":
        op["params"] = {"conversationId": rng.choice(CONVS), "limit": rng.randint(1, 3)}
        if (block := rng.choice(BLOCKS)) is not None:
            op["params"]["blockId"] = block
    elif kind == "m_delete":
        op["params"] = _filter(rng)
        if rng.random() < 0.3:
            op["params"]["dryRun"] = "true"
    elif kind == "blk_set":
        op["block"] = rng.choice([b for b in BLOCKS if b])
        op["name"] = rng.choice([*NAMES, None])
    elif kind == "blk_list":
        op["params"] = {"limit": rng.randint(1, 3)}
    elif kind == "kv_put":
        op["key"] = rng.choice(KEYS)
        op["value"] = rng.choice([b"", b"v", b"\x00\xff bytes", b"y" * 300])
        op["type"] = rng.choice(TYPES)
        op["ttl"] = rng.choice(TTLS)
        op["cond"] = rng.choice([None, None, "match-current", "match-stale", "none-match-*"])
    elif kind == "kv_get":
        op["key"] = rng.choice(KEYS)
        op["cond"] = rng.choice([None, "inm-current", "inm-*", "im-current", "im-stale"])
    elif kind == "kv_head":
        op["key"] = rng.choice(KEYS)
        op["cond"] = rng.choice([None, "inm-current"])
    elif kind == "kv_del":
        op["key"] = rng.choice(KEYS)
        op["cond"] = rng.choice([None, "match-current", "match-stale"])
    elif kind == "kv_list":
        op["params"] = {"prefix": rng.choice(PREFIXES), "limit": rng.randint(1, 3)}
    elif kind == "tool":
        op.update(random_tool(rng))
    elif kind in ("kvb_set", "kvb_get", "kvb_exist", "kvb_del"):
        keys = rng.sample(KEYS, rng.randint(1, 4))
        op["atomic"] = rng.random() < 0.4
        op["items"] = [
            {
                "key": key,
                "value": rng.choice([b"", b"v", b"\x00\xff bytes", b"y" * 300]),
                "type": rng.choice(TYPES),
                "ttl": rng.choice(TTLS),
                "cond": rng.choice([None, None, "match-current", "match-stale", "none-match-*"]),
            }
            for key in keys
        ]
    elif kind == "kvb_list":
        op["params"] = {"prefix": rng.choice(PREFIXES), "limit": rng.randint(1, 3)}
    elif kind == "m_convs":
        op["params"] = {"limit": rng.randint(1, 3)}
        if rng.random() < 0.4:
            op["params"]["blockId"] = rng.choice([b for b in BLOCKS if b])
        if rng.random() < 0.4:
            op["params"]["prefix"] = rng.choice(["c", "c%_", "\u00fc", "x"])
    return op


def random_tool(rng: random.Random) -> dict:
    name = rng.choice(
        [
            "memory_add", "memory_get", "memory_get_all", "memory_delete", "storage_set",
            "storage_get", "storage_exist", "storage_delete", "storage_list",
        ]
    )  # fmt: skip
    p: dict[str, Any]
    if name == "memory_add":
        p = {"conversationId": rng.choice(CONVS), "role": "user", "content": rng.choice(CONTENTS)}
        if (block := rng.choice(BLOCKS)) is not None:
            p["blockId"] = block
        if rng.random() < 0.3:
            p["blockName"] = rng.choice(NAMES)
        if rng.random() < 0.3:
            p["idempotencyKey"] = rng.choice(IDEMS)
    elif name in ("memory_get", "memory_delete"):
        p = _filter(rng)
        if name == "memory_get" and rng.random() < 0.4:
            p["lastN"] = rng.randint(0, 3)
        if name == "memory_delete" and rng.random() < 0.3:
            p["dryRun"] = True
    elif name == "memory_get_all":
        p = {"limit": rng.randint(1, 3)} if rng.random() < 0.6 else {}
    elif name == "storage_set":
        p = {"key": rng.choice(KEYS), "value": rng.choice(CONTENTS)}
        if rng.random() < 0.3:
            p["content_type"] = rng.choice([t for t in TYPES if t])
        if (ttl := rng.choice(TTLS)) is not None:
            p["ttl"] = ttl
    elif name == "storage_list":
        p = {"prefix": rng.choice(PREFIXES), "limit": rng.randint(1, 3)}
    else:
        p = {"key": rng.choice(KEYS)}
    return {"tool": name, "params": p}


def schedule(rng: random.Random) -> list[tuple[str, dict]]:
    """A's and B's programs interleaved at random, with clock jumps between steps."""
    programs = {who: [random_op(rng) for _ in range(STEPS)] for who in ("a", "b")}
    steps: list[tuple[str, dict]] = []
    while programs["a"] or programs["b"]:
        who = rng.choice([w for w in ("a", "b") if programs[w]])
        steps.append((who, programs[who].pop(0)))
        if rng.random() < 0.04:
            steps.append(("time", {"kind": "advance", "seconds": rng.choice(ADVANCES)}))
    return steps


# --- running them --------------------------------------------------------------------------------


@dataclass
class Actor:
    """One workspace in one world, with what it has seen (its own answers only)."""

    api: Api
    headers: dict
    etags: dict[str, str] = field(default_factory=dict)
    stale: dict[str, str] = field(default_factory=dict)
    cursors: dict[str, str] = field(default_factory=dict)
    data_cursors: dict[tuple, str] = field(default_factory=dict)
    transcript: list = field(default_factory=list)

    def remember(self, body: Any) -> None:
        if not isinstance(body, dict):
            return
        memories = body.get("memories")
        if not isinstance(memories, list):  # /api/stats answers a count under this name
            return
        for m in memories:
            if isinstance(m, dict) and m.get("dataCursor"):
                pair = (m["conversationId"], m["blockId"])
                self.data_cursors[pair] = m["dataCursor"]


async def perform(actor: Actor, step: int, op: dict) -> None:
    c = actor.api.client
    h = dict(actor.headers)
    kind = op["kind"]
    method, url, kw, label = "GET", "", {}, kind
    if kind in ("m_add", "m_batch"):
        if op["idem"]:
            h["Idempotency-Key"] = op["idem"]
        method, url, kw = "POST", "/api/memory", {"json": op["body"]}
    elif kind == "m_get":
        url, kw = "/api/memory", {"params": op["params"]}
    elif kind == "m_all":
        url, kw = "/api/memory/all", {"params": op["params"]}
    elif kind == "m_next":
        url = "/api/memory/all"
        kw = {
            "params": {
                "limit": 1,
                **({"cursor": actor.cursors["all"]} if "all" in actor.cursors else {}),
            }
        }
    elif kind == "m_messages":
        params = dict(op["params"])
        pair = (params["conversationId"], params.get("blockId", "default"))
        if pair in actor.data_cursors:
            params["cursor"] = actor.data_cursors[pair]
        url, kw = "/api/memory/messages", {"params": params}
    elif kind == "m_delete":
        method, url, kw = "DELETE", "/api/memory", {"params": op["params"]}
    elif kind == "blk_set":
        method, url = "PUT", "/api/memory/blocks/" + quote(op["block"], safe="")
        kw = {"json": {"name": op["name"]}}
    elif kind == "blk_list":
        params = dict(op["params"])
        if "blocks" in actor.cursors and step % 2:
            params["cursor"] = actor.cursors["blocks"]
        url, kw = "/api/memory/blocks", {"params": params}
    elif kind in ("kv_put", "kv_get", "kv_head", "kv_del"):
        key = op["key"]
        url = kv_path(key)
        cond = op.get("cond")
        current = actor.etags.get(key, '"0"')
        stale = actor.stale.get(key, '"999999"')
        if cond == "match-current":
            h["If-Match"] = current
        elif cond == "match-stale" or cond == "im-stale":
            h["If-Match"] = stale
        elif cond == "none-match-*" or cond == "inm-*":
            h["If-None-Match"] = "*"
        elif cond == "inm-current":
            h["If-None-Match"] = current
        elif cond == "im-current":
            h["If-Match"] = current
        method = {"kv_put": "PUT", "kv_get": "GET", "kv_head": "HEAD", "kv_del": "DELETE"}[kind]
        if kind == "kv_put":
            if op["type"]:
                h["Content-Type"] = op["type"]
            kw = {"content": op["value"]}
            if op["ttl"]:
                kw["params"] = {"ttl": op["ttl"]}
    elif kind == "kv_list":
        url, kw = "/api/kv", {"params": op["params"]}
    elif kind == "kv_next":
        params = {"limit": 1}
        if "kv" in actor.cursors:
            params["cursor"], params["prefix"] = actor.cursors["kv"], actor.cursors["kv_prefix"]
        url, kw = "/api/kv", {"params": params}
    elif kind in ("kvb_set", "kvb_get", "kvb_exist", "kvb_del"):
        method, url = "POST", "/api/kv-batch/" + kind[4:].replace("del", "delete")
        items = []
        for it in op["items"]:
            key = it["key"]
            item: dict[str, Any] = {"key": key}
            cond = it["cond"]
            if cond == "match-current":
                item["ifMatch"] = actor.etags.get(key, '"0"')
            elif cond == "match-stale":
                item["ifMatch"] = actor.stale.get(key, '"999999"')
            elif cond == "none-match-*" and kind == "kvb_set":
                item["ifNoneMatch"] = "*"
            if kind == "kvb_set":
                item["value"] = base64.b64encode(it["value"]).decode()
                if it["type"]:
                    item["contentType"] = it["type"]
                if it["ttl"]:
                    item["ttl"] = it["ttl"]
            items.append(item)
        if kind in ("kvb_get", "kvb_exist"):
            kw = {"json": {"keys": [it["key"] for it in items]}}
        else:
            kw = {"json": {"items": items, "atomic": op["atomic"]}}
    elif kind == "kvb_list":
        params = dict(op["params"])
        if "kvv" in actor.cursors and step % 2 and actor.cursors["kvv_prefix"] == params["prefix"]:
            params["cursor"] = actor.cursors["kvv"]
        url, kw = "/api/kv-batch/list", {"params": params}
    elif kind == "m_convs":
        params = dict(op["params"])
        if "convs" in actor.cursors and step % 2:
            params["cursor"] = actor.cursors["convs"]
        url, kw = "/api/memory/conversations", {"params": params}
    elif kind == "usage":
        url = "/api/usage"
    elif kind == "stats":
        url, kw = "/api/stats", {"params": op["params"]}
    elif kind == "tool":
        params = dict(op["params"])
        if op["tool"] in ("memory_get_all", "storage_list") and step % 3 == 0:
            which = "all" if op["tool"] == "memory_get_all" else "kv"
            if which in actor.cursors and (
                which == "all" or actor.cursors["kv_prefix"] == params.get("prefix")
            ):
                params["cursor"] = actor.cursors[which]
        method, url = "POST", f"/api/tools/{op['tool']}/invoke"
        kw = {"json": {"parameters": params}}
        label = f"tool {op['tool']}"
    r = await c.request(method, url, headers=h, **kw)
    headers = {k: r.headers.get(k) for k in DATA_HEADERS}
    body: Any
    ctype = r.headers.get("content-type", "")
    stored_bytes = kind == "kv_get" and r.status_code == 200  # a value, whatever its type
    if method == "HEAD" or r.status_code == 304 or stored_bytes:
        body = r.content
    elif ctype.startswith("application/json"):
        body = r.json()
    elif ctype.startswith("application/x-ndjson"):
        body = [json.loads(line) for line in r.text.splitlines() if line]
    else:
        body = r.content
    # What the actor learns for its next steps (from its own answers only).
    if kind in ("kv_put", "kv_get", "kv_head") and r.headers.get("etag"):
        old = actor.etags.get(op["key"])
        if old and old != r.headers["etag"]:
            actor.stale[op["key"]] = old
        actor.etags[op["key"]] = r.headers["etag"]
    if isinstance(body, dict) and kind.startswith("kvb_") and isinstance(body.get("results"), list):
        for res in body["results"]:
            if res.get("etag"):
                old = actor.etags.get(res["key"])
                if old and old != res["etag"]:
                    actor.stale[res["key"]] = old
                actor.etags[res["key"]] = res["etag"]
    if isinstance(body, dict):
        actor.remember(body)
        if body.get("nextCursor"):
            if url == "/api/memory/all":
                actor.cursors["all"] = body["nextCursor"]
            elif url == "/api/kv":
                actor.cursors["kv"] = body["nextCursor"]
                actor.cursors["kv_prefix"] = kw["params"].get("prefix", "")
            elif url == "/api/memory/blocks":
                actor.cursors["blocks"] = body["nextCursor"]
            elif url == "/api/kv-batch/list":
                actor.cursors["kvv"] = body["nextCursor"]
                actor.cursors["kvv_prefix"] = kw["params"].get("prefix", "")
            elif url == "/api/memory/conversations":
                actor.cursors["convs"] = body["nextCursor"]
    actor.transcript.append(
        (step, label, method, url, r.status_code, normalise(headers), normalise(body))
    )


async def snapshot(actor: Actor) -> dict:
    """Everything a workspace can see of its own data, read whole."""
    c, h = actor.api.client, actor.headers
    out: dict = {"kv": {}, "memories": [], "blocks": [], "messages": {}}
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = (await c.get("/api/kv", params=params, headers=h)).json()
        for item in page["items"]:
            r = await c.get(kv_path(item["key"]), headers=h)
            out["kv"][item["key"]] = (normalise(item), r.status_code, r.content, r.headers["etag"])
        if not (cursor := page["nextCursor"]):
            break
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = (await c.get("/api/memory/all", params=params, headers=h)).json()
        out["memories"] += normalise(page["memories"])
        if not (cursor := page["nextCursor"]):
            break
    out["blocks"] = normalise((await c.get("/api/memory/blocks", headers=h)).json())
    out["conversations"] = normalise(
        (await c.get("/api/memory/conversations", params={"limit": 1000}, headers=h)).json()
    )
    out["values"] = normalise(
        (await c.get("/api/kv-batch/list", params={"limit": 1000}, headers=h)).json()
    )
    out["usage"] = (await c.get("/api/usage", headers=h)).json()
    out["usage"].pop("workspace", None)
    return out


@pytest.fixture
async def three_worlds(
    database_url: str, request: pytest.FixtureRequest, tmp_path
) -> AsyncIterator[list[Api]]:  # noqa: ANN001
    urls = [database_url]
    for i in (2, 3):
        if database_url.startswith("sqlite"):
            urls.append(sqlite_url(tmp_path / f"world{i}.db"))
        else:
            urls.append(
                request.getfixturevalue("pg").create_database(f"w{i}_{uuid.uuid4().hex[:10]}")
            )
    apis = [(await make_api(url))[0] for url in urls]
    for api in apis:
        await api.client.__aenter__()
    try:
        yield apis
    finally:
        for api in apis:
            await api.client.__aexit__(None, None, None)


async def test_differential_isolation(three_worlds: list[Api]) -> None:
    alone_b, both, alone_a = three_worlds
    steps_run = 0
    statuses: Counter = Counter()
    for n in range(PROGRAMS):
        rng = random.Random(f"{SEED}-{n}")
        plan = schedule(rng)
        actors: dict[tuple[str, str], Actor] = {}
        for world, api in (("1", alone_b), ("2", both), ("3", alone_a)):
            # The same workspace names, created in the same order, in every world.
            a = await api.workspace(f"a{n}", quota=QUOTA)
            b = await api.workspace(f"b{n}", quota=QUOTA)
            actors[(world, "a")] = Actor(api, a)
            actors[(world, "b")] = Actor(api, b)
        for i, (who, op) in enumerate(plan):
            if who == "time":
                for api in three_worlds:
                    api.clock.advance(op["seconds"])
                continue
            alone = "1" if who == "b" else "3"
            await perform(actors[(alone, who)], i, op)
            await perform(actors[("2", who)], i, op)
            steps_run += 1
            got, want = actors[("2", who)].transcript[-1], actors[(alone, who)].transcript[-1]
            assert got == want, (
                f"seed {SEED}, program {n}, step {i}: {who.upper()}'s answer changed when "
                f"the other workspace ran too\n op: {op}\n alone: {want}\n together: {got}"
            )
        for actor in (actors[("2", "a")], actors[("2", "b")]):
            statuses.update(entry[4] for entry in actor.transcript)
        for who, alone in (("b", "1"), ("a", "3")):
            together = await snapshot(actors[("2", who)])
            apart = await snapshot(actors[(alone, who)])
            assert together == apart, f"seed {SEED}, program {n}: {who.upper()}'s data differs"
    print(
        f"differential isolation: {PROGRAMS} programs, {steps_run} steps compared (each run "
        f"alone and together), seed {SEED}, statuses {dict(sorted(statuses.items()))}"
    )
