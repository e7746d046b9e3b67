"""Helpers for tests against a live `memory-service serve` process (tests/support/server.py)."""

from __future__ import annotations

import itertools
import os

import httpx

from tests.support.server import LiveServer

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
    return r.json()["key"]
