"""What the sync and async clients share: each API call as a request description plus a parser
of its answer, the result types, error mapping, and incremental parsers of the two tool-message
framings. The two clients only differ in how they send a request and read a stream.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from ..wire import messages as m
from .errors import MemoryServiceError, StreamError, ToolError, error_for_status

T = TypeVar("T")


# --- results -------------------------------------------------------------------------------------


class Message(msgspec.Struct):
    role: str
    content: str
    seq: int | None = None


class Memory(msgspec.Struct, rename="camel"):
    key: str
    conversation_id: str
    block_id: str
    block_name: str | None
    data: list[Message]
    message_count: int
    created_at: str
    updated_at: str
    # Set when older messages exist than those in `data`.
    data_cursor: str | None = None


class MemoryPage(msgspec.Struct, rename="camel"):
    memories: list[Memory]
    message: str = ""
    next_cursor: str | None = None


class Added(msgspec.Struct, rename="camel"):
    memories: list[Memory]
    message: str = ""
    replayed: bool = False

    @property
    def memory(self) -> Memory:
        return self.memories[0]


class Deleted(msgspec.Struct, rename="camel"):
    deleted_count: int
    freed_bytes: int
    message: str = ""
    dry_run: bool = False


class Written(msgspec.Struct, rename="camel"):
    key: str
    version: int
    etag: str
    size: int
    created: bool
    expires_at: str | None = None
    message: str = ""


class KvItem(msgspec.Struct, rename="camel"):
    key: str
    size: int
    content_type: str
    version: int
    etag: str
    updated_at: str
    expires_at: str | None = None


class KvPage(msgspec.Struct, rename="camel"):
    items: list[KvItem]
    next_cursor: str | None = None
    message: str = ""


@dataclass(frozen=True)
class Entry:
    """A stored value with what the server says about it."""

    key: str
    value: bytes
    content_type: str
    etag: str
    version: int
    expires_at: str | None = None


class BatchValue(msgspec.Struct, rename="camel"):
    """One key of `get_many`: `status` 200 with its value, else 404 or 413 and a `code`."""

    key: str
    status: int
    code: str | None
    error: str | None
    value: bytes | None  # (base64 on the wire)
    content_type: str | None
    value_length: int | None
    version: int | None
    etag: str | None
    updated_at: str | None
    expires_at: str | None

    @property
    def found(self) -> bool:
        return self.status == 200


class BatchExists(msgspec.Struct, rename="camel"):
    key: str
    exists: bool
    status: int
    code: str | None
    content_type: str | None
    value_length: int | None
    version: int | None
    etag: str | None
    updated_at: str | None
    expires_at: str | None


class BatchWrite(msgspec.Struct, rename="camel"):
    """One key of `set_many`: 201 created, 200 replaced, else 412 or 413 and a `code`."""

    key: str
    status: int
    code: str | None
    error: str | None
    version: int | None
    etag: str | None
    size: int | None
    created: bool | None
    expires_at: str | None


class BatchWritten(msgspec.Struct):
    results: list[BatchWrite]
    atomic: bool
    message: str = ""


class BatchDelete(msgspec.Struct, rename="camel"):
    key: str
    status: int
    code: str | None
    error: str | None
    deleted: bool
    freed_bytes: int


class BatchDeleted(msgspec.Struct):
    results: list[BatchDelete]
    atomic: bool
    message: str = ""


class KvValueItem(msgspec.Struct, rename="camel"):
    key: str
    size: int
    content_type: str
    version: int
    etag: str
    updated_at: str
    value: bytes  # (base64 on the wire)
    expires_at: str | None = None


class KvValuePage(msgspec.Struct, rename="camel"):
    items: list[KvValueItem]
    next_cursor: str | None = None
    message: str = ""


class Conversation(msgspec.Struct, rename="camel"):
    conversation_id: str
    block_count: int
    message_count: int
    updated_at: str


class ConversationPage(msgspec.Struct, rename="camel"):
    conversations: list[Conversation]
    next_cursor: str | None = None
    message: str = ""


@dataclass(frozen=True)
class SetItem:
    """One key of `set_many`; `if_match` / `if_none_match` as the single set's headers."""

    key: str
    value: bytes
    content_type: str | None = None
    ttl: float | None = None
    if_match: str | None = None
    if_none_match: str | None = None


