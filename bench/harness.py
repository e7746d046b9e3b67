"""Benchmark plumbing, stdlib only: servers as separate processes, wrk runs, RSS, medians.

Nothing here asserts on time; it measures and reports.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

WRK_MISSING = (
    "wrk is not installed. Install it first:\n"
    "  Debian/Ubuntu: sudo apt-get update && sudo apt-get install -y wrk\n"
    "  macOS:         brew install wrk\n"
    "  elsewhere:     https://github.com/wg/wrk (make, then put `wrk` on PATH)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- servers -------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_server(
    name: str,
    cmd: Sequence[str],
    port: int,
    log: Path,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Server:
    """Start `cmd` in its own session (output to `log`) and wait until `port` accepts."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    server = Server(name, proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited with code {proc.returncode} before listening on port {port}:\n"
                f"{server.log_tail()}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.1)
    stop_server(server)
    raise RuntimeError(
        f"{name} did not listen on port {port} within {timeout:.0f}s:\n{server.log_tail()}"
    )


def stop_server(server: Server, timeout: float = 10.0) -> None:
    """SIGTERM the server's process group (its pid), then SIGKILL if it is still alive.

    A worker that holds an aiosqlite thread may ignore SIGTERM; hence the fallback.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if server.proc.poll() is not None:
            return
        try:
            os.killpg(server.pid, sig)  # start_new_session: its process group id is its pid
        except ProcessLookupError:
            return
        try:
            server.proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue
    server.proc.wait(timeout=timeout)


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One plain request (for setup and checks); returns (status, body) even for 4xx/5xx."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- memory --------------------------------------------------------------------------------------


def _proc_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (scanning /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def _status_kib(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kib(pid: int) -> int:
    """Peak resident memory (VmHWM) of `pid` plus its descendants, in KiB; 0 if unknown."""
    return sum(_status_kib(p, "VmHWM") for p in _proc_tree(pid))


def rss_kib(pid: int) -> int:
    """Current resident memory (VmRSS) of `pid` plus its descendants, in KiB."""
    return sum(_status_kib(p, "VmRSS") for p in _proc_tree(pid))


# --- wrk -----------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors + non-2xx/3xx responses
    raw: str = field(repr=False, default="")


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * _UNITS_MS[unit]


def parse_wrk(out: str) -> WrkResult:
    """Parse `wrk --latency` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if not rps:
        raise RuntimeError(f"could not parse wrk output:\n{out}")
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)[ \t]*$", out, re.M))  # "1.01s " ends in a space
    requests = re.search(r"^\s+(\d+) requests in", out, re.M)
    errors = sum(
        int(n)
        for n in re.findall(
            r"(?:connect|read|write|timeout) (\d+)", "".join(re.findall(r"Socket errors:.*", out))
        )
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=_ms(pct["50"]),
        p99_ms=_ms(pct["99"]),
        requests=int(requests.group(1)) if requests else 0,
        errors=errors,
        raw=out,
    )


def run_wrk(
    url: str, script: Path, duration: float, connections: int, threads: int = 2, timeout_s: int = 10
) -> WrkResult:
    """Run wrk against `url` (base URL; the Lua script chooses paths) and parse its figures."""
    if shutil.which("wrk") is None:
        raise SystemExit(WRK_MISSING)
    cmd = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{duration:g}s",
        f"--timeout={timeout_s}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr}\n{proc.stdout}")
    return parse_wrk(proc.stdout)


# --- lua -----------------------------------------------------------------------------------------


def lua_str(data: str | bytes) -> str:
    """A Lua string literal for arbitrary bytes."""
    raw = data.encode() if isinstance(data, str) else data
    return (
        '"'
        + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\{b:03d}" for b in raw)
        + '"'
    )


