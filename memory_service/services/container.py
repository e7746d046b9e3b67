"""The services of one app instance, built from its settings and its database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..clock import now_ms
from ..settings import Settings
from ..storage.database import Database
from .kv import KvService
from .workspaces import WorkspaceService


@dataclass
class Services:
    settings: Settings
    db: Database
    workspaces: WorkspaceService
    kv: KvService

    @classmethod
    def build(cls, settings: Settings, clock: Callable[[], int] = now_ms) -> Services:
        """`clock` (milliseconds) is injectable so tests can move time past a TTL."""
        db = Database(settings)
        return cls(
            settings=settings,
            db=db,
            workspaces=WorkspaceService(db, settings),
            kv=KvService(db, settings, clock),
        )
