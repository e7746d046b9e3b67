"""Throughput of memory-service against a minimal Litestar + aiosqlite baseline, with wrk.

    python bench/run.py kv [--rounds 3 --duration 10 --connections 32]
    python bench/run.py baseline            # the harness alone: baseline insert vs hello

Both servers run as separate processes, started as a user would; scenarios run interleaved
(A B C A B C ...) and the figures are medians over rounds. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import harness
import kv_batch_bench
import memory_bench
from harness import Server

BENCH = Path(__file__).resolve().parent
NOLOG = "service-nolog"  # the service with MEMORY_ACCESS_LOG=off; "service" runs the defaults
NOCACHE = "service-nocache"  # the service with MEMORY_READ_CACHE_MB=0: every read reads
# What each variant of the service changes from the defaults. Each runs on a database of its own,
# but for NOCACHE: a second process on the service's own database, so that it reads the very
# memories the service reads (grown by the append scenarios, their messages spread as in use).
VARIANTS = {NOLOG: {"MEMORY_ACCESS_LOG": "off"}, NOCACHE: {"MEMORY_READ_CACHE_MB": "0"}}
SHARED = {NOCACHE}
VALUE_1K = bytes(range(256)) * 4  # 1 KiB of every byte value: values are raw bytes
OCTETS = {"Content-Type": "application/octet-stream"}


@dataclass
class Ctx:
    """What scenarios can use: the running servers, the workspace key, the run's options."""

    servers: dict[str, Server]
    api_key: str
    threads: int
    tmp: Path

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Scenario:
    """One kind of request. `path` and `body` may hold `{n}`, a counter over 0..nkeys-1 (each
    wrk thread starts at its own offset). `setup` runs once before the scenario is first used
    (e.g. to pre-populate); `script` replaces the generated Lua entirely if given."""

    name: str
    server: str  # "baseline" or "service"
    method: str
    path: str
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    auth: bool = False  # send the workspace key as `Authorization: Bearer ...`
    nkeys: int = 1
    setup: Callable[[Ctx, Scenario], None] | None = None
    script: Callable[[Ctx, Scenario], str] | None = None

    def request_headers(self, ctx: Ctx) -> dict[str, str]:
        return {**self.headers, **(ctx.auth() if self.auth else {})}

    def lua(self, ctx: Ctx) -> str:
        if self.script:
            return self.script(ctx, self)
        return harness.lua_script(
            self.method,
            self.path,
            self.body,
            self.request_headers(ctx),
            nkeys=self.nkeys,
            threads=ctx.threads,
        )

    def check(self, ctx: Ctx) -> None:
        """Send the scenario's request once (n=0) and insist on a 2xx: never time errors."""
        body = self.body.encode() if isinstance(self.body, str) else self.body
        status, answer = harness.http(
            self.method,
            ctx.servers[self.server].url + self.path.replace("{n}", "0"),
            body.replace(b"{n}", b"0") or None,
            {k: v.replace("{n}", "0") for k, v in self.request_headers(ctx).items()},
        )
        if not 200 <= status < 300:
            raise SystemExit(
                f"{self.name}: {self.method} {self.path} answered {status}: {answer[:500]!r}"
            )


def populate(prefix: str, value: bytes) -> Callable[[Ctx, Scenario], None]:
    """A setup hook that PUTs `value` under `prefix{n}` for every n of the scenario."""

    def setup(ctx: Ctx, sc: Scenario) -> None:
        url = ctx.servers[sc.server].url
        for n in range(sc.nkeys):
            status, answer = harness.http(
                "PUT", f"{url}{prefix}{n}", value, {**OCTETS, **ctx.auth()}
            )
            if not 200 <= status < 300:
                raise SystemExit(
                    f"{sc.name} setup: PUT {prefix}{n} answered {status}: {answer[:500]!r}"
                )

    return setup


