"""Time to first render of the explorer (/ui) in headless Chromium: a memory of 100,000
messages and the memory list of a workspace with 100,000 memories, each against the same page
on a tiny workspace, in the same run (and the overview, the page a sign-in lands on).

    python bench/ui_render.py [--rounds 15] [--messages 100000] [--memories 100000] [--keep]

One service process (started as `bench/run.py` starts it) on a temp SQLite database, filled
through the public API. Each measurement is a full page load of /ui (a new document: modules,
the key check, the view's API calls, the DOM) in a browser tab that holds the key in its
sessionStorage, as after a sign-in; "first render" is the time from the navigation's start to
the page's `view-rendered` performance mark (set once the view's content is in the DOM), read
from the page's own clock. Scenarios run interleaved (A B C D A B C D ...); the report gives
medians and p90. Needs Debian's chromium and chromium-driver. Nothing asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import harness
import httpx
from run import BENCH, start_workspace_service

sys.path.insert(0, str(BENCH.parent))
from tests.support.browser import chromium  # noqa: E402  (the tests' browser settings)

BIG = "bench-big"


def add(client: httpx.Client, auth: dict, body: dict) -> None:
    r = client.post("/api/memory", json=body, headers=auth)
    if r.status_code != 200:
        raise SystemExit(f"populate: POST /api/memory answered {r.status_code}: {r.text[:300]}")


def populate_long_memory(url: str, auth: dict, conversation: str, n: int) -> None:
    """n messages (~100 bytes each) in batches of 1000, alternating user / assistant."""
    with httpx.Client(base_url=url, timeout=120) as client:
        for start in range(0, n, 1000):
            batch = [
                {
                    "role": "user" if i % 2 == 0 else "assistant",
                    "content": f"message {i}: " + "lorem ipsum dolor sit amet " * 3,
                }
                for i in range(start, min(n, start + 1000))
            ]
            add(client, auth, {"conversationId": conversation, "messages": batch})


def populate_memories(url: str, auth: dict, n: int, threads: int = 8) -> None:
    """n memories of one message each, added by `threads` clients at once."""

    def worker(part: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            for i in range(part, n, threads):
                body = {"conversationId": f"user-{i:06d}", "blockId": "chat", "role": "user"}
                add(client, auth, {**body, "content": f"hello {i}"})

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))


def create_workspace(tmp: Path, name: str) -> str:
    exe = Path(sys.executable).with_name("memory-service")
    url = f"sqlite+aiosqlite:///{tmp / 'ms.db'}"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp)}
    out = subprocess.run(
        [str(exe), "workspace", "create", name, "--quota", str(2**40), "--json"]
        + ["--database-url", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)["key"]


def first_render(driver, base: str, key: str, route: str, n: int) -> float:  # noqa: ANN001
    """A fresh document of /ui on `route`; ms from navigation start to its first render."""
    driver.execute_script("sessionStorage.setItem('memory-service.key', arguments[0])", key)
    driver.get(f"{base}/ui?load={n}#{route}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ms = driver.execute_script(
            "const m = performance.getEntriesByName('view-rendered');"
            "return m.length ? m[0].startTime : null"
        )
        if ms is not None:
            return float(ms)
        time.sleep(0.01)
    raise SystemExit(f"{route}: never rendered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="ms-bench-ui-"))
    server = driver = None
    try:
        server, big_key = start_workspace_service(tmp)
        small_key = create_workspace(tmp, "small")
        big = {"Authorization": f"Bearer {big_key}"}
        small = {"Authorization": f"Bearer {small_key}"}
        t0 = time.perf_counter()
        populate_long_memory(server.url, big, BIG, args.messages)
        populate_memories(server.url, big, args.memories)
        populate_long_memory(server.url, small, BIG, 10)
        populate_memories(server.url, small, 9, threads=1)
        print(f"populated in {time.perf_counter() - t0:.0f} s", flush=True)
        with httpx.Client(base_url=server.url, headers=big) as c:
            stats = c.get("/api/stats").json()
        print(f"big workspace: {stats['memories']:,} memories, {stats['messages']:,} messages")

        driver = chromium(tmp / "chromium-profile")
        driver.get(f"{server.url}/ui")
        memory_route = f"/memory?conversationId={BIG}&blockId=default"
        scenarios = {
            "memory-100k": (big_key, memory_route),
            "memory-10": (small_key, memory_route),
            "list-100k": (big_key, "/memories"),
            "list-10": (small_key, "/memories"),
            # The landing page: its counts read every memory row of the workspace.
            "overview-100k": (big_key, "/overview"),
            "overview-10": (small_key, "/overview"),
        }
        runs: dict[str, list[float]] = {name: [] for name in scenarios}
        n = 0
        for rnd in range(args.warmup + args.rounds):
            for name, (key, route) in scenarios.items():
                n += 1
                ms = first_render(driver, server.url, key, route, n)
                if rnd >= args.warmup:
                    runs[name].append(ms)
            if rnd >= args.warmup:
                print(
                    f"round {rnd - args.warmup + 1}/{args.rounds}  "
                    + "  ".join(f"{k} {v[-1]:.0f} ms" for k, v in runs.items()),
                    flush=True,
                )
        peak = harness.peak_rss_kib(server.pid)
    finally:
        if driver is not None:
            driver.quit()
        if server is not None:
            harness.stop_server(server)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    def p90(values: list[float]) -> float:
        return sorted(values)[min(len(values) - 1, int(0.9 * len(values)))]

    summary = {
        name: {"median_ms": statistics.median(v), "p90_ms": p90(v)} for name, v in runs.items()
    }
    print(f"\nfirst render of /ui in headless Chromium, {args.rounds} rounds (median [p90])")
    pairs = (
        ("memory-100k", "memory-10"),
        ("list-100k", "list-10"),
        ("overview-100k", "overview-10"),
    )
    for name, ref in pairs:
        s, r = summary[name], summary[ref]
        print(
            f"{name:<12}{s['median_ms']:>8.0f} ms [{s['p90_ms']:>5.0f}]   {ref:<10}"
            f"{r['median_ms']:>6.0f} ms [{r['p90_ms']:>5.0f}]   ratio "
            f"{s['median_ms'] / r['median_ms']:.2f}x"
        )
    print(f"\nservice peak memory: {peak:,} KiB")
    harness.write_results(
        "ui-render", vars(args), {"summary": summary, "peak_rss_kib": peak, "runs": runs}
    )


if __name__ == "__main__":
    main()
