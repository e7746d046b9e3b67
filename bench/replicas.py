"""PostgreSQL with 1 and 3 replicas, next to SQLite and the baseline insert, with wrk.

    python bench/replicas.py [--rounds 3 --duration 8 --connections 48]
        [--scenarios kv-set,memory-add --configs pg1-1ws,pg3-3ws --access-log off]

Starts a throwaway PostgreSQL (tests/support/pgserver.py, fsync on), three `memory-service serve`
processes on it, one on SQLite and the baseline app; creates three workspaces in each database.
Every measured run is three wrk processes at once, each with a third of the connections and one
thread (wrk cannot spread one script over several hosts), and the figure is their sum:

- `sqlite`: all three against the SQLite server, one workspace;
- `pg1-1ws` / `pg1-3ws`: all three against replica 1, with one workspace / a workspace each;
- `pg3-1ws` / `pg3-3ws`: one wrk per replica, one workspace / a workspace each.

Writes of one workspace are serialised by its row lock (quota, versions, compare-and-set), so
the 1-workspace and 3-workspace figures separate that lock from the rest. Beside each run, the
CPU time the servers, PostgreSQL and wrk used shows where the time went (2 shared cores here).
Runs are interleaved (every configuration once per round) and figures are medians over rounds.

Two references, each run the same way: `baseline-insert` (bench/baseline_app.py, SQLite) and
`pg-baseline-insert` (bench/pg_baseline_app.py: Litestar + asyncpg, one autocommit INSERT of the
same 1 KiB body per request, on the same PostgreSQL server); `x pgbase` is each run's ratio to the
latter in the same round. `cpu ms/req` is the CPU time the servers and PostgreSQL spent per
request, robust to the noise of a shared machine where req/s is not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import harness
import run
from harness import Server

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
from tests.support.pgserver import PgServer  # noqa: E402

SCENARIOS = ["kv-set", "kv-get", "memory-add"]
WORKSPACES = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Config:
    name: str
    servers: list[Server]  # wrk process i targets servers[i % len]
    keys: list[str]  # wrk process i uses keys[i % len]


@dataclass
class Run:
    rps: float
    p50_ms: float  # the slowest of the three wrk processes' medians
    p99_ms: float
    errors: int
    cpu: dict[str, float] = field(default_factory=dict)  # cores used, by process group
    pg_connects_per_s: float = 0.0  # new PostgreSQL connections per second during the run


def cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and its descendants, in seconds: utime + stime of each living one, plus
    cutime + cstime of `pid` (its children that have exited, e.g. PostgreSQL backends)."""
    total = 0
    for p in harness._proc_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if p == pid:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / CLK_TCK


def pg_sessions(pg: PgServer) -> int:
    """Sessions (connections) PostgreSQL has accepted so far: a churning pool shows here."""
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(pg.dsn("postgres"))
        try:
            return int(await conn.fetchval("SELECT sum(sessions) FROM pg_stat_database"))
        finally:
            await conn.close()

    return asyncio.run(count())


def exe() -> str:
    path = Path(sys.executable).with_name("memory-service")
    found = str(path) if path.exists() else shutil.which("memory-service")
    if not found:
        raise SystemExit("memory-service is not installed: run `./dev setup` first")
    return found


def before_env(env: dict[str, str], checkout: str) -> dict[str, str]:
    """The environment of a service run from another checkout (`--before`): its package first
    on the path (the venv's editable install of this one comes after sys.path)."""
    return {**env, "PYTHONPATH": str(Path(checkout).resolve())}


def check_before(env: dict[str, str], checkout: str) -> None:
    probe = [*command(env), "-c", "import memory_service; print(memory_service.__file__)"]
    probe.remove("-m")
    probe.remove("memory_service")
    found = subprocess.run(probe, capture_output=True, text=True, env=env, check=True).stdout
    if not Path(found.strip()).is_relative_to(Path(checkout).resolve()):
        raise SystemExit(f"--before: the service would run {found.strip()}, not {checkout}'s")


def command(env: dict[str, str]) -> list[str]:
    if "PYTHONPATH" in env:  # (--before) the other checkout's code, by module
        return [sys.executable, "-P", "-m", "memory_service"]  # -P: not the cwd first
    return [exe()]


