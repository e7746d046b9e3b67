"""What the KV and memory services share: their database, settings, clock, metrics and cursors,
and the rule for a listing's page size."""

from __future__ import annotations

from collections.abc import Callable

from ..clock import now_ms
from ..settings import Settings
from ..storage.database import Database
from .cursors import Cursors
from .errors import BadRequest
from .metrics import Metrics


class WorkspaceDataService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Callable[[], int] = now_ms,
        *,
        metrics: Metrics | None = None,
        cursors: Cursors | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.metrics = metrics
        # One sealer per app (services/container.py passes it): the secret is read once.
        self.cursors = cursors or Cursors(db, settings)

    def page_limit(self, limit: int | None) -> int:
        """A listing's page size: the default when not given, else 1..max_page_size."""
        if limit is None:
            return self.settings.default_page_size
        if not 1 <= limit <= self.settings.max_page_size:
            raise BadRequest(
                f"limit must be between 1 and {self.settings.max_page_size}", code="invalid_limit"
            )
        return limit
