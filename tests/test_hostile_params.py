"""Issue 20, point 6 (the smaller findings), on both databases: a repeated query parameter and a
repeated JSON member are a 400 (never "last wins"), the memory_add tool's `idempotencyKey` is held
to the `Idempotency-Key` header's rules, and the admin API takes a quota only as a JSON integer.
MCP (a transcript page that says so, and error answers) is at the end, against a live server."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from memory_service.client import MemoryServiceClient
from memory_service.http.mcp import memory_uri
from tests.conftest import Api
from tests.support.live import new_workspace
from tests.support.mcp import bearer, connect
from tests.support.server import LiveServer

JSON = {"Content-Type": "application/json"}


def refused(r, status: int, code: str) -> dict:  # noqa: ANN001
    """An error envelope with exactly this status and code."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    body = r.json()
    assert body["success"] is False and body["code"] == code, body
    assert isinstance(body["error"], str) and body["message"] == body["error"], body
    return body


async def invoke(api: Api, headers: dict, tool: str, body: bytes) -> tuple[int, list[dict]]:
    r = await api.client.post(
        f"/api/tools/{tool}/invoke", content=body, headers={**headers, **JSON}
    )
    if r.status_code != 200:
        return r.status_code, [r.json()]
    return 200, [json.loads(line) for line in r.text.splitlines() if line]


async def seeded(api: Api) -> dict[str, str]:
    """A workspace with one memory (c/default) and one KV entry (k)."""
    h = await api.workspace("w")
    body = {"conversationId": "c", "role": "user", "content": "x"}
    assert (await api.client.post("/api/memory", json=body, headers=h)).status_code == 200
    assert (await api.client.put("/api/kv/k", content=b"v", headers=h)).status_code == 201
    return h


async def state(api: Api, h: dict[str, str]) -> tuple:
    """What the workspace holds: its memories and its KV entries."""
    memories = (await api.client.get("/api/memory/all", headers=h)).json()["memories"]
    entries = (await api.client.get("/api/kv", headers=h)).json()["items"]
    return (
        [(m["key"], [(x["role"], x["content"]) for x in m["data"]]) for m in memories],
        [(e["key"], e["size"]) for e in entries],
    )


# --- repeated query parameters --------------------------------------------------------------------

# Every route that takes query parameters (and some that take none), each parameter given twice.
REPEATED = [
    ("GET", "/api/memory?conversationId=a&conversationId=b", "conversationId"),
    ("GET", "/api/memory?conversationId=c&limit=1&limit=2", "limit"),
    ("GET", "/api/memory?conversationId=c&lastN=1&lastN=1", "lastN"),  # the same twice too
    ("GET", "/api/memory?id=c&id=", "id"),  # a blank one counts
    ("GET", "/api/memory?conversationId=c&keepSystem=true&keep%53ystem=false", "keepSystem"),
    ("GET", "/api/memory/all?limit=5&limit=6", "limit"),
    ("GET", "/api/memory/messages?conversationId=c&conversationId=d", "conversationId"),
    ("GET", "/api/memory/blocks?cursor=x&cursor=y", "cursor"),
    ("DELETE", "/api/memory?conversationId=c&conversationId=other", "conversationId"),
    ("DELETE", "/api/memory?conversationId=c&dryRun=true&dryRun=false", "dryRun"),
    ("GET", "/api/kv?prefix=k&prefix=x", "prefix"),
    ("GET", "/api/kv/k?a=1&a=2", "a"),
    ("PUT", "/api/kv/k?ttl=60&ttl=1", "ttl"),
    ("PUT", "/api/kv/new?contentType=text/plain&contentType=text/html", "contentType"),
    ("DELETE", "/api/kv/k?x&x", "x"),
    ("GET", "/api/stats?blockId=default&blockId=other", "blockId"),
    ("GET", "/api/tools?format=json&format=yaml", "format"),
    ("POST", "/api/memory?x=1&x=2", "x"),
    ("GET", "/api/usage?a+b=1&a%20b=2", "a b"),
]


