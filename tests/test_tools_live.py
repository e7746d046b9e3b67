"""Every tool invoked on a live server through the Python client, on both databases: outputs
match the declared output_schema, every declared variable is there, both framings parse; binary
round trips; and a tool that fails mid-invocation ends its stream with an error the client
raises, having stored nothing."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from memory_service.client import (
    AsyncMemoryServiceClient,
    MemoryServiceClient,
    NodeOutputs,
    ToolError,
)
from memory_service.wire import messages as m
from tests.support.live import new_workspace
from tests.support.server import LiveServer


@pytest.fixture(scope="module")
def live(live_server: LiveServer) -> LiveServer:
    return live_server


@pytest.fixture
def client(live: LiveServer) -> Iterator[MemoryServiceClient]:
    with MemoryServiceClient(live.url, new_workspace(live)) as c:
        yield c


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# tool -> (setup through the client's plain calls, parameters)
Setup = Callable[[MemoryServiceClient], None]


def _memories(c: MemoryServiceClient) -> None:
    c.memory.add("c1", "system", "be brief", block_id="b1", block_name="notes")
    c.memory.add("c1", "user", "hello\nthere", block_id="b1")
    c.memory.add("c2", "user", "other", block_id="b1")


def _keys(c: MemoryServiceClient) -> None:
    for k in ("p/1", "p/2", "p/3", "q"):
        c.storage.set(k, k.encode(), content_type="text/plain")


SCENARIOS: dict[str, tuple[Setup | None, dict[str, Any]]] = {
    "memory_add": (None, {"conversationId": "c1", "role": "user", "content": "hi 🙂"}),
    "memory_get": (_memories, {"conversationId": "c1", "blockId": "b1"}),
    "memory_get_all": (_memories, {"limit": 1}),
    "memory_delete": (_memories, {"blockName": "notes"}),
    "storage_set": (None, {"key": "k", "value": "v", "content_type": "text/plain", "ttl": 60}),
    "storage_get": (lambda c: c.storage.set("k", b"\x00\x01", content_type="x/y"), {"key": "k"}),
    "storage_exist": (lambda c: c.storage.set("k", b"v"), {"key": "k"}),
    "storage_delete": (lambda c: c.storage.set("k", b"v"), {"key": "k"}),
    "storage_list": (_keys, {"prefix": "p/", "limit": 2}),
}


def check_outputs(manifest: dict, out: NodeOutputs) -> None:
    schema = manifest["output_schema"]
    Draft202012Validator(schema).validate(out.variables)
    assert set(schema["properties"]) <= set(out.variables), "a declared variable is missing"
    assert out.text  # every tool says in words what it did


def test_the_scenarios_cover_the_catalogue(live: LiveServer) -> None:
    with MemoryServiceClient(live.url, new_workspace(live)) as c:
        assert {t["identity"]["name"] for t in c.tools.list()} == set(SCENARIOS)


@pytest.mark.parametrize("sse", [False, True], ids=["ndjson", "sse"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_tool_matches_its_output_schema(
    client: MemoryServiceClient, live: LiveServer, name: str, sse: bool
) -> None:
    setup, params = SCENARIOS[name]
    if setup:
        setup(client)
    manifest = client.tools.get(name)
    messages = list(client.tools.invoke(name, params, sse=sse))
    assert not any(isinstance(x, m.ErrorMessage | m.UnknownMessage) for x in messages)
    out = m.collect(messages)
    check_outputs(manifest, out)

    # The raw stream, read without the client: whole lines (or events), each an envelope.
    key = client._auth["Authorization"]
    r = httpx.post(
        f"{live.url}/api/tools/{name}/invoke",
        json={"parameters": params},
        headers={"Authorization": key, "Accept": m.SSE if sse else m.NDJSON},
        timeout=30,
    )
    assert r.status_code == 200
    if sse:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.content.endswith(b"\n\n")
        events = [e.split(b"\n") for e in r.content.split(b"\n\n") if e]
        assert all(e[0].startswith(b"event: ") and e[1].startswith(b"data: ") for e in events)
        envelopes = [json.loads(e[1][len(b"data: ") :]) for e in events]
        assert [e[0][len(b"event: ") :].decode() for e in events] == [x["type"] for x in envelopes]
    else:
        assert r.headers["content-type"] == "application/x-ndjson"
        assert r.content.endswith(b"\n")
        envelopes = [json.loads(line) for line in r.content.split(b"\n")[:-1]]
    for e in envelopes:
        assert set(e) == {"type", "message", "meta"}
        assert e["type"] in m.MESSAGE_TYPES and e["type"] != "error"


def test_memory_get_streams_the_transcript_chunk_by_chunk(client: MemoryServiceClient) -> None:
    for i in range(600):  # more than one write of chunks
        client.memory.add("long", "user" if i % 2 else "assistant", f"m{i}")
    messages = list(client.tools.invoke("memory_get", {"conversationId": "long"}))
    chunks = [x for x in messages if isinstance(x, m.VariableMessage) and x.name == "transcript"]
    assert len(chunks) == 600 and all(x.stream for x in chunks)
    assert [x.value for x in chunks[:2]] == ["assistant: m0\n", "user: m1\n"]
    out = m.collect(messages)
    assert out.variables["transcript"] == "".join(x.value for x in chunks)
    assert [j["memories"][0]["messageCount"] for j in out.json] == [600]
    windowed = client.tools.run("memory_get", {"conversationId": "long", "lastN": 2})
    assert windowed.variables["transcript"] == "assistant: m598\nuser: m599\n"


@pytest.mark.parametrize("size", [256, 5 * 1024 * 1024], ids=["every-byte", "5MiB"])
def test_blob_round_trip(client: MemoryServiceClient, size: int) -> None:
    value = bytes(range(256)) if size == 256 else os.urandom(size)
    out = client.tools.run(
        "storage_set", {"key": "bin/x.dat", "value_base64": b64(value), "content_type": "x/bin"}
    )
    assert out.variables["value_size"] == size
    for sse in (False, True):
        got = client.tools.run("storage_get", {"key": "bin/x.dat"}, sse=sse)
        assert len(got.files) == 1
        f = got.files[0]
        assert f.data == value and f.mime_type == "x/bin" and f.filename == "x.dat"
        assert got.variables["value_size"] == size
    assert client.storage.get("bin/x.dat") == value  # the plain API reads what the tool wrote
    client.storage.set("raw", value)
    got = client.tools.run("storage_get", {"key": "raw"})
    assert got.files[0].data == value and got.files[0].mime_type == "application/octet-stream"


def _stream_of(live: LiveServer, key: str, name: str, params: dict) -> tuple[int, list[bytes]]:
    r = httpx.post(
        f"{live.url}/api/tools/{name}/invoke",
        json={"parameters": params},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.content.endswith(b"\n")  # never a half line
    return r.status_code, r.content.split(b"\n")[:-1]


def test_failure_mid_invocation_is_an_error_message_and_stores_nothing(live: LiveServer) -> None:
    key = new_workspace(live, "tiny", quota=64)
    with MemoryServiceClient(live.url, key) as c:
        c.storage.set("k", b"0123456789")
        before = c.usage().used
        assert before == 11

        too_big = {"key": "k", "value": "x" * 100}
        with pytest.raises(ToolError) as caught:
            list(c.tools.invoke("storage_set", too_big))
        assert caught.value.code == "quota_exceeded" and "quota" in caught.value.message
        with pytest.raises(ToolError):
            c.tools.run("storage_set", {**too_big, "key": "new"}, sse=True)
        status, lines = _stream_of(live, key, "storage_set", too_big)
        assert status == 200  # the stream had started: the failure is its last message
        last = m.decode_message(lines[-1])
        assert isinstance(last, m.ErrorMessage) and last.code == "quota_exceeded"

        add = {"conversationId": "c", "role": "user", "content": "y" * 100}
        with pytest.raises(ToolError) as caught:
            c.tools.run("memory_add", add)
        assert caught.value.code == "quota_exceeded"
        status, lines = _stream_of(live, key, "memory_add", add)
        assert status == 200 and m.decode_message(lines[-1]).code == "quota_exceeded"

        # nothing half-done: the old value, no new key, no memory, the same usage
        assert c.storage.get("k") == b"0123456789"
        assert not c.storage.exist("new")
        assert c.memory.get_all().memories == []
        assert c.usage().used == before


async def test_failure_mid_invocation_async(live: LiveServer) -> None:
    key = new_workspace(live, "tiny", quota=10)
    async with AsyncMemoryServiceClient(live.url, key) as c:
        seen = []
        with pytest.raises(ToolError) as caught:
            async for message in c.tools.invoke(
                "memory_add", {"conversationId": "c", "role": "user", "content": "z" * 50}
            ):
                seen.append(message)
        assert caught.value.code == "quota_exceeded" and seen == []
        with pytest.raises(ToolError):
            await c.tools.run("storage_set", {"key": "k", "value_base64": b64(b"\xff" * 50)})
        assert (await c.usage()).used == 0
        assert (await c.memory.get_all()).memories == []
        assert not await c.storage.exist("k")