SCENARIOS: dict[str, Scenario] = {
    sc.name: sc
    for sc in [
        # `{n}` (ignored by the baseline) makes wrk build every request in Lua, as it must for
        # the service's scenarios: the load generator shares the 2 cores, so it has to cost the
        # same per request on both sides of a ratio.
        Scenario(
            "baseline-insert", "baseline", "POST", "/rows?n={n}", VALUE_1K, OCTETS, nkeys=10_000
        ),
        Scenario("baseline-hello", "baseline", "GET", "/hello"),
        # The last 20 messages of one of 1,000 conversations, as memory-last20-10 reads them.
        Scenario(
            "baseline-read20",
            "baseline",
            "GET",
            "/messages?conv=" + memory_bench.SMALL + "{n}",
            nkeys=memory_bench.SMALL_MEMORIES,
        ),
        # 10,000 keys: the first pass inserts, later passes overwrite.
        Scenario(
            "kv-set",
            "service",
            "PUT",
            "/api/kv/bench-set-{n}",
            VALUE_1K,
            OCTETS,
            auth=True,
            nkeys=10_000,
        ),
        Scenario(
            "kv-get",
            "service",
            "GET",
            "/api/kv/bench-get-{n}",
            auth=True,
            nkeys=1_000,
            setup=populate("/api/kv/bench-get-", VALUE_1K),
        ),
        # Suite `batch` (bench/kv_batch_bench.py): 100 keys per request, of 1 KiB (as kv-get's)
        # and of 64 bytes (a plugin's cursor or setting), each against single gets of the same.
        *kv_batch_bench.scenarios(Scenario, populate, VALUE_1K),
        # Memory (suite `memory`): a new memory per add, 1 KiB of content like the baseline row.
        Scenario(
            "memory-add",
            "service",
            "POST",
            "/api/memory",
            json.dumps(
                {"conversationId": "bench-add-{n}", "role": "user", "content": memory_bench.TEXT_1K}
            ),
            memory_bench.JSON,
            auth=True,
            nkeys=10_000,
        ),
        # Adds taking ms_memory_append on PostgreSQL (bench/replicas.py): a new memory with an
        # Idempotency-Key of its own per request (the servers keep records a few seconds there:
        # MEMORY_IDEMPOTENCY_TTL_SECONDS), and an add naming its block (the name already set).
        Scenario(
            "memory-add-idem",
            "service",
            "POST",
            "/api/memory",
            json.dumps(
                {
                    "conversationId": "bench-idem-{n}",
                    "role": "user",
                    "content": memory_bench.TEXT_1K,
                }
            ),
            {**memory_bench.JSON, "Idempotency-Key": "bench-{n}"},
            auth=True,
            nkeys=10**9,
        ),
        Scenario(
            "memory-add-named",
            "service",
            "POST",
            "/api/memory",
            json.dumps(
                {
                    "conversationId": "bench-named-{n}",
                    "blockName": "bench",
                    "role": "user",
                    "content": memory_bench.TEXT_1K,
                }
            ),
            memory_bench.JSON,
            auth=True,
            nkeys=10_000,
        ),
        # Appends to memories of 10 messages (1,000 of them, so that each stays small) and to
        # one of 100,000: the same cost is the point.
        Scenario(
            "memory-append-10",
            "service",
            "POST",
            "/api/memory",
            json.dumps(
                {
                    "conversationId": memory_bench.SMALL + "{n}",
                    "role": "user",
                    "content": memory_bench.TEXT_200,
                }
            ),
            memory_bench.JSON,
            auth=True,
            nkeys=memory_bench.SMALL_MEMORIES,
            setup=memory_bench.populate_small,
        ),
        Scenario(
            "memory-append-100k",
            "service",
            "POST",
            "/api/memory",
            json.dumps(
                {
                    "conversationId": memory_bench.BIG,
                    "role": "user",
                    "content": memory_bench.TEXT_200,
                }
            ),
            memory_bench.JSON,
            auth=True,
            setup=memory_bench.populate_big,
        ),
        Scenario(
            "memory-last20-10",
            "service",
            "GET",
            "/api/memory?conversationId=" + memory_bench.SMALL + "{n}&lastN=20",
            auth=True,
            nkeys=memory_bench.SMALL_MEMORIES,
            setup=memory_bench.populate_small,
        ),
        Scenario(
            "memory-last20-100k",
            "service",
            "GET",
            f"/api/memory?conversationId={memory_bench.BIG}&lastN=20",
            auth=True,
            setup=memory_bench.populate_big,
        ),
    ]
}
# The same requests to the service with its access log off: what the log costs.
for _name in ["kv-set", "kv-get", "memory-add", "memory-last20-10"]:
    SCENARIOS[f"{_name}-nolog"] = replace(SCENARIOS[_name], name=f"{_name}-nolog", server=NOLOG)


def _on_service(setup: Callable[[Ctx, Scenario], None]) -> Callable[[Ctx, Scenario], None]:
    """`setup` done through the service: for a variant that shares its database (SHARED)."""
    return lambda ctx, sc: setup(ctx, replace(sc, server="service"))


