"""Suite `batch`: one batch get of 100 keys against 100 single gets, in keys per second.

`kv-batch-get-100` posts `{"keys": [...]}` with 100 of 1,000 keys of 1 KiB, the size of
`kv-get`'s values (written before the run with batch sets), so both sides read the same data
per key; `kv-batch-get-100-64` and `kv-get-64` the same with values of 64 bytes (a plugin's
cursor or setting), where what a request costs weighs more than the bytes. The target (issue
22): the batch reads keys at least 20 times as fast as single gets of the same values (keys per
second: a batch request's req/s x 100 against the single gets' req/s, paired per round).
A batch answer carries its values in base64 inside JSON; msgspec's base64 of 100 KiB alone is
about 0.2 ms here, a cost single gets (raw bytes) never pay.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import harness

BATCH = 100
GROUPS = 10  # {n}: which 100 keys; 1,000 keys in all


def batch_keys(prefix: str, n: str | int) -> list[str]:
    return [f"{prefix}{n}-{i}" for i in range(BATCH)]


def populate(prefix: str, value: bytes) -> Any:
    """A setup hook writing every key the scenario reads, 100 to a batch set."""

    def setup(ctx: Any, sc: Any) -> None:
        url = ctx.servers[sc.server].url
        item = base64.b64encode(value).decode()
        for n in range(GROUPS):
            keys = batch_keys(prefix, n)
            body = json.dumps({"items": [{"key": k, "value": item} for k in keys]})
            status, answer = harness.http(
                "POST",
                f"{url}/api/kv-batch/set",
                body.encode(),
                {"Content-Type": "application/json", **ctx.auth()},
            )
            stored = status == 200 and all(
                r["status"] in (200, 201) for r in json.loads(answer)["results"]
            )
            if not stored:
                raise SystemExit(f"{sc.name} setup: batch set answered {status}: {answer[:500]!r}")

    return setup


def scenarios(scenario: Any, populate_singles: Any, value_1k: bytes) -> list[Any]:
    """The batch scenarios, and the single gets of 64-byte values (kv-get is run.py's)."""
    value_64 = value_1k[:64]
    out = [
        scenario(
            "kv-get-64",
            "service",
            "GET",
            "/api/kv/bench-get64-{n}",
            auth=True,
            nkeys=1_000,
            setup=populate_singles("/api/kv/bench-get64-", value_64),
        )
    ]
    for name, prefix, value in [
        ("kv-batch-get-100", "bench-batch-", value_1k),
        ("kv-batch-get-100-64", "bench-batch64-", value_64),
    ]:
        out.append(
            scenario(
                name,
                "service",
                "POST",
                "/api/kv-batch/get",
                # `{n}` is replaced by the group (0..GROUPS-1) in each request.
                json.dumps({"keys": batch_keys(prefix, "{n}")}),
                {"Content-Type": "application/json"},
                auth=True,
                nkeys=GROUPS,
                setup=populate(prefix, value),
            )
        )
    return out


def verdicts(batches: dict[str, tuple[int, str, float]], results: dict[str, list]) -> list[dict]:
    """Keys per second of each batch scenario against its single requests, per round."""
    out = []
    for name, (keys, single, target) in batches.items():
        ratio = harness.median(
            [b.rps * keys / s.rps for b, s in zip(results[name], results[single], strict=True)]
        )
        out.append(
            {
                "scenario": name,
                "against": single,
                "keys_per_s": harness.median([b.rps * keys for b in results[name]]),
                "ratio": ratio,
                "target": target,
                "verdict": "PASS" if ratio >= target else "MISS",
            }
        )
    return out
