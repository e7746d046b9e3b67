"""The synchronous client (httpx.Client)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

import httpx

from ..wire import messages as m
from . import _protocol as p
from .errors import StreamError

T = TypeVar("T")


class MemoryServiceClient:
    """`MemoryServiceClient(url, api_key)`; `.memory`, `.storage` and `.tools` hold the calls.

    Every error answer raises a MemoryServiceError subclass carrying the server's message and
    code (AuthError, NotFoundError, ConflictError, PreconditionFailedError, TooLargeError,
    QuotaExceededError, BadRequestError, RateLimitedError); see `memory_service.client.errors`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        self._own = http is None
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self.memory = Memory(self)
        self.storage = Storage(self)
        self.tools = Tools(self)

    def call(self, call: p.Call[T]) -> T:
        r = self._http.request(
            call.method,
            call.path,
            params=call.params,
            headers={**self._auth, **call.headers},
            content=call.content,
            json=call.json,
        )
        return p.parse_answer(call, r)

    def usage(self) -> p.Usage:
        return self.call(p.usage())

    def close(self) -> None:
        if self._own:
            self._http.close()

    def __enter__(self) -> MemoryServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Memory:
    """The memory block API (SPEC 3)."""

    def __init__(self, client: MemoryServiceClient) -> None:
        self._c = client

    def add(self, conversation_id: str, role: str, content: str, **kw: Any) -> p.Added:
        """Append a message. Keywords: block_id, block_name, idempotency_key, last_n,
        keep_system. `.memory.data` holds what this add appended."""
        return self._c.call(p.memory_add(conversation_id, role, content, **kw))

    def get(self, conversation_id: str | None = None, **kw: Any) -> p.MemoryPage:
        """Memories by conversation_id, block_id, block_name (at least one). Keywords also:
        last_n, keep_system, limit, cursor."""
        return self._c.call(p.memory_get(conversation_id, **kw))

    def get_all(self, **kw: Any) -> p.MemoryPage:
        return self._c.call(p.memory_get_all(**kw))

    def delete(self, conversation_id: str | None = None, **kw: Any) -> p.Deleted:
        return self._c.call(p.memory_delete(conversation_id, **kw))

    def conversations(
        self,
        *,
        block_id: str | None = None,
        prefix: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[p.Conversation]:
        """Every conversation id of the workspace (of a block, or starting with `prefix`), in
        order, with its block and message counts, fetched a page at a time."""
        cursor = None
        while True:
            page = self._c.call(
                p.memory_conversations_page(
                    block_id=block_id, prefix=prefix, limit=page_size, cursor=cursor
                )
            )
            yield from page.conversations
            if not page.next_cursor:
                return
            cursor = page.next_cursor


class Storage:
    """The KV store, with the call shapes of a Dify plugin's `session.storage`:
    `set(key, value: bytes)`, `get(key) -> bytes`, `delete(key)`, `exist(key) -> bool`."""

    def __init__(self, client: MemoryServiceClient) -> None:
        self._c = client

    def set(self, key: str, value: bytes, **kw: Any) -> p.Written:
        """Keywords: content_type, ttl (seconds), if_match ('"<version>"' or '*'),
        if_none_match ('*': create only)."""
        return self._c.call(p.storage_set(key, value, **kw))

    def get(self, key: str) -> bytes:
        return self.get_entry(key).value

    def get_entry(self, key: str) -> p.Entry:
        return self._c.call(p.storage_get_entry(key))

    def delete(self, key: str, *, if_match: str | None = None) -> int:
        """Returns the bytes freed; a missing key raises NotFoundError."""
        return self._c.call(p.storage_delete(key, if_match=if_match))

    def exist(self, key: str) -> bool:
        return self._c.call(p.storage_exist(key))

    def get_many(self, keys: Iterable[str]) -> list[p.BatchValue]:
        """Up to 1,000 keys in one request; a result per key, in order (`status` 200 with its
        `value`, else 404 or 413)."""
        return self._c.call(p.storage_get_many(keys))

    def exist_many(self, keys: Iterable[str]) -> list[p.BatchExists]:
        return self._c.call(p.storage_exist_many(keys))

    def set_many(
        self, items: Mapping[str, bytes] | Iterable[p.SetItem], *, atomic: bool = False
    ) -> p.BatchWritten:
        """Up to 1,000 keys in one transaction (`{key: bytes}` or SetItems with their own type,
        ttl and conditions). `atomic`: any key that fails raises its error, nothing stored;
        otherwise each result carries its own status."""
        return self._c.call(p.storage_set_many(items, atomic=atomic))

    def delete_many(
        self, items: Iterable[str | p.DeleteItem], *, atomic: bool = False
    ) -> p.BatchDeleted:
        return self._c.call(p.storage_delete_many(items, atomic=atomic))

    def list_values(
        self, prefix: str = "", *, page_size: int | None = None
    ) -> Iterator[p.KvValueItem]:
        """As `list`, each entry with its value."""
        cursor = None
        while True:
            page = self._c.call(p.storage_list_values_page(prefix, limit=page_size, cursor=cursor))
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def list(self, prefix: str = "", *, page_size: int | None = None) -> Iterator[p.KvItem]:
        """Every live key starting with `prefix`, in byte order, fetched a page at a time."""
        cursor = None
        while True:
            page = self._c.call(p.storage_list_page(prefix, limit=page_size, cursor=cursor))
            yield from page.items
            if not page.next_cursor:
                return
            cursor = page.next_cursor


class Tools:
    def __init__(self, client: MemoryServiceClient) -> None:
        self._c = client

    def list(self) -> list[dict[str, Any]]:
        return self._c.call(p.tool_list())

    def get(self, name: str) -> dict[str, Any]:
        return self._c.call(p.tool_get(name))

    def invoke(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        sse: bool = False,
        raise_on_error: bool = True,
    ) -> Iterator[m.ToolMessage | m.UnknownMessage]:
        """The tool's messages as they arrive (NDJSON, or server-sent events with `sse`).
        An `error` message raises ToolError (after the messages before it were yielded) unless
        `raise_on_error=False`; errors before the stream starts raise like any other call."""
        call = p.tool_invoke(name, params, sse)
        parser = p.parser_for(sse)
        headers = {**self._c._auth, **call.headers}
        with self._c._http.stream(call.method, call.path, json=call.json, headers=headers) as r:
            if r.status_code >= 400:
                r.read()
                p.raise_for_error(r)
            try:
                for data in r.iter_bytes():
                    for message in parser.feed(data):
                        yield p.checked(message, raise_on_error)
            except httpx.TransportError as exc:
                raise StreamError(f"the stream was cut: {exc}") from exc
            parser.close()

    def run(
        self, name: str, params: dict[str, Any] | None = None, *, sse: bool = False
    ) -> m.NodeOutputs:
        """Invoke and collect: the node outputs (text, files, json, variables) of SPEC 5."""
        return m.collect(self.invoke(name, params, sse=sse))
