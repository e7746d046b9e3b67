"""Findings of the hostile-client review (issue #9), each pinned on SQLite and PostgreSQL.

Every test here failed on the code before the fix it names; each asserts the exact outcome.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from tests.conftest import Api
from tests.support.memory_api import add


def kv(key: str) -> str:
    return "/api/kv/" + quote(key, safe="")


def refused(r, status: int, code: str | None = None) -> dict:  # noqa: ANN001
    """An error envelope with exactly this status (and code)."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert body["success"] is False and isinstance(body["error"], str) and body["error"], body
    if code is not None:
        assert body["code"] == code, body
    return body


async def invoke(api: Api, headers: dict, tool: str, params: dict) -> tuple[int, list[dict]]:
    r = await api.client.post(
        f"/api/tools/{tool}/invoke", json={"parameters": params}, headers=headers
    )
    if r.status_code != 200:
        return r.status_code, [r.json()]
    return 200, [json.loads(line) for line in r.text.splitlines() if line]


# --- finding 1: another workspace's block name in an add's answer ---------------------------------


async def test_add_answer_never_names_another_workspaces_block(api: Api) -> None:
    c = api.client
    a = await api.workspace("a")
    b = await api.workspace("b")
    r = await c.put("/api/memory/blocks/a-block", json={"name": "A secret name"}, headers=a)
    assert r.status_code == 200, r.text
    await add(c, a, conversationId="a-conv", blockId="a-block", role="user", content="x")
    first = await add(c, b, conversationId="b-conv", blockId="zzz", role="user", content="1")
    second = await add(c, b, conversationId="b-conv", blockId="zzz", role="user", content="2")
    assert first["blockName"] is None and second["blockName"] is None, (first, second)
    # B names its own block the same as A's: the rename is not skipped as "already so".
    third = await add(
        c,
        b,
        conversationId="b-conv",
        blockId="zzz",
        blockName="A secret name",
        role="user",
        content="3",
    )
    assert third["blockName"] == "A secret name"
    blocks = (await c.get("/api/memory/blocks", headers=b)).json()
    assert [(x["blockId"], x["name"]) for x in blocks["blocks"]] == [("zzz", "A secret name")]
    # And A's own name is where A left it.
    blocks = (await c.get("/api/memory/blocks", headers=a)).json()
    assert [(x["blockId"], x["name"]) for x in blocks["blocks"]] == [("a-block", "A secret name")]


# --- finding 2: client input that raised instead of answering 400 ---------------------------------

DEEP = 50_000


@pytest.mark.parametrize("where", ["messages", "content", "blockId"])
async def test_deeply_nested_memory_body_is_a_400(api: Api, where: str) -> None:
    h = await api.workspace("w")
    nested = "[" * DEEP + "]" * DEEP
    body = {"conversationId": "c", "role": "user", "content": "x"}
    raw = json.dumps(body)[:-1] + f', "{where}": {nested}}}'
    r = await api.client.post(
        "/api/memory", content=raw.encode(), headers={**h, "Content-Type": "application/json"}
    )
    refused(r, 400)
    assert (await api.client.get("/api/memory/all", headers=h)).json()["memories"] == []


@pytest.mark.parametrize("tool", ["memory_add", "storage_set"])
async def test_deeply_nested_tool_parameters_are_a_400(api: Api, tool: str) -> None:
    h = await api.workspace("w")
    nested = "[" * DEEP + "]" * DEEP
    for raw in (
        f'{{"parameters": {{"key": {nested}}}}}',
        f'{{"parameters": {nested}}}',
        '{"parameters": ' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
    ):
        r = await api.client.post(
            f"/api/tools/{tool}/invoke",
            content=raw.encode(),
            headers={**h, "Content-Type": "application/json"},
        )
        refused(r, 400)