@pytest.mark.parametrize(("method", "url", "name"), REPEATED)
async def test_a_repeated_query_parameter_is_a_400_naming_it(
    api: Api, method: str, url: str, name: str
) -> None:
    h = await seeded(api)
    before = await state(api, h)
    body = b'{"conversationId":"c","role":"user","content":"y"}' if method == "POST" else b"new"
    r = await api.client.request(method, url, content=body, headers=h)
    found = refused(r, 400, "repeated_parameter")
    assert repr(name) in found["error"], found
    assert await state(api, h) == before  # nothing written, nothing deleted


async def test_each_parameter_once_still_works(api: Api) -> None:
    h = await seeded(api)
    r = await api.client.get("/api/memory?conversationId=c&limit=1&lastN=1&x=&y", headers=h)
    assert r.status_code == 200 and r.json()["memories"][0]["messageCount"] == 1, r.text
    r = await api.client.get("/api/kv?prefix=k&&limit=5", headers=h)  # an empty field is no name
    assert r.status_code == 200 and [x["key"] for x in r.json()["items"]] == ["k"], r.text


async def test_a_repeated_parameter_is_refused_before_the_credential(api: Api) -> None:
    # Refused in front of every route, so the same answer with or without a key.
    r = await api.client.get("/api/memory?conversationId=a&conversationId=b")
    refused(r, 400, "repeated_parameter")
    r = await api.client.get("/admin/workspaces?a=1&a=2", headers=api.admin)
    refused(r, 400, "repeated_parameter")


async def test_a_long_repeated_name_is_cut_in_the_answer(api: Api) -> None:
    h = await api.workspace("w")
    name = "n" * 5000
    r = await api.client.get(f"/api/memory?{name}=1&{name}=2", headers=h)
    found = refused(r, 400, "repeated_parameter")
    assert len(found["error"]) < 300, found


# --- repeated JSON members ------------------------------------------------------------------------

ADD = b'{"conversationId":"c","role":"user","role":"system","content":"x"}'


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (ADD, "role"),
        (
            b'{"conversationId":"c","conversationId":"d","role":"user","content":"x"}',
            "conversationId",
        ),
        (b'{"conversationId":"c","role":"user","content":"x","content":"y"}', "content"),
        (b'{"conversationId":"c","role":"user","content":"x","lastN":1,"lastN":2}', "lastN"),
        # the same member twice with the same value is repeated too
        (b'{"conversationId":"c","role":"user","role":"user","content":"x"}', "role"),
        # spelled two ways: the same name once decoded
        (b'{"conversationId":"c","role":"user","r\\u006fle":"system","content":"x"}', "role"),
        (b' \n{"conversationId":"c","role":"user","role":"system","content":"x"}', "role"),
        # nested: a batch's message
        (
            b'{"conversationId":"c","messages":[{"role":"user","content":"a"},'
            b'{"role":"user","content":"b","content":"c"}]}',
            "content",
        ),
        # a 1 KiB body
        (
            b'{"conversationId":"c","role":"user","content":"'
            + b"x" * 1024
            + b'","role":"system"}',
            "role",
        ),
    ],
    ids=["role", "conversationId", "content", "lastN", "same", "escaped", "spaced", "batch", "1k"],
)
async def test_a_memory_add_with_a_repeated_member_is_a_400_naming_it(
    api: Api, body: bytes, name: str
) -> None:
    h = await seeded(api)
    before = await state(api, h)
    r = await api.client.post("/api/memory", content=body, headers={**h, **JSON})
    found = refused(r, 400, "duplicate_member")
    assert repr(name) in found["error"], found
    assert await state(api, h) == before


