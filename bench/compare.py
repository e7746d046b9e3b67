"""The same scenarios against this checkout's service and another install's, interleaved: is a
change a regression? (Issue 14 asks for before and after in the same run.)

    # an install of the other version, e.g. from a worktree of the commit before the change:
    git worktree add /tmp/before <commit> && (cd /tmp/before && ./dev setup)
    .venv/bin/python bench/compare.py --other /tmp/before/.venv/bin/memory-service \\
        --scenarios kv-set,kv-get,memory-add,memory-last20-10 --rounds 5 --duration 5

Both servers run with the user's defaults, on copies of one database made by the other install's
CLI (the older one, usually: this checkout migrates it up when it starts, the other way round
would not start). Each scenario's ratio is this checkout's req/s over the other's, the median of
per-round ratios; a ratio under 0.95 is flagged as a regression beyond 5%.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import harness
import run

OTHER = "other"
REGRESSION = 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", required=True, help="the other install's memory-service")
    parser.add_argument("--scenarios", default="kv-set,kv-get,memory-add,memory-last20-10")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit(harness.WRK_MISSING)

    names = args.scenarios.split(",")
    unknown = [n for n in names if n not in run.SCENARIOS or run.SCENARIOS[n].server != "service"]
    if unknown:
        raise SystemExit(f"not a service scenario: {', '.join(unknown)}")
    pairs = {}
    for name in names:
        sc = run.SCENARIOS[name]
        pairs[name] = sc
        pairs[f"{name}@{OTHER}"] = replace(sc, name=f"{name}@{OTHER}", server=OTHER)

    tmp = Path(tempfile.mkdtemp(prefix="ms-compare-"))
    servers: dict[str, harness.Server] = {}
    try:
        db, api_key = run.create_service_db(tmp, args.other)
        shutil.copyfile(db, tmp / "ms-other.db")
        servers[OTHER] = run.start_service(tmp, OTHER, tmp / "ms-other.db", args.other)
        servers["service"] = run.start_service(tmp, "service", db)
        ctx = run.Ctx(servers, api_key, args.threads, tmp)
        scripts = run.prepare(ctx, list(pairs.values()), args)

        def run_one(name: str, rnd: int) -> harness.WrkResult:
            url = servers[pairs[name].server].url
            res = harness.run_wrk(url, scripts[name], args.duration, args.connections, args.threads)
            print(f"round {rnd + 1}/{args.rounds}  {name:<26}{res.rps:>9,.0f} req/s", flush=True)
            return res

        results = harness.interleave(list(pairs), args.rounds, run_one)
    finally:
        for s in servers.values():
            harness.stop_server(s)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{'scenario':<20}{'this req/s':>12}{'other req/s':>13}{'this/other':>12}")
    figures = {}
    for name in names:
        mine, theirs = results[name], results[f"{name}@{OTHER}"]
        ratio = harness.median([a.rps / b.rps for a, b in zip(mine, theirs, strict=True) if b.rps])
        errors = sum(r.errors for r in (*mine, *theirs))
        verdict = "INVALID (errors)" if errors else "ok" if ratio >= REGRESSION else "REGRESSION"
        figures[name] = {
            "this_rps": [r.rps for r in mine],
            "other_rps": [r.rps for r in theirs],
            "ratio": ratio,
            "verdict": verdict,
        }
        print(
            f"{name:<20}{harness.median([r.rps for r in mine]):>12,.0f}"
            f"{harness.median([r.rps for r in theirs]):>13,.0f}{ratio:>11.2f}x  {verdict}"
        )
    harness.write_results("compare", vars(args), {"scenarios": figures})


if __name__ == "__main__":
    main()
