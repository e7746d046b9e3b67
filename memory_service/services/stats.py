"""The overview of a workspace: how many memories, messages, keys and named blocks it holds."""

from __future__ import annotations

from collections.abc import Callable

from ..clock import now_ms
from ..storage.database import Database
from ..storage.memory import Filter
from ..storage.stats import Counts, workspace_counts


class StatsService:
    def __init__(self, db: Database, clock: Callable[[], int] = now_ms) -> None:
        self.db = db
        self.clock = clock

    async def counts(self, workspace_id: int, flt: Filter | None = None) -> Counts:
        """Counts of one workspace (the memory figures narrowed by `flt` when given).

        A read in the reader threads, never on the event loop: it scans the workspace's memory
        rows (not their messages), which at 100,000 memories is too long to run inline.
        """
        return await self.db.read(workspace_counts, workspace_id, flt, self.clock())