async def test_a_repeated_member_is_told_apart_from_a_repeated_value(api: Api) -> None:
    h = await seeded(api)
    # "role" as a value and a name inside content: no member repeats.
    body = b'{"conversationId":"c","role":"user","content":"\\"role\\": \\"role\\":"}'
    r = await api.client.post("/api/memory", content=body, headers={**h, **JSON})
    assert r.status_code == 200, r.text
    batch = (
        b'{"conversationId":"c","messages":'
        b'[{"role":"user","content":"a"},{"role":"user","content":"b"}]}'
    )
    r = await api.client.post("/api/memory", content=batch, headers={**h, **JSON})
    assert r.status_code == 200 and r.json()["memories"][0]["messageCount"] == 4, r.text


async def test_a_malformed_body_keeps_its_own_answer(api: Api) -> None:
    h = await seeded(api)
    r = await api.client.post(
        "/api/memory", content=b'{"role":"user","role":', headers={**h, **JSON}
    )
    assert r.status_code == 400 and r.json()["code"] != "duplicate_member", r.text


@pytest.mark.parametrize(
    "parameters",
    [
        b'{"conversationId":"c","role":"user","content":"x","content":"y"}',
        b'{"conversationId":"c","role":"user","content":"x"},"parameters":{}',
    ],
    ids=["in parameters", "parameters twice"],
)
async def test_a_tool_invocation_with_a_repeated_member_is_a_400(
    api: Api, parameters: bytes
) -> None:
    h = await seeded(api)
    before = await state(api, h)
    status, body = await invoke(api, h, "memory_add", b'{"parameters":' + parameters + b"}")
    assert status == 400 and body[0]["code"] == "duplicate_member", body
    assert await state(api, h) == before


@pytest.mark.parametrize(
    ("method", "url", "body", "name"),
    [
        ("POST", "/admin/workspaces", b'{"name":"x","name":"y"}', "name"),
        ("POST", "/admin/workspaces", b'{"name":"x","quotaBytes":1,"quotaBytes":9}', "quotaBytes"),
        ("PUT", "/admin/workspaces/w/quota", b'{"quotaBytes":1,"quotaBytes":2}', "quotaBytes"),
        ("POST", "/admin/workspaces/w/keys", b'{"label":"a","label":"b"}', "label"),
    ],
)
async def test_an_admin_body_with_a_repeated_member_is_a_400(
    api: Api, method: str, url: str, body: bytes, name: str
) -> None:
    await api.workspace("w")
    before = (await api.client.get("/admin/workspaces", headers=api.admin)).json()
    r = await api.client.request(method, url, content=body, headers={**api.admin, **JSON})
    found = refused(r, 400, "duplicate_member")
    assert repr(name) in found["error"], found
    assert (await api.client.get("/admin/workspaces", headers=api.admin)).json() == before
    keys = (await api.client.get("/admin/workspaces/w/keys", headers=api.admin)).json()
    assert len(keys["keys"]) == 1


async def test_a_block_name_with_a_repeated_member_is_a_400(api: Api) -> None:
    h = await seeded(api)
    r = await api.client.put(
        "/api/memory/blocks/default", content=b'{"name":"a","name":"b"}', headers={**h, **JSON}
    )
    refused(r, 400, "duplicate_member")
    blocks = (await api.client.get("/api/memory/blocks", headers=h)).json()["blocks"]
    assert [b["name"] for b in blocks if b["blockId"] == "default"] in ([], [None])


# --- the memory_add tool's idempotencyKey -------------------------------------------------------

IDEMPOTENCY_KEYS = {
    "empty": "",
    "256 characters": "k" * 256,
    "10,000 characters": "k" * 10_000,
    "not ASCII": "ключ",
    "Latin-1": "caf\u00e9",
    "control character": "a\x01b",
    "DEL": "a\x7fb",
    "tab": "a\tb",
}


