"""Request ids and structured access logs, on a live server; secrets never reach a log."""

from __future__ import annotations

import asyncio
import json
import secrets

import httpx
import pytest

from memory_service.settings import sqlite_url
from tests.conftest import ADMIN_TOKEN
from tests.support.server import LiveServer, create_workspace, remember_key


def json_lines(text: str) -> list[dict]:
    """The JSON log lines (stdout's banner lines, also in the file, are not JSON)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_access_log_lines_carry_request_ids_and_no_secrets(tmp_path) -> None:  # noqa: ANN001
    url = sqlite_url(tmp_path / "logs.db")
    key = create_workspace(url, "logs-ws")
    key_shaped = remember_key("msk_" + secrets.token_urlsafe(32))  # never issued
    auth = {"Authorization": f"Bearer {key}"}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with LiveServer(url, tmp_path) as server, httpx.Client(base_url=server.url) as c:
        sent = [
            c.put("/api/kv/a%2Fb", content=b"v", headers={**auth, "X-Request-ID": "ops-log-1"}),
            c.get("/api/kv/a%2Fb", headers={"X-API-Key": key}),
            c.get(f"/api/kv/a%2Fb?api_key={key}&token={key_shaped}", headers=auth),
            c.get("/api/usage", headers={"Authorization": f"Bearer {key_shaped}"}),
            c.get("/api/usage", headers={"X-API-Key": key_shaped}),
            c.post("/admin/workspaces", json={"name": "second"}, headers=admin),
            c.get("/no/such/route", headers=auth),
        ]
        remember_key(sent[5].json()["key"])
        log_text = server.log_text()
        server.stop()
        log_text = server.log_text()

    assert [r.status_code for r in sent] == [201, 200, 200, 401, 401, 201, 404]
    assert sent[0].headers["x-request-id"] == "ops-log-1"
    access = [line for line in json_lines(log_text) if line["logger"] == "memory_service.access"]
    by_id = {line["request_id"]: line for line in access}
    for response in sent:  # every response's id has its line, and the line tells the request
        line = by_id[response.headers["x-request-id"]]
        assert line["status"] == response.status_code
        assert line["method"] == response.request.method
        assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
        assert line["level"] == "INFO" and line["time"].endswith("Z")
    first = by_id["ops-log-1"]
    assert first["route"] == "/api/kv/{key}"
    assert first["workspace"] == "logs-ws"
    assert "workspace" not in by_id[sent[3].headers["x-request-id"]]  # not authenticated
    assert by_id[sent[6].headers["x-request-id"]]["route"] == "unmatched"
    # Neither raw paths nor query strings, nor any credential, reach the log.
    assert "a%2Fb" not in log_text and "api_key" not in log_text
    for secret in (key, key_shaped, sent[5].json()["key"], ADMIN_TOKEN):
        assert secret not in log_text
    assert "msk_" + key_shaped[4:12] not in log_text


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123_XYZ.9:z", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("tab\there", False),
        ("", False),
    ],
)
async def test_request_id_is_kept_only_when_sane(sqlite_api, sent: str, kept: bool) -> None:  # noqa: ANN001
    r = await sqlite_api.client.get("/health", headers={"X-Request-ID": sent})
    got = r.headers["x-request-id"]
    if kept:
        assert got == sent
    else:
        assert got != sent and 0 < len(got) <= 128 and got.isprintable()


async def test_every_answer_has_a_fresh_request_id(sqlite_api) -> None:  # noqa: ANN001
    c = sqlite_api.client
    answers = [
        await c.get("/health"),
        await c.get("/nowhere"),
        await c.delete("/health"),  # 405
        await c.get("/api/kv/x"),  # 401
        await c.put("/api/kv/x", content=b"v", headers={"Authorization": "Bearer nope"}),
    ]
    ids = [r.headers["x-request-id"] for r in answers]
    assert len(set(ids)) == len(ids)
    assert [r.status_code for r in answers] == [200, 404, 405, 401, 401]
    assert all(r.json()["success"] is (r.status_code == 200) for r in answers)


def test_every_request_of_a_concurrent_burst_has_exactly_one_access_line(tmp_path) -> None:  # noqa: ANN001
    """The access log is written by a thread of its own, in batches: none may be lost, doubled,
    torn or interleaved with another line, and the last ones are written at shutdown."""
    url = sqlite_url(tmp_path / "burst.db")
    key = create_workspace(url, "burst-ws")
    auth = {"Authorization": f"Bearer {key}"}
    clients, per_client = 16, 60

    async def one_client(base: str, n: int) -> list[str]:
        ids = []
        async with httpx.AsyncClient(base_url=base, headers=auth) as c:
            for i in range(per_client):
                rid = f"burst-{n}-{i}"
                r = await c.put(f"/api/kv/k{n}-{i}", content=b"v", headers={"X-Request-ID": rid})
                assert r.status_code == 201
                ids.append(rid)
        return ids

    async def burst(base: str) -> list[str]:
        done = await asyncio.gather(*(one_client(base, n) for n in range(clients)))
        return [rid for ids in done for rid in ids]

    with LiveServer(url, tmp_path) as server:
        sent = asyncio.run(burst(server.url))
        server.stop()  # lines still queued are written during shutdown
        log_text = server.log_text()

    lines = [line for line in log_text.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]  # a torn line would not parse
    access_ids = [r["request_id"] for r in records if r["logger"] == "memory_service.access"]
    burst_ids = [rid for rid in access_ids if rid.startswith("burst-")]
    assert sorted(burst_ids) == sorted(sent)  # each exactly once
    assert len(sent) == clients * per_client
    # One client's requests are sequential, so its lines keep their order.
    for n in range(clients):
        mine = [rid for rid in burst_ids if rid.startswith(f"burst-{n}-")]
        assert mine == [f"burst-{n}-{i}" for i in range(per_client)]
