"""Liveness and readiness."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..storage.database import Database
from ..storage.health import database_revision

log = logging.getLogger("memory_service.health")


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str


class HealthService:
    def __init__(self, db: Database, head: str | None, timeout: float) -> None:
        self.db = db
        self.head = head  # the migration this release needs, read once at start-up
        self.timeout = timeout

    async def readiness(self) -> Readiness:
        """Ready when the database answers within the timeout and its schema is at the head."""
        if not self.db.writable:
            return Readiness(False, "the database writer has stopped; restart the service")
        try:
            revision = await database_revision(self.db, self.timeout)
        except Exception as exc:  # any failure to reach the database means "not ready"
            # The class only: driver messages may name hosts and users; never URLs or passwords.
            log.warning("readiness: database unreachable (%s)", type(exc).__name__)
            return Readiness(False, "database unreachable")
        if revision != self.head:
            return Readiness(
                False,
                f"database schema is at migration {revision or 'none'}; this release needs "
                f"{self.head} (run `memory-service migrate`)",
            )
        return Readiness(True, "ready")