def create_workspaces(url: str, env: dict[str, str]) -> list[str]:
    keys = []
    for i in range(WORKSPACES):
        cmd = [*command(env), "workspace", "create", f"bench{i}", "--quota", str(2**40), "--json"]
        done = subprocess.run(
            [*cmd, "--database-url", url], capture_output=True, text=True, env=env, timeout=120
        )
        if done.returncode:
            raise SystemExit(f"workspace create failed:\n{done.stderr}{done.stdout}")
        keys.append(json.loads(done.stdout)["key"])
    return keys


def start_pg_baseline(pg: PgServer, tmp: Path) -> Server:
    port = harness.free_port()
    app = str(BENCH / "pg_baseline_app.py")
    cmd = [sys.executable, app, "--port", str(port), "--dsn", pg.dsn("baseline")]
    return harness.start_server("pg-baseline", cmd, port, tmp / "pg-baseline.log", timeout=60)


def serve(name: str, url: str, tmp: Path, env: dict[str, str]) -> Server:
    port = harness.free_port()
    cmd = [*command(env), "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--database-url", url]
    cmd.append("--no-default-workspace")
    return harness.start_server(name, cmd, port, tmp / f"{name}.log", env=env, timeout=60)


def lua_for(sc: run.Scenario, key: str, index: int, processes: int) -> str:
    """The scenario's script for wrk process `index` of `processes`: its own key, and its own
    stretch of the `{n}` counter (so that the processes do not all write the same keys)."""
    ctx = run.Ctx({}, key, processes, Path("."))
    script = harness.lua_script(
        sc.method,
        sc.path,
        sc.body,
        sc.request_headers(ctx),
        nkeys=sc.nkeys,
        threads=processes,
    )
    return script.replace("local next_tid = 0", f"local next_tid = {index}")


