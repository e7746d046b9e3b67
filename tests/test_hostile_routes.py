"""Routing a hostile world can reach (issue 20: 2 and 4).

KV keys made only of slashes, or with leading, trailing or repeated ones, are keys like any other:
Litestar's router folds such paths (`/api/kv/%2F` reached the listing), so the app routes them
by the raw path (http/paths.py, unfold_tail). A literal '/' and '%2F' are the same character.

Every route that answers GET answers HEAD with GET's status and headers and no body, and
OPTIONS and the 405s' `Allow` name the same methods, the ones the route really serves
(http/methods.py). Both are checked over the app's own route table, so that a route added later
is checked too.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute

from tests.conftest import Api
from tests.support.live import new_workspace
from tests.support.server import LiveServer

# Keys a path would fold, each with the spellings a client may send: literal slashes, or '%2F'.
SLASH_KEYS = ["/", "//", "///", "a//b", "/a", "a/", "/a/", "a/b/", "//a//"]


def spellings(key: str) -> list[str]:
    encoded = urllib.parse.quote(key, safe="")
    literal = urllib.parse.quote(key, safe="/")
    return sorted({"/api/kv/" + encoded, "/api/kv/" + literal})


def envelope_code(r) -> str:  # noqa: ANN001
    body = r.json()
    assert body["success"] is False, body
    return str(body["code"])


def comparable(headers) -> list[tuple[str, str]]:  # noqa: ANN001
    """The headers of an answer, but its request id (different for each request)."""
    return sorted((k.lower(), v) for k, v in headers.multi_items() if k.lower() != "x-request-id")


async def test_keys_of_slashes_are_stored_read_and_deleted_as_sent(api: Api) -> None:
    ws = await api.workspace("slashes")
    for n, key in enumerate(SLASH_KEYS):
        first, *others = spellings(key)
        value = b"\x00value of " + key.encode() + b"\xff"
        r = await api.client.put(
            first, content=value, headers={**ws, "If-None-Match": "*", "Content-Type": "x/y"}
        )
        assert r.status_code == 201, (key, r.text)
        assert r.json()["key"] == key
        tag = r.headers["etag"]
        assert tag == f'"{r.json()["version"]}"'
        for path in [first, *others]:
            got = await api.client.get(path, headers=ws)
            assert got.status_code == 200, (path, got.text)
            assert got.content == value
            assert got.headers["etag"] == tag
            assert got.headers["content-type"] == "x/y"
            assert got.headers["content-length"] == str(len(value))
            head = await api.client.head(path, headers=ws)
            assert head.status_code == 200, path
            assert head.content == b""
            assert comparable(head.headers) == comparable(got.headers), path
            cached = await api.client.get(path, headers={**ws, "If-None-Match": tag})
            assert cached.status_code == 304, path
        # Conditions hold on these keys as on any other.
        again = await api.client.put(first, content=b"x", headers={**ws, "If-None-Match": "*"})
        assert (again.status_code, envelope_code(again)) == (412, "precondition_failed")
        stale = await api.client.put(first, content=b"x", headers={**ws, "If-Match": '"999"'})
        assert (stale.status_code, envelope_code(stale)) == (412, "precondition_failed")
        path = others[0] if others else first
        replaced = await api.client.put(path, content=b"new", headers={**ws, "If-Match": tag})
        assert replaced.status_code == 200, (key, replaced.text)
        assert (replaced.json()["key"], replaced.json()["created"]) == (key, False)
        tag = replaced.headers["etag"]
        gone = await api.client.delete(first, headers={**ws, "If-Match": '"999"'})
        assert (gone.status_code, envelope_code(gone)) == (412, "precondition_failed")
        assert (await api.client.get(path, headers=ws)).content == b"new"
        if n % 2:  # every other key stays, for the listing below
            deleted = await api.client.delete(path, headers={**ws, "If-Match": tag})
            assert deleted.status_code == 200, (key, deleted.text)
            assert deleted.json()["key"] == key
            assert deleted.json()["freedBytes"] == len(key.encode()) + 3
            for spelled in spellings(key):
                missing = await api.client.get(spelled, headers=ws)
                assert (missing.status_code, envelope_code(missing)) == (404, "key_not_found")
                assert (await api.client.head(spelled, headers=ws)).status_code == 404
    kept = sorted(k for n, k in enumerate(SLASH_KEYS) if not n % 2)
    listed = await api.client.get("/api/kv", params={"prefix": "/"}, headers=ws)
    assert [i["key"] for i in listed.json()["items"]] == [k for k in kept if k.startswith("/")]
    listed = await api.client.get("/api/kv", headers=ws)
    assert [i["key"] for i in listed.json()["items"]] == kept


async def test_a_key_of_slashes_expires_like_any_other(api: Api) -> None:
    ws = await api.workspace("ttl")
    for key in ("/", "//", "a//"):
        r = await api.client.put(
            "/api/kv/" + urllib.parse.quote(key, safe=""),
            content=b"v",
            params={"ttl": 5},
            headers=ws,
        )
        assert r.status_code == 201, r.text
        assert r.json()["expiresAt"] is not None
        got = await api.client.get("/api/kv/" + key, headers=ws)
        assert (got.status_code, got.content) == (200, b"v")
        assert "x-expires-at" in got.headers
    api.clock.advance(6)
    for key in ("/", "//", "a//"):
        for path in spellings(key):
            got = await api.client.get(path, headers=ws)
            assert (got.status_code, envelope_code(got)) == (404, "key_not_found")
    listed = await api.client.get("/api/kv", params={"prefix": "/"}, headers=ws)
    assert listed.json()["items"] == []


async def test_the_kv_root_is_the_listing_and_an_empty_key_a_400(api: Api) -> None:
    ws = await api.workspace("root")
    await api.client.put("/api/kv/%2F", content=b"v", headers=ws)
    for path in ("/api/kv", "/api/kv/"):
        got = await api.client.get(path, headers=ws)
        assert got.status_code == 200
        assert [i["key"] for i in got.json()["items"]] == ["/"]
        head = await api.client.head(path, headers=ws)
        assert (head.status_code, head.content) == (200, b"")
        assert comparable(head.headers) == comparable(got.headers)
        for method in ("PUT", "DELETE"):
            r = await api.client.request(method, path, content=b"v", headers=ws)
            assert (r.status_code, envelope_code(r)) == (400, "invalid_key"), (method, path)
    assert (await api.client.get("/api/kv/%2F", headers=ws)).content == b"v"  # unchanged


# --- HEAD, OPTIONS and Allow over the whole route table -------------------------------------

# A write to the KV root is one with an empty key: refused as such, not as a wrong method.
EMPTY_KEY = {("PUT", "/api/kv"), ("DELETE", "/api/kv")}
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def http_routes(app: Litestar) -> list[HTTPRoute]:
    # /mcp is a mounted ASGI app (the MCP SDK's), not a Litestar route: it says its own methods.
    return [route for route in app.routes if isinstance(route, HTTPRoute)]


def declared(route: HTTPRoute) -> set[str]:
    """What a route's handlers declare, HEAD implied by GET (RFC 9110 9.1)."""
    methods = {str(m) for m in route.methods}
    return methods | {"HEAD"} if "GET" in methods else methods