def lua_script(
    method: str,
    path: str,
    body: bytes | str = b"",
    headers: dict[str, str] | None = None,
    nkeys: int = 1,
    threads: int = 2,
) -> str:
    """A wrk script sending `method path` with `body` and `headers`.

    Each `{n}` in `path`, `body` or a header's value becomes a counter that runs over
    0..nkeys-1; each wrk thread starts at its own offset, so the threads together spread over
    all `nkeys` values. Without `{n}` the request is static and wrk builds it once.
    """
    varying = {k: v for k, v in (headers or {}).items() if "{n}" in v}
    headers = {k: v for k, v in (headers or {}).items() if k not in varying}
    # work on bytes (as latin-1 text) so that any UTF-8 in a template survives the split
    body_s = (body.encode() if isinstance(body, str) else body).decode("latin-1")
    path = path.encode().decode("latin-1")
    lines = [f"wrk.method = {lua_str(method)}"]
    lines += [f"wrk.headers[{lua_str(k)}] = {lua_str(v)}" for k, v in (headers or {}).items()]
    if "{n}" not in path and "{n}" not in body_s and not varying:
        lines.append(f"wrk.path = {lua_str(path.encode('latin-1'))}")
        if body_s:
            lines.append(f"wrk.body = {lua_str(body_s.encode('latin-1'))}")
        return "\n".join(lines) + "\n"

    def parts(text: str) -> str:
        return "{" + ", ".join(lua_str(p.encode("latin-1")) for p in text.split("{n}")) + "}"

    lines += [
        f"local path_parts, body_parts = {parts(path)}, {parts(body_s)}",
        f"local nkeys, threads = {nkeys}, {threads}",
        "local next_tid = 0",
        "function setup(thread) thread:set('tid', next_tid); next_tid = next_tid + 1 end",
        "local counter = -1",
        "function request()",
        "  counter = counter + 1",
        "  local n = tostring((math.floor(tid * nkeys / threads) + counter) % nkeys)",
        "  local body = table.concat(body_parts, n)",
        *(f"  wrk.headers[{lua_str(k)}] = table.concat({parts(v)}, n)" for k, v in varying.items()),
        "  return wrk.format(nil, table.concat(path_parts, n), nil, body ~= '' and body or nil)",
        "end",
    ]
    return "\n".join(lines) + "\n"


# --- statistics and interleaving -----------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def interleave(
    names: Sequence[str], rounds: int, run_one: Callable[[str, int], WrkResult]
) -> dict[str, list[WrkResult]]:
    """Run every scenario once per round, in order (A B A B ...), `rounds` times."""
    results: dict[str, list[WrkResult]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names:
            results[name].append(run_one(name, r))
    return results


def summarize(results: dict[str, list[WrkResult]], reference: str) -> dict[str, dict]:
    """Medians per scenario, and the ratio to `reference`: the median of per-round ratios
    (each round's pair ran minutes apart at most, so pairing cancels the machine's drift)."""
    ref = [r.rps for r in results[reference]]
    summary = {}
    for name, runs in results.items():
        rps = [r.rps for r in runs]
        summary[name] = {
            "rps_median": median(rps),
            "rps_rounds": rps,
            "p50_ms_median": median([r.p50_ms for r in runs]),
            "p99_ms_median": median([r.p99_ms for r in runs]),
            "errors": sum(r.errors for r in runs),
            "requests": sum(r.requests for r in runs),
            "ratio": median([a / b for a, b in zip(rps, ref, strict=True) if b]),
        }
    return summary


def write_results(suite: str, options: dict, figures: dict, *, lead: str = "") -> Path:
    """`bench/results/<suite>-<time>.json` (gitignored): the options, the machine and its load
    after the run, and the figures; prints where it went."""
    out = (
        Path(__file__).resolve().parent
        / "results"
        / f"{suite}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(exist_ok=True)
    machine = {
        "cpus": os.cpu_count(),
        "loadavg_after": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    body = {"suite": suite, "options": options, "machine": machine, **figures}
    out.write_text(json.dumps(body, indent=2) + "\n")
    print(f"{lead}wrote {out.relative_to(out.parent.parent.parent)}")
    return out