@dataclass(frozen=True)
class DeleteItem:
    key: str
    if_match: str | None = None
    if_none_match: str | None = None


class Usage(msgspec.Struct):
    workspace: str
    used: int
    quota: int
    message: str = ""


class _Results(msgspec.Struct, Generic[T]):
    results: list[T]


# --- calls ---------------------------------------------------------------------------------------


@dataclass
class Call(Generic[T]):
    """One request and how to read its answer (`parse` sees only 2xx answers)."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | None = None
    json: Any = None
    # Statuses that are answers rather than errors (e.g. 404 for `exist`).
    ok: tuple[int, ...] = ()


def kv_path(key: str) -> str:
    # Keys are opaque: '/' is encoded, and so is '.', so that no HTTP library treats "." or
    # ".." as a path segment to normalise away.
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, not {type(key).__name__}")
    return "/api/kv/" + quote(key, safe="").replace(".", "%2E")


def _params(**kw: Any) -> dict[str, Any]:
    out = {}
    for k, v in kw.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else v
    return out


def _decoder(t: type[T]) -> Callable[[httpx.Response], T]:
    dec = msgspec.json.Decoder(t)
    return lambda r: dec.decode(r.content)


def memory_add(
    conversation_id: str,
    role: str,
    content: str,
    *,
    block_id: str | None = None,
    block_name: str | None = None,
    idempotency_key: str | None = None,
    last_n: int | None = None,
    keep_system: bool = False,
) -> Call[Added]:
    body: dict[str, Any] = {"conversationId": conversation_id, "role": role, "content": content}
    for k, v in (("blockId", block_id), ("blockName", block_name), ("lastN", last_n)):
        if v is not None:
            body[k] = v
    if keep_system:
        body["keepSystem"] = True
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
    return Call("POST", "/api/memory", _decoder(Added), json=body, headers=headers)


def memory_get(
    conversation_id: str | None = None,
    *,
    block_id: str | None = None,
    block_name: str | None = None,
    last_n: int | None = None,
    keep_system: bool = False,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[MemoryPage]:
    params = _params(
        conversationId=conversation_id,
        blockId=block_id,
        blockName=block_name,
        lastN=last_n,
        keepSystem=keep_system or None,
        limit=limit,
        cursor=cursor,
    )
    return Call("GET", "/api/memory", _decoder(MemoryPage), params=params)


def memory_get_all(
    *,
    last_n: int | None = None,
    keep_system: bool = False,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[MemoryPage]:
    params = _params(lastN=last_n, keepSystem=keep_system or None, limit=limit, cursor=cursor)
    return Call("GET", "/api/memory/all", _decoder(MemoryPage), params=params)


def memory_delete(
    conversation_id: str | None = None,
    *,
    block_id: str | None = None,
    block_name: str | None = None,
    dry_run: bool = False,
) -> Call[Deleted]:
    params = _params(
        conversationId=conversation_id,
        blockId=block_id,
        blockName=block_name,
        dryRun=dry_run or None,
    )
    return Call("DELETE", "/api/memory", _decoder(Deleted), params=params)


def storage_set(
    key: str,
    value: bytes,
    *,
    content_type: str | None = None,
    ttl: float | None = None,
    if_match: str | None = None,
    if_none_match: str | None = None,
) -> Call[Written]:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    headers = {"Content-Type": content_type or "application/octet-stream"}
    if if_match is not None:
        headers["If-Match"] = if_match
    if if_none_match is not None:
        headers["If-None-Match"] = if_none_match
    return Call(
        "PUT",
        kv_path(key),
        _decoder(Written),
        params=_params(ttl=ttl),
        headers=headers,
        content=bytes(value),
    )


def storage_get_entry(key: str) -> Call[Entry]:
    def parse(r: httpx.Response) -> Entry:
        tag = r.headers.get("etag", "")
        return Entry(
            key=key,
            value=r.content,
            content_type=r.headers.get("content-type", m.DEFAULT_MIME),
            etag=tag,
            version=int(tag.strip('"')) if tag.strip('"').isdigit() else -1,
            expires_at=r.headers.get("x-expires-at"),
        )

    return Call("GET", kv_path(key), parse)


def storage_delete(key: str, *, if_match: str | None = None) -> Call[int]:
    headers = {"If-Match": if_match} if if_match is not None else {}
    return Call("DELETE", kv_path(key), lambda r: r.json()["freedBytes"], headers=headers)


def storage_exist(key: str) -> Call[bool]:
    return Call("HEAD", kv_path(key), lambda r: r.status_code == 200, ok=(404,))


def storage_list_page(
    prefix: str = "", *, limit: int | None = None, cursor: str | None = None
) -> Call[KvPage]:
    params = _params(prefix=prefix, limit=limit, cursor=cursor)
    return Call("GET", "/api/kv", _decoder(KvPage), params=params)


def _b64(value: bytes) -> str:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"value must be bytes, not {type(value).__name__}")
    return base64.b64encode(bytes(value)).decode("ascii")


def _conditions(body: dict[str, Any], if_match: str | None, if_none_match: str | None) -> None:
    if if_match is not None:
        body["ifMatch"] = if_match
    if if_none_match is not None:
        body["ifNoneMatch"] = if_none_match


def storage_get_many(keys: Iterable[str]) -> Call[list[BatchValue]]:
    dec = msgspec.json.Decoder(_Results[BatchValue])
    return Call(
        "POST",
        "/api/kv-batch/get",
        lambda r: dec.decode(r.content).results,
        json={"keys": list(keys)},
    )


def storage_exist_many(keys: Iterable[str]) -> Call[list[BatchExists]]:
    dec = msgspec.json.Decoder(_Results[BatchExists])
    return Call(
        "POST",
        "/api/kv-batch/exist",
        lambda r: dec.decode(r.content).results,
        json={"keys": list(keys)},
    )


def storage_set_many(
    items: Mapping[str, bytes] | Iterable[SetItem], *, atomic: bool = False
) -> Call[BatchWritten]:
    if isinstance(items, Mapping):
        items = [SetItem(k, v) for k, v in items.items()]
    body = []
    for it in items:
        one: dict[str, Any] = {"key": it.key, "value": _b64(it.value)}
        if it.content_type is not None:
            one["contentType"] = it.content_type
        if it.ttl is not None:
            one["ttl"] = it.ttl
        _conditions(one, it.if_match, it.if_none_match)
        body.append(one)
    return Call(
        "POST",
        "/api/kv-batch/set",
        _decoder(BatchWritten),
        json={"items": body, "atomic": atomic},
    )


def storage_delete_many(
    items: Iterable[str | DeleteItem], *, atomic: bool = False
) -> Call[BatchDeleted]:
    body = []
    for it in items:
        if isinstance(it, str):
            it = DeleteItem(it)
        one: dict[str, Any] = {"key": it.key}
        _conditions(one, it.if_match, it.if_none_match)
        body.append(one)
    return Call(
        "POST",
        "/api/kv-batch/delete",
        _decoder(BatchDeleted),
        json={"items": body, "atomic": atomic},
    )


def storage_list_values_page(
    prefix: str = "", *, limit: int | None = None, cursor: str | None = None
) -> Call[KvValuePage]:
    params = _params(prefix=prefix, limit=limit, cursor=cursor)
    return Call("GET", "/api/kv-batch/list", _decoder(KvValuePage), params=params)


def memory_conversations_page(
    *,
    block_id: str | None = None,
    prefix: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Call[ConversationPage]:
    params = _params(blockId=block_id, prefix=prefix, limit=limit, cursor=cursor)
    return Call("GET", "/api/memory/conversations", _decoder(ConversationPage), params=params)


def usage() -> Call[Usage]:
    return Call("GET", "/api/usage", _decoder(Usage))


def tool_list() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/api/tools", lambda r: r.json()["tools"])


def tool_get(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/api/tools/{quote(name, safe='')}", lambda r: r.json()["tool"])


def tool_invoke(name: str, params: dict[str, Any] | None, sse: bool) -> Call[None]:
    return Call(
        "POST",
        f"/api/tools/{quote(name, safe='')}/invoke",
        lambda r: None,
        json={"parameters": params or {}},
        headers={"Accept": m.SSE if sse else m.NDJSON},
    )


# --- answers -------------------------------------------------------------------------------------


def raise_for_error(r: httpx.Response) -> None:
    """The typed exception for an error answer, with the server's message and code."""
    if r.status_code < 400:
        return
    message, code = f"HTTP {r.status_code}", None
    try:
        body = r.json()
        if isinstance(body, dict):
            # `error` says what was wrong; `message` (SPEC 7) the same, perhaps friendlier.
            message = str(body.get("error") or body.get("message") or message)
            code = body.get("code")
    except ValueError:
        if r.text.strip():
            message = r.text.strip()[:500]
    retry = r.headers.get("retry-after")
    retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
    raise error_for_status(r.status_code, message, code, retry_after)


