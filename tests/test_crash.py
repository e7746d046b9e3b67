"""Crash safety: a server killed with SIGKILL in the middle of a write load loses nothing it had
acknowledged, and shows nothing half-written, on SQLite and on PostgreSQL.

Clients in several processes journal every write before sending it and every answer after
(tests/support/crashload.py). After the kill and a restart on the same database, each key must
be in the state its last acknowledged write left, or in the state of the one write that was in
flight when the server died; values are compared whole (by digest) and with their versions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import stored_bytes
from tests.support.crashload import Load, MemoryExpectation, digest, read_journals
from tests.support.load import all_messages
from tests.support.server import LiveServer, create_workspace

MIN_ACKED_BEFORE_KILL = 150


def list_keys(url: str, headers: dict[str, str]) -> dict[str, int]:
    """Every key of the workspace with its size, through the paginated listing."""
    keys: dict[str, int] = {}
    cursor = None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = httpx.get(f"{url}/api/kv", params=params, headers=headers, timeout=30).json()
        keys.update({item["key"]: item["size"] for item in page["items"]})
        cursor = page.get("nextCursor")
        if not cursor:
            return keys


def check_memory(url: str, headers: dict[str, str], memory: MemoryExpectation) -> None:
    """The lane's memory holds its acknowledged batches, in order, and the batch in flight
    either whole or not at all."""
    stored = [m["content"] for m in all_messages(url, headers, memory.conversation, "default")]
    allowed = [memory.acked]
    if memory.pending is not None:
        allowed.append(memory.acked + memory.pending)
    assert stored in allowed, (
        f"{memory.conversation}: {len(stored)} messages stored, "
        f"{len(memory.acked)} acknowledged, {len(memory.pending or [])} in flight"
    )


def test_acknowledged_writes_survive_sigkill(database_url: str, tmp_path: Path) -> None:
    key = create_workspace(database_url, "crash", quota=2**40)
    headers = {"Authorization": f"Bearer {key}"}
    server = LiveServer(database_url, tmp_path).start()
    try:
        load = Load(server.url, headers, tmp_path / "journal").start()
        deadline = time.monotonic() + 60
        while load.acknowledged() < MIN_ACKED_BEFORE_KILL and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()  # SIGKILL, with requests in flight
        load.wait()

        journal = read_journals(tmp_path / "journal")
        assert not journal.problems, journal.problems[:10]
        assert journal.acked >= MIN_ACKED_BEFORE_KILL
        states = journal.kv

        if database_url.startswith("sqlite"):
            path = make_url(database_url).database
            with sqlite3.connect(path) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

        server.start()
        missing_or_wrong = []
        client = httpx.Client(base_url=server.url, headers=headers, timeout=30)
        for exp in states:
            r = client.get(f"/api/kv/{exp.key}")
            assert r.status_code in (200, 404), r.text
            got = (
                (digest(r.content), int(r.headers["etag"].strip('"')))
                if r.status_code == 200
                else None
            )
            ok = any(
                (want is None and got is None)
                or (got is not None and want == got[0] and version in (None, got[1]))
                for want, version in exp.allowed
            )
            if not ok:
                missing_or_wrong.append((exp.key, exp.allowed, got))
        assert not missing_or_wrong, missing_or_wrong[:5]
        for memory in journal.memories:
            check_memory(server.url, headers, memory)

        # Nothing that no client ever sent, and the usage is exactly what is stored.
        listed = list_keys(server.url, headers)
        assert set(listed) <= {exp.key for exp in states}
        used = httpx.get(f"{server.url}/api/usage", headers=headers).json()["used"]
        messages = 0
        for memory in journal.memories:
            stored = all_messages(server.url, headers, memory.conversation, "default")
            messages += sum(len("user") + len(m["content"].encode()) for m in stored)
            if stored:  # a memory that exists is charged its ids too
                messages += len(memory.conversation.encode()) + len("default")
        assert used == sum(listed.values()) + messages
        assert used == asyncio.run(stored_bytes(database_url, "crash"))
    finally:
        server.stop()


@pytest.mark.parametrize("rounds", [3])
def test_repeated_kills_leave_a_consistent_database(
    sqlite_database_url: str, tmp_path: Path, rounds: int
) -> None:
    """Kill, restart, load again: every restart finds the last one's acknowledged writes."""
    key = create_workspace(sqlite_database_url, "crash", quota=2**40)
    headers = {"Authorization": f"Bearer {key}"}
    server = LiveServer(sqlite_database_url, tmp_path)
    try:
        for n in range(rounds):
            server.start()
            journal = tmp_path / f"journal-{n}"
            load = Load(server.url, headers, journal, processes=2, lanes=4, tag=f"r{n}").start()
            deadline = time.monotonic() + 60
            while load.acknowledged() < 40 and time.monotonic() < deadline:
                time.sleep(0.05)
            server.kill()
            load.wait()
            assert load.acknowledged() >= 40
        server.start()
        listed = list_keys(server.url, headers)
        journaled: set[str] = set()
        for n in range(rounds):
            journal = read_journals(tmp_path / f"journal-{n}")
            journaled |= {exp.key for exp in journal.kv}
            assert not journal.problems, journal.problems[:10]
            for memory in journal.memories:
                check_memory(server.url, headers, memory)
            client = httpx.Client(base_url=server.url, headers=headers, timeout=30)
            for exp in journal.kv:
                r = client.get(f"/api/kv/{exp.key}")
                got = digest(r.content) if r.status_code == 200 else None
                assert got in [want for want, _ in exp.allowed], exp
        assert set(listed) <= journaled
        used = httpx.get(f"{server.url}/api/usage", headers=headers).json()["used"]
        assert used == asyncio.run(stored_bytes(sqlite_database_url, "crash"))
    finally:
        server.stop()
