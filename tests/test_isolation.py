"""Workspace isolation: with workspace B's key, A's data is as if it did not exist.

The strongest form of "as if it did not exist" is a twin world: the same sequence of requests
made by B in a database where A holds data and in one where A holds nothing must give the same
answers, byte for byte (statuses, bodies, ETags), and must leave A's data and usage untouched.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import pytest

from memory_service.settings import sqlite_url
from tests.conftest import Api, make_api, stored_bytes

A_DATA = {
    "secret": b"a's secret value",
    "shared": b"a-shared",
    "dir/x": b"\x00\xffA binary",
    "dir/y": b"y" * 50,
    "\u00fcml/\U0001f511": b"unicode key",
}
A_TTL_KEY = "dir/ttl"  # a TTL'd entry of A, still live while B probes
B_DATA = {"shared": b"b-shared", "dir/b": b"bee", "dir/z": b"zed", "zzz": b"z"}
ABSENT = "never-written"


def path(key: str) -> str:
    return "/api/kv/" + quote(key, safe="")


@pytest.fixture
def twin_database_url(database_url: str, request: pytest.FixtureRequest, tmp_path) -> str:  # noqa: ANN001
    """A second empty database of the same kind as `database_url`."""
    if database_url.startswith("sqlite"):
        return sqlite_url(tmp_path / "twin.db")
    return request.getfixturevalue("pg").create_database(f"twin_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def worlds(database_url: str, twin_database_url: str) -> AsyncIterator[tuple[Api, Api]]:
    """(world where A has data, world where A has none); B's data is the same in both."""
    with_a, _ = await make_api(database_url)
    without_a, _ = await make_api(twin_database_url)
    async with with_a.client, without_a.client:
        yield with_a, without_a


async def setup_world(api: Api, a_writes: bool) -> tuple[dict, dict]:
    # Same creation order in both worlds, so both have the same workspace ids.
    a = await api.workspace("a")
    b = await api.workspace("b")
    if a_writes:
        for key, value in A_DATA.items():
            r = await api.client.put(path(key), content=value, headers=a)
            assert r.status_code == 201, r.text
        r = await api.client.put(path(A_TTL_KEY), content=b"t", params={"ttl": 3600}, headers=a)
        assert r.status_code == 201, r.text
    for key, value in B_DATA.items():
        r = await api.client.put(path(key), content=value, headers=b)
        assert r.status_code == 201, r.text
    return a, b


async def snapshot(api: Api, headers: dict) -> dict:
    """Everything a workspace can observe of its own data."""
    c = api.client
    listing = (await c.get("/api/kv", params={"limit": 1000}, headers=headers)).json()
    values = {}
    for item in listing["items"]:
        r = await c.get(path(item["key"]), headers=headers)
        values[item["key"]] = (
            r.status_code,
            r.content,
            r.headers["etag"],
            r.headers["content-type"],
        )
    usage = (await c.get("/api/usage", headers=headers)).json()
    return {"listing": listing, "values": values, "usage": usage}


def _normalise(body: object) -> object:
    """Drop wall-clock timestamps, which differ between the two runs and carry no data, and
    blank cursors: sealed with a fresh nonce each time, they differ in every answer (whether
    one is there is kept)."""
    if isinstance(body, dict):
        return {
            k: (
                "<cursor>" if v is not None and k in ("nextCursor", "dataCursor") else _normalise(v)
            )
            for k, v in body.items()
            if k != "updatedAt"
        }
    if isinstance(body, list):
        return [_normalise(v) for v in body]
    return body


