"""PostgreSQL answers exactly as SQLite does: the same random programs (those of the
differential isolation test: every endpoint, memory adds of every kind, deletes, the block
registry, KV writes with conditions and TTLs, usage, tools, clock jumps, a small quota) run on
both databases, and every answer (status, data headers, whole body) and the final snapshot of
each workspace must be identical.

On PostgreSQL, writes are server-side functions (migrations 0004, 0005) and on SQLite Python
transactions: two implementations of one set of rules, so any drift between them shows here.
Seeded (MEMORY_ISOLATION_SEED); MEMORY_SAME_ANSWERS_PROGRAMS programs (default 12).
"""

from __future__ import annotations

import os
import random
import uuid
from collections import Counter

import pytest

from memory_service.settings import sqlite_url
from tests import conftest
from tests.conftest import make_api
from tests.support.pgserver import PgServer, pg_wanted
from tests.test_differential_isolation import QUOTA, SEED, Actor, perform, schedule, snapshot

pytestmark = pytest.mark.skipif(not pg_wanted(), reason="PostgreSQL tests skipped")

PROGRAMS = int(os.environ.get("MEMORY_SAME_ANSWERS_PROGRAMS", "12"))


# The defaults; and few idempotency records kept briefly, so that programs reach the bound (429
# with Retry-After), replay, forget expired records and sweep them to make room.
SETTINGS = [{}, {"max_idempotency_keys": 2, "idempotency_ttl_seconds": 100}]


@pytest.mark.parametrize("overrides", SETTINGS, ids=["defaults", "few-idempotency-keys"])
async def test_postgresql_answers_as_sqlite_does(
    pg: PgServer,
    tmp_path,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
    overrides: dict,
) -> None:
    # One frozen clock for both (moved only by the programs' jumps): Retry-After and expiry
    # are computed from it, and must not differ by the milliseconds between the two requests.
    monkeypatch.setattr(conftest, "now_ms", lambda: 1_800_000_000_000)
    lite, _ = await make_api(sqlite_url(tmp_path / "same.db"), **overrides)
    post, _ = await make_api(pg.create_database(f"same_{uuid.uuid4().hex[:10]}"), **overrides)
    statuses: Counter = Counter()
    async with lite.client, post.client:
        for n in range(PROGRAMS):
            rng = random.Random(f"same-{SEED}-{n}")
            plan = schedule(rng)
            actors = {}
            for world, api in (("sqlite", lite), ("pg", post)):
                for who in ("a", "b"):
                    actors[(world, who)] = Actor(api, await api.workspace(f"{who}{n}", QUOTA))
            for i, (who, op) in enumerate(plan):
                if who == "time":
                    lite.clock.advance(op["seconds"])
                    post.clock.advance(op["seconds"])
                    continue
                await perform(actors[("sqlite", who)], i, op)
                await perform(actors[("pg", who)], i, op)
                want = actors[("sqlite", who)].transcript[-1]
                got = actors[("pg", who)].transcript[-1]
                statuses[(op["kind"], got[4])] += 1
                assert got == want, (
                    f"seed {SEED}, program {n}, step {i}: PostgreSQL answered otherwise\n"
                    f" op: {op}\n sqlite: {want}\n postgresql: {got}"
                )
            for who in ("a", "b"):
                assert await snapshot(actors[("pg", who)]) == await snapshot(
                    actors[("sqlite", who)]
                ), f"seed {SEED}, program {n}: {who.upper()}'s data differs"
    # The programs reached the refusals whose rules the functions decide, not only successes.
    assert statuses[("m_add", 413)] and statuses[("kv_put", 412)], statuses
    assert statuses[("m_add", 409)] or statuses[("m_batch", 409)], statuses
    if overrides:
        assert statuses[("m_add", 429)] + statuses[("m_batch", 429)], statuses
