"""Group commit for PostgreSQL writes that are one function call each (migration 0004).

A write that holds its workspace's row lock until it commits holds it through a WAL flush: one
workspace then takes one write per flush, however many clients wait (about 400 a second on this
machine's disk, while plain inserts, which lock nothing, share flushes and reach several times
that). So writes that arrive while others are on their way are sent together, as one statement
calling the function once per write, in arrival order within each workspace: one round trip, one
commit, one flush for all of them, and each still decided under its workspace's lock exactly as
if alone. Batches are ordered by workspace (stable), so two statements always lock workspaces in
the same order and cannot deadlock; other writes lock a single workspace.

A batch that fails as a whole (a bug, a constraint) rolled back entirely, being one statement:
its writes are then retried one by one, so that one bad write fails alone, as on SQLite. A
database that cannot be reached fails the batch's writes with 503 (whether the commit happened is
unknown, so nothing is retried).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import StorageUnavailable
from .database import Database

MAX_BATCH = 64  # writes per statement
MAX_IN_FLIGHT = 2  # statements at once: one collects while the other commits


class PgBatcher:
    def __init__(
        self,
        db: Database,
        one: Callable[[Any, dict], Any],
        many: Callable[[Any, list[dict]], list[Any]],
    ) -> None:
        self.db = db
        self.one = one
        self.many = many
        self._pending: list[tuple[dict, asyncio.Future]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the batches run on

    async def submit(self, params: dict) -> Any:
        """The function's result row for `params`, once committed."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._in_flight:  # busy on another loop (an app driven from two): no sharing
                return await self.db.write_statement(self.one, params)
            self._loop = loop
        fut = loop.create_future()
        self._pending.append((params, fut))
        if self._in_flight < MAX_IN_FLIGHT:
            self._in_flight += 1
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # A caller that goes away does not take the others' batch down: the write stands or
        # fails regardless, like any write already sent.
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    await self._run(batch)
                except BaseException as exc:  # whoever still waits is told, never left hanging
                    for _, fut in batch:
                        _settle(fut, exc=RuntimeError(f"batched write failed: {exc!r}"))
                    raise
        finally:
            self._in_flight -= 1

    async def _run(self, batch: list[tuple[dict, asyncio.Future]]) -> None:
        if len(batch) == 1:
            await self._alone(*batch[0])
            return
        batch.sort(key=lambda item: item[0]["ws"])  # stable: arrival order within a workspace
        try:
            rows = await self.db.write_statement(self.many, [params for params, _ in batch])
        except StorageUnavailable as exc:
            for _, fut in batch:
                _settle(fut, exc=exc)
            return
        except Exception:  # nothing of it was committed: each write on its own, in order
            for params, fut in batch:
                await self._alone(params, fut)
            return
        if len(rows) != len(batch):
            raise RuntimeError(f"{len(rows)} results for {len(batch)} writes")
        for (_, fut), row in zip(batch, rows, strict=True):
            _settle(fut, row)

    async def _alone(self, params: dict, fut: asyncio.Future) -> None:
        try:
            row = await self.db.write_statement(self.one, params)
        except Exception as exc:
            _settle(fut, exc=exc)
        else:
            _settle(fut, row)


def _settle(fut: asyncio.Future, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