@pytest.mark.parametrize("value", list(IDEMPOTENCY_KEYS.values()), ids=list(IDEMPOTENCY_KEYS))
async def test_the_tool_idempotency_key_has_the_headers_rules(api: Api, value: str) -> None:
    h = await seeded(api)
    before = await state(api, h)
    add = {"conversationId": "c", "role": "user", "content": "x"}
    # The header as a client sends it: bytes (UTF-8 for what is not ASCII).
    header = [(b"idempotency-key", value.encode("utf-8")), (b"content-type", b"application/json")]
    auth = [(k.lower().encode(), v.encode()) for k, v in h.items()]
    r = await api.client.post("/api/memory", content=json.dumps(add), headers=auth + header)
    by_header = refused(r, 400, "invalid_id")
    params = {**add, "idempotencyKey": value}
    status, by_tool = await invoke(
        api, h, "memory_add", json.dumps({"parameters": params}).encode()
    )
    assert status == 400, by_tool  # before the stream
    assert by_tool[0] == by_header  # the same code and the same words
    assert await state(api, h) == before


async def test_the_longest_idempotency_key_works_both_ways(api: Api) -> None:
    h = await seeded(api)
    key = "k~!" * 85  # 255 ASCII characters
    add = {"conversationId": "c", "role": "user", "content": "y"}
    r = await api.client.post("/api/memory", json=add, headers={**h, "Idempotency-Key": key})
    assert r.status_code == 200, r.text
    body = json.dumps({"parameters": {**add, "idempotencyKey": "!" + key[1:]}}).encode()
    status, messages = await invoke(api, h, "memory_add", body)
    assert status == 200 and messages[-1]["type"] != "error", messages
    (memory,) = (await api.client.get("/api/memory/all", headers=h)).json()["memories"]
    assert memory["messageCount"] == 3  # seeded, header add, tool add (its own key)


# --- the admin API's quota -----------------------------------------------------------------------

BAD_QUOTAS = {
    "string": (b'"100"', "invalid_request"),
    "numeric string with spaces": (b'" 100 "', "invalid_request"),
    "true": (b"true", "invalid_request"),
    "false": (b"false", "invalid_request"),
    "integral float": (b"100.0", "invalid_request"),
    "exponent": (b"1e3", "invalid_request"),
    "fraction": (b"100.5", "invalid_request"),
    "object": (b'{"bytes":100}', "invalid_request"),
    "array": (b"[100]", "invalid_request"),
    "negative": (b"-1", "invalid_quota"),
    "huge": (b"99999999999999999999999", "invalid_quota"),
    "beyond BIGINT": (b"9223372036854775808", "invalid_quota"),
}


@pytest.mark.parametrize(("value", "code"), list(BAD_QUOTAS.values()), ids=list(BAD_QUOTAS))
async def test_a_quota_that_is_not_a_json_integer_in_range_is_a_400(
    api: Api, value: bytes, code: str
) -> None:
    await api.workspace("w")
    before = (await api.client.get("/admin/workspaces", headers=api.admin)).json()
    create = b'{"name":"new","quotaBytes":' + value + b"}"
    r = await api.client.post("/admin/workspaces", content=create, headers={**api.admin, **JSON})
    assert "quotaBytes" in refused(r, 400, code)["error"]
    r = await api.client.put(
        "/admin/workspaces/w/quota",
        content=b'{"quotaBytes":' + value + b"}",
        headers={**api.admin, **JSON},
    )
    assert "quotaBytes" in refused(r, 400, code)["error"]
    assert (await api.client.get("/admin/workspaces", headers=api.admin)).json() == before


async def test_a_quota_given_as_an_integer_works(api: Api) -> None:
    body = b'{"name":"new","quotaBytes":100}'
    r = await api.client.post("/admin/workspaces", content=body, headers={**api.admin, **JSON})
    assert r.status_code == 201 and r.json()["workspace"]["quotaBytes"] == 100, r.text
    r = await api.client.put(
        "/admin/workspaces/new/quota", content=b'{"quotaBytes":0}', headers={**api.admin, **JSON}
    )
    assert r.status_code == 200 and r.json()["workspace"]["quotaBytes"] == 0, r.text
    r = await api.client.post(
        "/admin/workspaces/new/keys", content=b'{"label":7}', headers={**api.admin, **JSON}
    )
    assert "label" in refused(r, 400, "invalid_request")["error"]