async def b_transcript(api: Api, b: dict, a_etags: list[str], a_cursors: list[str]) -> list:
    """B's probes of A's keys, prefixes, ETags and cursors, each answer recorded."""
    c = api.client
    log: list = []

    async def record(label: str, method: str, url: str, **kw: object) -> object:
        r = await c.request(method, url, **kw)
        try:
            body = _normalise(r.json())
        except ValueError:
            body = r.content
        log.append(
            (
                label,
                r.status_code,
                body,
                r.headers.get("etag"),
                r.headers.get("x-value-length"),
                r.headers.get("content-type"),
            )
        )
        return body

    keys = [*A_DATA, A_TTL_KEY, ABSENT]
    for key in keys:
        p = path(key)
        await record(f"get {key}", "GET", p, headers=b)
        await record(f"head {key}", "HEAD", p, headers=b)
        for tag in [*a_etags, "*"]:
            await record(f"get inm {key} {tag}", "GET", p, headers={**b, "If-None-Match": tag})
            await record(
                f"put if-match {key} {tag}",
                "PUT",
                p,
                content=b"by-b",
                headers={**b, "If-Match": tag},
            )
            await record(
                f"delete if-match {key} {tag}", "DELETE", p, headers={**b, "If-Match": tag}
            )
        await record(f"get after {key}", "GET", p, headers=b)
    await record("usage", "GET", "/api/usage", headers=b)

    seen_cursors = []
    for prefix in ["", "dir/", "secret", "\u00fcml/", "s", "d"]:
        await record(f"list {prefix!r}", "GET", "/api/kv", params={"prefix": prefix}, headers=b)
        cursor = None
        for page in range(10):  # page one key at a time and reuse every cursor
            params = {"prefix": prefix, "limit": 1}
            if cursor:
                params["cursor"] = cursor
            body = await record(
                f"page {prefix!r} {page}", "GET", "/api/kv", params=params, headers=b
            )
            cursor = body.get("nextCursor") if isinstance(body, dict) else None
            if not cursor:
                break
            seen_cursors.append((prefix, cursor))
    for prefix, cursor in seen_cursors:  # a cursor used a second time gives the same page
        params = {"prefix": prefix, "limit": 1, "cursor": cursor}
        await record(f"reuse {prefix!r}", "GET", "/api/kv", params=params, headers=b)
    for i, cursor in enumerate(a_cursors):
        for prefix in ["", "dir/"]:
            params = {"prefix": prefix, "cursor": cursor}
            await record(f"a's cursor {i} {prefix!r}", "GET", "/api/kv", params=params, headers=b)

    # Unconditional and create-only writes on A's key names land in B's own space.
    for key in keys:
        await record(
            f"create-only {key}",
            "PUT",
            path(key),
            content=b"b-new",
            headers={**b, "If-None-Match": "*"},
        )
        await record(f"get created {key}", "GET", path(key), headers=b)
        await record(f"overwrite {key}", "PUT", path(key), content=b"b-over", headers=b)
        await record(f"delete {key}", "DELETE", path(key), headers=b)
        await record(f"delete again {key}", "DELETE", path(key), headers=b)
    await record("usage at end", "GET", "/api/usage", headers=b)
    await record("list at end", "GET", "/api/kv", headers=b)
    return log


async def a_cursors_and_etags(api: Api, a: dict) -> tuple[list[str], list[str]]:
    c = api.client
    etags = []
    for key in [*A_DATA, A_TTL_KEY]:
        etags.append((await c.get(path(key), headers=a)).headers["etag"])
    cursors = []
    for prefix in ["", "dir/"]:
        r = await c.get("/api/kv", params={"prefix": prefix, "limit": 1}, headers=a)
        cursors.append(r.json()["nextCursor"])
    assert all(cursors)
    return etags, cursors


async def test_b_sees_a_as_absent_and_changes_nothing(worlds: tuple[Api, Api]) -> None:
    with_a, without_a = worlds
    a, b = await setup_world(with_a, a_writes=True)
    _, b2 = await setup_world(without_a, a_writes=False)
    a_etags, a_cursors = await a_cursors_and_etags(with_a, a)
    a_before = await snapshot(with_a, a)
    assert a_before["usage"]["used"] > 0

    seen_with_a = await b_transcript(with_a, b, a_etags, a_cursors)
    seen_without_a = await b_transcript(without_a, b2, a_etags, a_cursors)

    # Same answers, request by request, whether or not A's data exists.
    assert len(seen_with_a) == len(seen_without_a)
    for got, expected in zip(seen_with_a, seen_without_a, strict=True):
        assert got == expected
    # And none of A's data leaked into any answer.
    text = repr(seen_with_a)
    for value in A_DATA.values():
        assert repr(value) not in text

    # A's data, versions and usage are exactly as before.
    assert await snapshot(with_a, a) == a_before
    assert a_before["usage"]["used"] == await stored_bytes(with_a.settings.database_url, "a")


async def test_b_reads_of_a_keys_answer_like_absent_keys(sqlite_api: Api) -> None:
    """The direct form: B's answer for A's key equals its answer for a key nobody wrote."""
    c = sqlite_api.client
    a = await sqlite_api.workspace("a")
    b = await sqlite_api.workspace("b")
    r = await c.put(path("secret"), content=b"s3cret", headers=a)
    tag = r.headers["etag"]
    for key in ["secret", "absent"]:
        assert (await c.get(path(key), headers=b)).json() == {
            "success": False,
            "error": "key not found",
            "message": "key not found",
            "code": "key_not_found",
        }
    pairs = [
        ("GET", {}),
        ("HEAD", {}),
        ("DELETE", {}),
        ("DELETE", {"If-Match": tag}),
        ("PUT", {"If-Match": tag}),
        ("PUT", {"If-Match": "*"}),
    ]
    for method, extra in pairs:
        got = await c.request(method, path("secret"), content=b"x", headers={**b, **extra})
        absent = await c.request(method, path("absent"), content=b"x", headers={**b, **extra})
        assert got.status_code == absent.status_code and got.status_code in (404, 412)
        assert got.content == absent.content
        assert "etag" not in got.headers
    assert (await c.get("/api/kv", params={"prefix": "sec"}, headers=b)).json()["items"] == []
    assert (await c.get("/api/usage", headers=b)).json()["used"] == 0
    assert (await c.get(path("secret"), headers=a)).content == b"s3cret"
    assert (await c.get(path("secret"), headers=a)).headers["etag"] == tag
