"""Setup hooks and the memory probe of the `memory` suite (see run.py and README.md).

Stdlib plus harness only. Hooks take (ctx, scenario) like run.py's `populate`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import harness

JSON = {"Content-Type": "application/json"}
SMALL_MEMORIES = 1_000  # memories of SMALL_MESSAGES messages each
SMALL_MESSAGES = 10
BIG_MESSAGES = 100_000  # one memory
BIG = "bench-big"
SMALL = "bench-small-"
TEXT_200 = ("The quick brown fox jumps over the lazy dog; " * 5)[:200]
TEXT_1K = ("Memory is the diary we all carry about with us. " * 21)[:1000]


def _post(url: str, body: dict, headers: dict[str, str], what: str) -> dict:
    status, answer = harness.http(
        "POST", url + "/api/memory", json.dumps(body).encode(), {**JSON, **headers}, timeout=120
    )
    if status != 200:
        raise SystemExit(f"{what}: POST /api/memory answered {status}: {answer[:500]!r}")
    return json.loads(answer)


def batch(n: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {"role": "user" if i % 2 else "assistant", "content": f"{i:07d} {TEXT_200}"}
        for i in range(start, start + n)
    ]


def populate_small(ctx: Any, sc: Any) -> None:
    """SMALL_MEMORIES memories of SMALL_MESSAGES messages: one batch add each."""
    done = ctx.__dict__.setdefault("_memory_small_done", set())  # per server
    if sc.server in done:
        return
    url = ctx.servers[sc.server].url
    for n in range(SMALL_MEMORIES):
        body = {"conversationId": f"{SMALL}{n}", "messages": batch(SMALL_MESSAGES)}
        _post(url, body, ctx.auth(), f"{sc.name} setup")
    done.add(sc.server)


def populate_big(ctx: Any, sc: Any) -> None:
    """One memory of BIG_MESSAGES messages, in batch adds of 1,000 (the maximum batch)."""
    done = ctx.__dict__.setdefault("_memory_big_done", set())  # per server
    if sc.server in done:
        return
    url = ctx.servers[sc.server].url
    for start in range(0, BIG_MESSAGES, 1000):
        _post(url, {"conversationId": BIG, "messages": batch(1000, start)}, ctx.auth(), sc.name)
    done.add(sc.server)


def _get(url: str, path: str, params: dict, headers: dict[str, str]) -> dict:
    status, answer = harness.http("GET", f"{url}{path}?{urlencode(params)}", None, headers)
    if status != 200:
        raise SystemExit(f"probe: GET {path} answered {status}: {answer[:500]!r}")
    return json.loads(answer)


def read_whole(url: str, conversation: str, headers: dict[str, str]) -> tuple[int, int]:
    """Read a memory page by page (the newest page, then back through dataCursor);
    returns (messages read, pages)."""
    page = _get(url, "/api/memory", {"conversationId": conversation}, headers)
    (memory,) = page["memories"]
    count, pages, cursor = len(memory["data"]), 1, memory["dataCursor"]
    while cursor:
        params = {"conversationId": conversation, "cursor": cursor}
        older = _get(url, "/api/memory/messages", params, headers)
        count += len(older["data"])
        pages += 1
        cursor = older["nextCursor"]
    if count != memory["messageCount"]:
        raise SystemExit(f"probe: read {count} of {memory['messageCount']} messages")
    return count, pages


def probe_read_memory(ctx: Any) -> dict:
    """Peak resident memory (VmHWM) of a fresh server process while it serves: a small memory
    read whole 100 times, then one page of the 100,000-message memory, then all of it, page by
    page. Flat means the whole read peaks where one page does."""
    exe = Path(sys.executable).with_name("memory-service")
    exe_s = str(exe) if exe.exists() else shutil.which("memory-service")
    url = f"sqlite+aiosqlite:///{ctx.tmp / 'ms.db'}"
    port = harness.free_port()
    cmd = [exe_s, "serve", "--host", "127.0.0.1", "--port", str(port), "--database-url", url]
    server = harness.start_server(
        "probe",
        [*cmd, "--no-default-workspace"],
        port,
        ctx.tmp / "probe.log",
        env={**os.environ, "XDG_DATA_HOME": str(ctx.tmp)},
    )
    try:
        h = ctx.auth()
        peak: Callable[[], int] = lambda: harness.peak_rss_kib(server.pid)  # noqa: E731
        _get(server.url, "/api/memory", {"conversationId": f"{SMALL}0", "lastN": 1}, h)
        started = peak()
        for _ in range(100):
            small_count, _pages = read_whole(server.url, f"{SMALL}0", h)
        after_small = peak()
        _get(server.url, "/api/memory", {"conversationId": BIG}, h)
        after_one_big_page = peak()
        big_count, big_pages = read_whole(server.url, BIG, h)
        after_big = peak()
    finally:
        harness.stop_server(server)
    return {
        "vmhwm_kib_after_start": started,
        "vmhwm_kib_after_small_reads": after_small,
        "vmhwm_kib_after_one_big_page": after_one_big_page,
        "vmhwm_kib_after_whole_big_read": after_big,
        "small_messages": small_count,
        "big_messages": big_count,
        "big_pages": big_pages,
        "growth_kib_whole_big_vs_small": after_big - after_small,
        "growth_kib_whole_big_vs_one_page": after_big - after_one_big_page,
    }
