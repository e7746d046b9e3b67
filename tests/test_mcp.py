"""MCP at /mcp, driven by the official SDK's own client over HTTP against a live server, on both
databases: initialize, the tool list (schemas from the manifests), every tool called (answers
that validate against their outputSchema and agree with the HTTP API), memories as resources,
errors carrying the HTTP API's message and code, credentials, quota, rate limit, and a second
workspace that sees nothing of the first."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import mcp_types as types
import pytest
from jsonschema import Draft202012Validator
from mcp.shared.exceptions import MCPError

from memory_service import __version__
from memory_service.client import MemoryServiceClient
from memory_service.http.mcp import memory_uri
from memory_service.settings import sqlite_url
from memory_service.tools import catalogue
from memory_service.tools.manifest import input_schema
from tests.support.live import new_workspace
from tests.support.mcp import bearer, connect
from tests.support.server import LiveServer
from tests.test_tools_live import SCENARIOS


@pytest.fixture(scope="module")
def live(live_server: LiveServer) -> LiveServer:
    return live_server


def http_error(live: LiveServer, key: str, name: str, params: dict) -> dict[str, Any]:
    """What the HTTP API answers for the same refused invocation: a 4xx envelope when it is
    refused before the stream starts, else the `error` message that ends the stream."""
    r = httpx.post(
        f"{live.url}/api/tools/{name}/invoke",
        json={"parameters": params},
        headers=bearer(key),
        timeout=30,
    )
    if r.status_code == 200:
        last = json.loads(r.content.splitlines()[-1])
        assert last["type"] == "error", r.text
        return last["message"]
    assert r.status_code >= 400, r.text
    return r.json()


_TIMES = {"createdAt", "updatedAt", "updated_at", "expires_at"}
_CURSORS = {"next_cursor", "dataCursor"}


def timeless(value: Any) -> Any:
    """A value with its timestamps taken out (two workspaces write at different instants) and
    its cursors reduced to whether there is one (they are opaque, and differ per workspace)."""
    if isinstance(value, dict):
        return {
            k: (v is not None) if k in _CURSORS else timeless(v)
            for k, v in value.items()
            if k not in _TIMES
        }
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


async def test_initialize_and_list_tools(live: LiveServer) -> None:
    async with connect(live.url, bearer(new_workspace(live))) as c:
        assert c.server_info is not None
        assert (c.server_info.name, c.server_info.version) == ("memory-service", __version__)
        assert c.server_capabilities.tools is not None
        assert c.server_capabilities.resources is not None
        assert "memory://{conversationId}/{blockId}" in (c.instructions or "")
        listed = (await c.list_tools()).tools
    tools = catalogue.tools()
    assert [t.name for t in listed] == list(tools)
    for t in listed:
        manifest = tools[t.name].manifest
        assert t.title == manifest.identity.label["en_US"]
        assert t.description == manifest.description.llm
        assert t.input_schema == input_schema(manifest)
        assert t.output_schema == manifest.output_schema
        Draft202012Validator.check_schema(t.input_schema)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_every_tool_over_mcp_answers_what_http_answers(live: LiveServer, name: str) -> None:
    setup, params = SCENARIOS[name]
    over_mcp, over_http = new_workspace(live), new_workspace(live)
    with (
        MemoryServiceClient(live.url, over_mcp) as a,
        MemoryServiceClient(live.url, over_http) as b,
    ):
        if setup:
            setup(a)
            setup(b)
        expected = b.tools.run(name, params)
    async with connect(live.url, bearer(over_mcp)) as c:
        result = await c.call_tool(name, params)
    assert result.is_error is False
    manifest = catalogue.get_tool(name).manifest
    Draft202012Validator(manifest.output_schema).validate(result.structured_content)
    assert timeless(result.structured_content) == timeless(expected.variables)
    text = [x for x in result.content if isinstance(x, types.TextContent)]
    assert text[0].text == expected.text  # the readable summary, word for word
    assert timeless(json.loads(text[1].text)) == timeless(expected.variables)
    blobs = [x for x in result.content if isinstance(x, types.EmbeddedResource)]
    assert len(blobs) == len(expected.files)
    for blob, file in zip(blobs, expected.files, strict=True):
        assert isinstance(blob.resource, types.BlobResourceContents)
        assert blob.resource.mime_type == file.mime_type
        assert blob.resource.uri == "kv://k"


async def test_storage_round_trip_of_binary_bytes(live: LiveServer) -> None:
    data = bytes(range(256)) * 3
    async with connect(live.url, bearer(new_workspace(live))) as c:
        b64 = base64.b64encode(data).decode()
        put = await c.call_tool(
            "storage_set", {"key": "bin/1", "value_base64": b64, "content_type": "image/png"}
        )
        assert put.is_error is False and put.structured_content["value_size"] == len(data)
        got = await c.call_tool("storage_get", {"key": "bin/1"})
        assert got.structured_content["value_text"] is None
        (blob,) = [x for x in got.content if isinstance(x, types.EmbeddedResource)]
        assert blob.resource.mime_type == "image/png"
        assert base64.b64decode(blob.resource.blob) == data
        assert blob.resource.uri == "kv://bin%2F1"
        read = await c.read_resource("kv://bin%2F1")
        assert base64.b64decode(read.contents[0].blob) == data


async def test_memories_are_resources(live: LiveServer) -> None:
    key = new_workspace(live)
    odd = "User/42%:ü"  # "/", "%" and ":" are ordinary characters of an id; case is kept
    with MemoryServiceClient(live.url, key) as ms:
        ms.memory.add(odd, "system", "be brief", block_id="b/1", block_name="notes")
        ms.memory.add(odd, "user", "hello", block_id="b/1")
        ms.memory.add("other", "user", "x")
        expected = ms.memory.get(conversation_id=odd)
    uri = memory_uri(odd, "b/1")
    assert uri == "memory://User%2F42%25%3A%C3%BC/b%2F1"
    async with connect(live.url, bearer(key)) as c:
        templates = (await c.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == [
            "memory://{conversationId}/{blockId}",
            "kv://{key}",
        ]
        listed = (await c.list_resources()).resources
        assert sorted(r.uri for r in listed) == sorted([uri, "memory://other/default"])
        (mine,) = [r for r in listed if r.uri == uri]
        assert mine.title == f"{odd} / notes" and mine.description == "2 message(s)"
        read = await c.read_resource(uri)
    as_json, as_text = read.contents
    assert as_json.mime_type == "application/json" and as_text.mime_type == "text/plain"
    memory = json.loads(as_json.text)
    assert memory["conversationId"] == odd and memory["blockId"] == "b/1"
    assert [(x["role"], x["content"]) for x in memory["data"]] == [
        ("system", "be brief"),
        ("user", "hello"),
    ]
    assert memory["key"] == expected.memories[0].key
    assert as_text.text == "system: be brief\nuser: hello\n"


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("memory://nobody/default", "memory_not_found"),
        ("memory://only-one-part", "invalid_uri"),
        ("memory://a/b/c", "invalid_uri"),
        ("memory://%FF/default", "invalid_uri"),
        ("kv://absent", "key_not_found"),
        ("file:///etc/passwd", "invalid_uri"),
    ],
)
async def test_bad_and_unknown_resources(live: LiveServer, uri: str, code: str) -> None:
    async with connect(live.url, bearer(new_workspace(live))) as c:
        with pytest.raises(MCPError) as caught:
            await c.read_resource(uri)
    assert caught.value.code == types.INVALID_PARAMS
    assert caught.value.error.data == {"uri": uri, "code": code}


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("memory_add", {"conversationId": "c", "role": "robot", "content": "x"}),  # bad select
        ("memory_add", {"role": "user", "content": "x"}),  # required parameter missing
        ("memory_get", {}),  # no filter
        ("memory_get", {"conversationId": "c", "lastN": 5000}),  # beyond the window
        ("storage_get", {"key": "absent"}),  # fails inside the invocation, after prepare
        ("storage_set", {"key": "k", "value": "v", "value_base64": "dg=="}),  # both values
        ("storage_list", {"cursor": "forged"}),
        ("storage_exist", {"key": "k", "extra": 1}),  # unknown parameter
        ("no_such_tool", {}),
    ],
)
async def test_errors_carry_the_http_message_and_code(
    live: LiveServer, name: str, params: dict
) -> None:
    key = new_workspace(live)
    async with connect(live.url, bearer(key)) as c:
        result = await c.call_tool(name, params)
    assert result.is_error is True
    expected = http_error(live, key, name, params)
    assert result.structured_content["success"] is False
    assert result.structured_content["code"] == expected["code"]
    assert result.structured_content["error"] == expected["error"]
    assert [x.text for x in result.content] == [expected["error"]]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer msk_wrong"}, {"Authorization": "Basic abc"}],
    ids=["none", "wrong key", "other scheme"],
)
async def test_a_wrong_key_gets_nothing(live: LiveServer, headers: dict) -> None:
    # The SDK client cannot even start a session ...
    with pytest.raises(ExceptionGroup) as caught:
        async with connect(live.url, headers) as c:
            await c.list_tools()
    assert caught.group_contains(MCPError, match="Server returned an error response")
    # ... because every request is refused as the HTTP API refuses it.
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.post(f"{live.url}/mcp", json=body, headers=headers)
    assert r.status_code == 401
    assert r.json()["success"] is False and r.json()["code"] == "unauthorized"


async def test_x_api_key_works_too(live: LiveServer) -> None:
    async with connect(live.url, {"X-API-Key": new_workspace(live, "xkey")}) as c:
        result = await c.call_tool("storage_exist", {"key": "k"})
    assert result.structured_content == {"key": "k", "exists": False}
    # and the access log names the workspace of an MCP request, as for any other route (the
    # access log is written in batches, at most ~50 ms behind: wait for the line, boundedly)
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(x) for x in live.log_text().splitlines() if x.startswith("{")]
        mcp = [x for x in lines if x.get("route") == "/mcp" and x.get("status") == 200]
        if any(x.get("workspace", "").startswith("xkey-") for x in mcp):
            break
        assert time.monotonic() < deadline, "no access line names the MCP request's workspace"
        await asyncio.sleep(0.05)


async def test_a_second_workspace_sees_nothing_of_the_first(live: LiveServer) -> None:
    first, second = new_workspace(live), new_workspace(live)
    async with connect(live.url, bearer(first)) as a:
        await a.call_tool("memory_add", {"conversationId": "c", "role": "user", "content": "a"})
        await a.call_tool("storage_set", {"key": "k", "value": "secret"})
        assert len((await a.list_resources()).resources) == 1
    async with connect(live.url, bearer(second)) as b:
        assert (await b.list_resources()).resources == []
        got = await b.call_tool("memory_get", {"conversationId": "c"})
        assert got.structured_content["count"] == 0 and got.structured_content["memories"] == []
        every = await b.call_tool("memory_get_all", {})
        assert every.structured_content["count"] == 0
        exists = await b.call_tool("storage_exist", {"key": "k"})
        assert exists.structured_content["exists"] is False
        listed = await b.call_tool("storage_list", {})
        assert listed.structured_content["keys"] == []
        read = await b.call_tool("storage_get", {"key": "k"})
        assert read.is_error is True and read.structured_content["code"] == "key_not_found"
        with pytest.raises(MCPError) as caught:
            await b.read_resource("memory://c/default")
        assert caught.value.error.data["code"] == "memory_not_found"
        deleted = await b.call_tool("memory_delete", {"conversationId": "c"})
        assert deleted.structured_content["deleted_count"] == 0
    async with connect(live.url, bearer(first)) as a:  # and changed nothing of it
        got = await a.call_tool("memory_get", {"conversationId": "c"})
        assert got.structured_content["transcript"] == "user: a\n"


async def test_the_quota_is_the_same_quota(live: LiveServer) -> None:
    key = new_workspace(live, quota=1000)
    async with connect(live.url, bearer(key)) as c:
        ok = await c.call_tool("storage_set", {"key": "a", "value": "x" * 500})
        assert ok.is_error is False
        over = await c.call_tool("storage_set", {"key": "b", "value": "x" * 600})
        assert over.is_error is True and over.structured_content["code"] == "quota_exceeded"
        listed = await c.call_tool("storage_list", {})
    assert listed.structured_content["keys"] == ["a"]  # nothing of the refused write was stored
    with MemoryServiceClient(live.url, key) as ms:
        over_http = ms.tools.invoke(
            "storage_set", {"key": "b", "value": "x" * 600}, raise_on_error=False
        )
        error = list(over_http)[-1]
    assert error.code == "quota_exceeded" and error.error == over.structured_content["error"]


def test_the_rate_limit_is_the_same_limit(tmp_path) -> None:  # noqa: ANN001
    # A tiny refill rate and a burst of 3: the 4th request of the workspace is refused, whatever
    # the timing (a refill takes 1000 s).
    env = {"MEMORY_RATE_LIMIT_RPS": "0.001", "MEMORY_RATE_LIMIT_BURST": "3"}
    with LiveServer(sqlite_url(tmp_path / "m.db"), tmp_path, env=env) as server:
        key = new_workspace(server)
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {**bearer(key), "Accept": "application/json, text/event-stream"}
        answers = [
            httpx.post(f"{server.url}/mcp", json=body, headers=headers, timeout=30)
            for _ in range(3)
        ]
        assert [r.status_code for r in answers] == [200] * 3, [r.text for r in answers]
        assert [r.json()["result"] for r in answers] == [{}] * 3
        refused = httpx.post(f"{server.url}/mcp", json=body, headers=headers, timeout=30)
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        assert refused.headers["retry-after"] == "1000"
        # the same bucket as the HTTP API: that workspace is out of tokens there too
        r = httpx.get(f"{server.url}/api/kv", headers=bearer(key), timeout=30)
        assert r.status_code == 429


MCP_ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'


@pytest.mark.parametrize(
    ("method", "body", "status", "check"),
    [
        ("GET", None, 405, lambda r: r.json()["code"] == "method_not_allowed"),
        ("DELETE", None, 405, lambda r: r.json()["code"] == "method_not_allowed"),
        ("PUT", PING, 405, lambda r: r.headers["allow"] == "POST"),
        # Refusals of the HTTP request itself are the service's envelope (http/mcp.py) ...
        ("POST", b"{nope", 400, lambda r: r.json()["code"] == "invalid_request"),
        ("POST", b"[" * 30000 + b"]" * 30000, 400, lambda r: r.json()["code"] == "invalid_request"),
        (
            "POST",
            b'{"jsonrpc":"2.0","id":1,"method":"\xff"}',
            400,
            lambda r: r.json()["code"] == "invalid_request",
        ),
        # ... errors answering a JSON-RPC request are JSON-RPC.
        (
            "POST",
            b'{"jsonrpc":"2.0","id":1,"method":"nope"}',
            200,
            lambda r: r.json()["error"]["code"] == types.METHOD_NOT_FOUND,
        ),
        (
            "POST",
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[]}}',
            200,
            lambda r: r.json()["error"]["code"] == types.INVALID_PARAMS,
        ),
    ],
    ids=["GET", "DELETE", "PUT", "bad JSON", "deep nesting", "invalid UTF-8", "no method", "args"],
)
async def test_bad_requests_get_a_4xx_or_a_json_rpc_error_never_a_hang(
    live: LiveServer, method: str, body: bytes | None, status: int, check: Any
) -> None:
    headers = {**bearer(new_workspace(live)), **MCP_ACCEPT}
    async with httpx.AsyncClient(timeout=10) as http:  # a hang fails here, not in CI's timeout
        r = await http.request(method, f"{live.url}/mcp", content=body, headers=headers)
        assert r.status_code == status, r.text
        assert check(r), r.text
        still = await http.post(f"{live.url}/mcp", content=PING, headers=headers)
    assert still.status_code == 200 and still.json()["result"] == {}