READ_LAG = 200  # pairs: 400 requests, tens of milliseconds, far above an append's p99


def append_read_script(ctx: Ctx, sc: Scenario) -> str:
    """Appends and reads in turn, as agents do, over the small memories: each pair appends a
    message to one memory and reads the last 20 of the memory appended READ_LAG pairs before,
    whose append has long been answered. So every read finds its memory changed since it was
    last read, and the read cache never answers: what the cache costs when it cannot help."""
    head = {**memory_bench.JSON, **ctx.auth()}
    conversation = memory_bench.SMALL + "{n}"
    append = {"conversationId": conversation, "role": "user", "content": memory_bench.TEXT_200}
    before, after = json.dumps(append).split("{n}")
    lines = [f"wrk.headers[{harness.lua_str(k)}] = {harness.lua_str(v)}" for k, v in head.items()]
    lines += [
        f"local nkeys, threads = {memory_bench.SMALL_MEMORIES}, {ctx.threads}",
        "local next_tid = 0",
        "function setup(thread) thread:set('tid', next_tid); next_tid = next_tid + 1 end",
        "local counter = -1",
        "function request()",
        "  counter = counter + 1",
        "  local n = tostring((math.floor(tid * nkeys / threads) + math.floor(counter / 2))"
        " % nkeys)",
        "  if counter % 2 == 1 then",
        f"    n = tostring((tonumber(n) - {READ_LAG}) % nkeys)",
        "  end",
        "  if counter % 2 == 0 then",
        f"    local body = {harness.lua_str(before)} .. n .. {harness.lua_str(after)}",
        '    return wrk.format("POST", "/api/memory", nil, body)',
        "  end",
        f"  local path = {harness.lua_str('/api/memory?conversationId=' + memory_bench.SMALL)}"
        ' .. n .. "&lastN=20"',
        '  return wrk.format("GET", path, nil, nil)',
        "end",
    ]
    return "\n".join(lines) + "\n"


# The last-20 reads with the read cache off: what a read costs when its memory has changed since
# it was last read (an agent that appends before it reads). The same memories as the service's.
for _name, _setup in [
    ("memory-last20-10", memory_bench.populate_small),
    ("memory-last20-100k", memory_bench.populate_big),
]:
    SCENARIOS[f"{_name}-nocache"] = replace(
        SCENARIOS[_name], name=f"{_name}-nocache", server=NOCACHE, setup=_on_service(_setup)
    )
SCENARIOS["memory-append-read"] = replace(
    SCENARIOS["memory-last20-10"], name="memory-append-read", script=append_read_script
)
SCENARIOS["memory-append-read-nocache"] = replace(
    SCENARIOS["memory-append-read"],
    name="memory-append-read-nocache",
    server=NOCACHE,
    setup=_on_service(memory_bench.populate_small),
)


@dataclass
class Suite:
    scenarios: list[str]
    reference: str
    targets: dict[str, float]  # scenario -> minimum ratio to the reference
    # scenario -> (other scenario, maximum cost ratio): this one's time per request (1/req/s,
    # and p50) at most that many times the other's, paired per round.
    costs: dict[str, tuple[str, float]] = field(default_factory=dict)
    # scenario -> (other scenario, maximum p99 ratio): this one's p99 latency at most that many
    # times the other's, paired per round (issue 13: write p99 <= 2x the baseline insert's).
    tails: dict[str, tuple[str, float]] = field(default_factory=dict)
    # name -> measurement run once after setup, before the rounds; its dict goes to the report.
    probes: dict[str, Callable[[Ctx], dict]] = field(default_factory=dict)
    # scenario -> (keys per request, the scenario of single requests it replaces, the minimum
    # ratio of keys per second, paired per round).
    batches: dict[str, tuple[int, str, float]] = field(default_factory=dict)


