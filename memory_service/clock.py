"""Wall-clock time in integer milliseconds, the unit every stored timestamp uses."""

import time
from datetime import UTC, datetime
from typing import overload


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@overload
def iso(ms: int) -> str: ...
@overload
def iso(ms: None) -> None: ...
@overload
def iso(ms: int | None) -> str | None: ...


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
