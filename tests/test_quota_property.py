"""Quota exactness, as a property: random sequences of set / overwrite / delete / TTL set /
clock advance keep `used` equal to the bytes a model says the live entries hold, and a write
that would exceed the quota is refused with 413 and stores nothing.

The app gets a frozen clock that moves only when the test advances it, so the model decides
expiry exactly (a wall clock moving underneath would make boundaries a matter of luck).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from memory_service.app import create_app
from memory_service.clock import now_ms
from memory_service.settings import Settings
from memory_service.storage.migrations import upgrade
from tests.conftest import ADMIN_TOKEN, Api, stored_bytes

QUOTA = 600
KEYS = ["a", "\u00fc", "k" * 40]
_names = itertools.count()


@dataclass
class FrozenClock:
    now: int = field(default_factory=now_ms)

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


async def frozen_api(database_url: str) -> Api:
    await upgrade(database_url)
    settings = Settings(
        database_url=database_url, admin_token=ADMIN_TOKEN, sweep_interval_seconds=0
    )
    clock = FrozenClock()
    return Api(AsyncTestClient(create_app(settings, clock=clock)), clock, settings)  # type: ignore[arg-type]


@pytest.fixture
async def frozen_sqlite(sqlite_database_url: str) -> AsyncIterator[Api]:
    api = await frozen_api(sqlite_database_url)
    async with api.client:
        yield api


@pytest.fixture
async def frozen_any(database_url: str) -> AsyncIterator[Api]:
    api = await frozen_api(database_url)
    async with api.client:
        yield api


# One operation: (kind, key, value length, ttl seconds or None, seconds to advance); each kind
# uses the fields it needs. Choices are drawn uniformly (sampled_from), not biased to small
# values, and the quota is tight: overwrites, refusals and expired rows standing in the way of
# a write are all common. "usage" is rarer, because it sweeps expired rows away.
KINDS = ["set"] * 5 + ["delete", "advance", "advance", "usage"]
op_strategy = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from(KEYS),
    st.sampled_from(range(301)),
    st.sampled_from([None, None, 1, 2, 3]),
    st.sampled_from([1, 2, 3]),
)
ops_strategy = st.lists(op_strategy, min_size=10, max_size=30)


class Model:
    """What the workspace should hold: key -> (value, expires_at ms or None)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[bytes, int | None]] = {}

    def live(self, now: int) -> dict[str, bytes]:
        return {k: v for k, (v, exp) in self.entries.items() if exp is None or exp > now}

    def used(self, now: int) -> int:
        return sum(len(k.encode()) + len(v) for k, v in self.live(now).items())


async def check_matches_model(api: Api, h: dict, model: Model, workspace: str) -> None:
    now = api.clock()
    live = model.live(now)
    usage = (await api.client.get("/api/usage", headers=h)).json()
    assert usage["used"] == model.used(now), (usage, live)
    assert usage["used"] <= usage["quota"]
    # /api/usage sweeps expired entries first, so now the rows hold exactly the live bytes.
    assert await stored_bytes(api.settings.database_url, workspace) == usage["used"]
    listing = (await api.client.get("/api/kv", headers=h)).json()["items"]
    assert {i["key"]: i["size"] for i in listing} == {
        k: len(k.encode()) + len(v) for k, v in live.items()
    }
    for key, value in live.items():
        assert (await api.client.get("/api/kv/" + quote(key, safe=""), headers=h)).content == value


async def run_sequence(api: Api, ops: list[tuple]) -> None:
    name = f"w{next(_names)}"
    h = await api.workspace(name, quota=QUOTA)
    model = Model()
    c = api.client
    for i, (kind, key, length, ttl, seconds) in enumerate(ops):
        now = api.clock()
        path = "/api/kv/" + quote(key, safe="")
        if kind == "set":
            value = bytes([i % 256]) * length
            old = model.live(now).get(key)
            old_size = len(key.encode()) + len(old) if old is not None else 0
            fits = model.used(now) - old_size + len(key.encode()) + length <= QUOTA
            params = {"ttl": ttl} if ttl else None
            r = await c.put(path, content=value, params=params, headers=h)
            if fits:
                assert r.status_code == (200 if old is not None else 201), (i, r.text)
                model.entries[key] = (value, now + ttl * 1000 if ttl else None)
            else:
                assert r.status_code == 413, (i, r.text)
                assert r.json()["code"] == "quota_exceeded"
                # Nothing stored: the key still reads as before.
                got = await c.get(path, headers=h)
                assert got.status_code == 404 if old is None else got.content == old
        elif kind == "delete":
            r = await c.delete(path, headers=h)
            if key in model.live(now):
                assert r.status_code == 200, (i, r.text)
                assert r.json()["freedBytes"] == len(key.encode()) + len(model.entries[key][0])
            else:
                assert r.status_code == 404, (i, r.text)
            model.entries.pop(key, None)
        elif kind == "advance":
            api.clock.advance(seconds)
        else:
            await check_matches_model(api, h, model, name)
    await check_matches_model(api, h, model, name)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=ops_strategy)
async def test_quota_is_exact_sqlite(frozen_sqlite: Api, ops: list[tuple]) -> None:
    await run_sequence(frozen_sqlite, ops)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # Shrinking on PostgreSQL takes minutes; the SQLite run above shrinks what both would find.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(ops=ops_strategy)
async def test_quota_is_exact_both_databases(frozen_any: Api, ops: list[tuple]) -> None:
    await run_sequence(frozen_any, ops)


async def test_rewriting_an_expired_key_near_the_quota(frozen_any: Api) -> None:
    """The stale row of the very key being written stands in the way of the quota."""
    api = frozen_any
    h = await api.workspace("w", quota=150)
    c = api.client
    for key, length, ttl in [("k", 49, 1), ("m", 29, 1), ("l", 39, None)]:
        r = await c.put(
            f"/api/kv/{key}", content=b"x" * length, params={"ttl": ttl} if ttl else None, headers=h
        )
        assert r.status_code == 201, r.text
    api.clock.advance(2)
    # 120 bytes in rows, 40 of them live. A 111-byte k fits only if it is charged in full.
    r = await c.put("/api/kv/k", content=b"z" * 110, headers=h)
    assert r.status_code == 413, r.text
    assert (await c.get("/api/kv/k", headers=h)).status_code == 404
    r = await c.put("/api/kv/k", content=b"z" * 99, headers=h)
    assert r.status_code == 201, r.text
    assert (await c.get("/api/usage", headers=h)).json()["used"] == 40 + 100
    assert await stored_bytes(api.settings.database_url, "w") == 140
    assert (await c.get("/api/kv/k", headers=h)).content == b"z" * 99