SUITES = {
    # Targets of the second round (issue 13), with the service's default settings.
    "kv": Suite(
        ["baseline-insert", "baseline-hello", "kv-set", "kv-get"],
        "baseline-insert",
        {"kv-set": 0.9, "kv-get": 2.0},
        costs={"kv-get": ("baseline-hello", 1 / 0.6)},  # kv-get >= 0.6x GET /hello
        tails={"kv-set": ("baseline-insert", 2.0)},
    ),
    "baseline": Suite(["baseline-insert", "baseline-hello"], "baseline-insert", {}),
    # Issue 22: a batch get of 100 keys reads keys >= 20x as fast as 100 single gets.
    "batch": Suite(
        ["kv-get", "kv-batch-get-100", "kv-get-64", "kv-batch-get-100-64"],
        "kv-get",
        {},
        batches={
            "kv-batch-get-100": (kv_batch_bench.BATCH, "kv-get", 20.0),
            "kv-batch-get-100-64": (kv_batch_bench.BATCH, "kv-get-64", 20.0),
        },
    ),
    # The access log, on by default, may cost at most 10% of any scenario.
    "accesslog": Suite(
        [
            "baseline-insert",
            *(
                name
                for base in ["kv-set", "kv-get", "memory-add", "memory-last20-10"]
                for name in (base, f"{base}-nolog")
            ),
        ],
        "baseline-insert",
        {},
        costs={
            base: (f"{base}-nolog", 1.10)
            for base in ["kv-set", "kv-get", "memory-add", "memory-last20-10"]
        },
    ),
    "memory": Suite(
        [
            "baseline-insert",
            "baseline-read20",
            "kv-set",  # for context: the service's other write, through the same machinery
            "memory-add",
            "memory-append-10",
            "memory-append-100k",
            "memory-last20-10",
            "memory-last20-10-nocache",  # the reads again when their memory has changed
            "memory-last20-100k",
            "memory-last20-100k-nocache",
            "memory-append-read",  # appends and reads in turn: the cache never answers
            "memory-append-read-nocache",
        ],
        "baseline-insert",
        {"memory-add": 0.9, "memory-last20-10": 1.5},
        costs={
            "memory-append-100k": ("memory-append-10", 1.3),
            "memory-last20-100k": ("memory-last20-10", 1.3),
            "memory-last20-10": ("baseline-read20", 1 / 0.8),  # >= 0.8x the raw read of 20 rows
            # The same targets for reads that miss the read cache: they read every time.
            "memory-last20-100k-nocache": ("memory-last20-10-nocache", 1.3),
            "memory-last20-10-nocache": ("baseline-read20", 1 / 0.8),
            # A cache that never answers costs little (keeping each page it reads).
            "memory-append-read": ("memory-append-read-nocache", 1.10),
        },
        tails={
            "memory-add": ("baseline-insert", 2.0),
            "memory-append-10": ("baseline-insert", 2.0),
        },
        probes={"read-100k-page-by-page": memory_bench.probe_read_memory},
    ),
}


def tail_verdicts(suite: Suite, results: dict[str, list[harness.WrkResult]]) -> list[dict]:
    """Per-round p99 ratios (this one's / the other's), medians over rounds."""
    out = []
    for name, (other, limit) in suite.tails.items():
        ratio = harness.median(
            [r.p99_ms / o.p99_ms for r, o in zip(results[name], results[other], strict=True)]
        )
        out.append(
            {
                "scenario": name,
                "against": other,
                "max_p99_ratio": limit,
                "p99_ratio": ratio,
                "verdict": "PASS" if ratio <= limit else "MISS",
            }
        )
    return out


def cost_verdicts(suite: Suite, results: dict[str, list[harness.WrkResult]]) -> list[dict]:
    """Per-round (other's req/s / this one's req/s) and p50 ratios, medians over rounds."""
    out = []
    for name, (other, limit) in suite.costs.items():
        rps = harness.median(
            [o.rps / r.rps for r, o in zip(results[name], results[other], strict=True) if r.rps]
        )
        p50 = harness.median(
            [r.p50_ms / o.p50_ms for r, o in zip(results[name], results[other], strict=True)]
        )
        worst = max(rps, p50)
        out.append(
            {
                "scenario": name,
                "against": other,
                "max_cost_ratio": limit,
                "cost_ratio_rps": rps,
                "cost_ratio_p50": p50,
                "verdict": "PASS" if worst <= limit else "MISS",
            }
        )
    return out


# --- servers -------------------------------------------------------------------------------------


def start_baseline(tmp: Path) -> Server:
    port = harness.free_port()
    cmd = [
        sys.executable,
        str(BENCH / "baseline_app.py"),
        "--port",
        str(port),
        "--db",
        str(tmp / "baseline.db"),
    ]
    return harness.start_server("baseline", cmd, port, tmp / "baseline.log")