def parse_answer(call: Call[T], r: httpx.Response) -> T:
    if r.status_code not in call.ok:
        raise_for_error(r)
    try:
        return call.parse(r)
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, ValueError) as exc:
        raise MemoryServiceError(
            f"unexpected answer to {call.method} {call.path}: {exc}", code="bad_answer"
        ) from exc


# --- tool-message streams ------------------------------------------------------------------------


class _Lines:
    """Splits a byte stream into lines. A partial line is kept as a list of pieces and joined
    once its newline arrives: a 30 MB blob line read in 64 KiB pieces costs linear time."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, data: bytes) -> list[bytes]:
        if b"\n" not in data:
            if data:
                self._parts.append(data)
            return []
        self._parts.append(data)
        *lines, rest = b"".join(self._parts).split(b"\n")
        self._parts = [rest] if rest else []
        return lines

    def rest(self) -> bytes:
        return b"".join(self._parts)


class NdjsonParser:
    """Feed bytes as they arrive; get whole messages. A line is only parsed once its newline has
    arrived, so a cut stream never yields half a message: `close()` reports it instead."""

    def __init__(self) -> None:
        self._pending = _Lines()

    def feed(self, data: bytes) -> Iterator[m.ToolMessage | m.UnknownMessage]:
        for line in self._pending.feed(data):
            if line.strip():
                yield m.decode_message(line)

    def close(self) -> None:
        if self._pending.rest().strip():
            raise StreamError("the stream ended in the middle of a message (no final newline)")


class SseParser:
    """Server-sent events: `data:` lines up to a blank line make one message; `event:`, `id:`
    and comments are ignored (the envelope carries the type)."""

    def __init__(self) -> None:
        self._pending = _Lines()
        self._data: list[bytes] = []

    def feed(self, data: bytes) -> Iterator[m.ToolMessage | m.UnknownMessage]:
        for line in self._pending.feed(data):
            line = line.rstrip(b"\r")
            if not line:
                if self._data:
                    payload, self._data = b"\n".join(self._data), []
                    yield m.decode_message(payload)
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)

    def close(self) -> None:
        if self._pending.rest().strip() or self._data:
            raise StreamError("the stream ended in the middle of an event")


def parser_for(sse: bool) -> NdjsonParser | SseParser:
    return SseParser() if sse else NdjsonParser()


def checked(
    message: m.ToolMessage | m.UnknownMessage, raise_on_error: bool
) -> m.ToolMessage | m.UnknownMessage:
    if raise_on_error and isinstance(message, m.ErrorMessage):
        raise ToolError(message.error, code=message.code)
    return message
