"""Tests against a live `memory-service serve` process (tests/support/server.py): the one
live-server fixture, `live_server`, and helpers for it."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator

import httpx
import pytest

from memory_service.settings import sqlite_url
from tests.support.server import LiveServer, remember_key

ADMIN = {
    "Authorization": "Bearer memory-service-test-admin-token-0123456789"
}  # LiveServer sets this admin token
_names = itertools.count()


def new_workspace(server: LiveServer, prefix: str = "ws", quota: int | None = None) -> str:
    """A fresh workspace through the admin API; returns its API key."""
    body: dict = {"name": f"{prefix}-{os.getpid()}-{next(_names)}"}
    if quota is not None:
        body["quotaBytes"] = quota
    r = httpx.post(f"{server.url}/admin/workspaces", json=body, headers=ADMIN, timeout=30)
    assert r.status_code == 201, r.text
    return remember_key(r.json()["key"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One `memory-service serve` process per test module and database kind, over a fresh
    database (its URL is `live_server.database_url`). A module sets `LIVE_SERVER_ENV` (a dict)
    to start it with more environment variables."""
    module = request.module.__name__.rpartition(".")[2]
    base = tmp_path_factory.mktemp(module)
    if request.param == "sqlite":
        url = sqlite_url(base / "memory.db")
    else:
        url = request.getfixturevalue("pg").create_database(f"live_{uuid.uuid4().hex[:12]}")
    env = getattr(request.module, "LIVE_SERVER_ENV", None)
    with LiveServer(url, base, env=env) as server:
        yield server
