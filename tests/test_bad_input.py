"""Bad input of every kind: the right 4xx, the error envelope with a clear message, and nothing
changed (the workspace's usage, listing and the admin view are the same before and after).

One app per database kind serves the whole table (a fresh app per case would cost more than the
cases); each case compares snapshots taken right around its own request.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from memory_service.settings import sqlite_url
from tests.conftest import ADMIN_TOKEN, Api, make_api

MAX_VALUE = 1024  # small, so that an oversize value is cheap to send
QUOTA = 1000
SEED = {"base": b"v", "bin": bytes(range(200)), "dir/a": b"a", "dir/b": b"b", "dir/c": b"c"}


@dataclass
class Table:
    api: Api
    ws: dict[str, str]  # auth headers of workspace "t"

    async def snapshot(self) -> dict:
        c, admin = self.api.client, self.api.admin
        return {
            "usage": (await c.get("/api/usage", headers=self.ws)).json(),
            "listing": (await c.get("/api/kv", params={"limit": 1000}, headers=self.ws)).json(),
            "workspaces": (await c.get("/admin/workspaces", headers=admin)).json(),
            "keys": (await c.get("/admin/workspaces/t/keys", headers=admin)).json(),
        }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def table(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Table]:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path_factory.mktemp("bad") / "memory.db")
    else:
        url = request.getfixturevalue("pg").create_database(f"bad_{uuid.uuid4().hex[:12]}")
    api, _ = await make_api(url, max_value_bytes=MAX_VALUE)
    async with api.client:
        ws = await api.workspace("t", quota=QUOTA)
        await api.workspace("other")
        for key, value in SEED.items():
            r = await api.client.put(f"/api/kv/{key}", content=value, headers=ws)
            assert r.status_code == 201, r.text
        yield Table(api, ws)


Prepare = Callable[[Table], Awaitable[dict]]


@dataclass
class Case:
    id: str
    method: str
    url: str
    status: int
    code: str | tuple[str, ...]
    # "ws" (workspace t's key), "admin", "none", or explicit headers that replace the credential
    auth: str | dict = "ws"
    headers: dict = field(default_factory=dict)
    params: dict | None = None
    content: bytes | None = None
    json: object = None
    mentions: str = ""  # a word the message must contain, so it says what was wrong
    prepare: Prepare | None = None  # may return extra request fields (headers, params)


def b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


async def revoked_key(t: Table) -> dict:
    c, admin = t.api.client, t.api.admin
    r = await c.post("/admin/workspaces/t/keys", json={"label": "doomed"}, headers=admin)
    secret, key_id = r.json()["key"], r.json()["keyInfo"]["id"]
    auth = {"Authorization": f"Bearer {secret}"}
    assert (await c.get("/api/usage", headers=auth)).status_code == 200  # now in the auth cache
    assert (await c.delete(f"/admin/keys/{key_id}", headers=admin)).status_code == 200
    return {"headers": auth}


async def cursor_of_dir(t: Table) -> dict:
    r = await t.api.client.get("/api/kv", params={"prefix": "dir/", "limit": 1}, headers=t.ws)
    return {"params": {"prefix": "b", "cursor": r.json()["nextCursor"]}}


async def stale_etag(t: Table) -> dict:
    tag = (await t.api.client.get("/api/kv/base", headers=t.ws)).headers["etag"]
    return {"headers": {"If-Match": f'"{int(tag.strip(chr(34))) + 1000}"'}}


def kv(key_path: str, status: int, code: str | tuple[str, ...], **kw: object) -> list[Case]:
    """The same bad key through every KV method."""
    return [
        Case(
            f"{m.lower()}-{kw.get('id', key_path)}",
            m,
            f"/api/kv/{key_path}",
            status,
            code,
            content=b"x" if m == "PUT" else None,
            mentions=kw.get("mentions", ""),
        )
        for m in ("PUT", "GET", "HEAD", "DELETE")
    ]


TTL_CODES = ("invalid_ttl", "invalid_request")
LIMIT_CODES = ("invalid_limit", "invalid_request")
BODY_CODES = ("invalid_request", "bad_request")

CASES: list[Case] = [
    # --- keys -----------------------------------------------------------------------------
    Case("empty-key-slash", "PUT", "/api/kv/", 400, "invalid_key", content=b"x", mentions="empty"),
    Case("empty-key-bare", "PUT", "/api/kv", 400, "invalid_key", content=b"x", mentions="empty"),
    Case("empty-key-delete", "DELETE", "/api/kv/", 400, "invalid_key", mentions="empty"),
    *kv("k" * 513, 400, "invalid_key", id="513-bytes", mentions="513"),
    Case(
        "key-514-utf8-bytes",
        "PUT",
        "/api/kv/" + "%C3%A9" * 257,
        400,
        "invalid_key",
        content=b"x",
        mentions="514",
    ),
    *kv("a%00b", 400, "invalid_key", mentions="control"),
    *kv("a%1Fb", 400, "invalid_key", mentions="control"),
    *kv("a%7Fb", 400, "invalid_key", mentions="control"),
    *kv("a%C2%85b", 400, "invalid_key", id="u0085", mentions="control"),
    Case("key-newline", "PUT", "/api/kv/a%0Ab", 400, "invalid_key", content=b"x"),
    Case("key-tab", "PUT", "/api/kv/a%09b", 400, "invalid_key", content=b"x"),
    *kv("a%FFb", 400, "invalid_key", mentions="UTF-8"),
    Case(
        "key-truncated-utf8",
        "PUT",
        "/api/kv/a%C3",
        400,
        "invalid_key",
        content=b"x",
        mentions="UTF-8",
    ),
    Case(
        "key-surrogate",
        "PUT",
        "/api/kv/%ED%A0%80",
        400,
        "invalid_key",
        content=b"x",
        mentions="UTF-8",
    ),
    Case(
        "key-overlong-utf8",
        "PUT",
        "/api/kv/%C0%AF",
        400,
        "invalid_key",
        content=b"x",
        mentions="UTF-8",
    ),
    # --- values and quota -------------------------------------------------------------------
    Case(
        "value-over-max",
        "PUT",
        "/api/kv/big",
        413,
        "value_too_large",
        content=b"x" * (MAX_VALUE + 1),
        mentions="maximum",
    ),
    Case(
        "overwrite-over-max",
        "PUT",
        "/api/kv/base",
        413,
        "value_too_large",
        content=b"x" * (MAX_VALUE + 1),
    ),
    Case(
        "body-far-over-max",
        "PUT",
        "/api/kv/big",
        413,
        "too_large",
        content=b"x" * (MAX_VALUE + 200 * 1024),
        mentions="large",
    ),
    Case(
        "over-quota",
        "PUT",
        "/api/kv/fits-max",
        413,
        "quota_exceeded",
        content=b"q" * MAX_VALUE,
        mentions="quota",
    ),
    # --- conditions ---------------------------------------------------------------------------
    *[
        Case(
            f"if-match-{i}",
            "PUT",
            "/api/kv/base",
            400,
            "invalid_precondition",
            headers={"If-Match": bad},
            content=b"new",
            mentions="If-Match",
        )
        for i, bad in enumerate(["abc", '"1', "", '"1", *', "1", '"a"b"', 'W/ "1"'])
    ],
    # Well-formed entity tags that are not the current one (weak ones never match If-Match).
    *[
        Case(
            f"if-match-other-{i}",
            "PUT",
            "/api/kv/base",
            412,
            "precondition_failed",
            headers={"If-Match": other},
            content=b"new",
        )
        for i, other in enumerate(['W/"x"', '"-1"', '"1.0"', '"some-other-tag"'])
    ],
    Case(
        "if-match-delete",
        "DELETE",
        "/api/kv/base",
        400,
        "invalid_precondition",
        headers={"If-Match": "junk"},
    ),
    Case(
        "if-match-delete-absent",
        "DELETE",
        "/api/kv/nope",
        400,
        "invalid_precondition",
        headers={"If-Match": "junk"},
    ),
    Case(
        "stale-if-match-put",
        "PUT",
        "/api/kv/base",
        412,
        "precondition_failed",
        content=b"new",
        prepare=stale_etag,
    ),
    Case(
        "stale-if-match-delete",
        "DELETE",
        "/api/kv/base",
        412,
        "precondition_failed",
        prepare=stale_etag,
    ),
    Case(
        "if-match-absent",
        "PUT",
        "/api/kv/nope",
        412,
        "precondition_failed",
        headers={"If-Match": "*"},
        content=b"new",
    ),
    Case(
        "if-none-match-exists",
        "PUT",
        "/api/kv/base",
        412,
        "precondition_failed",
        headers={"If-None-Match": "*"},
        content=b"new",
    ),
    *[
        Case(
            f"if-none-match-{i}",
            "PUT",
            "/api/kv/new",
            400,
            "invalid_precondition",
            headers={"If-None-Match": bad},
            content=b"new",
            mentions="If-None-Match",
        )
        for i, bad in enumerate(["", "**", "1", '"1'])
    ],
    # --- ttl ----------------------------------------------------------------------------------
    *[
        Case(
            f"ttl-{ttl or 'empty'}",
            "PUT",
            "/api/kv/new",
            400,
            TTL_CODES,
            params={"ttl": ttl},
            content=b"new",
            mentions="ttl",
        )
        for ttl in [
            "-1",
            "0",
            "-0",
            "1e-9",
            "0.0009",
            "1e300",
            "315360001",
            "abc",
            "",
            "nan",
            "inf",
            "-inf",
            "0x10",
        ]
    ],
    # --- listing ------------------------------------------------------------------------------
    *[
        Case(
            f"limit-{limit or 'empty'}",
            "GET",
            "/api/kv",
            400,
            LIMIT_CODES,
            params={"limit": limit},
            mentions="limit",
        )
        for limit in ["0", "-1", "1001", "99999999999999999999999", "abc", "1.5", ""]
    ],
    *[
        Case(
            f"cursor-{i}",
            "GET",
            "/api/kv",
            400,
            "invalid_cursor",
            params={"cursor": cursor},
            mentions="cursor",
        )
        for i, cursor in enumerate(
            [
                "!!!",
                "abc",
                "%%%",
                b64([1, 2]),
                b64("text"),
                b64({"after": "zz", "prefix": ""}),
                b64({"after": 5, "prefix": ""}),
                b64({"prefix": ""}),
                b64({"after": "61", "prefix": "62"}),  # prefix "b" cursor used without prefix
                base64.urlsafe_b64encode(b"\xff\xfe{").decode(),
            ]
        )
    ],
    Case(
        "cursor-of-another-prefix",
        "GET",
        "/api/kv",
        400,
        "invalid_cursor",
        prepare=cursor_of_dir,
        mentions="cursor",
    ),
    # --- absent keys ----------------------------------------------------------------------------
    Case("unknown-key-get", "GET", "/api/kv/nope", 404, "key_not_found", mentions="not found"),
    Case("unknown-key-head", "HEAD", "/api/kv/nope", 404, "key_not_found"),
    Case("unknown-key-delete", "DELETE", "/api/kv/nope", 404, "key_not_found"),
    # --- credentials ----------------------------------------------------------------------------
    Case(
        "no-credential-get", "GET", "/api/kv/base", 401, "unauthorized", auth="none", mentions="key"
    ),
    Case(
        "no-credential-put", "PUT", "/api/kv/base", 401, "unauthorized", auth="none", content=b"new"
    ),
    Case("no-credential-delete", "DELETE", "/api/kv/base", 401, "unauthorized", auth="none"),
    Case("no-credential-usage", "GET", "/api/usage", 401, "unauthorized", auth="none"),
    *[
        Case(
            f"bad-credential-{i}",
            "PUT",
            "/api/kv/base",
            401,
            "unauthorized",
            auth=creds,
            content=b"new",
        )
        for i, creds in enumerate(
            [
                {"Authorization": "Bearer msk_not-a-real-key"},
                {"X-API-Key": "msk_not-a-real-key"},
                {"Authorization": "Bearer"},
                {"Authorization": "Bearer    "},
                {"Authorization": "Basic dDp0"},
                {"Authorization": "Token abc"},
                {"Authorization": "msk_no_scheme"},
                {"Authorization": b"Bearer \xff\xfe"},
                {"X-API-Key": ""},
                {"Authorization": f"Bearer {ADMIN_TOKEN}"},  # the admin token is no API key
            ]
        )
    ],
    Case(
        "revoked-key",
        "PUT",
        "/api/kv/base",
        401,
        "unauthorized",
        auth={},
        content=b"new",
        prepare=revoked_key,
        mentions="revoked",
    ),
    Case("revoked-key-list", "GET", "/api/kv", 401, "unauthorized", auth={}, prepare=revoked_key),
    # The credential is checked before anything else in the request.
    Case(
        "no-credential-bad-ttl",
        "PUT",
        "/api/kv/x",
        401,
        "unauthorized",
        auth="none",
        params={"ttl": "abc"},
        content=b"x",
    ),
    Case(
        "no-credential-bad-key",
        "PUT",
        "/api/kv/%FF",
        401,
        "unauthorized",
        auth="none",
        content=b"x",
    ),
    Case(
        "no-credential-bad-limit",
        "GET",
        "/api/kv",
        401,
        "unauthorized",
        auth="none",
        params={"limit": "abc"},
    ),
    # --- admin credentials --------------------------------------------------------------------
    *[
        Case(
            f"admin-auth-{i}-{m.lower()}{url.replace('/', '-')}",
            m,
            url,
            401,
            "admin_unauthorized",
            auth=creds,
            json=body,
            mentions="admin",
        )
        for i, creds in enumerate(
            [{"Authorization": "Bearer wrong"}, "ws", "none", {"X-API-Key": "wrong"}]
        )
        for m, url, body in [
            ("GET", "/admin/workspaces", None),
            ("POST", "/admin/workspaces", {"name": "intruder"}),
            ("DELETE", "/admin/workspaces/t", None),
            ("PUT", "/admin/workspaces/t/quota", {"quotaBytes": 1}),
            ("POST", "/admin/workspaces/t/keys", {"label": "x"}),
            ("DELETE", "/admin/keys/1", None),
        ]
    ],
    # The credential is checked before the body: a wrong token learns nothing about validation.
    Case(
        "admin-auth-before-body",
        "POST",
        "/admin/workspaces",
        401,
        "admin_unauthorized",
        auth={"Authorization": "Bearer wrong"},
        content=b"{",
        headers={"Content-Type": "application/json"},
    ),
    # --- admin bodies -------------------------------------------------------------------------
    *[
        Case(
            f"admin-body-{i}",
            "POST",
            "/admin/workspaces",
            400,
            BODY_CODES,
            auth="admin",
            content=raw,
            headers={"Content-Type": "application/json"},
        )
        for i, raw in enumerate([b"{", b"", b"\xff\xfe", b"[1]", b"null", b'{"name": "x",}'])
    ],
    *[
        Case(f"admin-create-{i}", "POST", "/admin/workspaces", 400, code, auth="admin", json=body)
        for i, (body, code) in enumerate(
            [
                ({"name": 5}, "invalid_request"),
                ({}, "invalid_request"),
                ({"name": None}, "invalid_request"),
                ({"name": "x", "quotaBytes": "big"}, "invalid_request"),
                ({"name": "x", "quotaBytes": -1}, "invalid_quota"),
                ({"name": "x", "quotaBytes": 1.5}, "invalid_request"),
                ({"name": "x", "quotaBytes": 2**63}, ("invalid_quota", "invalid_request")),
                ({"name": "x", "quotaBytes": 10**30}, ("invalid_quota", "invalid_request")),
                ({"name": "x", "extra": 1}, "invalid_request"),
                ({"name": "../x"}, "invalid_name"),
                ({"name": ""}, "invalid_name"),
                ({"name": "a" * 129}, "invalid_name"),
                ({"name": "a\u0000b"}, "invalid_name"),
                ({"name": "a b"}, "invalid_name"),
                ({"name": "x\n"}, "invalid_name"),
            ]
        )
    ],
    Case(
        "admin-create-duplicate",
        "POST",
        "/admin/workspaces",
        409,
        "workspace_exists",
        auth="admin",
        json={"name": "t"},
        mentions="exists",
    ),
    *[
        Case(
            f"admin-quota-{i}",
            "PUT",
            "/admin/workspaces/t/quota",
            400,
            code,
            auth="admin",
            json=body,
        )
        for i, (body, code) in enumerate(
            [
                ({"quotaBytes": -5}, "invalid_quota"),
                ({"quotaBytes": "x"}, "invalid_request"),
                ({}, "invalid_request"),
                ({"quotaBytes": None}, "invalid_request"),
                ({"quotaBytes": 2**63}, ("invalid_quota", "invalid_request")),
                ({"quotaBytes": 5, "name": "other"}, "invalid_request"),
            ]
        )
    ],
    Case(
        "admin-quota-unknown-ws",
        "PUT",
        "/admin/workspaces/nope/quota",
        404,
        "workspace_not_found",
        auth="admin",
        json={"quotaBytes": 5},
    ),
    *[
        Case(
            f"admin-key-{i}", "POST", "/admin/workspaces/t/keys", 400, code, auth="admin", json=body
        )
        for i, (body, code) in enumerate(
            [
                ({"label": 5}, "invalid_request"),
                ({"label": "x" * 129}, "invalid_label"),
                ({"label": "a\u0000b"}, "invalid_label"),
                ({"label": "x", "workspace": "other"}, "invalid_request"),
            ]
        )
    ],
    Case(
        "admin-key-malformed",
        "POST",
        "/admin/workspaces/t/keys",
        400,
        BODY_CODES,
        auth="admin",
        content=b"{",
        headers={"Content-Type": "application/json"},
    ),
    *[
        # "a/b" reaches no route at all (a plain 404); the others reach no workspace.
        Case(
            f"admin-unknown-ws-{what}-{i}",
            m,
            url,
            404,
            ("workspace_not_found", "not_found"),
            auth="admin",
            json=body,
        )
        for i, name in enumerate(["nope", "a%00b", "%FF", "a%2Fb", "x" * 200])
        for what, m, url, body in [
            ("get", "GET", f"/admin/workspaces/{name}", None),
            ("delete", "DELETE", f"/admin/workspaces/{name}", None),
            ("keys", "GET", f"/admin/workspaces/{name}/keys", None),
            ("new-key", "POST", f"/admin/workspaces/{name}/keys", {"label": "x"}),
            ("quota", "PUT", f"/admin/workspaces/{name}/quota", {"quotaBytes": 1}),
        ]
    ],
    *[
        Case(f"admin-revoke-{key_id}", "DELETE", f"/admin/keys/{key_id}", 404, code, auth="admin")
        for key_id, code in [
            ("999999", "key_not_found"),
            ("0", "key_not_found"),
            ("-1", "key_not_found"),
            ("99999999999", "key_not_found"),
            ("99999999999999999999999", ("key_not_found", "not_found")),
            ("abc", "not_found"),
        ]
    ],
    # --- routes and methods ---------------------------------------------------------------------
    Case("unknown-route", "GET", "/nope", 404, "not_found", mentions="/nope"),
    Case("unknown-route-api", "GET", "/api/kvx", 404, "not_found"),
    Case("unknown-route-post", "POST", "/api/things", 404, "not_found", json={"a": 1}),
    Case("unknown-route-admin", "GET", "/admin/nothing", 404, "not_found", auth="admin"),
    Case(
        "wrong-method-post-kv",
        "POST",
        "/api/kv/base",
        405,
        "method_not_allowed",
        content=b"new",
        mentions="POST",
    ),
    Case(
        "wrong-method-patch-kv", "PATCH", "/api/kv/base", 405, "method_not_allowed", content=b"new"
    ),
    Case("wrong-method-usage", "DELETE", "/api/usage", 405, "method_not_allowed"),
    Case("wrong-method-list", "POST", "/api/kv", 405, "method_not_allowed", content=b"x"),
    Case(
        "wrong-method-admin",
        "PUT",
        "/admin/workspaces",
        405,
        "method_not_allowed",
        auth="admin",
        json={"name": "x"},
    ),
]


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_input_is_refused_and_changes_nothing(table: Table, case: Case) -> None:
    extra = await case.prepare(table) if case.prepare else {}
    if case.auth == "ws":
        headers = dict(table.ws)
    elif case.auth == "admin":
        headers = dict(table.api.admin)
    elif case.auth == "none":
        headers = {}
    else:
        headers = dict(case.auth)
    headers.update(case.headers)
    headers.update(extra.get("headers", {}))
    params = {**(case.params or {}), **extra.get("params", {})} or None

    before = await table.snapshot()
    kwargs: dict = {"headers": headers, "params": params}
    if case.content is not None:
        kwargs["content"] = case.content
    elif case.json is not None:
        kwargs["json"] = case.json
    r = await table.api.client.request(case.method, case.url, **kwargs)
    after = await table.snapshot()

    assert r.status_code == case.status, r.text
    if case.method != "HEAD":  # a HEAD answer has no body
        assert r.headers["content-type"].startswith("application/json")
        body = r.json()
        assert set(body) == {"success", "error", "message", "code"}, body
        assert body["message"] == body["error"], body
        assert body["success"] is False
        codes = case.code if isinstance(case.code, tuple) else (case.code,)
        assert body["code"] in codes, body
        assert isinstance(body["error"], str) and body["error"].strip(), body
        assert "Traceback" not in body["error"] and len(body["error"]) < 400
        assert case.mentions.lower() in body["error"].lower(), body
    assert after == before


async def test_admin_api_disabled_without_token(database_url: str) -> None:
    """No MEMORY_ADMIN_TOKEN: every admin route is a 404 admin_disabled, whatever is sent."""
    enabled, _ = await make_api(database_url)
    async with enabled.client:
        ws = await enabled.workspace("t")
        assert (await enabled.client.put("/api/kv/k", content=b"v", headers=ws)).status_code == 201
    api, _ = await make_api(database_url, admin_token=None)
    async with api.client as c:
        before = (
            (await c.get("/api/kv", headers=ws)).json(),
            (await c.get("/api/usage", headers=ws)).json(),
        )
        requests = [
            ("GET", "/admin/workspaces", None),
            ("POST", "/admin/workspaces", {"name": "x"}),
            ("POST", "/admin/workspaces", "not json"),
            ("GET", "/admin/workspaces/t", None),
            ("DELETE", "/admin/workspaces/t", None),
            ("PUT", "/admin/workspaces/t/quota", {"quotaBytes": 1}),
            ("GET", "/admin/workspaces/t/keys", None),
            ("POST", "/admin/workspaces/t/keys", {}),
            ("DELETE", "/admin/keys/1", None),
            ("POST", "/admin/sweep", None),
        ]
        for creds in [api.admin, {}, ws]:
            for method, url, body in requests:
                kw: dict = {"headers": creds}
                if isinstance(body, str):
                    kw["content"] = body.encode()
                    kw["headers"] = {**creds, "Content-Type": "application/json"}
                elif body is not None:
                    kw["json"] = body
                r = await c.request(method, url, **kw)
                assert r.status_code == 404, (method, url, r.text)
                assert (
                    r.json()["code"] == "admin_disabled"
                    and "MEMORY_ADMIN_TOKEN" in r.json()["error"]
                )
        after = (
            (await c.get("/api/kv", headers=ws)).json(),
            (await c.get("/api/usage", headers=ws)).json(),
        )
        assert after == before
        assert (await c.get("/api/kv/k", headers=ws)).content == b"v"