def sample_path(route: HTTPRoute, workspace: str) -> str:
    """The route's path, its parameters filled in with values that exist."""
    values = {
        "key": "k",
        "block_id": "b",
        "key_id": "999999",  # no such key: a revocation must not revoke the seeded one
        "path": "nothing-here",
    }
    path = route.path_format
    if path.startswith("/admin/workspaces/"):
        values["name"] = workspace
    elif path.startswith("/api/tools/"):
        values["name"] = "memory_get"
    elif path.startswith("/ui/"):
        values["name"] = "app.js"
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, f"no sample value for a parameter of {route.path_format}"
    return path


@pytest.fixture
async def seeded_api(api: Api) -> tuple[Api, dict[str, str]]:
    ws = await api.workspace("seeded")
    r = await api.client.put("/api/kv/k", content=b"stored bytes", headers=ws)
    assert r.status_code == 201
    r = await api.client.post(
        "/api/memory",
        json={"conversationId": "c", "role": "user", "content": "hi"},
        headers=ws,
    )
    assert r.status_code == 200, r.text
    return api, ws


def app_of(api: Api) -> Litestar:
    app = api.client.app
    assert isinstance(app, Litestar)
    return app


async def test_every_get_route_answers_head_as_get_without_the_body(
    seeded_api: tuple[Api, dict[str, str]],
) -> None:
    api, ws = seeded_api
    checked = []
    for route in http_routes(app_of(api)):
        if "GET" not in route.methods:
            continue
        path = sample_path(route, "seeded")
        creds = api.admin if path.startswith("/admin") else ws
        for headers in (creds, {}, {"Authorization": "Bearer ms_wrong"}):
            get = await api.client.get(path, headers=headers)
            head = await api.client.head(path, headers=headers)
            assert head.status_code == get.status_code, (path, get.status_code, head.status_code)
            assert head.content == b"", path
            if path == "/metrics":
                # Counts the requests themselves: the same headers, a body that grew meanwhile.
                assert [k for k, _ in comparable(head.headers)] == [
                    k for k, _ in comparable(get.headers)
                ]
                continue
            assert comparable(head.headers) == comparable(get.headers), path
            assert get.headers.get("content-length") == str(len(get.content)) or (
                "content-length" not in get.headers
            ), path
        checked.append(path)
    # The route table holds what it should (the check above reaches the routes that matter).
    assert {"/api/kv/k", "/api/kv", "/api/memory", "/api/usage", "/health", "/ui"} <= set(checked)


