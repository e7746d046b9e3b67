"""/metrics: exactly the requests made, by route template and status, with bounded series."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from memory_service.services.metrics import Metrics


async def scrape(api) -> dict[str, list]:  # noqa: ANN001
    r = await api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def requests_by_label(families: dict) -> Counter:
    return Counter(
        {
            (s.labels["method"], s.labels["route"], s.labels["status"]): int(s.value)
            for s in families["memory_http_requests"]
            if s.name == "memory_http_requests_total"
        }
    )


def total(families: dict, name: str) -> float:
    return next(s.value for s in families[name] if s.name == f"{name}_total")


async def test_counters_show_exactly_the_requests_made(api) -> None:  # noqa: ANN001
    first = await scrape(api)
    assert requests_by_label(first) == Counter()  # a fresh app has counted nothing
    ws = await api.workspace("metered", quota=1000)
    c = api.client
    assert (await c.put("/api/kv/a", content=b"x" * 100, headers=ws)).status_code == 201
    assert (await c.put("/api/kv/b", content=b"yy", headers=ws)).status_code == 201
    stale = {**ws, "If-Match": '"999"'}
    assert (await c.put("/api/kv/a", content=b"z", headers=stale)).status_code == 412
    assert (await c.put("/api/kv/big", content=b"q" * 2000, headers=ws)).status_code == 413
    assert (await c.get("/api/kv/a")).status_code == 401
    assert (await c.get("/api/kv/a", headers={"X-API-Key": "msk_wrong"})).status_code == 401
    for _ in range(3):
        assert (await c.get("/api/kv/a", headers=ws)).status_code == 200
    assert (await c.get("/api/kv/missing", headers=ws)).status_code == 404
    add = {"conversationId": "c1", "role": "user", "content": "hello"}
    assert (await c.post("/api/memory", json=add, headers=ws)).status_code == 200
    assert (await c.post("/api/memory", json=add, headers=ws)).status_code == 200
    batch = {
        "conversationId": "c2",
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
    }
    assert (await c.post("/api/memory", json=batch, headers=ws)).status_code == 200
    assert (await c.get("/no/such/route/abc123")).status_code == 404
    assert (await c.get("/health")).status_code == 200

    families = await scrape(api)
    assert requests_by_label(families) == Counter(
        {
            ("GET", "/metrics", "200"): 1,
            ("POST", "/admin/workspaces", "201"): 1,
            ("PUT", "/api/kv/{key}", "201"): 2,
            ("PUT", "/api/kv/{key}", "412"): 1,
            ("PUT", "/api/kv/{key}", "413"): 1,
            ("GET", "/api/kv/{key}", "401"): 2,
            ("GET", "/api/kv/{key}", "200"): 3,
            ("GET", "/api/kv/{key}", "404"): 1,
            ("POST", "/api/memory", "200"): 3,
            ("GET", "unmatched", "404"): 1,
            ("GET", "/health", "200"): 1,
        }
    )
    latency = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): int(s.value)
        for s in families["memory_http_request_duration_seconds"]
        if s.name.endswith("_count")
    }
    assert latency == dict(requests_by_label(families))
    assert total(families, "memory_kv_writes") == 2
    assert total(families, "memory_kv_written_bytes") == 102
    assert total(families, "memory_conflicts") == 1
    assert total(families, "memory_quota_refusals") == 1
    assert total(families, "memory_auth_failures") == 2
    assert total(families, "memory_messages_appended") == 4
    assert total(families, "memory_memories_created") == 2
    assert total(families, "memory_rate_limited") == 0


async def test_series_stay_bounded_over_many_keys_and_workspaces(sqlite_api) -> None:  # noqa: ANN001
    api = sqlite_api
    names = [f"tenant-{i}" for i in range(25)]
    keys = []
    for n, name in enumerate(names):
        ws = await api.workspace(name)
        for i in range(40):  # 1,000 distinct keys in all
            key = f"{name}/doc-{n}-{i}"
            keys.append(key)
            r = await api.client.put(f"/api/kv/{key}", content=b"v", headers=ws)
            assert r.status_code == 201
        await api.client.get(f"/api/kv/{name}-absent", headers=ws)
    r = await api.client.get("/metrics")
    text = r.text
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    samples = [s for family in families.values() for s in family]
    # Only route templates: no key, workspace name or raw path ever becomes a label value.
    assert not any(name in text for name in names)
    assert not any("doc-" in value for s in samples for value in s.labels.values())
    assert set(requests_by_label(families)) == {
        ("POST", "/admin/workspaces", "201"),
        ("PUT", "/api/kv/{key}", "201"),
        ("GET", "/api/kv/{key}", "404"),
    }
    # Three label sets, each a counter (+created) and a histogram (buckets, count, sum, created),
    # plus the fixed domain counters (eight, and page reads by its two sources): the same
    # number of series at 1,000 keys as at 3.
    buckets = len(Metrics().latency._upper_bounds)  # noqa: SLF001
    assert len(samples) == 3 * (2 + buckets + 3) + 8 * 2 + 2 * 2