# --- MCP: a transcript cut at the page size, and the error answers of /mcp ----------------------

# The live server of this module pages messages 3 at a time, and takes /mcp bodies of at most
# 4000 + 64 KiB bytes (base64 of a 3000-byte value, and slack): its own process, see live_server.
LIVE_SERVER_ENV = {"MEMORY_MAX_MESSAGE_PAGE": "3", "MEMORY_MAX_VALUE_BYTES": "3000"}


@pytest.fixture(scope="module")
def live(live_server: LiveServer) -> LiveServer:
    return live_server


_NOTE = re.compile(r"\[(\d+) of (\d+) messages shown, ([^;]+); ([^\]]+)\]\n")


def _page(read: Any) -> tuple[dict, str]:
    as_json, as_text = read.contents
    assert as_json.mime_type == "application/json" and as_text.mime_type == "text/plain"
    return json.loads(as_json.text), as_text.text


async def test_a_cut_transcript_says_so_and_the_resource_pages_back_to_the_start(
    live: LiveServer,
) -> None:
    key = new_workspace(live)
    sent = [f"message {i}" for i in range(8)]
    with MemoryServiceClient(live.url, key) as ms:
        for text in sent:
            ms.memory.add("c/1", "user", text, block_id="b")
        ms.memory.add("short", "user", "one")
    uri = memory_uri("c/1", "b")
    pages = []
    async with connect(live.url, bearer(key)) as c:
        memory, text = _page(await c.read_resource(uri))
        note = _NOTE.match(text)
        assert note is not None, text
        assert note.groups()[:3] == ("3", "8", "the newest")
        while True:
            lines = text[note.end() :].splitlines()
            assert [x["content"] for x in memory["data"]] == [
                x.removeprefix("user: ") for x in lines
            ]
            assert memory["messageCount"] == 8
            pages.append(lines)
            if note.group(4) == "there are none earlier":
                assert memory["dataCursor"] is None
                break
            link = note.group(4).removeprefix("the earlier ones: read ")
            assert link == f"{uri}?cursor={memory['dataCursor']}"  # the JSON's own cursor
            memory, text = _page(await c.read_resource(link))
            note = _NOTE.match(text)
            assert note is not None, text
            assert note.group(3) == "those just before the cursor"
        whole = await c.read_resource(memory_uri("short", "default"))
    # Newest page first, each in order: read back to front, every message once, in order.
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [line for page in reversed(pages) for line in page] == [f"user: {t}" for t in sent]
    # A memory that fits one page is the whole transcript, with nothing to say about it.
    assert _page(whole)[1] == "user: one\n"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?cursor=forged", "invalid_cursor"),
        ("?page=2", "invalid_uri"),
        ("?cursor=", "invalid_uri"),
        ("?cursor=a&cursor=b", "invalid_uri"),
    ],
)
async def test_a_memory_uri_with_a_bad_cursor_is_refused(
    live: LiveServer, query: str, code: str
) -> None:
    key = new_workspace(live)
    with MemoryServiceClient(live.url, key) as ms:
        ms.memory.add("c", "user", "x")
    uri = memory_uri("c", "default") + query
    async with connect(live.url, bearer(key)) as c:
        with pytest.raises(MCPError) as caught:
            await c.read_resource(uri)
    assert caught.value.code == types.INVALID_PARAMS
    assert caught.value.error.data["code"] == code, caught.value.error.data


MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
ENVELOPED = {
    # what is sent: (method, path, extra headers, body) -> (status, code)
    "no key": ("POST", "/mcp", {"Authorization": ""}, PING, 401, "unauthorized"),
    "GET": ("GET", "/mcp", {}, None, 405, "method_not_allowed"),
    "no such path": ("POST", "/mcp/tools", {}, PING, 404, "not_found"),
    "Accept not JSON": ("POST", "/mcp", {"Accept": "text/html"}, PING, 406, "not_acceptable"),
    "Content-Type not JSON": (
        "POST",
        "/mcp",
        {"Content-Type": "text/plain"},
        PING,
        415,
        "unsupported_media_type",
    ),
    "body too large": ("POST", "/mcp", {}, b" " * 70_000, 413, "body_too_large"),
    "malformed JSON": ("POST", "/mcp", {}, b"{nope", 400, "invalid_request"),
    "not UTF-8": (
        "POST",
        "/mcp",
        {},
        b'{"jsonrpc":"2.0","id":1,"method":"\xff"}',
        400,
        "invalid_request",
    ),
    "too deep": ("POST", "/mcp", {}, b"[" * 30000 + b"]" * 30000, 400, "invalid_request"),
    "not JSON-RPC": ("POST", "/mcp", {}, b'{"hello":"world"}', 400, "invalid_request"),
    "repeated member": (
        "POST",
        "/mcp",
        {},
        b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}',
        400,
        "duplicate_member",
    ),
}


# The SDK serves two transports, picked by this header: the legacy one (none) and 2026-07-28's.
PROTOCOLS = {"legacy": {}, "2026-07-28": {"MCP-Protocol-Version": "2026-07-28"}}


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "code"),
    list(ENVELOPED.values()),
    ids=list(ENVELOPED),
)
async def test_mcp_http_refusals_are_the_error_envelope(
    live: LiveServer,
    protocol: str,
    method: str,
    path: str,
    headers: dict,
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    sent = {**bearer(new_workspace(live)), **MCP_HEADERS, **PROTOCOLS[protocol], **headers}
    sent = {k: v for k, v in sent.items() if v}
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.request(method, f"{live.url}{path}", content=body, headers=sent)
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("application/json")
    answer = r.json()
    assert set(answer) == {"success", "error", "message", "code"}, answer
    assert answer["success"] is False and answer["code"] == code, answer
    assert answer["error"] == answer["message"] and answer["error"], answer


@pytest.mark.parametrize(
    ("body", "rpc_code"),
    [
        (b'{"jsonrpc":"2.0","id":7,"method":"nope"}', types.METHOD_NOT_FOUND),
        (
            b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":[]}}',
            types.INVALID_PARAMS,
        ),
    ],
)
async def test_mcp_protocol_errors_stay_json_rpc(
    live: LiveServer, body: bytes, rpc_code: int
) -> None:
    headers = {**bearer(new_workspace(live)), **MCP_HEADERS}
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{live.url}/mcp", content=body, headers=headers)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["jsonrpc"] == "2.0" and answer["id"] == 7, answer
    assert answer["error"]["code"] == rpc_code, answer


async def test_mcp_protocol_errors_with_a_4xx_status_stay_json_rpc(live: LiveServer) -> None:
    # The 2026-07-28 transport answers a request's error with a 4xx status; the SDK's client
    # reads it as that request's JSON-RPC error, so it is left as it is.
    key = new_workspace(live)
    headers = {**bearer(key), **MCP_HEADERS, **PROTOCOLS["2026-07-28"]}
    body = b'{"jsonrpc":"2.0","id":7,"method":"nope"}'
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{live.url}/mcp", content=body, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    answer = r.json()
    assert answer["jsonrpc"] == "2.0" and answer["id"] == 7 and "success" not in answer, answer
    assert isinstance(answer["error"]["code"], int), answer
    # ... and through the SDK's client, a refused read is that read's error, code and data.
    async with connect(live.url, bearer(key)) as c:
        with pytest.raises(MCPError) as caught:
            await c.read_resource("memory://nobody/default")
    assert caught.value.code == types.INVALID_PARAMS
    assert caught.value.error.data["code"] == "memory_not_found"
