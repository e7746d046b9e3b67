"""Per-workspace rate limits: a flooding workspace gets 429s, the others go on unhindered."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from memory_service.services.errors import RateLimited
from memory_service.services.ratelimit import RateLimiter
from memory_service.settings import Settings
from tests.conftest import make_api, stored_bytes


async def test_a_flood_is_refused_while_another_workspace_goes_on(sqlite_database_url) -> None:  # noqa: ANN001
    # 5 requests of burst, then one every 100 s: the test never lasts long enough to refill.
    api, _ = await make_api(sqlite_database_url, rate_limit_rps=0.01, rate_limit_burst=5)
    async with api.client:
        flood = await api.workspace("flood")
        calm = await api.workspace("calm")

        async def put(headers: dict, key: str):  # noqa: ANN202
            return await api.client.put(f"/api/kv/{key}", content=b"v", headers=headers)

        flooding = asyncio.gather(*(put(flood, f"f{i}") for i in range(40)))
        calm_answers = []
        for i in range(5):  # one at a time, interleaved with the flood
            calm_answers.append(await put(calm, f"c{i}"))
        flood_answers = await flooding

        assert [r.status_code for r in calm_answers] == [201] * 5
        statuses = sorted(r.status_code for r in flood_answers)
        assert statuses == [201] * 5 + [429] * 35
        refused = [r for r in flood_answers if r.status_code == 429]
        for r in refused:
            assert r.json()["success"] is False and r.json()["code"] == "rate_limited"
            assert int(r.headers["retry-after"]) >= 1
        # Refused before any work: nothing of the refused writes was stored.
        stored = [r.json()["key"] for r in flood_answers if r.status_code == 201]
        expected = sum(len(k) + len(b"v") for k in stored)
        assert await stored_bytes(sqlite_database_url, "flood") == expected
        scraped = (await api.client.get("/metrics")).text
        families = {f.name: f.samples for f in text_string_to_metric_families(scraped)}
        assert families["memory_rate_limited"][0].value == 35
        # The calm workspace used its whole burst: it is limited now too, on its own bucket.
        assert (await put(calm, "c5")).status_code == 429


async def test_no_limit_by_default(sqlite_api) -> None:  # noqa: ANN001
    assert Settings.from_env({}).rate_limit_rps == 0
    ws = await sqlite_api.workspace("unlimited")
    answers = await asyncio.gather(
        *(sqlite_api.client.put(f"/api/kv/k{i}", content=b"v", headers=ws) for i in range(60))
    )
    assert {r.status_code for r in answers} == {201}


def test_settings_from_env() -> None:
    env = {"MEMORY_RATE_LIMIT_RPS": "2.5", "MEMORY_RATE_LIMIT_BURST": "10"}
    settings = Settings.from_env(env)
    assert (settings.rate_limit_rps, settings.rate_limit_burst) == (2.5, 10)
    with pytest.raises(ValueError, match="MEMORY_RATE_LIMIT_BURST"):
        Settings.from_env({"MEMORY_RATE_LIMIT_BURST": "lots"})


def test_token_bucket_refills_at_the_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check(1)
    with pytest.raises(RateLimited) as refused:
        limiter.check(1)
    assert refused.value.headers["Retry-After"] == "1"
    limiter.check(2)  # another workspace has its own bucket
    now[0] += 0.5  # one token back at 2 per second
    limiter.check(1)
    with pytest.raises(RateLimited):
        limiter.check(1)
    now[0] += 60  # a long pause refills to the burst, never beyond
    for _ in range(3):
        limiter.check(1)
    with pytest.raises(RateLimited):
        limiter.check(1)


def test_burst_defaults_to_one_second_of_rate() -> None:
    assert RateLimiter(5.0, 0).burst == 5
    assert RateLimiter(0.2, 0).burst == 1
