"""The services of one app instance, built from its settings and its database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..clock import now_ms
from ..settings import Settings
from ..storage.database import Database
from ..storage.migrations import head_revision
from .cursors import Cursors
from .health import HealthService
from .kv import KvService
from .kv_batch import KvBatchService
from .memory import MemoryService
from .metrics import Metrics
from .ratelimit import RateLimiter, limiter_from
from .stats import StatsService
from .workspaces import WorkspaceService


@dataclass
class Services:
    settings: Settings
    db: Database
    metrics: Metrics
    limiter: RateLimiter | None  # None when rate limiting is off
    cursors: Cursors
    health: HealthService
    workspaces: WorkspaceService
    kv: KvService
    kv_batch: KvBatchService
    memory: MemoryService
    stats: StatsService

    @classmethod
    def build(cls, settings: Settings, clock: Callable[[], int] = now_ms) -> Services:
        """`clock` (milliseconds) is injectable so tests can move time past a TTL."""
        db = Database(settings)
        metrics = Metrics()
        cursors = Cursors(db, settings)
        return cls(
            settings=settings,
            db=db,
            metrics=metrics,
            limiter=limiter_from(settings.rate_limit_rps, settings.rate_limit_burst),
            cursors=cursors,
            health=HealthService(
                db, head_revision(settings.database_url), settings.ready_timeout_seconds
            ),
            workspaces=WorkspaceService(db, settings),
            kv=KvService(db, settings, clock=clock, metrics=metrics, cursors=cursors),
            kv_batch=KvBatchService(db, settings, clock=clock, metrics=metrics, cursors=cursors),
            memory=MemoryService(db, settings, clock=clock, metrics=metrics, cursors=cursors),
            stats=StatsService(db, clock),
        )
