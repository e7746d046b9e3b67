"""Pages of memories recently read, reused while the database shows them unchanged.

A page's answer is decided by its memory rows: messages are only ever appended (each append
moves the row's `next_seq`, `message_count` and `updated_at`) or deleted with their memory, and
a memory id is never reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL). A block's name
comes with the row too. So a read that finds the same rows as a cached page (one indexed query,
in the read's own snapshot) would read the same messages: it answers with the cached page instead
of reading and rendering them again. Nothing is invalidated by hand, so a write by another
process or replica is seen exactly as soon as an uncached read would see it.

A page is kept only once two reads in a row found the same rows (the first leaves its rows
only, `Seen`): a memory read after each change, as an agent appends then reads, is never kept,
which would cost every such read and help none.

What the cache holds is bounded: entries are dropped oldest-used first past
`MEMORY_READ_CACHE_MB`, and a page once its sealed cursors are `max_age` old, so that a cached
answer never hands out a cursor much older than a fresh read would.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

from ...storage.memory import MemoryRecord
from .results import MemoryOut

# What one entry costs beyond its messages' text (the rows, the objects, the dict slot), and
# one message beyond its text: estimates, so that many tiny pages cannot hide from the bound.
ENTRY_OVERHEAD = 1024
MESSAGE_OVERHEAD = 160


@dataclass(slots=True)
class Page:
    """A page of memories as `MemoryService.get_page` answers it."""

    memories: list[MemoryOut]
    next_cursor: str | None
    # The rows the page was read from: a later read that finds the same ones reuses the page.
    rows: list[MemoryRecord]
    sealed_at: float  # time.monotonic() when its cursors were sealed
    # The page's HTTP answer, kept with it by the HTTP layer (http/memory.py: `page_answer`)
    # so that a page served again is not rendered again.
    answer: bytes | None = None

    def size(self) -> int:
        """Bytes the entry holds, roughly: its text twice (the messages and the rendered
        answer) and a fixed cost per message and per entry."""
        text = sum(
            len(m.content) + MESSAGE_OVERHEAD for memory in self.memories for m in memory.messages
        )
        return 2 * text + ENTRY_OVERHEAD * (1 + len(self.memories))


@dataclass(slots=True)
class Seen:
    """The rows of a page read once: the page is kept if the next read finds them again."""

    rows: list[MemoryRecord]

    def size(self) -> int:
        return ENTRY_OVERHEAD * (1 + len(self.rows))


class ReadCache:
    """Least recently used pages, at most `max_bytes` of them (0: nothing is kept)."""

    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.bytes = 0
        self._pages: OrderedDict[Hashable, tuple[Page | Seen, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, key: Hashable) -> Page | Seen | None:
        """What is kept under `key`; a page only while its cursors are young enough to hand out
        again."""
        found = self._pages.get(key)
        if found is None:
            return None
        entry = found[0]
        if isinstance(entry, Page) and time.monotonic() - entry.sealed_at > self.max_age:
            self.drop(key)
            return None
        self._pages.move_to_end(key)
        return entry

    def keep(self, key: Hashable, before: Page | Seen | None, page: Page) -> None:
        """After a read of `page` that the cache did not answer (`before`: what was kept under
        `key`): the page itself when the read before found the same rows, else its rows."""
        if isinstance(before, Seen) and before.rows == page.rows:
            self.put(key, page)
        else:
            self.put(key, Seen(page.rows))

    def put(self, key: Hashable, page: Page | Seen) -> None:
        if not self.max_bytes:
            return
        self.drop(key)
        size = page.size()
        if size > self.max_bytes // 8:  # one large page must not push out many small ones
            return
        self._pages[key] = (page, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _key, (_page, oldest) = self._pages.popitem(last=False)
            self.bytes -= oldest

    def drop(self, key: Hashable) -> None:
        found = self._pages.pop(key, None)
        if found is not None:
            self.bytes -= found[1]