def create_service_db(tmp: Path, exe: str | None = None) -> tuple[Path, str]:
    """The service's database with a `bench` workspace, made with the CLI (`exe`, else this
    checkout's) as a user would; returns the file and the workspace's key."""
    exe = exe or service_exe()
    db = tmp / "ms.db"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp)}  # nothing outside the temp dir
    # A quota of 1 TiB: the quota must never refuse a benchmark write.
    create = [exe, "workspace", "create", "bench", "--quota", str(2**40), "--json"]
    created = subprocess.run(
        [*create, "--database-url", f"sqlite+aiosqlite:///{db}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if created.returncode != 0:
        raise SystemExit(
            f"`memory-service workspace create` failed ({created.returncode}):\n"
            f"{created.stderr}{created.stdout}"
        )
    return db, json.loads(created.stdout)["key"]


def service_exe() -> str:
    exe = Path(sys.executable).with_name("memory-service")
    found = str(exe) if exe.exists() else shutil.which("memory-service")
    if not found:
        raise SystemExit("memory-service is not installed: run `./dev setup` first")
    return found


def start_service(tmp: Path, name: str, db: Path, exe: str | None = None) -> Server:
    """`memory-service serve` with the settings a user gets (the access log on), or, for a
    variant (VARIANTS), with one setting changed: e.g. what the log costs is the ratio of
    `service` to `service-nolog`.
    `exe`: another install's `memory-service` (bench/compare.py), else this checkout's."""
    env = {**os.environ, "XDG_DATA_HOME": str(tmp), **VARIANTS.get(name, {})}
    port = harness.free_port()
    url = f"sqlite+aiosqlite:///{db}"
    cmd = [exe or service_exe(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd.append("--database-url")
    return harness.start_server(name, [*cmd, url], port, tmp / f"{name}.log", env=env)


def start_workspace_service(tmp: Path) -> tuple[Server, str]:
    """A new database with the `bench` workspace, and the service on it with the user's
    defaults; returns the server and the workspace's key."""
    db, key = create_service_db(tmp)
    return start_service(tmp, "service", db), key


# --- report --------------------------------------------------------------------------------------


def verdicts(suite: Suite, summary: dict[str, dict]) -> list[dict]:
    out = []
    for name, target in suite.targets.items():
        s = summary[name]
        verdict = (
            "INVALID (error responses)"
            if s["errors"]
            else "PASS"
            if s["ratio"] >= target
            else "MISS"
        )
        out.append(
            {
                "scenario": name,
                "reference": suite.reference,
                "target": target,
                "ratio": s["ratio"],
                "verdict": verdict,
            }
        )
    return out


def print_report(
    suite: Suite, summary: dict[str, dict], targets: list[dict], rss: dict[str, dict]
) -> None:
    ref = suite.reference
    print(
        f"\n{'scenario':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'x ' + ref:>{len(ref) + 4}}{'errors':>8}   req/s per round"
    )
    for name, s in summary.items():
        rounds = " ".join(f"{r:,.0f}" for r in s["rps_rounds"])
        print(
            f"{name:<18}{s['rps_median']:>9,.0f}{s['p50_ms_median']:>9.2f}"
            f"{s['p99_ms_median']:>9.2f}{s['ratio']:>{len(ref) + 3}.2f}x{s['errors']:>8}"
            f"   {rounds}"
        )
    if targets:
        print("\ntargets (median of per-round ratios):")
        for t in targets:
            print(
                f"  {t['scenario']:<10} >= {t['target']:.2f}x {t['reference']}:"
                f" {t['ratio']:.2f}x  {t['verdict']}"
            )
    print(
        "\nserver memory (KiB): "
        + ", ".join(
            f"{name} {m['rss_start_kib']:,} at start, peak {m['peak_rss_kib']:,}"
            for name, m in rss.items()
        )
    )


def prepare(ctx: Ctx, scenarios: list[Scenario], args: argparse.Namespace) -> dict[str, Path]:
    """Each scenario set up, checked (a 2xx, or the run stops) and warmed up; its wrk script."""
    scripts = {}
    for sc in scenarios:
        if sc.setup:
            sc.setup(ctx, sc)
        sc.check(ctx)
        scripts[sc.name] = ctx.tmp / f"{sc.name}.lua"
        scripts[sc.name].write_text(sc.lua(ctx))
        if args.warmup > 0:
            url = ctx.servers[sc.server].url
            harness.run_wrk(url, scripts[sc.name], args.warmup, args.connections, args.threads)
    return scripts


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", choices=sorted(SUITES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds per scenario, unmeasured")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit(harness.WRK_MISSING)

    suite = SUITES[args.suite]
    scenarios = [SCENARIOS[n] for n in suite.scenarios]
    tmp = Path(tempfile.mkdtemp(prefix="ms-bench-"))
    servers: dict[str, Server] = {}
    try:
        api_key = ""
        needed = {sc.server for sc in scenarios}
        if "baseline" in needed:
            servers["baseline"] = start_baseline(tmp)
        if needed & {"service", *VARIANTS}:
            db, api_key = create_service_db(tmp)
            for variant in needed & set(VARIANTS):  # the same workspace and key
                own = db if variant in SHARED else tmp / f"ms-{variant}.db"
                if own != db:
                    shutil.copyfile(db, own)
                servers[variant] = start_service(tmp, variant, own)
            if "service" in needed:
                servers["service"] = start_service(tmp, "service", db)
        ctx = Ctx(servers, api_key, args.threads, tmp)
        rss = {
            n: {"pid": s.pid, "rss_start_kib": harness.rss_kib(s.pid)} for n, s in servers.items()
        }

        scripts = prepare(ctx, scenarios, args)
        probes = {}
        for probe_name, probe in suite.probes.items():
            probes[probe_name] = probe(ctx)
            print(f"probe {probe_name}: {json.dumps(probes[probe_name])}", flush=True)

        def run_one(name: str, rnd: int) -> harness.WrkResult:
            sc = SCENARIOS[name]
            res = harness.run_wrk(
                servers[sc.server].url, scripts[name], args.duration, args.connections, args.threads
            )
            print(
                f"round {rnd + 1}/{args.rounds}  {name:<18}{res.rps:>9,.0f} req/s"
                f"  p50 {res.p50_ms:.2f} ms  p99 {res.p99_ms:.2f} ms"
                + (f"  ERRORS {res.errors}" if res.errors else ""),
                flush=True,
            )
            return res

        print(
            f"{args.suite}: {args.rounds} rounds x {len(scenarios)} scenarios x "
            f"{args.duration:g}s, {args.connections} connections, {args.threads} wrk threads"
        )
        results = harness.interleave(suite.scenarios, args.rounds, run_one)
        for name, s in servers.items():
            rss[name]["peak_rss_kib"] = harness.peak_rss_kib(s.pid)
    finally:
        for s in servers.values():
            harness.stop_server(s)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summary = harness.summarize(results, suite.reference)
    targets = verdicts(suite, summary)
    print_report(suite, summary, targets, rss)
    costs = cost_verdicts(suite, results)
    if costs:
        print("\ncosts (median of per-round ratios; 1.00 = the same cost):")
        for c in costs:
            print(
                f"  {c['scenario']} vs {c['against']}: {c['cost_ratio_rps']:.2f}x by req/s, "
                f"{c['cost_ratio_p50']:.2f}x by p50 (<= {c['max_cost_ratio']:.2f}x)  {c['verdict']}"
            )
    tails = tail_verdicts(suite, results)
    if tails:
        print("\ntails (median of per-round p99 ratios):")
        for t in tails:
            print(
                f"  {t['scenario']} p99 vs {t['against']}: {t['p99_ratio']:.2f}x"
                f" (<= {t['max_p99_ratio']:.2f}x)  {t['verdict']}"
            )
    per_key = kv_batch_bench.verdicts(suite.batches, results)
    if per_key:
        print("\nbatches (keys per second, median of per-round ratios to the single requests):")
        for k in per_key:
            print(
                f"  {k['scenario']:<20} {k['keys_per_s']:>9,.0f} keys/s = {k['ratio']:.1f}x"
                f" {k['against']} (>= {k['target']:.0f}x)  {k['verdict']}"
            )
    for probe_name, figures in probes.items():
        print(f"\nprobe {probe_name}:")
        for k, v in figures.items():
            print(f"  {k}: {v:,}")

    harness.write_results(
        args.suite,
        vars(args),
        {
            "summary": summary,
            "targets": targets,
            "costs": costs,
            "tails": tails,
            "probes": probes,
            "batches": per_key,
            "memory": rss,
            "runs": {
                n: [{k: v for k, v in asdict(r).items() if k != "raw"} for r in runs]
                for n, runs in results.items()
            },
        },
        lead="\n",
    )


if __name__ == "__main__":
    main()
