"""Time to first message and total time of `memory_get` through the tool stream, against the
plain `GET /api/memory`, on one 10,000-message memory, in the same run.

    python bench/tools_stream.py [--rounds 30] [--messages 10000] [--keep]

One service process (started as `bench/run.py` starts it), one keep-alive httpx connection,
requests one at a time, interleaved A B C A B C ... so that the machine's drift hits all alike;
the report gives medians (and p90) over rounds. Nothing asserts on time.

- `get`: GET /api/memory?conversationId=bench. "first" is the first body byte.
- `tool-ndjson`: POST /api/tools/memory_get/invoke. "first" is the first complete message line.
- `tool-sse`: the same with `Accept: text/event-stream`. "first" is the first complete event.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import harness
import httpx
from run import start_workspace_service

CONVERSATION = "bench"


def populate(
    client: httpx.Client, auth: dict[str, str], n: int, conversation: str = CONVERSATION
) -> None:
    """n messages (~100 bytes each) in batches of 1000, alternating user / assistant."""
    for start in range(0, n, 1000):
        batch = [
            {
                "role": "user" if i % 2 == 0 else "assistant",
                "content": f"message {i}: " + "lorem ipsum dolor sit amet " * 3,
            }
            for i in range(start, min(n, start + 1000))
        ]
        r = client.post(
            "/api/memory",
            json={"conversationId": conversation, "messages": batch},
            headers=auth,
        )
        if r.status_code != 200:
            raise SystemExit(f"populate: POST /api/memory answered {r.status_code}: {r.text[:500]}")


def measure(client: httpx.Client, name: str, auth: dict[str, str]) -> dict:
    if name == "get":
        request = client.build_request(
            "GET", "/api/memory", params={"conversationId": CONVERSATION}, headers=auth
        )
        marker = None
    else:
        accept = "text/event-stream" if name == "tool-sse" else "application/x-ndjson"
        request = client.build_request(
            "POST",
            "/api/tools/memory_get/invoke",
            json={"parameters": {"conversationId": CONVERSATION}},
            headers={**auth, "Accept": accept},
        )
        marker = b"\n\n" if name == "tool-sse" else b"\n"
    start = time.perf_counter()
    first = None
    size = 0
    seen = b""
    response = client.send(request, stream=True)
    try:
        if response.status_code != 200:
            response.read()
            raise SystemExit(f"{name} answered {response.status_code}: {response.text[:500]}")
        for chunk in response.iter_raw():
            size += len(chunk)
            if first is None:
                if marker is None:
                    first = time.perf_counter()
                else:
                    seen += chunk
                    if marker in seen:
                        first = time.perf_counter()
        end = time.perf_counter()
    finally:
        response.close()
    if name != "get" and not seen.startswith(b'{"type":"text"') and b"data: " not in seen:
        raise SystemExit(f"{name}: unexpected stream start {seen[:200]!r}")
    return {"first_ms": (first - start) * 1000, "total_ms": (end - start) * 1000, "bytes": size}


def summarize(runs: list[dict]) -> dict:
    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(q * len(values)))]

    firsts = [r["first_ms"] for r in runs]
    totals = [r["total_ms"] for r in runs]
    return {
        "first_ms_median": statistics.median(firsts),
        "first_ms_p90": pct(firsts, 0.9),
        "total_ms_median": statistics.median(totals),
        "total_ms_p90": pct(totals, 0.9),
        "bytes": runs[-1]["bytes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured rounds first")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()

    scenarios = ["get", "tool-ndjson", "tool-sse"]
    tmp = Path(tempfile.mkdtemp(prefix="ms-bench-tools-"))
    server = None
    try:
        server, key = start_workspace_service(tmp)
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, timeout=120) as client:
            populate(client, auth, args.messages)
            for _ in range(args.warmup):
                for name in scenarios:
                    measure(client, name, auth)
            runs: dict[str, list[dict]] = {name: [] for name in scenarios}
            for rnd in range(args.rounds):
                for name in scenarios:
                    res = measure(client, name, auth)
                    runs[name].append(res)
                print(
                    f"round {rnd + 1}/{args.rounds}  "
                    + "  ".join(
                        f"{n} {runs[n][-1]['first_ms']:.1f}/{runs[n][-1]['total_ms']:.1f} ms"
                        for n in scenarios
                    ),
                    flush=True,
                )
        peak = harness.peak_rss_kib(server.pid)
    finally:
        if server is not None:
            harness.stop_server(server)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summary = {name: summarize(r) for name, r in runs.items()}
    base = summary["get"]
    print(
        f"\nmemory_get on a {args.messages:,}-message memory, {args.rounds} rounds "
        "(medians; p90 in brackets)"
    )
    print(f"{'scenario':<13}{'first ms':>18}{'total ms':>18}{'x get total':>13}{'bytes':>11}")
    for name, s in summary.items():
        print(
            f"{name:<13}{s['first_ms_median']:>9.2f} [{s['first_ms_p90']:>6.2f}]"
            f"{s['total_ms_median']:>9.2f} [{s['total_ms_p90']:>6.2f}]"
            f"{s['total_ms_median'] / base['total_ms_median']:>12.2f}x{s['bytes']:>11,}"
        )
    print(f"\nservice peak memory: {peak:,} KiB")

    harness.write_results(
        "tools-stream", vars(args), {"summary": summary, "peak_rss_kib": peak, "runs": runs}
    )


if __name__ == "__main__":
    main()
