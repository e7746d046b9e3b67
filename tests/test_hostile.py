"""Findings of the hostile-client review (issue #9), each pinned on SQLite and PostgreSQL.

Every test here failed on the code before the fix it names; each asserts the exact outcome.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from tests.conftest import Api
from tests.support.memory_api import add

pytestmark = pytest.mark.asyncio


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