def run_many(
    urls: list[str], scripts: list[Path], duration: float, connections: int
) -> list[harness.WrkResult]:
    procs = []
    for url, script in zip(urls, scripts, strict=True):
        cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout=10s", "--latency"]
        procs.append(
            subprocess.Popen(
                [*cmd, "-s", str(script), url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=duration + 60)
        if proc.returncode:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {err}\n{out}")
        try:
            results.append(harness.parse_wrk(out))
        except (KeyError, RuntimeError) as exc:  # e.g. no request finished: no percentiles
            raise RuntimeError(f"could not parse wrk output ({exc!r}):\n{out}\n{err}") from exc
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=48, help="total, over 3 wrk")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--scenarios",
        help=f"comma-separated (default {','.join(SCENARIOS)}); also memory-add-idem, "
        "memory-add-named or any other of run.py's service scenarios",
    )
    parser.add_argument("--configs", help="comma-separated, of sqlite,pg1-1ws,pg1-3ws,...")
    parser.add_argument(
        "--access-log", choices=["on", "off"], default="on", help="MEMORY_ACCESS_LOG (default on)"
    )
    parser.add_argument(
        "--before",
        metavar="CHECKOUT",
        help="also run each pg1 configuration against one replica running the code of this "
        "checkout (e.g. a `git worktree` of an older commit), on a database of its own: "
        "configurations `<name>-before`, same rounds",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit(harness.WRK_MISSING)

    tmp = Path(tempfile.mkdtemp(prefix="ms-bench-replicas-"))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp), "MEMORY_ACCESS_LOG": args.access_log}
    env.pop("PYTHONPATH", None)
    if args.scenarios and "memory-add-idem" in args.scenarios:
        # A new key per request: records are kept 1 s (swept every second), so that a workspace
        # never reaches MEMORY_MAX_IDEMPOTENCY_KEYS (then 429) and each add counts a few
        # thousand of them, not ever more.
        env |= {"MEMORY_IDEMPOTENCY_TTL_SECONDS": "1", "MEMORY_SWEEP_INTERVAL_SECONDS": "1"}
    servers: list[Server] = []
    pg = PgServer().start()
    try:
        baseline = run.start_baseline(tmp)
        servers.append(baseline)
        pg.create_database("baseline")
        pg_baseline = start_pg_baseline(pg, tmp)
        servers.append(pg_baseline)
        sqlite_url = f"sqlite+aiosqlite:///{tmp / 'ms.db'}"
        sqlite_keys = create_workspaces(sqlite_url, env)
        sqlite = serve("sqlite", sqlite_url, tmp, env)
        servers.append(sqlite)
        pg_url = pg.create_database("bench")
        pg_keys = create_workspaces(pg_url, env)
        replicas = [serve(f"pg-replica-{i}", pg_url, tmp, env) for i in range(3)]
        servers += replicas

        before: list[Config] = []
        if args.before:
            b_env = before_env(env, args.before)
            check_before(b_env, args.before)
            b_url = pg.create_database("bench_before")
            b_keys = create_workspaces(b_url, b_env)
            servers.append(serve("pg-before", b_url, tmp, b_env))
            before = [
                Config("pg1-1ws-before", servers[-1:], b_keys[:1]),
                Config("pg1-3ws-before", servers[-1:], b_keys),
            ]
        configs = [
            Config("sqlite", [sqlite], sqlite_keys[:1]),
            Config("pg1-1ws", replicas[:1], pg_keys[:1]),
            Config("pg1-3ws", replicas[:1], pg_keys),
            Config("pg3-1ws", replicas, pg_keys[:1]),
            Config("pg3-3ws", replicas, pg_keys),
        ]
        configs += before
        if args.configs:
            wanted = args.configs.split(",")
            configs = [
                c for c in configs if c.name in wanted or c.name.removesuffix("-before") in wanted
            ]
        scenarios = args.scenarios.split(",") if args.scenarios else SCENARIOS
        scripts: dict[tuple[str, str], list[Path]] = {}
        populated: set[tuple[str, str]] = set()  # (scenario, key): one database per key
        for sc_name in scenarios:
            sc = run.SCENARIOS[sc_name]
            for cfg in configs:
                for key in set(cfg.keys):
                    ctx = run.Ctx({"service": cfg.servers[0]}, key, 1, tmp)
                    if sc.setup and (sc_name, key) not in populated:
                        sc.setup(ctx, sc)
                        populated.add((sc_name, key))
                    sc.check(ctx)
                paths = []
                for i in range(3):
                    path = tmp / f"{sc_name}-{cfg.name}-{i}.lua"
                    path.write_text(lua_for(sc, cfg.keys[i % len(cfg.keys)], i, 3))
                    paths.append(path)
                scripts[(sc_name, cfg.name)] = paths
        baseline_lua = tmp / "baseline.lua"
        baseline_lua.write_text(run.SCENARIOS["baseline-insert"].lua(run.Ctx({}, "", 1, tmp)))

        per_wrk = max(1, args.connections // 3)
        names = ["baseline-insert", "pg-baseline-insert"]
        names += [f"{s}/{c.name}" for s in scenarios for c in configs]
        groups = {"servers": [s.pid for s in servers[2:]], "postgres": [pg.pid]}

        def measure(name: str, duration: float) -> Run:
            if name == "baseline-insert":
                urls, paths = [baseline.url] * 3, [baseline_lua] * 3
            elif name == "pg-baseline-insert":
                urls, paths = [pg_baseline.url] * 3, [baseline_lua] * 3
            else:
                sc_name, cfg_name = name.split("/")
                cfg = next(c for c in configs if c.name == cfg_name)
                urls = [cfg.servers[i % len(cfg.servers)].url for i in range(3)]
                paths = scripts[(sc_name, cfg_name)]
            before = {g: sum(cpu_seconds(p) for p in pids) for g, pids in groups.items()}
            before["baseline"] = cpu_seconds(baseline.pid) + cpu_seconds(pg_baseline.pid)
            sessions = pg_sessions(pg)
            wall = time.monotonic()
            children = os.times()
            results = run_many(urls, paths, duration, per_wrk)
            wall = time.monotonic() - wall
            after = {g: sum(cpu_seconds(p) for p in pids) for g, pids in groups.items()}
            after["baseline"] = cpu_seconds(baseline.pid) + cpu_seconds(pg_baseline.pid)
            new_sessions = pg_sessions(pg) - sessions - 1  # not counting our own
            now = os.times()
            cpu = {g: round((after[g] - before[g]) / wall, 2) for g in before}
            cpu["wrk"] = round(
                (
                    now.children_user
                    + now.children_system
                    - children.children_user
                    - children.children_system
                )
                / wall,
                2,
            )
            return Run(
                rps=sum(r.rps for r in results),
                p50_ms=max(r.p50_ms for r in results),
                p99_ms=max(r.p99_ms for r in results),
                errors=sum(r.errors for r in results),
                cpu=cpu,
                pg_connects_per_s=round(new_sessions / wall, 1),
            )

        if args.warmup > 0:
            for name in names:
                measure(name, args.warmup)
        results: dict[str, list[Run]] = {n: [] for n in names}
        for rnd in range(args.rounds):
            for name in names:
                r = measure(name, args.duration)
                results[name].append(r)
                print(
                    f"round {rnd + 1}/{args.rounds}  {name:<30}{r.rps:>9,.0f} req/s"
                    f"  p50 {r.p50_ms:.1f} ms  p99 {r.p99_ms:.1f} ms  cores {r.cpu}"
                    f"  pg connects/s {r.pg_connects_per_s}"
                    + (f"  ERRORS {r.errors}" if r.errors else ""),
                    flush=True,
                )
    finally:
        for s in servers:
            harness.stop_server(s)
        pg.stop()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summary = summarize(results)
    harness.write_results("replicas", vars(args), {"summary": summary}, lead="\n")
    print_report(summary)


def summarize(results: dict[str, list[Run]]) -> dict[str, dict]:
    """Medians, and ratios of per-round pairs: to the baseline insert, and for PostgreSQL the
    3-replica figure over the 1-replica one (same workspaces)."""
    ref = [r.rps for r in results["baseline-insert"]]
    pg_ref = [r.rps for r in results["pg-baseline-insert"]]
    out = {}
    for name, runs in results.items():
        rps = [r.rps for r in runs]
        entry = {
            "rps_median": harness.median(rps),
            "rps_rounds": rps,
            "p50_ms_median": harness.median([r.p50_ms for r in runs]),
            "p99_ms_median": harness.median([r.p99_ms for r in runs]),
            "errors": sum(r.errors for r in runs),
            "x_baseline": harness.median([a / b for a, b in zip(rps, ref, strict=True) if b]),
            "x_pg_baseline": harness.median([a / b for a, b in zip(rps, pg_ref, strict=True) if b]),
            "cores": {g: harness.median([r.cpu.get(g, 0.0) for r in runs]) for g in runs[0].cpu},
            "pg_connects_per_s": harness.median([r.pg_connects_per_s for r in runs]),
            "cpu_ms_per_request": {
                g: harness.median([1000 * r.cpu.get(g, 0.0) / r.rps for r in runs if r.rps])
                for g in ("servers", "postgres", "wrk", "baseline")
            },
        }
        if "/pg3-" in name and name.replace("/pg3-", "/pg1-") in results:
            one = [r.rps for r in results[name.replace("/pg3-", "/pg1-")]]
            entry["x_1_replica"] = harness.median([a / b for a, b in zip(rps, one, strict=True)])
        if f"{name}-before" in results:  # this code over the --before checkout's, per round
            old = [r.rps for r in results[f"{name}-before"]]
            entry["x_before"] = harness.median([a / b for a, b in zip(rps, old, strict=True)])
        out[name] = entry
    return out


def print_report(summary: dict[str, dict]) -> None:
    print(
        f"\n{'run':<30}{'req/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'x base':>8}{'x pgbase':>9}"
        f"{'x 1rep':>8}{'x before':>9}   cores: servers / postgres / wrk / baseline"
        "   cpu ms/req: servers / postgres / wrk / baseline"
    )
    for name, s in summary.items():
        c = s["cores"]
        m = s["cpu_ms_per_request"]
        scale = f"{s['x_1_replica']:.2f}x" if "x_1_replica" in s else ""
        before = f"{s['x_before']:.2f}x" if "x_before" in s else ""
        print(
            f"{name:<30}{s['rps_median']:>9,.0f}{s['p50_ms_median']:>8.1f}"
            f"{s['p99_ms_median']:>8.1f}{s['x_baseline']:>7.2f}x{s['x_pg_baseline']:>8.2f}x"
            f"{scale:>8}{before:>9}"
            f"   {c.get('servers', 0):.2f} / {c.get('postgres', 0):.2f} / {c.get('wrk', 0):.2f}"
            f" / {c.get('baseline', 0):.2f}   {m['servers']:.2f} / {m['postgres']:.2f}"
            f" / {m['wrk']:.2f} / {m['baseline']:.2f}"
            f"   pg connects/s {s['pg_connects_per_s']:g}"
            + (f"  ERRORS {s['errors']}" if s["errors"] else "")
        )


if __name__ == "__main__":
    main()
