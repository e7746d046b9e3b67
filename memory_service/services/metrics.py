"""Prometheus metrics of one app instance.

Each app has its own CollectorRegistry (never prometheus-client's global one): tests build several
apps in one process, and two apps must not share or collide on counters. Labels are only ever
bounded sets (HTTP method, route template, status, error kind), never a raw path, key or
workspace, so the number of series stays fixed however many keys and workspaces exist.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .errors import PreconditionFailed, QuotaExceeded, RateLimited, ServiceError, Unauthorized

# Request latencies of this service run from ~50 us (a cached KV read) to seconds (large values).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    # Litestar appends the charset to text/* media types itself.
    content_type = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "memory_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "memory_http_request_duration_seconds",
            "Time from request start to the last byte of the response.",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.memories_created = Counter(
            "memory_memories_created", "Memories created by an add.", registry=r
        )
        self.messages_appended = Counter(
            "memory_messages_appended", "Messages appended to memories.", registry=r
        )
        self.kv_writes = Counter("memory_kv_writes", "KV values stored.", registry=r)
        self.kv_bytes_written = Counter(
            "memory_kv_written_bytes", "Bytes of KV values stored.", registry=r
        )
        self.conflicts = Counter(
            "memory_conflicts", "Conditional writes refused (412 Precondition Failed).", registry=r
        )
        self.quota_refusals = Counter(
            "memory_quota_refusals", "Writes refused by a workspace quota (413).", registry=r
        )
        self.auth_failures = Counter(
            "memory_auth_failures", "Requests with a missing or invalid credential.", registry=r
        )
        self.rate_limited = Counter(
            "memory_rate_limited", "Requests refused by the per-workspace rate limit.", registry=r
        )
        pages = Counter(
            "memory_page_reads",
            "Pages of memories read (GET /api/memory and the tools), by whether the page was "
            "answered from the read cache (its memory rows unchanged) or read anew.",
            ["source"],
            registry=r,
        )
        self._page_reads = {True: pages.labels("cache"), False: pages.labels("database")}
        # labels() validates and locks on every call; the label sets are few, so keep the children.
        self._children: dict[tuple[str, str, int], tuple] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in METHODS:  # a client may send any token as a method: bound the label
            method = "OTHER"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            labels = (method, route, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def page_read(self, cached: bool) -> None:
        self._page_reads[cached].inc()

    def count_refusal(self, exc: ServiceError) -> None:
        """The domain refusals that operators watch, whichever endpoint raised them."""
        if isinstance(exc, PreconditionFailed):
            self.conflicts.inc()
        elif isinstance(exc, QuotaExceeded):
            self.quota_refusals.inc()
        elif isinstance(exc, Unauthorized):
            self.auth_failures.inc()
        elif isinstance(exc, RateLimited):
            self.rate_limited.inc()

    def kv_written(self, nbytes: int) -> None:
        self.kv_writes.inc()
        self.kv_bytes_written.inc(nbytes)

    def messages_added(self, messages: int, memories_created: int = 0) -> None:
        if messages:
            self.messages_appended.inc(messages)
        if memories_created:
            self.memories_created.inc(memories_created)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
