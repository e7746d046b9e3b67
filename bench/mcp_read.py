"""A memory read through MCP against the plain `GET /api/memory`, in the same run.

    python bench/mcp_read.py [--rounds 200] [--messages 20,1000]

One service process (started as `bench/run.py` starts it), one keep-alive httpx connection,
requests one at a time, interleaved A B C A B C ... so that the machine's drift hits all alike;
the report gives medians (and p90) over rounds, and each scenario's ratio to `get`. Nothing
asserts on time. Per memory size (messages of ~100 bytes):

- `get`: GET /api/memory?conversationId=... (the memory object as JSON).
- `tool-http`: POST /api/tools/memory_get/invoke (NDJSON): the same tool over plain HTTP, to
  tell the tool's own cost (output checks, transcript) from MCP's.
- `mcp-tool`: POST /mcp, JSON-RPC `tools/call` of `memory_get` with the same conversationId: what
  an MCP client sends for a read (stateless, so no session round trip precedes it). The answer
  holds the memory twice (structuredContent, and the same as text for older clients) plus the
  transcript.
- `mcp-resource`: POST /mcp, `resources/read` of `memory://<conversationId>/default`.

Raw HTTP on both sides, so the figures are the server's cost, not an MCP client library's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import harness
import httpx
from run import start_workspace_service
from tools_stream import populate

SCENARIOS = ["get", "tool-http", "mcp-tool", "mcp-resource"]
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def request(client: httpx.Client, name: str, auth: dict[str, str], conversation: str):  # noqa: ANN201
    if name == "get":
        return client.build_request(
            "GET", "/api/memory", params={"conversationId": conversation}, headers=auth
        )
    if name == "tool-http":
        return client.build_request(
            "POST",
            "/api/tools/memory_get/invoke",
            json={"parameters": {"conversationId": conversation}},
            headers=auth,
        )
    if name == "mcp-tool":
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "memory_get", "arguments": {"conversationId": conversation}},
        }
    else:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "resources/read",
            "params": {"uri": f"memory://{conversation}/default"},
        }
    return client.build_request("POST", "/mcp", json=body, headers={**auth, **MCP_HEADERS})


def check(name: str, response: httpx.Response, n: int) -> None:
    """The answer is the whole memory, not an error (a fast error would flatter a ratio)."""
    if response.status_code != 200:
        raise SystemExit(f"{name} answered {response.status_code}: {response.text[:500]}")
    body = response.json() if name != "tool-http" else None
    if name == "tool-http":
        lines = [json.loads(x) for x in response.content.splitlines()]
        (memories,) = [
            x["message"]["variable_value"]
            for x in lines
            if x["type"] == "variable" and x["message"]["variable_name"] == "memories"
        ]
        count, data = memories[0]["messageCount"], len(memories[0]["data"])
    elif name == "get":
        count = body["memories"][0]["messageCount"]
        data = len(body["memories"][0]["data"])
    elif name == "mcp-tool":
        result = body["result"]
        if result.get("isError"):
            raise SystemExit(f"{name}: {result['content']}")
        count = result["structuredContent"]["memories"][0]["messageCount"]
        data = len(result["structuredContent"]["memories"][0]["data"])
    else:
        memory = json.loads(body["result"]["contents"][0]["text"])
        count, data = memory["messageCount"], len(memory["data"])
    if count != n or data != min(n, 1000):
        raise SystemExit(f"{name}: {count} messages, {data} in data; expected {n}")


def measure(client: httpx.Client, name: str, auth: dict[str, str], conversation: str) -> dict:
    req = request(client, name, auth, conversation)
    start = time.perf_counter()
    response = client.send(req)
    elapsed = (time.perf_counter() - start) * 1000
    return {"ms": elapsed, "bytes": len(response.content), "response": response}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--messages", default="20,1000", help="memory sizes, comma-separated")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured rounds first")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = parser.parse_args()
    sizes = [int(x) for x in args.messages.split(",")]

    tmp = Path(tempfile.mkdtemp(prefix="ms-bench-mcp-"))
    server = None
    runs: dict[int, dict[str, list[dict]]] = {}
    try:
        server, key = start_workspace_service(tmp)
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for n in sizes:
                conversation = f"bench-{n}"
                populate(client, auth, n, conversation)
                for name in SCENARIOS:  # every answer checked once before timing
                    check(name, measure(client, name, auth, conversation)["response"], n)
                for _ in range(args.warmup):
                    for name in SCENARIOS:
                        measure(client, name, auth, conversation)
                runs[n] = {name: [] for name in SCENARIOS}
                for _ in range(args.rounds):
                    for name in SCENARIOS:
                        res = measure(client, name, auth, conversation)
                        res.pop("response")
                        runs[n][name].append(res)
        peak = harness.peak_rss_kib(server.pid)
    finally:
        if server is not None:
            harness.stop_server(server)
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summary: dict[int, dict[str, dict]] = {}
    print(f"memory read, {args.rounds} interleaved rounds per size (medians; p90 in brackets)")
    print(f"{'messages':>8}  {'scenario':<13}{'ms':>16}{'x get':>8}{'bytes':>11}")
    for n, by_name in runs.items():
        summary[n] = {}
        for name, rs in by_name.items():
            ms = sorted(r["ms"] for r in rs)
            summary[n][name] = {
                "ms_median": statistics.median(ms),
                "ms_p90": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
                "bytes": rs[-1]["bytes"],
            }
        base = summary[n]["get"]["ms_median"]
        for name, s in summary[n].items():
            s["ratio_to_get"] = s["ms_median"] / base
            print(
                f"{n:>8}  {name:<13}{s['ms_median']:>8.2f} [{s['ms_p90']:>5.2f}]"
                f"{s['ratio_to_get']:>7.2f}x{s['bytes']:>11,}"
            )
    print(f"\nservice peak memory: {peak:,} KiB")

    harness.write_results("mcp-read", vars(args), {"summary": summary, "peak_rss_kib": peak})


if __name__ == "__main__":
    main()
