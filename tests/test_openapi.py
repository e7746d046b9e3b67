"""openapi.yaml is generated from the app and committed; it must match what the app serves, and
hold to what generated clients and spec importers need (SPEC 8, issue #10's numbered points)."""

import re
from pathlib import Path

import pytest
import yaml

from memory_service.openapi import openapi_dict
from memory_service.settings import Settings
from tests.conftest import make_api

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("get", "put", "post", "delete", "patch", "head")


def committed() -> dict:
    return yaml.safe_load((ROOT / "openapi.yaml").read_text())


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def deref(doc: dict, ref: str) -> dict:
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_committed_openapi_matches_the_app() -> None:
    assert committed() == openapi_dict(), "openapi.yaml is stale: run `./dev openapi` and commit it"


async def test_served_openapi_is_the_committed_file_at_the_requests_origin(sqlite_api) -> None:  # noqa: ANN001
    for path in ("/schema/openapi.json", "/schema/openapi.yaml"):
        r = await sqlite_api.client.get(path, headers={"Host": "memory.example:8443"})
        assert r.status_code == 200, path
        served = yaml.safe_load(r.text)
        assert served["servers"] == [{"url": "http://memory.example:8443"}], path
        assert {**served, "servers": None} == {**committed(), "servers": None}, path


async def test_an_unknown_schema_page_is_the_error_envelope(sqlite_api) -> None:  # noqa: ANN001
    """Litestar's own answer there is an HTML page; every refusal of the service is the envelope."""
    for path in ("/schema/nope", "/schema/redoc%00", "/schema/nope.json"):
        r = await sqlite_api.client.get(path)
        assert r.status_code == 404, path
        body = r.json()
        assert body["success"] is False and body["code"] == "not_found", body
        assert body["error"] == body["message"] and body["error"], body
    for path in ("/schema", "/schema/swagger", "/schema/openapi.json"):
        assert (await sqlite_api.client.get(path)).status_code == 200, path


async def test_served_openapi_names_memory_public_url(sqlite_database_url: str) -> None:
    api, _ = await make_api(sqlite_database_url, public_url="https://memory.example.com/base")
    async with api.client:
        for path in ("/schema/openapi.json", "/schema/openapi.yaml"):
            served = yaml.safe_load((await api.client.get(path)).text)
            assert served["servers"] == [{"url": "https://memory.example.com/base"}], path


def test_committed_file_names_an_absolute_url() -> None:
    assert committed()["servers"] == [{"url": "http://127.0.0.1:8080"}]


# --- what a workflow builder's "import a custom tool from OpenAPI" checks ------------------------


def typed(doc: dict, schema: dict) -> bool:
    if "$ref" in schema:
        return typed(doc, deref(doc, schema["$ref"]))
    if "type" in schema or "const" in schema:
        return True
    branches = schema.get("oneOf") or schema.get("anyOf") or []
    return bool(branches) and all(typed(doc, b) for b in branches)


def test_spec_imports_as_workflow_builder_tools() -> None:
    doc = committed()
    assert re.match(r"^https?://[^/]+", doc["servers"][0]["url"])
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids)), ids
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", op["operationId"]), where
        assert op.get("summary") or op.get("description"), where
        for param in op.get("parameters", []):
            assert typed(doc, param["schema"]), (where, param["name"])
        json_body = op.get("requestBody", {}).get("content", {}).get("application/json")
        if json_body is None:
            continue
        # One $ref, to an object whose every property is typed.
        assert set(json_body["schema"]) == {"$ref"}, where
        body = deref(doc, json_body["schema"]["$ref"])
        assert body["type"] == "object" and body["properties"], where
        for name, prop in body["properties"].items():
            assert typed(doc, prop), (where, name)


# --- the numbered points of issue #10 -------------------------------------------------------------


def test_head_answers_declare_no_body_and_no_answer_is_untyped() -> None:
    doc = committed()
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            if method == "head":
                assert "content" not in response, (path, status)
            for media in response.get("content", {}):
                assert "*" not in media, (path, method, status, media)


def test_kv_values_are_binary_both_ways_with_a_content_type_parameter() -> None:
    op = committed()["paths"]["/api/kv/{key}"]
    body = op["put"]["requestBody"]
    assert body["required"] is True
    assert body["content"] == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
    }
    names = {p["name"]: p for p in op["put"]["parameters"]}
    assert names["contentType"]["in"] == "query" and names["contentType"]["required"] is False
    assert op["get"]["responses"]["200"]["content"] == body["content"]


