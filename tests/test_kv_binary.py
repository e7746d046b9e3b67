"""Binary fidelity at the edges test_kv_api.py's round trip leaves open: values around the size
where reads switch from inline to a separate fetch, bytes that look like something else
(compressed data, text, JSON), the exact maximum size, and what HEAD and listings report."""

from __future__ import annotations

import gzip
import os

from memory_service.services.kv import INLINE_VALUE_BYTES
from tests.conftest import Api, make_api

VALUES = {
    "inline-max": os.urandom(INLINE_VALUE_BYTES),
    "inline-max-plus-1": os.urandom(INLINE_VALUE_BYTES + 1),
    "inline-max-minus-1": os.urandom(INLINE_VALUE_BYTES - 1),
    "gzip-magic": gzip.compress(b"must come back compressed, not inflated" * 10),
    "crlf-and-nul": b"line1\r\nline2\r\n\x00\x00\r\n",
    "bom-utf8": b"\xef\xbb\xbfhello",
    "invalid-utf8": b"\xc3\x28\xa0\xa1\xff\xfe",
    "not-json": b'{"a": ',
    "one-byte": b"\x00",
    "plain": b"caf\xe9 in latin-1",
}
TYPES = {
    "gzip-magic": "application/gzip",
    "not-json": "application/json",
    "bom-utf8": "text/plain; charset=utf-8",
    "plain": "text/plain",  # comes back without a charset added
}


async def test_values_come_back_byte_for_byte(api: Api) -> None:
    h = await api.workspace("a")
    c = api.client
    tags = {}
    for key, value in VALUES.items():
        headers = {**h, "Content-Type": TYPES.get(key, "application/octet-stream")}
        r = await c.put(f"/api/kv/{key}", content=value, headers=headers)
        assert r.status_code == 201, r.text
        assert r.json()["size"] == len(key) + len(value)
        tags[key] = r.headers["etag"]
    for key, value in VALUES.items():
        r = await c.get(f"/api/kv/{key}", headers=h)
        assert r.status_code == 200
        assert r.content == value, key
        assert "content-encoding" not in r.headers  # served as stored, never re-encoded
        assert r.headers["content-type"] == TYPES.get(key, "application/octet-stream")
        assert r.headers["etag"] == tags[key]
        r = await c.head(f"/api/kv/{key}", headers=h)
        assert r.status_code == 200 and r.content == b""
        assert int(r.headers["x-value-length"]) == len(value)
        assert r.headers["etag"] == tags[key]
    items = (await c.get("/api/kv", headers=h)).json()["items"]
    assert {i["key"]: i["size"] for i in items} == {k: len(k) + len(v) for k, v in VALUES.items()}
    assert (await c.get("/api/usage", headers=h)).json()["used"] == sum(
        len(k) + len(v) for k, v in VALUES.items()
    )


async def test_a_value_of_exactly_the_maximum_size_is_stored(sqlite_database_url: str) -> None:
    api, _ = await make_api(sqlite_database_url, max_value_bytes=100_000)
    async with api.client as c:
        h = await api.workspace("a")
        value = os.urandom(100_000)
        assert (await c.put("/api/kv/max", content=value, headers=h)).status_code == 201
        assert (await c.get("/api/kv/max", headers=h)).content == value
        r = await c.put("/api/kv/over", content=value + b"!", headers=h)
        assert r.status_code == 413 and r.json()["code"] == "value_too_large"
