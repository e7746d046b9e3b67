"""Batch KV through HTTP (`/api/kv-batch/...`): per-key results, atomic and per-key semantics,
per-key conditions, TTL, the quota charged exactly, limits, bad input, the listing with values,
and batches racing single writes."""

from __future__ import annotations

import asyncio
import base64
import random
from typing import Any

import pytest

from memory_service.client import (
    AsyncMemoryServiceClient,
    BadRequestError,
    DeleteItem,
    MemoryServiceClient,
    NotFoundError,
    PreconditionFailedError,
    SetItem,
)
from tests.conftest import Api, make_api, stored_bytes
from tests.support.live import new_workspace
from tests.support.server import LiveServer

U = "/api/kv-batch"


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


async def kv_state(api: Api, h: dict) -> tuple[Any, Any]:
    """Everything a workspace holds in KV (listing with values) and its usage."""
    listed = (await api.client.get(f"{U}/list", params={"limit": 1000}, headers=h)).json()
    for item in listed["items"]:
        item.pop("updatedAt")
    usage = (await api.client.get("/api/usage", headers=h)).json()
    return listed["items"], (usage["used"], usage["quota"])


async def put(api: Api, h: dict, key: str, value: bytes) -> str:
    r = await api.client.put(f"/api/kv/{key}", content=value, headers=h)
    assert r.status_code in (200, 201), r.text
    return r.headers["etag"]


