"""The admin HTTP API: workspaces, keys and quotas, each checked by its effect on the KV API."""

from __future__ import annotations

from tests.conftest import Api, stored_bytes


async def test_workspace_lifecycle(api: Api) -> None:
    c, admin = api.client, api.admin
    r = await c.post("/admin/workspaces", json={"name": "acme", "quotaBytes": 5000}, headers=admin)
    assert r.status_code == 201
    body = r.json()
    assert body["success"] is True and body["key"].startswith("msk_")
    assert body["workspace"] == {
        "name": "acme",
        "quotaBytes": 5000,
        "usedBytes": 0,
        "activeKeys": 1,
        "createdAt": body["workspace"]["createdAt"],
    }
    assert body["key"].startswith(body["keyInfo"]["prefix"])
    h = {"Authorization": f"Bearer {body['key']}"}
    other = await api.workspace("other")  # default quota

    listed = (await c.get("/admin/workspaces", headers=admin)).json()["workspaces"]
    assert [(w["name"], w["quotaBytes"]) for w in listed] == [
        ("acme", 5000),
        ("other", api.settings.default_quota_bytes),
    ]
    await c.put("/api/kv/k", content=b"v" * 99, headers=h)
    one = (await c.get("/admin/workspaces/acme", headers=admin)).json()["workspace"]
    assert (one["usedBytes"], one["activeKeys"]) == (100, 1)
    assert (await c.get("/admin/workspaces/nope", headers=admin)).status_code == 404

    # Deleting a workspace deletes its data and its keys, and nothing of any other workspace.
    await c.put("/api/kv/k", content=b"others", headers=other)
    r = await c.delete("/admin/workspaces/acme", headers=admin)
    assert r.status_code == 200 and r.json()["success"] is True
    assert (await c.get("/api/kv/k", headers=h)).status_code == 401
    assert (await c.get("/admin/workspaces/acme", headers=admin)).status_code == 404
    names = [
        w["name"] for w in (await c.get("/admin/workspaces", headers=admin)).json()["workspaces"]
    ]
    assert names == ["other"]
    assert (await c.get("/api/kv/k", headers=other)).content == b"others"

    # The same name again is a new, empty workspace: nothing of the old one comes back.
    fresh = await api.workspace("acme")
    assert (await c.get("/api/kv/k", headers=fresh)).status_code == 404
    assert (await c.get("/api/usage", headers=fresh)).json()["used"] == 0
    assert await stored_bytes(api.settings.database_url, "acme") == 0
    assert (await c.get("/api/kv/k", headers=h)).status_code == 401  # the old key stays dead


async def test_keys_create_list_revoke(api: Api) -> None:
    c, admin = api.client, api.admin
    first = await api.workspace("acme")
    r = await c.post("/admin/workspaces/acme/keys", json={"label": "ci"}, headers=admin)
    assert r.status_code == 201
    second_secret, second = r.json()["key"], r.json()["keyInfo"]
    assert second["label"] == "ci" and second["workspace"] == "acme" and not second["revokedAt"]
    r = await c.post("/admin/workspaces/acme/keys", headers=admin)  # no body: no label
    assert r.status_code == 201 and r.json()["keyInfo"]["label"] == ""
    h2 = {"X-API-Key": second_secret}  # the other accepted credential header

    # Every key of the workspace reaches the same data.
    await c.put("/api/kv/k", content=b"v", headers=first)
    assert (await c.get("/api/kv/k", headers=h2)).content == b"v"

    r = await c.get("/admin/workspaces/acme/keys", headers=admin)
    keys = r.json()["keys"]
    assert [k["label"] for k in keys] == ["initial", "ci", ""]
    assert second_secret not in r.text and first["Authorization"][7:] not in r.text

    r = await c.delete(f"/admin/keys/{second['id']}", headers=admin)
    assert r.status_code == 200
    # Revocation on this process takes effect at once, auth cache or not.
    assert (await c.get("/api/kv/k", headers=h2)).status_code == 401
    assert (await c.get("/api/kv/k", headers=first)).content == b"v"
    keys = (await c.get("/admin/workspaces/acme/keys", headers=admin)).json()["keys"]
    assert [bool(k["revokedAt"]) for k in keys] == [False, True, False]
    assert (await c.get("/admin/workspaces/acme", headers=admin)).json()["workspace"][
        "activeKeys"
    ] == 2
    r = await c.delete(f"/admin/keys/{second['id']}", headers=admin)  # already revoked
    assert r.status_code == 404 and r.json()["code"] == "key_not_found"


async def test_quota_set_then_enforced(api: Api) -> None:
    c, admin = api.client, api.admin
    h = await api.workspace("acme")
    assert (await c.put("/api/kv/a", content=b"x" * 49, headers=h)).status_code == 201  # 50
    r = await c.put("/admin/workspaces/acme/quota", json={"quotaBytes": 100}, headers=admin)
    assert r.status_code == 200 and r.json()["workspace"]["quotaBytes"] == 100
    assert (await c.get("/api/usage", headers=h)).json()["quota"] == 100
    assert (await c.put("/api/kv/b", content=b"y" * 49, headers=h)).status_code == 201  # 100
    r = await c.put("/api/kv/c", content=b"", headers=h)  # one byte over
    assert r.status_code == 413 and r.json()["code"] == "quota_exceeded"
    assert (await c.get("/api/kv/c", headers=h)).status_code == 404

    # A quota below what is stored refuses growth but keeps the data, and shrinking still works.
    r = await c.put("/admin/workspaces/acme/quota", json={"quotaBytes": 10}, headers=admin)
    assert r.status_code == 200
    assert (await c.put("/api/kv/a", content=b"x" * 50, headers=h)).status_code == 413
    assert (await c.get("/api/kv/a", headers=h)).content == b"x" * 49
    assert (await c.put("/api/kv/a", content=b"s", headers=h)).status_code == 200
    assert (await c.get("/api/usage", headers=h)).json() == {
        "success": True,
        "message": "52 of 10 bytes used",
        "workspace": "acme",
        "used": 2 + 50,
        "quota": 10,
    }
    # Raising it lets writes through again.
    await c.put("/admin/workspaces/acme/quota", json={"quotaBytes": 1000}, headers=admin)
    assert (await c.put("/api/kv/c", content=b"z" * 100, headers=h)).status_code == 201
    assert await stored_bytes(api.settings.database_url, "acme") == 2 + 50 + 101