def test_optional_parameters_are_plain_types_with_their_limits() -> None:
    doc = committed()
    for path, method, op in operations(doc):
        for param in op.get("parameters", []):
            assert "oneOf" not in param["schema"], (path, method, param["name"])
    memory_get = {p["name"]: p for p in doc["paths"]["/api/memory"]["get"]["parameters"]}
    assert memory_get["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "description": memory_get["limit"]["description"],
    }
    assert (memory_get["lastN"]["schema"]["minimum"], memory_get["lastN"]["schema"]["maximum"]) == (
        0,
        1000,
    )
    assert memory_get["id"]["deprecated"] is True
    assert memory_get["conversationId"]["deprecated"] is False
    assert (
        memory_get["conversationId"]["schema"]["minLength"],
        memory_get["conversationId"]["schema"]["maxLength"],
    ) == (1, 256)
    add = {p["name"]: p for p in doc["paths"]["/api/memory"]["post"]["parameters"]}
    assert add["Idempotency-Key"]["in"] == "header"
    assert add["Idempotency-Key"]["schema"]["type"] == "string"
    assert (
        add["Idempotency-Key"]["schema"]["minLength"],
        add["Idempotency-Key"]["schema"]["maxLength"],
    ) == (1, 255)
    kv = {p["name"]: p for p in doc["paths"]["/api/kv/{key}"]["put"]["parameters"]}
    assert kv["ttl"]["schema"]["minimum"] == 0.001 and kv["ttl"]["schema"]["maximum"] > 0
    assert kv["key"]["schema"]["maxLength"] == 512
    assert kv["If-Match"]["schema"]["type"] == "string"


def test_request_bodies_have_no_defaults_and_say_their_rules() -> None:
    schemas = committed()["components"]["schemas"]
    for name in ("MemoryAddBody", "MemoryMessageIn", "CreateKey", "CreateWorkspace", "SetQuota"):
        for prop_name, prop in schemas[name]["properties"].items():
            assert "default" not in prop, (name, prop_name)
    add = schemas["MemoryAddBody"]
    assert add["required"] == ["conversationId"]
    assert add["properties"]["id"]["deprecated"] is True
    assert add["properties"]["role"]["enum"] == ["user", "assistant", "system"]
    assert add["properties"]["conversationId"] == {
        "type": "string",
        "maxLength": 256,
        "minLength": 1,
    }
    assert "either `role` + `content`" in add["description"]
    assert add["properties"]["keepSystem"] == {"type": "boolean", "description": "Default: false."}
    assert schemas["CreateKey"].get("required", []) == []


def response_schemas(doc: dict) -> set[str]:
    names = set()
    for _, _, op in operations(doc):
        for response in op["responses"].values():
            for media in response.get("content", {}).values():
                if "$ref" in media.get("schema", {}):
                    names.add(media["schema"]["$ref"].rsplit("/", 1)[-1])
    return names


def test_answers_are_unions_told_apart_by_success_and_always_sent_fields_are_required() -> None:
    doc = committed()
    schemas = doc["components"]["schemas"]
    failure = schemas["Failure"]
    assert failure["properties"]["success"] == {"const": False}
    assert failure["required"] == ["code", "error", "message", "success"]
    for name in response_schemas(doc):
        schema = schemas[name]
        if name.startswith("Tool"):
            continue  # tool manifests: their own shapes (issue #11)
        assert schema["properties"]["success"] in ({"const": True}, {"const": False}), name
        assert "message" in schema["required"], name
    for _, _, op in operations(doc):
        for status, response in op["responses"].items():
            ref = response.get("content", {}).get("application/json", {}).get("schema", {})
            if "$ref" in ref and not status.startswith("2"):
                assert ref["$ref"] == "#/components/schemas/Failure", (op["operationId"], status)
    # Fields that are always sent are required (null when they do not apply).
    for name, field in [
        ("MemoryItem", "dataCursor"),
        ("MemoryList", "nextCursor"),
        ("KvList", "nextCursor"),
        ("KvWritten", "expiresAt"),
        ("KvItem", "expiresAt"),
        ("MemoryMessages", "nextCursor"),
    ]:
        assert field in schemas[name]["required"], (name, field)
    for name in response_schemas(doc) | {"MemoryItem", "KvItem", "KeyInfo", "WorkspaceInfo"}:
        if name.startswith("Tool"):
            continue
        assert set(schemas[name]["required"]) == set(schemas[name]["properties"]), name
    assert schemas["MemoryItem"]["properties"]["createdAt"] == {
        "type": "string",
        "format": "date-time",
    }


def test_response_headers_are_declared() -> None:
    doc = committed()
    headers = doc["components"]["headers"]
    assert set(headers) == {"RequestId", "RetryAfter", "ETag", "ExpiresAt", "ValueLength"}
    kv = doc["paths"]["/api/kv/{key}"]
    # HEAD answers GET's headers (RFC 9110 9.1), on a 200 and a 304 alike.
    value_headers = {"ETag", "X-Expires-At", "X-Value-Length", "X-Request-ID"}
    for method in ("get", "head"):
        for status in ("200", "304"):
            assert set(kv[method]["responses"][status]["headers"]) == value_headers
    assert set(kv["put"]["responses"]["201"]["headers"]) == {"ETag", "X-Request-ID"}
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            assert "X-Request-ID" in response["headers"], (path, method, status)
            if status == "429":
                assert "Retry-After" in response["headers"], (path, method)


def test_memory_public_url_must_be_absolute() -> None:
    for bad in ("memory.example.com", "/api", "ftp://memory.example.com"):
        with pytest.raises(ValueError, match="MEMORY_PUBLIC_URL"):
            Settings.from_env({"MEMORY_PUBLIC_URL": bad})
    good = Settings.from_env({"MEMORY_PUBLIC_URL": "https://memory.example.com/base/"})
    assert good.public_url == "https://memory.example.com/base"
    assert Settings.from_env({}).public_url is None