async def test_cursor_beyond_64_bits_is_a_400(api: Api) -> None:
    """Forged cursors of every kind (here: the old unauthenticated format with a huge id)."""
    h = await api.workspace("w")
    await add(api.client, h, conversationId="c", role="user", content="x")

    def forged(payload: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")

    huge = 2**64 + 5
    for path, params in (
        ("/api/memory/all", {"cursor": forged({"a": huge, "f": "x"})}),
        ("/api/memory", {"conversationId": "c", "cursor": forged({"a": huge})}),
        ("/api/memory/messages", {"conversationId": "c", "cursor": forged({"m": huge, "b": 1})}),
        ("/api/memory/blocks", {"cursor": forged({"after": "x" * 10})}),
        ("/api/kv", {"cursor": forged({"after": "00", "prefix": ""})}),
    ):
        refused(await api.client.get(path, params=params, headers=h), 400, "invalid_cursor")


async def test_huge_entity_tag_is_a_412_not_a_500(api: Api) -> None:
    h = await api.workspace("w")
    assert (await api.client.put(kv("k"), content=b"v", headers=h)).status_code == 201
    tag = '"' + "9" * 5000 + '"'
    for method in ("PUT", "DELETE"):
        r = await api.client.request(
            method,
            kv("k"),
            content=b"new" if method == "PUT" else None,
            headers={**h, "If-Match": tag},
        )
        refused(r, 412, "precondition_failed")
    r = await api.client.get(kv("k"), headers=h)
    assert r.status_code == 200 and r.content == b"v"


# --- finding 3: media types HTTP cannot carry -----------------------------------------------------

BAD_TYPES = [
    "text/plain\r\nX-Injected: 1",
    "text/plain\nx",
    "text/caf\u00e9",
    "\u65e5\u672c/\u8a9e",
    "text",
    "/plain",
    "text/plain; charset",
    'text/plain; a="unterminated',
    "a/" + "b" * 254,
    "",
]


@pytest.mark.parametrize("bad", BAD_TYPES, ids=range(len(BAD_TYPES)))
async def test_storage_set_refuses_a_media_type_http_cannot_carry(api: Api, bad: str) -> None:
    h = await api.workspace("w")
    status, body = await invoke(
        api, h, "storage_set", {"key": "k", "value": "v", "content_type": bad or " "}
    )
    assert status == 400 and body[0]["code"] == "invalid_content_type", (status, body)
    assert (await api.client.get(kv("k"), headers=h)).status_code == 404
    assert (await api.client.get("/api/usage", headers=h)).json()["used"] == 0


async def test_kv_put_refuses_an_overlong_media_type_and_keeps_a_valid_one(api: Api) -> None:
    h = await api.workspace("w")
    long = "application/" + "x" * 244  # 256 characters: refused, never truncated
    refused(
        await api.client.put(kv("k"), content=b"v", headers={**h, "Content-Type": long}),
        400,
        "invalid_content_type",
    )
    assert (await api.client.get(kv("k"), headers=h)).status_code == 404
    fine = 'text/plain; charset="utf-8"; q=x'
    r = await api.client.put(kv("k"), content=b"v", headers={**h, "Content-Type": fine})
    assert r.status_code == 201, r.text
    for method in ("GET", "HEAD"):
        r = await api.client.request(method, kv("k"), headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == fine


# --- finding 4: stored values are never active content of this origin ----------------------------


@pytest.mark.parametrize(
    ("media_type", "attachment"),
    [
        ("text/html", True),
        ("text/html; charset=utf-8", True),
        ("image/svg+xml", True),
        ("application/xhtml+xml", True),
        ("text/xml", True),
        ("application/atom+xml", True),
        ("text/javascript", True),
        ("application/javascript", True),
        ("TEXT/HTML", True),
        ("text/plain", False),
        ("application/json", False),
        ("image/png", False),
        ("application/octet-stream", False),
    ],
)
async def test_values_are_served_inert(api: Api, media_type: str, attachment: bool) -> None:
    h = await api.workspace("w")
    body = b"<script>alert(1)</script>"
    r = await api.client.put(kv("page"), content=body, headers={**h, "Content-Type": media_type})
    assert r.status_code == 201, r.text
    for method in ("GET", "HEAD"):
        r = await api.client.request(method, kv("page"), headers=h)
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "sandbox"
        assert r.headers.get("content-disposition") == ("attachment" if attachment else None)


# --- finding 5: conditional requests as RFC 9110 section 13 has them ------------------------------

# (method, If-Match, If-None-Match, expected status); "CUR" is the current tag, "OLD" an earlier
# one of the same entry, W/ prefixes make weak tags.
CONDITIONAL = [
    ("GET", None, None, 200),
    ("GET", None, "CUR", 304),
    ("GET", None, "W/CUR", 304),
    ("GET", None, "*", 304),
    ("GET", None, "OLD", 200),
    ("GET", None, '"x", CUR', 304),
    ("GET", "CUR", None, 200),
    ("GET", "W/CUR", None, 412),
    ("GET", "OLD", None, 412),
    ("GET", "*", None, 200),
    ("GET", "CUR", "CUR", 304),
    ("GET", '"junk', None, 400),
    ("GET", None, "junk", 400),
    ("HEAD", None, None, 200),
    ("HEAD", None, "CUR", 304),
    ("HEAD", None, "W/CUR", 304),
    ("HEAD", None, "*", 304),
    ("HEAD", None, "OLD", 200),
    ("HEAD", "W/CUR", None, 412),
    ("HEAD", "OLD", None, 412),
    ("HEAD", "junk", None, 400),
    ("PUT", "CUR", None, 200),
    ("PUT", "*", None, 200),
    ("PUT", "W/CUR", None, 412),
    ("PUT", '"some-other-tag"', None, 412),
    ("PUT", "OLD", None, 412),
    ("PUT", "OLD, CUR", None, 200),
    ("PUT", None, "*", 412),
    ("PUT", None, "CUR", 412),
    ("PUT", None, "W/CUR", 412),
    ("PUT", None, "OLD", 200),
    ("PUT", "abc", None, 400),
    ("PUT", '"1", *', None, 400),
    ("PUT", "9" * 5000, None, 400),
    ("DELETE", "CUR", None, 200),
    ("DELETE", "W/CUR", None, 412),
    ("DELETE", "OLD", None, 412),
    ("DELETE", '"some-other-tag"', None, 412),
    ("DELETE", None, "CUR", 412),
    ("DELETE", None, "*", 412),
    ("DELETE", None, "OLD", 200),
    ("DELETE", "junk", None, 400),
]


@pytest.mark.parametrize(
    ("method", "if_match", "if_none_match", "status"),
    CONDITIONAL,
    ids=[f"{m}-{a}-{b}".replace('"', "") for m, a, b, _ in CONDITIONAL],
)
async def test_conditional_requests_follow_rfc_9110(
    api: Api, method: str, if_match: str | None, if_none_match: str | None, status: int
) -> None:
    h = await api.workspace("w")
    old = (await api.client.put(kv("k"), content=b"one", headers=h)).headers["etag"]
    r = await api.client.put(kv("k"), content=b"two", headers={**h, "Content-Type": "text/x"})
    cur = r.headers["etag"]

    def tags(spec: str | None) -> str | None:
        if spec is None:
            return None
        return spec.replace("W/CUR", f"W/{cur}").replace("CUR", cur).replace("OLD", old)

    headers = dict(h)
    if if_match is not None:
        headers["If-Match"] = tags(if_match)
    if if_none_match is not None:
        headers["If-None-Match"] = tags(if_none_match)
    r = await api.client.request(
        method, kv("k"), headers=headers, content=b"three" if method == "PUT" else None
    )
    assert r.status_code == status, (r.status_code, r.text)
    if status >= 400 and method != "HEAD":
        refused(r, status, "invalid_precondition" if status == 400 else "precondition_failed")
    if status in (200, 304) and method in ("GET", "HEAD"):
        assert r.headers["etag"] == cur
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.content == (b"two" if method == "GET" and status == 200 else b"")
    if status == 304:
        assert "content-type" not in r.headers or method == "HEAD"
    # Whatever the answer, the entry changed only when the request was a write that succeeded.
    after = await api.client.get(kv("k"), headers=h)
    if method == "PUT" and status == 200:
        assert after.content == b"three"
    elif method == "DELETE" and status == 200:
        assert after.status_code == 404
    else:
        assert after.content == b"two" and after.headers["etag"] == cur


async def test_conditions_on_an_absent_key(api: Api) -> None:
    h = await api.workspace("w")
    c = api.client
    # Without the key a read or a delete is a 404 whatever the conditions (RFC 9110 13.2.1).
    for method in ("GET", "HEAD", "DELETE"):
        for hdr in ({"If-Match": "*"}, {"If-None-Match": "*"}, {"If-Match": '"1"'}):
            r = await c.request(method, kv("nope"), headers={**h, **hdr})
            assert r.status_code == 404, (method, hdr, r.status_code)
    r = await c.put(kv("nope"), content=b"x", headers={**h, "If-Match": "*"})
    refused(r, 412, "precondition_failed")
    r = await c.put(kv("nope"), content=b"x", headers={**h, "If-None-Match": '"7", W/"8"'})
    assert r.status_code == 201


# --- finding 6: cursors are opaque, authenticated, bound to their workspace and listing ---------


async def _cursors(api: Api, h: dict, check: bool = True) -> dict[str, tuple[str, dict]]:
    """One cursor of every kind, with the request that pages on with it."""
    c = api.client
    for i in range(3):
        await add(c, h, conversationId=f"conv-{i}", blockId="blk", role="user", content=f"m{i}")
        assert (await c.put(kv(f"secret-key-{i}"), content=b"v", headers=h)).status_code == 201
        r = await c.put(f"/api/memory/blocks/block-{i}", json={"name": f"n{i}"}, headers=h)
        assert r.status_code == 200
    await add(c, h, conversationId="long", role="user", content="a")
    await add(c, h, conversationId="long", role="user", content="b")
    out = {}
    r = await c.get("/api/memory/all", params={"limit": 1}, headers=h)
    out["all"] = ("/api/memory/all", {"limit": 1, "cursor": r.json()["nextCursor"]})
    r = await c.get("/api/memory", params={"blockId": "blk", "limit": 1}, headers=h)
    out["get"] = ("/api/memory", {"blockId": "blk", "limit": 1, "cursor": r.json()["nextCursor"]})
    r = await c.get("/api/memory", params={"conversationId": "long", "lastN": 1}, headers=h)
    data_cursor = r.json()["memories"][0]["dataCursor"]
    out["messages"] = ("/api/memory/messages", {"conversationId": "long", "cursor": data_cursor})
    r = await c.get("/api/kv", params={"prefix": "secret-key-", "limit": 1}, headers=h)
    out["kv"] = ("/api/kv", {"prefix": "secret-key-", "limit": 1, "cursor": r.json()["nextCursor"]})
    r = await c.get("/api/memory/blocks", params={"limit": 1}, headers=h)
    out["blocks"] = ("/api/memory/blocks", {"limit": 1, "cursor": r.json()["nextCursor"]})
    for path, params in out.values():
        assert isinstance(params["cursor"], str), (path, params)
        if not check:
            continue
        r = await c.get(path, params=params, headers=h)
        assert r.status_code == 200, (path, r.text)
    return out


def _tampered(cursor: str) -> list[str]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    flips = [bytes([raw[0] ^ 1]) + raw[1:], raw[:-1] + bytes([raw[-1] ^ 0x80]), raw[:20]]
    mid = len(raw) // 2
    flips.append(raw[:mid] + bytes([raw[mid] ^ 4]) + raw[mid + 1 :])
    return [base64.urlsafe_b64encode(f).decode().rstrip("=") for f in flips]


async def test_cursors_reveal_nothing(api: Api) -> None:
    h = await api.workspace("w")
    cursors = await _cursors(api, h)
    for _path, params in cursors.values():
        raw = base64.urlsafe_b64decode(params["cursor"] + "=" * (-len(params["cursor"]) % 4))
        for plain in (b"secret-key", b"block-", b"blk", b"long", b"conv-"):
            assert plain not in raw and plain.hex().encode() not in raw
        assert b'"a"' not in raw and b'"after"' not in raw  # no JSON inside
    # The same position sealed twice gives two different cursors (nothing to compare). (Asked
    # with another window: the very same read may be answered from the read cache, cursor and
    # all, which tells the workspace only that its own page is unchanged.)
    params = {"limit": 1, "lastN": 5}
    again = await api.client.get("/api/memory/all", params=params, headers=h)
    cursor = again.json()["nextCursor"]
    assert cursor != cursors["all"][1]["cursor"]
    services = api.client.app.state.services
    workspace = (await services.workspaces.authenticate(h["Authorization"][7:])).workspace_id
    opened = [
        services.memory.cursors.open(x, "memories", workspace)
        for x in (cursor, cursors["all"][1]["cursor"])
    ]
    assert opened[0] == opened[1]  # the same position


async def test_tampered_foreign_and_malformed_cursors_are_400(api: Api) -> None:
    a = await api.workspace("a")
    b = await api.workspace("b")
    cursors_a = await _cursors(api, a)
    cursors_b = await _cursors(api, b)
    c = api.client
    for kind, (path, params) in cursors_b.items():
        for bad in [
            *_tampered(params["cursor"]),
            cursors_a[kind][1]["cursor"],  # A's cursor of the same kind, at B
            "",
            "not a cursor!",
            "A" * 3000,
            "eyJhIjoxfQ",  # the old format: {"a":1}
            "\u00e9t\u00e9",
        ]:
            r = await c.get(path, params={**params, "cursor": bad}, headers=b)
            if bad == "":  # an empty cursor is no cursor: the first page
                assert r.status_code == 200
                continue
            refused(r, 400, "invalid_cursor")
        # A cursor of another listing is refused too.
        for other_kind, (_p, other_params) in cursors_b.items():
            if other_kind != kind:
                r = await c.get(
                    path, params={**params, "cursor": other_params["cursor"]}, headers=b
                )
                refused(r, 400, "invalid_cursor")


async def test_cursors_expire(api: Api, database_url: str) -> None:
    from tests.conftest import make_api

    short, _ = await make_api(database_url, cursor_ttl_seconds=-1)
    async with short.client:
        h = await short.workspace("w")
        for path, params in (await _cursors(short, h, check=False)).values():
            body = refused(await short.client.get(path, params=params, headers=h), 400)
            assert body["code"] == "invalid_cursor" and "expired" in body["error"]


async def test_replicas_share_the_cursor_secret(api: Api, database_url: str) -> None:
    """Two processes on one database (the secret is in it) accept each other's cursors; a
    MEMORY_CURSOR_SECRET replaces it, and must then be the same on every replica."""
    from tests.conftest import make_api

    h = await api.workspace("w")
    path, params = (await _cursors(api, h))["all"]
    other, _ = await make_api(database_url)
    async with other.client:
        assert (await other.client.get(path, params=params, headers=h)).status_code == 200
    env_one, _ = await make_api(database_url, cursor_secret="s" * 40)
    env_two, _ = await make_api(database_url, cursor_secret="s" * 40)
    async with env_one.client, env_two.client:
        refused(await env_one.client.get(path, params=params, headers=h), 400, "invalid_cursor")
        r = await env_one.client.get(path, params={"limit": 1}, headers=h)
        sealed = {**params, "cursor": r.json()["nextCursor"]}
        assert (await env_two.client.get(path, params=sealed, headers=h)).status_code == 200
        refused(await api.client.get(path, params=sealed, headers=h), 400, "invalid_cursor")


# --- finding 9: smaller ones ----------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        b"conversationId=%ff",
        b"conversationId=a%C3",
        b"blockId=%ED%A0%80",  # an encoded surrogate is not UTF-8 either
        b"conversationId=\xff",
        b"%ff=x&conversationId=c",
    ],
)
async def test_undecodable_query_is_a_400(api: Api, query: bytes) -> None:
    h = await api.workspace("w")
    await add(api.client, h, conversationId="\ufffd", role="user", content="x")
    for path in ("/api/memory", "/api/kv", "/api/memory/all"):
        # httpx would re-encode the query: build the raw request target ourselves.
        r = await _raw_get(api, path.encode() + b"?" + query, h)
        assert r[0] == 400, r
        assert r[1]["success"] is False and r[1]["code"] == "invalid_query"