async def test_per_key_results(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    r = await c.post(
        f"{U}/set",
        json={
            "items": [
                {"key": "a", "value": b64(b"\x00\xffA"), "contentType": "text/plain"},
                {"key": "dir/b", "value": b64(b""), "ttl": 60},
            ]
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["atomic"] is False
    assert body["message"] == "Stored 2 of 2 keys"
    first, second = body["results"]
    assert first["key"] == "a" and first["status"] == 201 and first["code"] is None
    assert first["created"] is True and first["size"] == 1 + 3
    assert first["etag"] == f'"{first["version"]}"'
    assert second["status"] == 201 and second["expiresAt"] is not None and second["size"] == 5
    # The single API sees the same entries.
    single = await c.get("/api/kv/a", headers=h)
    assert single.content == b"\x00\xffA" and single.headers["etag"] == first["etag"]
    assert single.headers["content-type"] == "text/plain"
    # Overwrite one: 200 replaced, a new version.
    r = await c.post(f"{U}/set", json={"items": [{"key": "a", "value": b64(b"x")}]}, headers=h)
    again = r.json()["results"][0]
    assert again["status"] == 200 and again["created"] is False
    assert again["version"] > second["version"]

    r = await c.post(f"{U}/get", json={"keys": ["a", "missing", "dir/b"]}, headers=h)
    assert r.status_code == 200
    got = r.json()
    assert got["message"] == "Found 2 of 3 keys"
    a, missing, b = got["results"]
    assert a == {
        "key": "a",
        "status": 200,
        "code": None,
        "error": None,
        "value": b64(b"x"),
        "contentType": "application/octet-stream",
        "valueLength": 1,
        "version": again["version"],
        "etag": again["etag"],
        "updatedAt": a["updatedAt"],
        "expiresAt": None,
    }
    assert missing["status"] == 404 and missing["code"] == "key_not_found"
    assert missing["value"] is None and missing["etag"] is None
    assert b["value"] == "" and b["valueLength"] == 0

    r = await c.post(f"{U}/exist", json={"keys": ["missing", "a"]}, headers=h)
    ex = r.json()["results"]
    assert [(e["key"], e["exists"], e["status"], e["code"]) for e in ex] == [
        ("missing", False, 404, "key_not_found"),
        ("a", True, 200, None),
    ]
    assert ex[1]["etag"] == again["etag"] and ex[1]["valueLength"] == 1

    r = await c.post(f"{U}/delete", json={"items": [{"key": "a"}, {"key": "nope"}]}, headers=h)
    assert r.status_code == 200
    d = r.json()
    assert d["message"] == "Deleted 1 of 2 keys"
    assert d["results"] == [
        {"key": "a", "status": 200, "code": None, "error": None, "deleted": True, "freedBytes": 2},
        {
            "key": "nope",
            "status": 404,
            "code": "key_not_found",
            "error": "key not found",
            "deleted": False,
            "freedBytes": 0,
        },
    ]
    assert (await c.get("/api/kv/a", headers=h)).status_code == 404


async def test_atomic_set_fails_whole_per_key_does_not(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    tag = await put(api, h, "x", b"old")
    before = await kv_state(api, h)
    items = [
        {"key": "new", "value": b64(b"n")},
        {"key": "x", "value": b64(b"stale"), "ifMatch": '"999"'},
    ]
    r = await c.post(f"{U}/set", json={"items": items, "atomic": True}, headers=h)
    assert r.status_code == 412
    assert r.json() == {
        "success": False,
        "error": f'items[1]: version mismatch: the entry is at "{tag.strip(chr(34))}"',
        "message": f'items[1]: version mismatch: the entry is at "{tag.strip(chr(34))}"',
        "code": "precondition_failed",
    }
    assert await kv_state(api, h) == before  # nothing stored, not even "new"
    r = await c.post(f"{U}/set", json={"items": items}, headers=h)
    assert r.status_code == 200
    res = r.json()["results"]
    assert [(x["status"], x["code"]) for x in res] == [(201, None), (412, "precondition_failed")]
    assert res[1]["version"] is None and res[1]["etag"] is None
    assert (await c.get("/api/kv/new", headers=h)).content == b"n"
    assert (await c.get("/api/kv/x", headers=h)).content == b"old"


async def test_atomic_delete_fails_whole_per_key_does_not(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    await put(api, h, "x", b"1")
    await put(api, h, "y", b"2")
    before = await kv_state(api, h)
    items = [{"key": "x"}, {"key": "absent"}]
    r = await c.post(f"{U}/delete", json={"items": items, "atomic": True}, headers=h)
    assert r.status_code == 404
    assert r.json()["code"] == "key_not_found"
    assert r.json()["error"] == "items[1]: key not found"
    assert await kv_state(api, h) == before
    r = await c.post(f"{U}/delete", json={"items": items, "atomic": False}, headers=h)
    assert [x["status"] for x in r.json()["results"]] == [200, 404]
    assert (await c.get("/api/kv/x", headers=h)).status_code == 404
    assert (await c.get("/api/kv/y", headers=h)).status_code == 200


async def test_conditions_per_key(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    t1 = await put(api, h, "k1", b"1")
    t2 = await put(api, h, "k2", b"2")
    items = [
        {"key": "k1", "value": b64(b"1b"), "ifMatch": t1},  # current: ok
        {"key": "k2", "value": b64(b"2b"), "ifMatch": t1},  # another key's tag: 412
        {"key": "k3", "value": b64(b"3"), "ifNoneMatch": "*"},  # absent: ok
        {"key": "k4", "value": b64(b"4"), "ifMatch": "*"},  # absent with If-Match: 412
        {"key": "k1x", "value": b64(b"w"), "ifMatch": 'W/"1"'},  # weak never matches
    ]
    r = await c.post(f"{U}/set", json={"items": items}, headers=h)
    res = r.json()["results"]
    assert [(x["key"], x["status"], x["code"]) for x in res] == [
        ("k1", 200, None),
        ("k2", 412, "precondition_failed"),
        ("k3", 201, None),
        ("k4", 412, "precondition_failed"),
        ("k1x", 412, "precondition_failed"),
    ]
    new_t1 = res[0]["etag"]
    # If-None-Match: * on a present key, and a delete with a stale and a current tag.
    r = await c.post(
        f"{U}/set", json={"items": [{"key": "k3", "value": b64(b"z"), "ifNoneMatch": "*"}]},
        headers=h,
    )  # fmt: skip
    assert r.json()["results"][0]["status"] == 412
    r = await c.post(
        f"{U}/delete",
        json={"items": [{"key": "k1", "ifMatch": t1}, {"key": "k2", "ifMatch": t2}]},
        headers=h,
    )
    res = r.json()["results"]
    assert [(x["status"], x["code"], x["deleted"]) for x in res] == [
        (412, "precondition_failed", False),
        (200, None, True),
    ]
    r = await c.post(
        f"{U}/delete", json={"items": [{"key": "k1", "ifNoneMatch": new_t1}]}, headers=h
    )
    assert r.json()["results"][0]["status"] == 412
    assert (await c.get("/api/kv/k1", headers=h)).content == b"1b"
    assert (await c.get("/api/kv/k2", headers=h)).status_code == 404


async def test_ttl_expired_keys_invisible(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    items = [
        {"key": "short", "value": b64(b"s" * 10), "ttl": 5},
        {"key": "long", "value": b64(b"l"), "ttl": 500},
    ]
    assert (await c.post(f"{U}/set", json={"items": items}, headers=h)).status_code == 200
    api.clock.advance(10)
    got = (await c.post(f"{U}/get", json={"keys": ["short", "long"]}, headers=h)).json()
    assert [(x["status"], x["code"]) for x in got["results"]] == [
        (404, "key_not_found"),
        (200, None),
    ]
    ex = (await c.post(f"{U}/exist", json={"keys": ["short", "long"]}, headers=h)).json()
    assert [x["exists"] for x in ex["results"]] == [False, True]
    listed = (await c.get(f"{U}/list", headers=h)).json()
    assert [i["key"] for i in listed["items"]] == ["long"]
    # A write over the expired key creates it (If-None-Match: * holds) ...
    r = await c.post(
        f"{U}/set",
        json={"items": [{"key": "short", "value": b64(b"n"), "ifNoneMatch": "*"}]},
        headers=h,
    )
    assert r.json()["results"][0]["status"] == 201 and r.json()["results"][0]["created"] is True
    # ... and a delete of an expired one is a 404.
    api.clock.advance(1000)
    d = (await c.post(f"{U}/delete", json={"items": [{"key": "long"}]}, headers=h)).json()
    assert d["results"][0]["status"] == 404
    usage = (await c.get("/api/usage", headers=h)).json()
    assert usage["used"] == len("short") + 1  # the expired bytes are free


async def test_thousand_sets_one_request_exact_quota(api: Api, database_url: str) -> None:
    h = await api.workspace("bulk", quota=10_000_000)
    c = api.client
    rng = random.Random(7)
    values = {f"key/{i:04d}": rng.randbytes(rng.randint(0, 300)) for i in range(1000)}
    items = [{"key": k, "value": b64(v)} for k, v in values.items()]
    r = await c.post(f"{U}/set", json={"items": items, "atomic": True}, headers=h)
    assert r.status_code == 200, r.text
    assert all(x["status"] == 201 for x in r.json()["results"])
    versions = [x["version"] for x in r.json()["results"]]
    assert len(set(versions)) == 1000
    expected = sum(len(k.encode()) + len(v) for k, v in values.items())
    used = (await c.get("/api/usage", headers=h)).json()["used"]
    assert used == expected == await stored_bytes(database_url, "bulk")
    # Overwrite half with other sizes, per key: charged exactly the differences.
    for i, k in enumerate(list(values)[:500]):
        values[k] = b"z" * (i % 7)
    items = [{"key": k, "value": b64(v)} for k, v in list(values.items())[:500]]
    r = await c.post(f"{U}/set", json={"items": items}, headers=h)
    assert all(x["status"] == 200 for x in r.json()["results"])
    expected = sum(len(k.encode()) + len(v) for k, v in values.items())
    used = (await c.get("/api/usage", headers=h)).json()["used"]
    assert used == expected == await stored_bytes(database_url, "bulk")
    # Read all 1000 back in one request, byte for byte.
    got = (await c.post(f"{U}/get", json={"keys": list(values)}, headers=h)).json()
    assert {x["key"]: base64.b64decode(x["value"]) for x in got["results"]} == values
    # Delete 1000 in one request: everything freed.
    r = await c.post(f"{U}/delete", json={"items": [{"key": k} for k in values]}, headers=h)
    assert sum(x["freedBytes"] for x in r.json()["results"]) == expected
    assert (await c.get("/api/usage", headers=h)).json()["used"] == 0
    assert await stored_bytes(database_url, "bulk") == 0


async def test_over_quota_atomic_refused_per_key_decided_in_order(
    api: Api, database_url: str
) -> None:
    h = await api.workspace("q", quota=100)
    c = api.client
    await put(api, h, "keep", b"k" * 20)  # 24 bytes used
    before = await kv_state(api, h)
    items = [
        {"key": "a", "value": b64(b"a" * 40)},  # 41: fits (65)
        {"key": "b", "value": b64(b"b" * 40)},  # 41: would be 106
        {"key": "c", "value": b64(b"c" * 10)},  # 11: fits after a (76)
    ]
    r = await c.post(f"{U}/set", json={"items": items, "atomic": True}, headers=h)
    assert r.status_code == 413 and r.json()["code"] == "quota_exceeded"
    assert await kv_state(api, h) == before
    assert await stored_bytes(database_url, "q") == 24
    r = await c.post(f"{U}/set", json={"items": items}, headers=h)
    assert r.status_code == 200
    res = r.json()["results"]
    assert [(x["key"], x["status"], x["code"]) for x in res] == [
        ("a", 201, None),
        ("b", 413, "quota_exceeded"),
        ("c", 201, None),
    ]
    used = (await c.get("/api/usage", headers=h)).json()["used"]
    assert used == 24 + 41 + 11 == await stored_bytes(database_url, "q")
    # Atomic: the total decides, so shrinking one key makes room for another in one batch.
    items = [{"key": "a", "value": b64(b"")}, {"key": "b", "value": b64(b"b" * 40)}]
    r = await c.post(f"{U}/set", json={"items": items, "atomic": True}, headers=h)
    assert r.status_code == 200, r.text
    used = (await c.get("/api/usage", headers=h)).json()["used"]
    assert used == 24 + 1 + 41 + 11 == await stored_bytes(database_url, "q")


async def test_expired_entries_in_the_way_are_swept(api: Api, database_url: str) -> None:
    h = await api.workspace("s", quota=100)
    c = api.client
    r = await c.put("/api/kv/old", content=b"o" * 80, params={"ttl": 5}, headers=h)
    assert r.status_code == 201
    api.clock.advance(10)
    items = [{"key": "n1", "value": b64(b"x" * 40)}, {"key": "n2", "value": b64(b"y" * 40)}]
    for atomic in (True, False):
        r = await c.post(f"{U}/set", json={"items": items, "atomic": atomic}, headers=h)
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ([201, 201] if atomic else [200, 200])
        used = (await c.get("/api/usage", headers=h)).json()["used"]
        assert used == 2 * 42 == await stored_bytes(database_url, "s")


@pytest.mark.parametrize("op", ["get", "exist", "set", "delete"])
async def test_over_the_key_limit_refused(api: Api, op: str) -> None:
    h = await api.workspace("a")
    c = api.client
    await put(api, h, "k", b"v")
    before = await kv_state(api, h)
    keys = [f"k{i}" for i in range(1001)]
    if op in ("get", "exist"):
        body: dict = {"keys": keys}
        where = "keys"
    elif op == "set":
        body, where = {"items": [{"key": k, "value": ""} for k in keys]}, "items"
    else:
        body, where = {"items": [{"key": k} for k in keys]}, "items"
    r = await c.post(f"{U}/{op}", json=body, headers=h)
    assert r.status_code == 400
    assert r.json() == {
        "success": False,
        "error": f"invalid request: {where}: Expected `array` of length <= 1000",
        "message": f"invalid request: {where}: Expected `array` of length <= 1000",
        "code": "invalid_request",
    }
    assert await kv_state(api, h) == before
    # Exactly 1000 is fine.
    body = {"keys": keys[:1000]} if op in ("get", "exist") else {"items": body["items"][:1000]}
    assert (await c.post(f"{U}/{op}", json=body, headers=h)).status_code == 200


BAD_SETS = [
    # (items, status, code, error)
    (
        [{"key": "a", "value": "not base64!"}],
        400,
        "invalid_value",
        "items[0]: value is not valid base64",
    ),
    (
        [{"key": "a", "value": "QUJD"}, {"key": "b", "value": "QUJ"}],
        400,
        "invalid_value",
        "items[1]: value is not valid base64",
    ),
    ([{"key": "", "value": ""}], 400, "invalid_key", "items[0]: key must not be empty"),
    (
        [{"key": "ok", "value": ""}, {"key": "a\x01", "value": ""}],
        400,
        "invalid_key",
        "items[1]: key must not contain control characters",
    ),
    (
        [{"key": "x" * 513, "value": ""}],
        400,
        "invalid_key",
        "items[0]: key is 513 bytes; the maximum is 512",
    ),
    (
        [{"key": "d", "value": ""}, {"key": "d", "value": ""}],
        400,
        "duplicate_key",
        "items[1]: key 'd' is also items[0]",
    ),
    ([{"key": "a", "value": "", "ttl": 0}], 400, "invalid_ttl", "items[0]: ttl must be"),
    (
        [{"key": "a", "value": "", "contentType": "not a type"}],
        400,
        "invalid_content_type",
        "items[0]: content type must be",
    ),
    (
        [{"key": "a", "value": "", "ifMatch": "nope"}],
        400,
        "invalid_precondition",
        "items[0]: malformed If-Match header",
    ),
    ([{"key": "a", "value": 5}], 400, "invalid_request", "invalid request: "),
    ([{"key": 5, "value": ""}], 400, "invalid_request", "invalid request: "),
    ([{"key": "a", "value": "", "extra": 1}], 400, "invalid_request", "invalid request: "),
    ("not a list", 400, "invalid_request", "invalid request: "),
]


@pytest.mark.parametrize("items,status,code,error", BAD_SETS)
@pytest.mark.parametrize("atomic", [True, False])
async def test_bad_set_input_refused_whole(
    api: Api, items: Any, atomic: bool, status: int, code: str, error: str
) -> None:
    h = await api.workspace("a")
    c = api.client
    await put(api, h, "a", b"before")
    before = await kv_state(api, h)
    # A valid item first, so a partial write would show.
    body = {"items": [{"key": "first", "value": b64(b"1")}, *items]}
    if isinstance(items, str):
        body = {"items": items}
    else:  # the indexes in the expected errors are of `items`: shift them by the one prepended
        for i in range(9, -1, -1):
            error = error.replace(f"items[{i}]", f"items[{i + 1}]")
    body["atomic"] = atomic
    r = await c.post(f"{U}/set", json=body, headers=h)
    assert r.status_code == status, r.text
    got = r.json()
    assert got["success"] is False and got["code"] == code
    assert got["error"].startswith(error) and got["message"] == got["error"]
    assert await kv_state(api, h) == before


@pytest.mark.parametrize(
    "body,code,error",
    [
        ({"keys": ["a", ""]}, "invalid_key", "keys[1]: key must not be empty"),
        ({"keys": ["a", "a"]}, "duplicate_key", "keys[1]: key 'a' is also keys[0]"),
        ({"keys": "a"}, "invalid_request", "invalid request: "),
        ({"keys": [1]}, "invalid_request", "invalid request: "),
        ({}, "invalid_request", "invalid request: "),
    ],
)
@pytest.mark.parametrize("op", ["get", "exist"])
async def test_bad_read_input(api: Api, op: str, body: dict, code: str, error: str) -> None:
    h = await api.workspace("a")
    r = await api.client.post(f"{U}/{op}", json=body, headers=h)
    assert r.status_code == 400
    assert r.json()["code"] == code and r.json()["error"].startswith(error)


async def test_bad_delete_input_refused_whole(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    await put(api, h, "a", b"1")
    await put(api, h, "b", b"2")
    before = await kv_state(api, h)
    for items, code in [
        ([{"key": "a"}, {"key": "a"}], "duplicate_key"),
        ([{"key": "a"}, {"key": "b", "ifMatch": "garbage"}], "invalid_precondition"),
        ([{"key": "a"}, {"key": "\x00"}], "invalid_key"),
        ([{"key": "a"}, {"key": "b", "ifMatch": 1}], "invalid_request"),
    ]:
        r = await c.post(f"{U}/delete", json={"items": items}, headers=h)
        assert (r.status_code, r.json()["code"]) == (400, code)
        assert await kv_state(api, h) == before


async def test_malformed_json_and_unauthenticated(api: Api) -> None:
    h = await api.workspace("a")
    r = await api.client.post(
        f"{U}/set", content=b'{"items": [', headers={**h, "Content-Type": "application/json"}
    )
    assert (r.status_code, r.json()["code"]) == (400, "bad_request")
    assert r.json()["error"].startswith("request body is not valid")
    r = await api.client.post(f"{U}/get", json={"keys": ["a"]})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"


async def test_value_size_limits(database_url: str) -> None:
    """A value over the limit is a 413 for the whole batch; a get answer holds at most one
    GET's worth of values, the keys past it are 413 of their own (never cut silently)."""
    api, _ = await make_api(database_url, max_value_bytes=1000)
    async with api.client:
        h = await api.workspace("a")
        c = api.client
        r = await c.post(
            f"{U}/set",
            json={
                "items": [
                    {"key": "ok", "value": b64(b"1")},
                    {"key": "big", "value": b64(b"x" * 1001)},
                ]
            },
            headers=h,
        )
        assert r.status_code == 413
        assert r.json()["code"] == "value_too_large"
        assert r.json()["error"] == "items[1]: value is 1001 bytes; the maximum is 1000"
        assert (await c.get("/api/kv/ok", headers=h)).status_code == 404
        for k, n in [("a", 600), ("b", 600), ("c", 300), ("d", 200)]:
            await put(api, h, k, k.encode() * n)
        got = (await c.post(f"{U}/get", json={"keys": ["a", "b", "c", "d"]}, headers=h)).json()
        assert [(x["key"], x["status"], x["code"]) for x in got["results"]] == [
            ("a", 200, None),
            ("b", 413, "batch_too_large"),
            ("c", 200, None),
            ("d", 413, "batch_too_large"),
        ]
        assert got["results"][1]["value"] is None and got["results"][1]["valueLength"] == 600
        # The listing with values ends its page early, with a cursor, and goes on from there.
        seen, cursor, pages = [], None, 0
        while True:
            params: dict = {"limit": 10, **({"cursor": cursor} if cursor else {})}
            page = (await c.get(f"{U}/list", params=params, headers=h)).json()
            pages += 1
            assert sum(i["size"] - len(i["key"]) for i in page["items"]) <= 1000
            seen += [(i["key"], base64.b64decode(i["value"])) for i in page["items"]]
            if not (cursor := page["nextCursor"]):
                break
        assert seen == [("a", b"a" * 600), ("b", b"b" * 600), ("c", b"c" * 300), ("d", b"d" * 200)]
        assert pages == 3  # a | b, c | d  (b + c = 900; d would make 1100)


async def test_list_with_values_pages_and_shares_cursors(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    keys = ["p/1", "p/2", "p/3", "p%_", "q"]
    for k in keys:
        await c.put("/api/kv/" + k.replace("%", "%25"), content=k.encode(), headers=h)
    page = (await c.get(f"{U}/list", params={"prefix": "p/", "limit": 2}, headers=h)).json()
    assert [(i["key"], base64.b64decode(i["value"])) for i in page["items"]] == [
        ("p/1", b"p/1"),
        ("p/2", b"p/2"),
    ]
    assert page["message"] == "2 keys"
    # The cursor of one listing continues the other.
    params = {"prefix": "p/", "cursor": page["nextCursor"]}
    plain = (await c.get("/api/kv", params=params, headers=h)).json()
    assert [i["key"] for i in plain["items"]] == ["p/3"] and plain["nextCursor"] is None
    first = (await c.get("/api/kv", params={"prefix": "p/", "limit": 1}, headers=h)).json()
    params = {"prefix": "p/", "cursor": first["nextCursor"]}
    rest = (await c.get(f"{U}/list", params=params, headers=h)).json()
    assert [i["key"] for i in rest["items"]] == ["p/2", "p/3"]
    # A cursor of another prefix, a tampered one, a limit over the maximum: 400s.
    params = {"prefix": "q", "cursor": page["nextCursor"]}
    r = await c.get(f"{U}/list", params=params, headers=h)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor")
    params = {"prefix": "p/", "cursor": page["nextCursor"][:-4] + "AAAA"}
    r = await c.get(f"{U}/list", params=params, headers=h)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_cursor")
    r = await c.get(f"{U}/list", params={"limit": 1001}, headers=h)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_limit")
    # `%` and `_` are ordinary in prefixes.
    page = (await c.get(f"{U}/list", params={"prefix": "p%"}, headers=h)).json()
    assert [i["key"] for i in page["items"]] == ["p%_"]


async def test_batches_race_single_sets_consistent_with_quota(api: Api, database_url: str) -> None:
    """Batches (atomic and not) and single sets and deletes on the same keys, all at once: every
    answer is one of the allowed ones, the quota never goes over, and the counter equals what is
    stored; every version handed out is unique."""
    quota = 6000
    h = await api.workspace("race", quota=quota)
    c = api.client
    keys = [f"k{i}" for i in range(12)]
    rng = random.Random(3)
    versions: list[int] = []

    async def batch(n: int) -> None:
        chosen = rng.sample(keys, rng.randint(1, 8))
        items = [{"key": k, "value": b64(bytes([n % 256]) * rng.randint(0, 900))} for k in chosen]
        r = await c.post(f"{U}/set", json={"items": items, "atomic": n % 2 == 0}, headers=h)
        if r.status_code == 200:
            for x in r.json()["results"]:
                assert (x["status"], x["code"]) in (
                    (200, None),
                    (201, None),
                    (413, "quota_exceeded"),
                )
                if x["version"] is not None:
                    versions.append(x["version"])
        else:
            assert (r.status_code, r.json()["code"]) == (413, "quota_exceeded"), r.text

    async def single(n: int) -> None:
        key = rng.choice(keys)
        if n % 3 == 0:
            r = await c.delete(f"/api/kv/{key}", headers=h)
            assert r.status_code in (200, 404)
            return
        r = await c.put(f"/api/kv/{key}", content=b"s" * rng.randint(0, 900), headers=h)
        if r.status_code in (200, 201):
            versions.append(r.json()["version"])
        else:
            assert (r.status_code, r.json()["code"]) == (413, "quota_exceeded")

    tasks = [batch(n) if n % 2 else single(n) for n in range(120)]
    await asyncio.gather(*tasks)
    assert len(versions) == len(set(versions))
    used = (await c.get("/api/usage", headers=h)).json()["used"]
    assert used == await stored_bytes(database_url, "race") and used <= quota


# --- the Python client, sync and async, against a live server ------------------------------------


def test_client_batch_sync(live_server: LiveServer) -> None:
    with MemoryServiceClient(live_server.url, new_workspace(live_server)) as c:
        w = c.storage.set_many({"a": b"\x00A", "b/c": b""})
        assert [(x.key, x.status) for x in w.results] == [("a", 201), ("b/c", 201)]
        tag = w.results[0].etag
        got = c.storage.get_many(["a", "nope", "b/c"])
        assert [(x.key, x.status, x.value) for x in got] == [
            ("a", 200, b"\x00A"),
            ("nope", 404, None),
            ("b/c", 200, b""),
        ]
        assert got[0].found and not got[1].found and got[1].code == "key_not_found"
        assert [x.exists for x in c.storage.exist_many(["nope", "a"])] == [False, True]
        with pytest.raises(PreconditionFailedError) as err:
            c.storage.set_many([SetItem("a", b"new", if_match='"999"')], atomic=True)
        assert err.value.code == "precondition_failed"
        w = c.storage.set_many(
            [SetItem("a", b"new", content_type="text/plain", if_match=tag)], atomic=True
        )
        assert w.atomic and w.results[0].status == 200
        assert c.storage.get_entry("a").content_type == "text/plain"
        assert [(i.key, i.value) for i in c.storage.list_values(page_size=1)] == [
            ("a", b"new"),
            ("b/c", b""),
        ]
        d = c.storage.delete_many(["a", DeleteItem("b/c", if_match='"1"'), "zz"])
        assert [(x.status, x.code) for x in d.results] == [
            (200, None),
            (412, "precondition_failed"),
            (404, "key_not_found"),
        ]
        with pytest.raises(BadRequestError) as bad:
            c.storage.get_many(["x", "x"])
        assert bad.value.code == "duplicate_key"


async def test_client_batch_async(live_server: LiveServer) -> None:
    async with AsyncMemoryServiceClient(live_server.url, new_workspace(live_server)) as c:
        w = await c.storage.set_many([SetItem("k", b"1", ttl=100), SetItem("j", b"22")])
        assert [x.status for x in w.results] == [201, 201] and w.results[0].expires_at
        got = await c.storage.get_many(["j", "k"])
        assert [x.value for x in got] == [b"22", b"1"]
        assert [x.exists for x in await c.storage.exist_many(["k", "q"])] == [True, False]
        assert [i.key async for i in c.storage.list_values()] == ["j", "k"]
        d = await c.storage.delete_many(["j", "k"], atomic=True)
        assert [x.freed_bytes for x in d.results] == [3, 2]
        with pytest.raises(NotFoundError):
            await c.storage.delete_many(["j"], atomic=True)


async def test_large_values_read_in_the_same_snapshot(api: Api) -> None:
    """Values over the inline limit (64 KiB; on SQLite first 1 MiB / keys, here 52 KiB) are read
    by a second statement (after the SQLite's batch is read again in a thread): still whole,
    still of the version the entry was read at."""
    h = await api.workspace("a")
    values = {f"big{i}": bytes([i]) * (100_000 + i) for i in range(3)}
    values.update({f"small{i}": b"s" * i for i in range(17)})
    items = [{"key": k, "value": b64(v)} for k, v in values.items()]
    r = await api.client.post(f"{U}/set", json={"items": items}, headers=h)
    versions = {x["key"]: x["version"] for x in r.json()["results"]}
    got = (await api.client.post(f"{U}/get", json={"keys": list(values)}, headers=h)).json()
    assert {x["key"]: base64.b64decode(x["value"]) for x in got["results"]} == values
    assert {x["key"]: x["version"] for x in got["results"]} == versions
    assert [x["valueLength"] for x in got["results"]] == [len(v) for v in values.values()]
