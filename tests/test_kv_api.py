"""The KV store through HTTP: values, versions, conditional requests, listing, TTL, usage."""

from __future__ import annotations

import os

import pytest

from tests.conftest import Api, stored_bytes


async def test_set_get_exist_delete_roundtrip(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    r = await c.put(
        "/api/kv/greeting", content=b"hello", headers={**h, "Content-Type": "text/plain"}
    )
    assert r.status_code == 201 and r.json()["created"] is True
    tag = r.headers["etag"]
    assert r.json()["etag"] == tag
    r = await c.get("/api/kv/greeting", headers=h)
    assert r.status_code == 200 and r.content == b"hello"
    assert r.headers["content-type"].startswith("text/plain") and r.headers["etag"] == tag
    assert (await c.head("/api/kv/greeting", headers=h)).status_code == 200
    r = await c.put("/api/kv/greeting", content=b"hi", headers=h)
    assert r.status_code == 200 and r.json()["created"] is False and r.headers["etag"] != tag
    r = await c.delete("/api/kv/greeting", headers=h)
    assert r.status_code == 200 and r.json() == {
        "success": True,
        "message": "Deleted",
        "key": "greeting",
        "deleted": True,
        "freedBytes": len("greeting") + 2,
    }
    assert (await c.get("/api/kv/greeting", headers=h)).status_code == 404
    assert (await c.head("/api/kv/greeting", headers=h)).status_code == 404
    assert (await c.delete("/api/kv/greeting", headers=h)).json()["code"] == "key_not_found"


@pytest.mark.parametrize(
    "key",
    [
        "a/b/c",
        "a/b/",
        "../etc/passwd",
        "with space",
        "100%",
        "a_b",
        "x:y",
        "ünï/κλειδί/🔑",
        "'quoted'",
        "a%2Fb",
    ],
)
async def test_keys_are_opaque_strings(sqlite_api: Api, key: str) -> None:
    from urllib.parse import quote

    h = await sqlite_api.workspace("a")
    path = "/api/kv/" + quote(key, safe="")
    r = await sqlite_api.client.put(path, content=key.encode(), headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["key"] == key
    assert (await sqlite_api.client.get(path, headers=h)).content == key.encode()
    listed = (await sqlite_api.client.get("/api/kv", params={"prefix": key}, headers=h)).json()
    assert [i["key"] for i in listed["items"]] == [key]


async def test_binary_fidelity(api: Api) -> None:
    h = await api.workspace("a")
    every_byte = bytes(range(256))
    big = os.urandom(5 * 1024 * 1024)
    for name, value in [("bytes", every_byte), ("big", big), ("empty", b"")]:
        assert (
            await api.client.put(f"/api/kv/{name}", content=value, headers=h)
        ).status_code == 201
        r = await api.client.get(f"/api/kv/{name}", headers=h)
        assert r.content == value
        assert r.headers["content-type"] == "application/octet-stream"


async def test_conditional_writes_and_deletes(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    r = await c.put("/api/kv/k", content=b"1", headers={**h, "If-None-Match": "*"})
    assert r.status_code == 201
    v1 = r.headers["etag"]
    r = await c.put("/api/kv/k", content=b"2", headers={**h, "If-None-Match": "*"})
    assert r.status_code == 412 and r.json()["success"] is False
    assert r.headers["etag"] == v1
    r = await c.put("/api/kv/k", content=b"2", headers={**h, "If-Match": v1})
    assert r.status_code == 200
    v2 = r.headers["etag"]
    r = await c.put("/api/kv/k", content=b"3", headers={**h, "If-Match": v1})
    assert r.status_code == 412 and r.json()["code"] == "precondition_failed"
    assert (await c.get("/api/kv/k", headers=h)).content == b"2"
    assert (
        await c.put("/api/kv/k", content=b"3", headers={**h, "If-Match": f'"0", {v2}'})
    ).status_code == 200
    assert (
        await c.put("/api/kv/new", content=b"x", headers={**h, "If-Match": "*"})
    ).status_code == 412
    assert (await c.get("/api/kv/new", headers=h)).status_code == 404
    r = await c.delete("/api/kv/k", headers={**h, "If-Match": v1})
    assert r.status_code == 412
    assert (await c.get("/api/kv/k", headers=h)).content == b"3"
    tag = (await c.get("/api/kv/k", headers=h)).headers["etag"]
    assert (await c.get("/api/kv/k", headers={**h, "If-None-Match": tag})).status_code == 304
    assert (await c.delete("/api/kv/k", headers={**h, "If-Match": tag})).status_code == 200


async def test_versions_never_repeat_after_delete(api: Api) -> None:
    h = await api.workspace("a")
    first = (await api.client.put("/api/kv/k", content=b"1", headers=h)).headers["etag"]
    await api.client.delete("/api/kv/k", headers=h)
    again = (await api.client.put("/api/kv/k", content=b"1", headers=h)).headers["etag"]
    assert again != first
    r = await api.client.put("/api/kv/k", content=b"2", headers={**h, "If-Match": first})
    assert r.status_code == 412


async def test_list_prefix_is_exact_and_paginated(api: Api) -> None:
    h = await api.workspace("a")
    keys = [f"p/{i:03d}" for i in range(25)] + [
        "p%",
        "p_x",
        "px",
        "q/1",
        "p",
        "p\u00ff",
        "p/\U0001f511",
    ]
    for k in keys:
        from urllib.parse import quote

        assert (
            await api.client.put("/api/kv/" + quote(k, safe=""), content=b"v", headers=h)
        ).status_code == 201
    seen, cursor = [], None
    while True:
        params = {"prefix": "p/", "limit": 7}
        if cursor:
            params["cursor"] = cursor
        r = await api.client.get("/api/kv", params=params, headers=h)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= 7
        seen += [i["key"] for i in body["items"]]
        cursor = body["nextCursor"]
        if not cursor:
            break
    expected = sorted((k for k in keys if k.startswith("p/")), key=lambda k: k.encode())
    assert seen == expected
    # Wildcards are ordinary characters.
    r = await api.client.get("/api/kv", params={"prefix": "p%"}, headers=h)
    assert [i["key"] for i in r.json()["items"]] == ["p%"]
    r = await api.client.get("/api/kv", params={"prefix": "p_"}, headers=h)
    assert [i["key"] for i in r.json()["items"]] == ["p_x"]


async def test_list_limit_above_maximum_is_refused(api: Api) -> None:
    h = await api.workspace("a")
    r = await api.client.get("/api/kv", params={"limit": api.settings.max_page_size + 1}, headers=h)
    assert r.status_code == 400 and r.json()["code"] == "invalid_limit"


async def test_ttl_expiry_hides_entries_before_any_sweep(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    r = await c.put("/api/kv/short", content=b"x" * 100, params={"ttl": 60}, headers=h)
    assert r.status_code == 201 and r.json()["expiresAt"]
    await c.put("/api/kv/keep", content=b"y", headers=h)
    assert (await c.get("/api/kv/short", headers=h)).content == b"x" * 100
    api.clock.advance(61)
    assert (await c.get("/api/kv/short", headers=h)).status_code == 404
    assert (await c.head("/api/kv/short", headers=h)).status_code == 404
    listed = (await c.get("/api/kv", headers=h)).json()["items"]
    assert [i["key"] for i in listed] == ["keep"]
    # The expired entry still occupies a row until a sweep; the sweep frees its bytes.
    assert (
        await stored_bytes(api.settings.database_url, "a") == len("short") + 100 + len("keep") + 1
    )
    r = await c.post("/admin/sweep", headers=api.admin)
    assert r.json()["message"] == f"freed {len('short') + 100} bytes"
    assert (await c.get("/api/usage", headers=h)).json()["used"] == len("keep") + 1
    assert await stored_bytes(api.settings.database_url, "a") == len("keep") + 1
    # An expired key can be created again (If-None-Match sees it as absent).
    r = await c.put("/api/kv/short", content=b"z", headers={**h, "If-None-Match": "*"})
    assert r.status_code == 201


async def test_usage_counts_keys_and_values_exactly(api: Api) -> None:
    h = await api.workspace("a", quota=1000)
    c = api.client
    await c.put("/api/kv/k1", content=b"a" * 100, headers=h)
    await c.put("/api/kv/k2", content=b"b" * 50, headers=h)
    await c.put("/api/kv/k1", content=b"c" * 10, headers=h)  # overwrite charges the difference
    assert (await c.get("/api/usage", headers=h)).json() == {
        "success": True,
        "message": "64 of 1000 bytes used",
        "workspace": "a",
        "used": 2 + 10 + 2 + 50,
        "quota": 1000,
    }
    await c.delete("/api/kv/k2", headers=h)
    assert (await c.get("/api/usage", headers=h)).json()["used"] == 12


async def test_quota_refusal_stores_nothing(api: Api) -> None:
    h = await api.workspace("a", quota=100)
    c = api.client
    assert (await c.put("/api/kv/k", content=b"x" * 90, headers=h)).status_code == 201
    r = await c.put("/api/kv/other", content=b"x" * 10, headers=h)
    assert r.status_code == 413 and r.json()["code"] == "quota_exceeded"
    assert (await c.get("/api/kv/other", headers=h)).status_code == 404
    r = await c.put("/api/kv/k", content=b"y" * 100, headers=h)  # 1 byte over
    assert r.status_code == 413
    assert (await c.get("/api/kv/k", headers=h)).content == b"x" * 90
    assert (await c.get("/api/usage", headers=h)).json()["used"] == 91
    # Shrinking is always allowed, and freed bytes can be used at once.
    assert (await c.put("/api/kv/k", content=b"s", headers=h)).status_code == 200
    assert (await c.put("/api/kv/other", content=b"x" * 10, headers=h)).status_code == 201


async def test_expired_bytes_do_not_block_new_writes(api: Api) -> None:
    h = await api.workspace("a", quota=100)
    await api.client.put("/api/kv/t", content=b"x" * 90, params={"ttl": 1}, headers=h)
    api.clock.advance(2)
    r = await api.client.put("/api/kv/u", content=b"y" * 90, headers=h)
    assert r.status_code == 201, r.text
    assert (await api.client.get("/api/usage", headers=h)).json()["used"] == 91