async def _raw_get(api: Api, target: bytes, headers: dict) -> tuple[int, dict]:
    """A GET with exactly this request target, through the app's ASGI interface."""
    return await _raw_get_from(api, target, headers, "127.0.0.1")


async def test_tool_idempotency_key_too_long_is_a_400_before_the_stream(api: Api) -> None:
    h = await api.workspace("w")
    params = {"conversationId": "c", "role": "user", "content": "x"}
    status, body = await invoke(api, h, "memory_add", {**params, "idempotencyKey": "k" * 10_000})
    assert status == 400 and body[0]["code"] == "invalid_id", body
    status, body = await invoke(api, h, "memory_add", {**params, "idempotencyKey": "k" * 255})
    assert status == 200 and body[-1]["type"] != "error", body
    assert (await api.client.get("/api/memory/all", headers=h)).json()["memories"][0][
        "messageCount"
    ] == 1


async def test_workspace_deleted_under_a_cached_key_in_a_tool_stream(
    api: Api, database_url: str
) -> None:
    """Another replica deletes the workspace while this one still trusts the key (cached)."""
    from tests.conftest import make_api

    h = await api.workspace("doomed")
    assert (await api.client.get("/api/usage", headers=h)).status_code == 200  # key cached here
    replica, _ = await make_api(database_url)
    async with replica.client:
        r = await replica.client.delete("/admin/workspaces/doomed", headers=replica.admin)
        assert r.status_code == 200, r.text
    for tool, params in (
        ("memory_add", {"conversationId": "c", "role": "user", "content": "x"}),
        ("storage_set", {"key": "k", "value": "v"}),
    ):
        status, messages = await invoke(api, h, tool, params)
        assert status == 200
        assert messages[-1]["type"] == "error", messages
        assert messages[-1]["message"]["code"] == "unauthorized", messages
    r = await api.client.put(kv("k"), content=b"v", headers=h)
    refused(r, 401, "unauthorized")


