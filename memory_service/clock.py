"""Wall-clock time in integer milliseconds, the unit every stored timestamp uses."""

import time
from datetime import UTC, datetime
from typing import overload


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# The text of the last second formatted: the timestamps of one answer (and of answers close in
# time) mostly share it, and formatting a datetime costs ten times the lookup.
_last_second: tuple[int, str] = (-1, "")


@overload
def iso(ms: int) -> str: ...
@overload
def iso(ms: None) -> None: ...
@overload
def iso(ms: int | None) -> str | None: ...


def iso(ms: int | None) -> str | None:
    """`2026-01-31T12:00:00.123Z`: UTC, millisecond precision."""
    global _last_second
    if ms is None:
        return None
    second, millis = divmod(ms, 1000)
    cached, prefix = _last_second
    if cached != second:
        prefix = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (second, prefix)
    return f"{prefix}.{millis:03d}Z"
