"""Each adapter operation is written once, as a plan: a generator that yields the client calls
it needs and receives their answers. `run` drives it with the sync client, `arun` with the
async one, so the sync and async adapters cannot drift apart."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator
from typing import Any, TypeVar

from .. import _protocol as p
from ..aio import AsyncMemoryServiceClient
from ..errors import error_for_status
from ..sync import MemoryServiceClient

T = TypeVar("T")
Plan = Generator[p.Call[Any], Any, T]

# The most keys the batch endpoints take in one request.
BATCH = 1000


def run(client: MemoryServiceClient | None, plan: Plan[T], what: str) -> T:
    if client is None:
        raise TypeError(f"{what} has no sync client: pass client=MemoryServiceClient(...)")
    try:
        call = next(plan)
        while True:
            call = plan.send(client.call(call))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def arun(client: AsyncMemoryServiceClient | None, plan: Plan[T], what: str) -> T:
    if client is None:
        raise TypeError(
            f"{what} has no async client: pass async_client=AsyncMemoryServiceClient(...)"
        )
    try:
        call = next(plan)
        while True:
            call = plan.send(await client.call(call))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


def chunks(items: Iterable[T], size: int = BATCH) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def get_many(keys: list[str]) -> Plan[dict[str, bytes]]:
    """The values of the keys that exist, one request per 1,000 distinct keys."""
    found: dict[str, bytes] = {}
    for chunk in chunks(dict.fromkeys(keys)):
        results: list[p.BatchValue] = yield p.storage_get_many(chunk)
        for r in results:
            if r.status == 200 and r.value is not None:
                found[r.key] = r.value
            elif r.status != 404:
                raise_batch_error(r.key, r.status, r.code, r.error)
    return found


def set_many(items: list[p.SetItem]) -> Plan[None]:
    """All-or-nothing per request (1,000 keys); the last value of a repeated key wins."""
    last = {it.key: it for it in items}
    for chunk in chunks(last.values()):
        yield p.storage_set_many(chunk, atomic=True)
    return None


def delete_many(keys: Iterable[str]) -> Plan[None]:
    """Missing keys are no error."""
    for chunk in chunks(dict.fromkeys(keys)):
        done: p.BatchDeleted = yield p.storage_delete_many(chunk)
        for r in done.results:
            if r.status not in (200, 404):
                raise_batch_error(r.key, r.status, r.code, r.error)
    return None


def list_page(prefix: str, cursor: str | None, values: bool) -> p.Call[Any]:
    if values:
        return p.storage_list_values_page(prefix, cursor=cursor)
    return p.storage_list_page(prefix, cursor=cursor)


def raise_batch_error(key: str, status: int, code: str | None, error: str | None) -> None:
    raise error_for_status(status, f"{key!r}: {error or f'HTTP {status}'}", code, None)