# --- finding 10: storage faults, injected for real (SQLite's own machinery) -----------------------


async def test_a_locked_inline_read_falls_back_to_a_reader_thread(sqlite_database_url: str) -> None:
    """Another process holds every WAL read lock of the database (POSIX locks on the -shm file,
    as a stuck reader or a recovering process would): the event loop's quick read fails with the
    driver's own OperationalError (not SQLAlchemy's) and must be retried in a reader thread,
    which gets through once the lock is gone, instead of answering 500."""
    import subprocess
    import sys
    import threading

    from sqlalchemy.engine import make_url

    from tests.conftest import make_api

    first, _ = await make_api(sqlite_database_url)
    async with first.client:
        h = await first.workspace("w")
        assert (await first.client.put(kv("k"), content=b"value", headers=h)).status_code == 201

    def readers() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("sqlite-read")]

    # A fresh process whose reads so far all ran inline: its reader threads start on demand,
    # so the first one to appear is the fallback at work.
    api, _ = await make_api(sqlite_database_url)
    async with api.client:
        assert (await api.client.get(kv("k"), headers=h)).content == b"value"
        assert readers() == []
        shm = make_url(sqlite_database_url).database + "-shm"
        holder = subprocess.Popen(  # noqa: ASYNC220  (a lock holder for the whole test)
            [
                sys.executable,
                "-c",
                "import fcntl, os, sys\n"
                f"fd = os.open({shm!r}, os.O_RDWR)\n"
                "fcntl.lockf(fd, fcntl.LOCK_EX, 5, 123)  # WAL_READ_LOCK(0..4)\n"
                "print('held', flush=True)\n"
                "sys.stdin.readline()\n",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout.readline().strip() == "held"
        stop = threading.Event()

        def release_once_a_reader_thread_runs() -> None:
            while not stop.wait(0.01):
                if readers():
                    holder.stdin.write("\n")
                    holder.stdin.flush()
                    return

        releaser = threading.Thread(target=release_once_a_reader_thread_runs)
        releaser.start()
        try:
            r = await api.client.get(kv("k"), headers=h)
            assert r.status_code == 200 and r.content == b"value", r.text
            assert holder.wait(60) == 0  # it was released by the fallback's thread appearing
        finally:
            stop.set()
            releaser.join()
            holder.kill()
            holder.wait()


# The writer thread's death is the fault this test injects, not a failure of the test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_dead_writer_fails_writes_fast_and_ready_says_503(sqlite_api: Api) -> None:
    import asyncio

    from memory_service.errors import StorageUnavailable

    api = sqlite_api
    c = api.client
    h = await api.workspace("w")
    assert (await c.put(kv("k"), content=b"v", headers=h)).status_code == 201
    assert (await c.get("/ready")).status_code == 200
    db = c.app.state.services.db

    def die(_conn):  # noqa: ANN001, ANN202
        raise SystemExit("writer killed by the test")  # ends the thread, as any BaseException

    # The write that killed it is answered too (it used to wait forever).
    with pytest.raises(StorageUnavailable):
        await asyncio.wait_for(db.write(die), 60)
    db._writer._thread.join(30)  # (it answers its callers just before it ends)
    assert not db._writer._thread.is_alive()
    for method, url, body in (
        ("PUT", kv("k2"), b"v"),
        ("DELETE", kv("k"), None),
        ("POST", "/api/memory", b'{"conversationId": "c", "role": "user", "content": "x"}'),
    ):
        r = await asyncio.wait_for(
            c.request(method, url, content=body, headers={**h, "Content-Type": "application/json"}),
            60,
        )
        refused(r, 503, "unavailable")
    status, messages = await invoke(api, h, "storage_set", {"key": "k3", "value": "v"})
    assert status == 200 and messages[-1]["message"]["code"] == "unavailable", messages
    refused(await c.get("/ready"), 503, "not_ready")
    # Reads still work: what was committed is there.
    assert (await c.get(kv("k"), headers=h)).content == b"v"
    assert (await c.get(kv("k2"), headers=h)).status_code == 404


# --- finding 8: authentication hardening ---------------------------------------------------------


@pytest.mark.parametrize("token", ["x", "short-admin-token", "t" * 31])
def test_a_short_admin_token_refuses_to_start(token: str, tmp_path) -> None:  # noqa: ANN001
    from memory_service.settings import Settings, sqlite_url
    from tests.support.server import cli

    url = sqlite_url(tmp_path / "m.db")
    with pytest.raises(ValueError, match="MEMORY_ADMIN_TOKEN must be at least 32 characters"):
        Settings(database_url=url, admin_token=token)
    done = cli("serve", "--database-url", url, env={"MEMORY_ADMIN_TOKEN": token}, check=False)
    assert done.returncode == 1
    assert "MEMORY_ADMIN_TOKEN must be at least 32 characters" in done.stderr
    assert "Traceback" not in done.stderr
    assert Settings(database_url=url, admin_token="t" * 32).admin_token == "t" * 32


async def test_failed_credentials_are_bounded_per_client_address(database_url: str) -> None:
    from tests.conftest import make_api

    api, _ = await make_api(database_url, auth_failure_burst=5, auth_failure_rate=0.5)
    async with api.client:
        good = await api.workspace("w")
        c = api.client
        assert (await c.get("/api/usage", headers=good)).status_code == 200  # verified, cached
        for i in range(5):
            bad = {"Authorization": f"Bearer msk_guess{i}"}
            refused(await c.get("/api/usage", headers=bad), 401, "unauthorized")
        for i in range(20):
            r = await c.get("/api/usage", headers={"X-API-Key": f"msk_more{i}"})
            body = refused(r, 429, "too_many_auth_failures")
            assert r.headers["retry-after"] == "2", r.headers
            assert "failed credentials" in body["error"]
        # Wrong admin tokens count too; the right one and a verified key still work.
        r = await c.get("/admin/workspaces", headers={"Authorization": "Bearer " + "n" * 40})
        refused(r, 429, "too_many_auth_failures")
        assert (await c.get("/admin/workspaces", headers=api.admin)).status_code == 200
        assert (await c.get("/api/usage", headers=good)).status_code == 200
        # Another address is not affected.
        status, body = await _raw_get_from(api, b"/api/usage", {"X-API-Key": "msk_x"}, "10.0.0.9")
        assert status == 401 and body["code"] == "unauthorized"
        # Tools go through the same gate.
        status, body = await invoke(api, {"X-API-Key": "msk_tool"}, "storage_exist", {"key": "k"})
        assert status == 429 and body[0]["code"] == "too_many_auth_failures"


async def _raw_get_from(api: Api, target: bytes, headers: dict, address: str) -> tuple[int, dict]:
    path, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path.decode("latin-1"),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (address, 5000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    _call_app(api, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body)


def _call_app(api: Api, scope: dict, receive, send) -> None:  # noqa: ANN001
    """Run the app on the test client's own event loop (its portal), where its database
    connections live, exactly as the client's transport does."""
    with api.client.portal() as portal:
        portal.call(api.client.app, scope, receive, send)


# --- finding 7: every byte a workspace can make the service keep is charged or capped -----------


async def test_block_registry_entries_are_charged_to_the_quota(api: Api) -> None:
    c = api.client
    zero = await api.workspace("zero", quota=0)
    for i in range(3):
        r = await c.put(f"/api/memory/blocks/b{i}", json={"name": "n" * 256}, headers=zero)
        refused(r, 413, "quota_exceeded")
    assert (await c.get("/api/memory/blocks", headers=zero)).json()["blocks"] == []
    assert (await c.get("/api/usage", headers=zero)).json()["used"] == 0

    h = await api.workspace("some", quota=100)
    assert (
        await c.put("/api/memory/blocks/blk", json={"name": "abc"}, headers=h)
    ).status_code == 200
    assert (await c.get("/api/usage", headers=h)).json()["used"] == len("blk") + len("abc")
    # A rename charges the difference, forgetting the name frees it.
    r = await c.put("/api/memory/blocks/blk", json={"name": "a" * 10}, headers=h)
    assert r.status_code == 200
    assert (await c.get("/api/usage", headers=h)).json()["used"] == len("blk") + 10
    r = await c.put("/api/memory/blocks/blk", json={"name": "a" * 98}, headers=h)
    refused(r, 413, "quota_exceeded")
    assert (await c.get("/api/usage", headers=h)).json()["used"] == len("blk") + 10
    assert (
        await c.put("/api/memory/blocks/blk", json={"name": None}, headers=h)
    ).status_code == 200
    assert (await c.get("/api/usage", headers=h)).json()["used"] == 0
    # blockName on add is charged the same way, and refused whole when it does not fit.
    body = {"conversationId": "c", "blockId": "blk", "role": "user", "content": "x"}
    m = await add(c, h, **body, blockName="nm")
    assert m["blockName"] == "nm"
    used = (await c.get("/api/usage", headers=h)).json()["used"]
    assert used == (len("user") + 1) + (len("c") + len("blk")) + (len("blk") + len("nm"))
    r = await c.post("/api/memory", json={**body, "blockName": "z" * 200}, headers=h)
    refused(r, 413, "quota_exceeded")
    assert (await c.get("/api/usage", headers=h)).json()["used"] == used
    got = (await c.get("/api/memory", params={"conversationId": "c"}, headers=h)).json()
    assert got["memories"][0]["blockName"] == "nm" and got["memories"][0]["messageCount"] == 1


async def test_memory_ids_are_charged_when_a_memory_is_created(api: Api) -> None:
    c = api.client
    conv, block = "c" * 256, "\U0001f600" * 256  # 256 + 1024 bytes of ids, 5 of message
    h = await api.workspace("ids", quota=1000)
    r = await c.post(
        "/api/memory",
        json={"conversationId": conv, "blockId": block, "role": "user", "content": "x"},
        headers=h,
    )
    refused(r, 413, "quota_exceeded")
    assert (await c.get("/api/memory/all", headers=h)).json()["memories"] == []
    assert (await c.get("/api/usage", headers=h)).json()["used"] == 0
    h = await api.workspace("ids2", quota=2000)
    await add(c, h, conversationId=conv, blockId=block, role="user", content="x")
    assert (await c.get("/api/usage", headers=h)).json()["used"] == 256 + 1024 + 5
    await add(c, h, conversationId=conv, blockId=block, role="user", content="y")  # ids once
    assert (await c.get("/api/usage", headers=h)).json()["used"] == 256 + 1024 + 10
    r = await c.delete("/api/memory", params={"conversationId": conv}, headers=h)
    assert r.json()["freedBytes"] == 256 + 1024 + 10
    assert (await c.get("/api/usage", headers=h)).json()["used"] == 0


async def test_idempotency_records_are_capped_per_workspace(database_url: str) -> None:
    from tests.conftest import make_api

    api, _ = await make_api(database_url, max_idempotency_keys=3, idempotency_ttl_seconds=60)
    async with api.client:
        c = api.client
        h = await api.workspace("idem")
        other = await api.workspace("other")
        body = {"conversationId": "c", "role": "user", "content": "x"}

        async def post(headers: dict, key: str):  # noqa: ANN202
            return await c.post(
                "/api/memory", json=body, headers={**headers, "Idempotency-Key": key}
            )

        for i in range(3):
            assert (await post(h, f"k{i}")).status_code == 200
        r = await post(h, "k3")
        refused(r, 429, "idempotency_keys_exhausted")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert (await post(h, "k1")).json()["replayed"] is True  # known keys still replay
        assert (await post(other, "k3")).status_code == 200  # per workspace
        got = (await c.get("/api/memory", params={"conversationId": "c"}, headers=h)).json()
        assert got["memories"][0]["messageCount"] == 3
        api.clock.advance(61)  # the oldest have expired: room again
        assert (await post(h, "k3")).json()["replayed"] is False


# --- further probes a hostile client would try ---------------------------------------------------


async def _raw(
    api: Api, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> tuple[int, dict]:
    """A request with exactly these bytes (headers too), through the app's ASGI interface."""
    path, _, query = target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path.decode("latin-1"),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [(b"content-length", str(len(body)).encode()), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent: list[dict] = []
    pending = [body]

    async def receive() -> dict:
        return {
            "type": "http.request",
            "body": pending.pop() if pending else b"",
            "more_body": False,
        }

    async def send(message: dict) -> None:
        sent.append(message)

    _call_app(api, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    raw = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(raw)


JSON = (b"content-type", b"application/json")
ADD = b'{"conversationId": "c", "role": "user", "content": "x"}'

# (name, method, target, extra headers, body, expected status, expected code)
PROBES = [
    (
        "invalid UTF-8 bearer key",
        "GET",
        b"/api/usage",
        [(b"authorization", b"Bearer \xff\xfe")],
        b"",
        401,
        "unauthorized",
    ),
    (
        "invalid UTF-8 X-API-Key",
        "GET",
        b"/api/usage",
        [(b"x-api-key", b"msk_\xff")],
        b"",
        401,
        "unauthorized",
    ),
    (
        "invalid UTF-8 Content-Type",
        "PUT",
        b"/api/kv/k",
        [(b"content-type", b"text/\xff")],
        b"v",
        400,
        "invalid_content_type",
    ),
    (
        "CRLF-free but non-ASCII Content-Type",
        "PUT",
        b"/api/kv/k",
        [(b"content-type", b"text/pl\xc3\xa4in")],
        b"v",
        400,
        "invalid_content_type",
    ),
    (
        "invalid UTF-8 Idempotency-Key",
        "POST",
        b"/api/memory",
        [JSON, (b"idempotency-key", b"\xff\xfe")],
        ADD,
        400,
        "invalid_id",
    ),
    (
        "10,000-char Idempotency-Key",
        "POST",
        b"/api/memory",
        [JSON, (b"idempotency-key", b"k" * 10_000)],
        ADD,
        400,
        "invalid_id",
    ),
    (
        "invalid UTF-8 in a JSON string",
        "POST",
        b"/api/memory",
        [JSON],
        b'{"conversationId": "c\xff", "role": "user", "content": "x"}',
        400,
        None,
    ),
    (
        "lone surrogate escape in JSON",
        "POST",
        b"/api/memory",
        [JSON],
        b'{"conversationId": "c", "role": "user", "content": "\\ud800"}',
        400,
        None,
    ),
    (
        "NUL in an id",
        "POST",
        b"/api/memory",
        [JSON],
        b'{"conversationId": "c\\u0000", "role": "user", "content": "x"}',
        400,
        "invalid_id",
    ),
    (
        "integer of 30 digits in JSON",
        "POST",
        b"/api/memory",
        [JSON],
        b'{"conversationId": "c", "role": "user", "content": "x", "lastN": 1' + b"0" * 30 + b"}",
        400,
        "invalid_last_n",
    ),
    (
        "float where an integer goes",
        "POST",
        b"/api/memory",
        [JSON],
        b'{"conversationId": "c", "role": "user", "content": "x", "lastN": 1.5}',
        400,
        "invalid_request",
    ),
    (
        "limit of 29 digits",
        "GET",
        b"/api/kv?limit=99999999999999999999999999999",
        [],
        b"",
        400,
        "invalid_limit",
    ),
    (
        "negative limit of 29 digits",
        "GET",
        b"/api/memory/all?limit=-99999999999999999999999999999",
        [],
        b"",
        400,
        "invalid_limit",
    ),
    (
        "lastN of 22 digits",
        "GET",
        b"/api/memory?conversationId=c&lastN=9999999999999999999999",
        [],
        b"",
        400,
        "invalid_last_n",
    ),
    ("ttl=1e400 (infinity)", "PUT", b"/api/kv/k?ttl=1e400", [], b"v", 400, "invalid_request"),
    ("ttl=nan", "PUT", b"/api/kv/k?ttl=nan", [], b"v", 400, "invalid_ttl"),
    (
        "ttl of 30 digits",
        "PUT",
        b"/api/kv/k?ttl=999999999999999999999999999999",
        [],
        b"v",
        400,
        "invalid_ttl",
    ),
    (
        "keepSystem=maybe",
        "GET",
        b"/api/memory?conversationId=c&keepSystem=maybe",
        [],
        b"",
        400,
        "invalid_request",
    ),
    (
        "tool limit 1e30",
        "POST",
        b"/api/tools/storage_list/invoke",
        [JSON],
        b'{"parameters": {"limit": 1000000000000000000000000000000}}',
        400,
        "invalid_limit",
    ),
    (
        "tool limit of 5,000 digits as a string",
        "POST",
        b"/api/tools/storage_list/invoke",
        [JSON],
        b'{"parameters": {"limit": "' + b"9" * 5000 + b'"}}',
        400,
        "invalid_parameter",
    ),
    (
        "tool ttl 1e400",
        "POST",
        b"/api/tools/storage_set/invoke",
        [JSON],
        b'{"parameters": {"key": "k", "value": "v", "ttl": 1e400}}',
        400,
        "invalid_request",
    ),
    (
        "If-Match of 5,000 digits",
        "DELETE",
        b"/api/kv/k",
        [(b"if-match", b"9" * 5000)],
        b"",
        400,
        "invalid_precondition",
    ),
    (
        "If-None-Match of 100 KB (under the head limit)",
        "GET",
        b"/api/kv/k",
        [(b"if-none-match", b'"1", ' * 16_000)],
        b"",
        400,
        "invalid_precondition",
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "target", "headers", "body", "status", "code"),
    PROBES,
    ids=[p[0] for p in PROBES],
)
async def test_hostile_probe(
    api: Api,
    name: str,
    method: str,
    target: bytes,
    headers: list,
    body: bytes,
    status: int,
    code: str | None,
) -> None:
    h = await api.workspace("w")
    auth = [(b"authorization", h["Authorization"].encode())]
    if any(k in (b"authorization", b"x-api-key") for k, _ in headers):
        auth = []
    assert (await api.client.put(kv("k"), content=b"old", headers=h)).status_code == 201
    got_status, got = await _raw(api, method, target, [*auth, *headers], body)
    assert got_status == status, (name, got_status, got)
    assert got["success"] is False, got
    if code is not None:
        assert got["code"] == code, got
    # Nothing changed.
    r = await api.client.get(kv("k"), headers=h)
    assert r.content == b"old"
    assert (await api.client.get("/api/memory/all", headers=h)).json()["memories"] == []


async def test_an_unreachable_postgresql_is_a_503_not_a_500(tmp_path) -> None:  # noqa: ANN001
    """Nothing listens where the database should be (a real refused connection): requests are
    answered 503 at once, /ready says 503, nothing is a 500."""
    import asyncio

    from litestar.testing import AsyncTestClient

    from memory_service.app import create_app
    from memory_service.settings import Settings
    from tests.support.server import free_port

    url = f"postgresql+asyncpg://memory@127.0.0.1:{free_port()}/gone"
    settings = Settings(database_url=url, cursor_secret="s" * 40, sweep_interval_seconds=0)
    async with AsyncTestClient(create_app(settings)) as c:
        h = {"Authorization": "Bearer msk_" + "a" * 43}
        for method, path, body in (
            ("GET", "/api/usage", None),
            ("PUT", "/api/kv/k", b"v"),
            ("POST", "/api/memory", b'{"conversationId": "c", "role": "user", "content": "x"}'),
        ):
            r = await asyncio.wait_for(c.request(method, path, content=body, headers=h), 60)
            refused(r, 503, "unavailable")
        refused(await c.get("/ready"), 503, "not_ready")


async def test_cursor_length_does_not_tell_the_size_of_ids(api: Api) -> None:
    """Memory ids are server-wide: a cursor's length must not grow with them (msgpack would
    spend 1, 3, 5 or 9 bytes on an id), so every memory-list cursor has one length."""
    h = await api.workspace("w")
    for i in range(140):  # ids past 127 and 255 (one and two bytes)
        await add(api.client, h, conversationId=f"c{i}", role="user", content="x")
    lengths, cursor = set(), None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = (await api.client.get("/api/memory/all", params=params, headers=h)).json()
        if not (cursor := page["nextCursor"]):
            break
        lengths.add(len(cursor))
    assert len(lengths) == 1, lengths
