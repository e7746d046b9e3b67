"""The asyncio client (httpx.AsyncClient): the same calls as the sync one, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, TypeVar

import httpx

from ..wire import messages as m
from . import _protocol as p
from .errors import StreamError

T = TypeVar("T")


class AsyncMemoryServiceClient:
    """`AsyncMemoryServiceClient(url, api_key)`; `.memory`, `.storage` and `.tools` hold the
    calls, each a coroutine (`storage.list` and `tools.invoke` are async iterators)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = 30.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._own = http is None
        self._http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self.memory = AsyncMemory(self)
        self.storage = AsyncStorage(self)
        self.tools = AsyncTools(self)

    async def call(self, call: p.Call[T]) -> T:
        r = await self._http.request(
            call.method,
            call.path,
            params=call.params,
            headers={**self._auth, **call.headers},
            content=call.content,
            json=call.json,
        )
        return p.parse_answer(call, r)

    async def usage(self) -> p.Usage:
        return await self.call(p.usage())

    async def aclose(self) -> None:
        if self._own:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncMemoryServiceClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class AsyncMemory:
    def __init__(self, client: AsyncMemoryServiceClient) -> None:
        self._c = client

    async def add(self, conversation_id: str, role: str, content: str, **kw: Any) -> p.Added:
        return await self._c.call(p.memory_add(conversation_id, role, content, **kw))

    async def get(self, conversation_id: str | None = None, **kw: Any) -> p.MemoryPage:
        return await self._c.call(p.memory_get(conversation_id, **kw))

    async def get_all(self, **kw: Any) -> p.MemoryPage:
        return await self._c.call(p.memory_get_all(**kw))

    async def delete(self, conversation_id: str | None = None, **kw: Any) -> p.Deleted:
        return await self._c.call(p.memory_delete(conversation_id, **kw))

    async def conversations(
        self,
        *,
        block_id: str | None = None,
        prefix: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[p.Conversation]:
        cursor = None
        while True:
            page = await self._c.call(
                p.memory_conversations_page(
                    block_id=block_id, prefix=prefix, limit=page_size, cursor=cursor
                )
            )
            for item in page.conversations:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor


class AsyncStorage:
    def __init__(self, client: AsyncMemoryServiceClient) -> None:
        self._c = client

    async def set(self, key: str, value: bytes, **kw: Any) -> p.Written:
        return await self._c.call(p.storage_set(key, value, **kw))

    async def get(self, key: str) -> bytes:
        return (await self.get_entry(key)).value

    async def get_entry(self, key: str) -> p.Entry:
        return await self._c.call(p.storage_get_entry(key))

    async def delete(self, key: str, *, if_match: str | None = None) -> int:
        return await self._c.call(p.storage_delete(key, if_match=if_match))

    async def exist(self, key: str) -> bool:
        return await self._c.call(p.storage_exist(key))

    async def get_many(self, keys: Iterable[str]) -> list[p.BatchValue]:
        return await self._c.call(p.storage_get_many(keys))

    async def exist_many(self, keys: Iterable[str]) -> list[p.BatchExists]:
        return await self._c.call(p.storage_exist_many(keys))

    async def set_many(
        self, items: Mapping[str, bytes] | Iterable[p.SetItem], *, atomic: bool = False
    ) -> p.BatchWritten:
        return await self._c.call(p.storage_set_many(items, atomic=atomic))

    async def delete_many(
        self, items: Iterable[str | p.DeleteItem], *, atomic: bool = False
    ) -> p.BatchDeleted:
        return await self._c.call(p.storage_delete_many(items, atomic=atomic))

    async def list_values(
        self, prefix: str = "", *, page_size: int | None = None
    ) -> AsyncIterator[p.KvValueItem]:
        cursor = None
        while True:
            page = await self._c.call(
                p.storage_list_values_page(prefix, limit=page_size, cursor=cursor)
            )
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def list(
        self, prefix: str = "", *, page_size: int | None = None
    ) -> AsyncIterator[p.KvItem]:
        cursor = None
        while True:
            page = await self._c.call(p.storage_list_page(prefix, limit=page_size, cursor=cursor))
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor


class AsyncTools:
    def __init__(self, client: AsyncMemoryServiceClient) -> None:
        self._c = client

    async def list(self) -> list[dict[str, Any]]:
        return await self._c.call(p.tool_list())

    async def get(self, name: str) -> dict[str, Any]:
        return await self._c.call(p.tool_get(name))

    async def invoke(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        sse: bool = False,
        raise_on_error: bool = True,
    ) -> AsyncIterator[m.ToolMessage | m.UnknownMessage]:
        call = p.tool_invoke(name, params, sse)
        parser = p.parser_for(sse)
        headers = {**self._c._auth, **call.headers}
        async with self._c._http.stream(
            call.method, call.path, json=call.json, headers=headers
        ) as r:
            if r.status_code >= 400:
                await r.aread()
                p.raise_for_error(r)
            try:
                async for data in r.aiter_bytes():
                    for message in parser.feed(data):
                        yield p.checked(message, raise_on_error)
            except httpx.TransportError as exc:
                raise StreamError(f"the stream was cut: {exc}") from exc
            parser.close()

    async def run(
        self, name: str, params: dict[str, Any] | None = None, *, sse: bool = False
    ) -> m.NodeOutputs:
        collector = m.OutputCollector()
        async for message in self.invoke(name, params, sse=sse):
            collector.add(message)
        return collector.outputs()
