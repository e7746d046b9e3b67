"""Tools over HTTP, in-process on both databases: the catalogue (JSON and Dify-style YAML),
refusals before the stream starts, and invocations that agree with the plain HTTP API."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from jsonschema import Draft202012Validator

from memory_service.wire import messages as m
from tests.conftest import Api, stored_bytes

TOOL_NAMES = {
    "memory_add",
    "memory_get",
    "memory_get_all",
    "memory_delete",
    "storage_set",
    "storage_get",
    "storage_exist",
    "storage_delete",
    "storage_list",
}
LOCALES = {"en_US", "zh_Hans", "ja_JP"}


def lines(body: bytes) -> list[m.ToolMessage]:
    assert body.endswith(b"\n")
    return [m.decode_message(x) for x in body.splitlines()]


async def invoke(api: Api, h: dict, name: str, params: dict, accept: str | None = None):  # noqa: ANN201
    headers = {**h, "Accept": accept} if accept else h
    return await api.client.post(
        f"/api/tools/{name}/invoke", json={"parameters": params}, headers=headers
    )


async def test_catalogue_as_json(sqlite_api: Api) -> None:
    h = await sqlite_api.workspace("a")
    r = await sqlite_api.client.get("/api/tools", headers=h)
    assert r.status_code == 200 and r.json()["success"] is True
    tools = r.json()["tools"]
    assert {t["identity"]["name"] for t in tools} >= TOOL_NAMES
    for t in tools:
        assert set(t) == {"identity", "description", "parameters", "output_schema"}
        assert t["identity"]["author"] and set(t["identity"]["label"]) >= LOCALES
        assert set(t["description"]["human"]) >= LOCALES and t["description"]["llm"]
        for p in t["parameters"]:
            assert p.keys() >= {"name", "type", "required", "label", "human_description", "form"}
            assert p["type"] in {"string", "number", "boolean", "select", "file"}
            assert p["form"] in {"llm", "form"} and set(p["label"]) >= LOCALES
            if p["type"] == "select":
                assert p["options"] and all(set(o["label"]) >= LOCALES for o in p["options"])
        schema = t["output_schema"]
        Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object"
        assert not {"text", "json", "files"} & set(schema["properties"])
        one = await sqlite_api.client.get(f"/api/tools/{t['identity']['name']}", headers=h)
        assert one.status_code == 200 and one.json()["tool"] == t


async def test_catalogue_as_dify_yaml(sqlite_api: Api) -> None:
    h = await sqlite_api.workspace("a")
    c = sqlite_api.client
    as_json = (await c.get("/api/tools", headers=h)).json()["tools"]
    r = await c.get("/api/tools.yaml", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    docs = yaml.safe_load(r.text)  # one document: the list of manifests
    assert docs == as_json
    for doc in docs:  # a plugin's tools/<name>.yaml: these keys, in this order
        assert list(doc)[:4] == ["identity", "description", "parameters", "output_schema"]
    query = await c.get("/api/tools", params={"format": "yaml"}, headers=h)
    assert yaml.safe_load(query.text) == docs
    one = await c.get("/api/tools/storage_set", params={"format": "yaml"}, headers=h)
    doc = yaml.safe_load(one.text)
    assert doc["identity"]["name"] == "storage_set"
    assert "ストレージ" in one.text and "存储" in one.text  # written as text, not escapes
    assert {p["name"] for p in doc["parameters"]} >= {"key", "value", "value_base64", "ttl"}


@pytest.mark.parametrize(
    ("name", "body", "status", "code"),
    [
        ("no_such_tool", {"parameters": {}}, 404, "tool_not_found"),
        ("storage_get", {"parameters": {}}, 400, "missing_parameter"),
        ("storage_get", {"parameters": {"key": "k", "extra": 1}}, 400, "invalid_parameter"),
        ("storage_get", {"parameters": {"key": 5}}, 400, "invalid_parameter"),
        ("storage_get", {"parameters": {"key": ""}}, 400, "invalid_key"),
        ("storage_get", {"parameters": {"key": "a\x00b"}}, 400, "invalid_key"),
        ("storage_get", {"parameters": {"key": "x" * 513}}, 400, "invalid_key"),
        ("storage_set", {"parameters": {"key": "k"}}, 400, "invalid_parameter"),
        (
            "storage_set",
            {"parameters": {"key": "k", "value": "a", "value_base64": "YQ=="}},
            400,
            "invalid_parameter",
        ),
        (
            "storage_set",
            {"parameters": {"key": "k", "value_base64": "@@"}},
            400,
            "invalid_parameter",
        ),
        (
            "storage_set",
            {"parameters": {"key": "k", "value": "a", "ttl": -1}},
            400,
            "invalid_parameter",
        ),
        (
            "storage_set",
            {"parameters": {"key": "k", "value": "a", "ttl": "x"}},
            400,
            "invalid_parameter",
        ),
        ("storage_list", {"parameters": {"limit": 100000}}, 400, "invalid_limit"),
        ("storage_list", {"parameters": {"limit": 2.5}}, 400, "invalid_parameter"),
        ("storage_list", {"parameters": {"cursor": "!!"}}, 200, None),  # a stream error, see below
        ("memory_add", {"parameters": {"role": "user", "content": "x"}}, 400, "missing_parameter"),
        (
            "memory_add",
            {"parameters": {"conversationId": "c", "role": "robot", "content": "x"}},
            400,
            "invalid_parameter",
        ),
        ("memory_get", {"parameters": {}}, 400, "missing_filter"),
        (
            "memory_get",
            {"parameters": {"conversationId": "c", "lastN": 5000}},
            400,
            "invalid_last_n",
        ),
        ("memory_delete", {"parameters": {}}, 400, "missing_filter"),
        ("memory_delete", {"parameters": {"blockId": ""}}, 400, "invalid_id"),
        ("storage_get", {"params": {"key": "k"}}, 400, "invalid_request"),
        ("storage_get", {"parameters": ["k"]}, 400, "invalid_request"),
    ],
)
async def test_refusals_before_the_stream_are_plain_4xx(
    sqlite_api: Api, name: str, body: dict, status: int, code: str | None
) -> None:
    h = await sqlite_api.workspace("a")
    r = await sqlite_api.client.post(f"/api/tools/{name}/invoke", json=body, headers=h)
    assert r.status_code == status, r.text
    if code:
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["success"] is False and r.json()["code"] == code, r.json()
        assert r.json()["error"]
    else:  # a bad cursor is only found by the service, after the stream started
        last = lines(r.content)[-1]
        assert isinstance(last, m.ErrorMessage) and last.code == "invalid_cursor"


async def test_malformed_json_and_missing_key(sqlite_api: Api) -> None:
    h = await sqlite_api.workspace("a")
    c = sqlite_api.client
    for body in (b"{nope", b'{"parameters": {"key": "k", "value": "\\ud800"}}'):
        r = await c.post("/api/tools/storage_set/invoke", content=body, headers=h)
        assert r.status_code == 400 and r.json()["code"] == "invalid_request", body
    r = await c.post("/api/tools/storage_list/invoke", json={"parameters": {}})
    assert r.status_code == 401 and r.json()["success"] is False
    r = await c.get("/api/tools", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    # an empty body means no parameters
    r = await c.post("/api/tools/storage_list/invoke", headers=h)
    assert r.status_code == 200 and isinstance(lines(r.content)[0], m.TextMessage)


async def test_string_form_values_are_coerced(sqlite_api: Api) -> None:
    """Workflow engines often send every form value as a string."""
    h = await sqlite_api.workspace("a")
    for i in range(3):
        await invoke(sqlite_api, h, "storage_set", {"key": f"k{i}", "value": "v"})
    r = await invoke(sqlite_api, h, "storage_list", {"limit": "2"})
    out = m.collect(lines(r.content))
    assert out.variables["count"] == 2 and out.variables["next_cursor"]
    r = await invoke(sqlite_api, h, "memory_delete", {"conversationId": "c", "dryRun": "true"})
    assert m.collect(lines(r.content)).variables["dry_run"] is True


async def test_tools_and_the_http_api_see_the_same_data(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    value = bytes(range(256))
    r = await invoke(
        api,
        h,
        "storage_set",
        {"key": "a/b.bin", "value_base64": base64.b64encode(value).decode(), "ttl": 60},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    out = m.collect(lines(r.content))
    assert out.variables["created"] is True and out.variables["expires_at"]
    got = await c.get("/api/kv/a%2Fb.bin", headers=h)
    assert got.content == value and got.headers["etag"] == out.variables["etag"]
    assert got.headers["content-type"] == "application/octet-stream"
    assert await stored_bytes(api.settings.database_url, "a") == len("a/b.bin") + 256

    await c.put("/api/kv/t", content="héllo".encode(), headers={**h, "Content-Type": "text/x"})
    out = m.collect(lines((await invoke(api, h, "storage_get", {"key": "t"})).content))
    assert out.files[0].data == "héllo".encode() and out.files[0].mime_type == "text/x"
    assert out.variables["value_text"] == "héllo"

    await c.post(
        "/api/memory", json={"conversationId": "c1", "role": "user", "content": "hi"}, headers=h
    )
    r = await invoke(
        api, h, "memory_add", {"conversationId": "c1", "role": "assistant", "content": "yo"}
    )
    added = m.collect(lines(r.content)).variables
    assert added["message_count"] == 2 and added["memory"]["data"] == [
        {"role": "assistant", "content": "yo", "seq": 1}
    ]
    listed = (await c.get("/api/memory", params={"conversationId": "c1"}, headers=h)).json()
    out = m.collect(lines((await invoke(api, h, "memory_get", {"conversationId": "c1"})).content))
    assert out.variables["memories"] == listed["memories"]
    assert out.json == [{"memories": listed["memories"], "next_cursor": None}]
    assert out.variables["transcript"] == "user: hi\nassistant: yo\n"
    r = await invoke(api, h, "memory_delete", {"conversationId": "c1"})
    assert m.collect(lines(r.content)).variables["deleted_count"] == 1
    assert (await c.get("/api/memory", params={"conversationId": "c1"}, headers=h)).json()[
        "memories"
    ] == []


async def test_workspaces_stay_apart_through_tools(sqlite_api: Api) -> None:
    a = await sqlite_api.workspace("a")
    b = await sqlite_api.workspace("b")
    await invoke(sqlite_api, a, "storage_set", {"key": "secret", "value": "a's"})
    await invoke(
        sqlite_api, a, "memory_add", {"conversationId": "c", "role": "user", "content": "x"}
    )
    r = await invoke(sqlite_api, b, "storage_get", {"key": "secret"})
    assert lines(r.content)[-1].code == "key_not_found"
    r = await invoke(sqlite_api, b, "storage_exist", {"key": "secret"})
    assert m.collect(lines(r.content)).variables["exists"] is False
    r = await invoke(sqlite_api, b, "memory_get_all", {})
    assert m.collect(lines(r.content)).variables["memories"] == []
    r = await invoke(sqlite_api, b, "memory_delete", {"conversationId": "c"})
    assert m.collect(lines(r.content)).variables["deleted_count"] == 0
    r = await invoke(sqlite_api, a, "memory_get", {"conversationId": "c"})
    assert m.collect(lines(r.content)).variables["count"] == 1


async def test_server_sent_events_on_request(sqlite_api: Api) -> None:
    h = await sqlite_api.workspace("a")
    await invoke(
        sqlite_api, h, "memory_add", {"conversationId": "c", "role": "user", "content": "x"}
    )
    sse = await invoke(sqlite_api, h, "memory_get", {"conversationId": "c"}, accept=m.SSE)
    assert sse.headers["content-type"].startswith("text/event-stream")
    events = [e for e in sse.content.split(b"\n\n") if e]
    assert sse.content.endswith(b"\n\n")
    ndjson = await invoke(sqlite_api, h, "memory_get", {"conversationId": "c"})
    plain = ndjson.content.splitlines()
    assert len(events) == len(plain)
    for event, line in zip(events, plain, strict=True):
        kind, data = event.split(b"\n")
        assert data == b"data: " + line
        assert kind == b"event: " + json.loads(line)["type"].encode()


async def test_memory_add_with_an_idempotency_key_appends_once(sqlite_api: Api) -> None:
    h = await sqlite_api.workspace("a")
    params = {"conversationId": "c", "role": "user", "content": "once", "idempotencyKey": "k1"}
    first = m.collect(lines((await invoke(sqlite_api, h, "memory_add", params)).content))
    again = m.collect(lines((await invoke(sqlite_api, h, "memory_add", params)).content))
    assert (first.variables["replayed"], again.variables["replayed"]) == (False, True)
    assert again.variables["message_count"] == 1 and "idempotency key" in again.text
    r = await invoke(sqlite_api, h, "memory_add", {**params, "content": "other"})
    last = lines(r.content)[-1]
    assert isinstance(last, m.ErrorMessage) and last.code == "idempotency_key_reused"
