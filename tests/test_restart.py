"""What was acknowledged survives: a graceful stop (SIGTERM) and a kill -9, then a restart of
`memory-service serve` on the same database, give back every entry byte for byte, same ETags."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import quote

import httpx

from tests.conftest import ADMIN_TOKEN
from tests.support.server import LiveServer, remember_key


def entries(round_: str) -> dict[str, tuple[bytes, str, float | None]]:
    """key -> (value, content type, ttl seconds)."""
    return {
        f"{round_}/every-byte": (bytes(range(256)) * 4, "application/octet-stream", None),
        f"{round_}/big-random": (os.urandom(1024 * 1024 + 7), "application/octet-stream", None),
        f"{round_}/empty": (b"", "application/octet-stream", None),
        f"{round_}/text": ("héllo wörld\n".encode(), "text/plain; charset=utf-8", None),
        f"{round_}/ünï/🔑 ../x%2F": (b"\x00\r\n\xff", "application/x-odd", None),
        f"{round_}/ttl": (b"expires in an hour", "text/plain", 3600),
    }


def path(key: str) -> str:
    return "/api/kv/" + quote(key, safe="")


async def write_all(c: httpx.AsyncClient, data: dict) -> dict[str, dict]:
    """Write every entry; return what the server acknowledged and shows for each."""
    seen = {}
    for key, (value, ctype, ttl) in data.items():
        params = {"ttl": ttl} if ttl else None
        r = await c.put(path(key), content=value, params=params, headers={"Content-Type": ctype})
        assert r.status_code == 201, r.text
        seen[key] = await observe(c, key)
        assert seen[key]["etag"] == r.headers["etag"]
    return seen


async def observe(c: httpx.AsyncClient, key: str) -> dict:
    r = await c.get(path(key))
    assert r.status_code == 200, (key, r.text)
    return {
        "value": r.content,
        "etag": r.headers["etag"],
        "content-type": r.headers["content-type"],
        "expires": r.headers.get("x-expires-at"),
    }


async def state(c: httpx.AsyncClient, keys: list[str]) -> dict:
    return {
        "entries": {k: await observe(c, k) for k in keys},
        "listing": (await c.get("/api/kv", params={"limit": 1000})).json(),
        "usage": (await c.get("/api/usage")).json(),
    }


async def new_workspace(server: LiveServer) -> dict:
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post(
            "/admin/workspaces",
            json={"name": "restart"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {remember_key(r.json()['key'])}"}


async def test_data_survives_sigterm_and_sigkill(sqlite_database_url: str, tmp_path: Path) -> None:
    # SQLite: the embedded default, where durability is this service's own doing (WAL, commit
    # before the answer). On PostgreSQL it is the database server's.
    server = LiveServer(sqlite_database_url, tmp_path).start()
    try:
        h = await new_workspace(server)
        async with httpx.AsyncClient(base_url=server.url, headers=h, timeout=30) as c:
            first = entries("one")
            acked = await write_all(c, first)
            assert acked[next(iter(first))]["value"] == bytes(range(256)) * 4
            assert acked["one/ttl"]["expires"]
            before = await state(c, list(first))

        # Graceful stop, then a restart on the same database.
        server.stop()
        server.start()
        async with httpx.AsyncClient(base_url=server.url, headers=h, timeout=30) as c:
            after = await state(c, list(first))
            assert after == before
            for key, (value, _, _) in first.items():
                assert after["entries"][key]["value"] == value

            # Acknowledged writes, then kill -9 the moment the last answer is in: no graceful
            # shutdown, no flush, no read that could give a lazy commit time to finish.
            second = entries("two")
            expected = {k: (v, ct) for k, (v, ct, _) in second.items()}
            tags: dict[str, str] = {}
            for key, (value, ctype, ttl) in second.items():
                params = {"ttl": ttl} if ttl else None
                headers = {"Content-Type": ctype}
                r = await c.put(path(key), content=value, params=params, headers=headers)
                assert r.status_code == 201, r.text
                tags[key] = r.headers["etag"]
            text_tag = before["entries"]["one/text"]["etag"]
            r = await c.put(path("one/text"), content=b"rewritten", headers={"If-Match": text_tag})
            assert r.status_code == 200
            tags["one/text"] = r.headers["etag"]
            expected["one/text"] = (b"rewritten", "application/octet-stream")
            assert (await c.delete(path("one/empty"))).status_code == 200
            burst = await asyncio.gather(
                *(c.put(path(f"burst/{i:03d}"), content=str(i).encode()) for i in range(100))
            )
            for i, r in enumerate(burst):
                assert r.status_code == 201
                tags[f"burst/{i:03d}"] = r.headers["etag"]
                expected[f"burst/{i:03d}"] = (str(i).encode(), "application/octet-stream")
            server.kill()

        server.start()
        async with httpx.AsyncClient(base_url=server.url, headers=h, timeout=30) as c:
            for key, (value, ctype) in expected.items():
                got = await observe(c, key)
                assert got["value"] == value, key
                assert got["etag"] == tags[key], key
                assert got["content-type"].startswith(ctype), key
            assert (await c.get(path("one/empty"))).status_code == 404
            for key in first:  # the first round, untouched since, is still all there
                if key not in ("one/empty", "one/text"):
                    assert await observe(c, key) == before["entries"][key]
            listing = (await c.get("/api/kv", params={"limit": 1000})).json()["items"]
            live = {*first, *expected} - {"one/empty"}
            assert sorted(i["key"] for i in listing) == sorted(live, key=str.encode)
            used = (await c.get("/api/usage")).json()["used"]
            assert used == sum(i["size"] for i in listing)
            # Versions go on from where they were: a new write never reuses an old ETag.
            r = await c.put(path("after-restart"), content=b"x")
            assert r.status_code == 201 and r.headers["etag"] not in set(tags.values())
    finally:
        server.stop()