async def test_head_of_a_value_answers_what_get_answers_under_every_condition(
    seeded_api: tuple[Api, dict[str, str]],
) -> None:
    api, ws = seeded_api
    tag = (await api.client.get("/api/kv/k", headers=ws)).headers["etag"]
    conditions = [
        {},
        {"If-None-Match": tag},
        {"If-None-Match": "*"},
        {"If-None-Match": '"999"'},
        {"If-None-Match": f"W/{tag}"},
        {"If-Match": tag},
        {"If-Match": '"999"'},
        {"If-Match": f"W/{tag}"},
        {"If-Match": "garbage"},
    ]
    for path in ("/api/kv/k", "/api/kv/missing", "/api/kv/%ff"):
        for condition in conditions:
            get = await api.client.get(path, headers={**ws, **condition})
            head = await api.client.head(path, headers={**ws, **condition})
            assert (head.status_code, head.content) == (get.status_code, b""), (path, condition)
            assert comparable(head.headers) == comparable(get.headers), (path, condition)
    head = await api.client.head("/api/kv/k", headers=ws)
    assert head.headers["content-length"] == str(len(b"stored bytes"))
    assert head.headers["x-value-length"] == str(len(b"stored bytes"))


async def test_options_and_every_405_name_the_methods_the_route_serves(
    seeded_api: tuple[Api, dict[str, str]],
) -> None:
    api, ws = seeded_api
    # Every method is sent: the admin routes address a workspace and a key of their own (see
    # sample_path), so that the seeded credential still works for the routes after them.
    await api.workspace("admin-target")
    for route in http_routes(app_of(api)):
        path = sample_path(route, "admin-target")
        serves = declared(route)
        # The admin API's guard holds for OPTIONS too.
        creds = api.admin if path.startswith("/admin") else ws
        options = await api.client.options(path, headers=creds)
        assert options.status_code == 204, (path, options.text)
        allow = options.headers["allow"]
        assert allow == ", ".join(sorted(serves)), path
        for method in ALL_METHODS:
            r = await api.client.request(method, path, headers=creds)
            if method in serves:
                assert r.status_code != 405, (method, path)
                continue
            if (method, path) in EMPTY_KEY:
                assert (r.status_code, envelope_code(r)) == (400, "invalid_key")
                continue
            assert r.status_code == 405, (method, path, r.status_code)
            assert r.headers["allow"] == allow, (method, path)
            if method != "HEAD":
                assert envelope_code(r) == "method_not_allowed", (method, path)


async def test_options_of_a_key_of_slashes_is_the_key_route(api: Api) -> None:
    key_methods = "DELETE, GET, HEAD, OPTIONS, PUT"
    ws = await api.workspace("opts")  # the routes' guard holds for OPTIONS too
    for path in ("/api/kv/%2F", "/api/kv//", "/api/kv/a//", "/api/kv/x"):
        r = await api.client.options(path, headers=ws)
        assert (r.status_code, r.headers["allow"]) == (204, key_methods), path
        refused = await api.client.post(path, content=b"v", headers=ws)
        assert (refused.status_code, refused.headers["allow"]) == (405, key_methods), path
        assert envelope_code(refused) == "method_not_allowed"
    root = await api.client.options("/api/kv/", headers=ws)
    assert (root.status_code, root.headers["allow"]) == (204, "GET, HEAD, OPTIONS")


def raw_request(
    server: LiveServer, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    """One request sent as written (http.client neither folds nor re-encodes the path)."""
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body if method == "PUT" else None, headers=headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_a_live_server_routes_keys_of_slashes_and_heads_as_gets(live_server: LiveServer) -> None:
    ws = {"Authorization": f"Bearer {new_workspace(live_server, 'slashes')}"}
    status, _, body = raw_request(live_server, "PUT", "/api/kv//", ws, b"one slash")
    assert (status, json.loads(body)["key"]) == (201, "/")
    status, _, body = raw_request(live_server, "PUT", "/api/kv/%2F%2F", ws, b"two")
    assert (status, json.loads(body)["key"]) == (201, "//")
    for path, value in [("/api/kv/%2F", b"one slash"), ("/api/kv///", b"two")]:
        status, got, body = raw_request(live_server, "GET", path, ws)
        assert (status, body) == (200, value), path
        status, head, body = raw_request(live_server, "HEAD", path, ws)
        assert (status, body) == (200, b""), path
        del got["date"], got["x-request-id"], head["date"], head["x-request-id"]
        assert head == got, path
        assert head["content-length"] == str(len(value))
    status, got, body = raw_request(live_server, "GET", "/api/kv?prefix=/", ws)
    assert [i["key"] for i in json.loads(body)["items"]] == ["/", "//"]
    status, got, _ = raw_request(live_server, "OPTIONS", "/api/kv//", ws)
    assert (status, got["allow"]) == (204, "DELETE, GET, HEAD, OPTIONS, PUT")
    status, _, body = raw_request(live_server, "DELETE", "/api/kv//", ws)
    assert (status, json.loads(body)["key"]) == (200, "/")
    status, _, body = raw_request(live_server, "GET", "/api/kv/%2F", ws)
    assert (status, json.loads(body)["code"]) == (404, "key_not_found")
