"""The tools and memories over MCP (Model Context Protocol), at `/mcp`.

Built on the official `mcp` SDK's low-level `Server` (the tools are data, so their schemas come
from the manifests rather than from Python signatures) and its streamable HTTP session manager in
stateless JSON mode: every POST is a complete exchange, so any replica can answer any request.

Nothing here decides anything the HTTP API does not: the credential is checked by the same
dependency as every `/api` route (same keys, rate limit, workspace), and a tool call runs the same
prepare/invoke as `POST /api/tools/{name}/invoke`. A refusal is an `isError` result whose text is
the HTTP API's message and whose structured content is the HTTP error envelope (`code` included).

Which errors are JSON-RPC and which are the service's envelope: an answer to a JSON-RPC request
is JSON-RPC, always: a result, or an error object carrying the request's `id` (unknown method,
bad params, a resource refused), with the status the protocol revision gives it (200 in the
legacy transport; 400 or 404 in the 2026-07-28 one, which the SDK's client reads as JSON-RPC).
Every other 4xx or 5xx answer of /mcp refuses the HTTP request itself, before any JSON-RPC
request could be answered (no key, wrong method, no such path, `Accept` or `Content-Type` not
JSON, body too large, not JSON, a repeated member, not a JSON-RPC message): it is the service's
`{"success": false, "error", "message", "code"}` envelope, as on every other route. (The
transport lets such an answer carry a JSON-RPC error with a null id, or nothing; no client
could match either to a request.)
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, unquote

import mcp_types as types
import msgspec
from litestar import Litestar, Request
from litestar.enums import ScopeType
from litestar.exceptions import ClientException, MethodNotAllowedException
from litestar.handlers import asgi
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import Receive, Scope, Send
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS

from .. import __version__
from ..services.container import Services
from ..services.errors import NotFound, ServiceError
from ..services.memory import MemoryOut
from ..services.shapes import memory_item
from ..services.workspaces import Principal
from ..tools import catalogue, runtime
from ..tools.manifest import ToolManifest, input_schema
from ..wire import messages as m
from .auth import PRINCIPAL_SCOPE_KEY, admitted
from .json_body import check_members
from .mcp_http import enveloped, read_body, replay

PATH = "/mcp"
MEMORY_SCHEME = "memory://"
MEMORY_TEMPLATE = "memory://{conversationId}/{blockId}"
KV_SCHEME = "kv://"
# A request carries a value as base64 (4/3 of its size) plus the JSON-RPC around it.
BODY_SLACK = 64 * 1024
INSTRUCTIONS = (
    "Durable conversation memory and per-workspace storage. memory_add appends a message to a "
    "conversation; memory_get reads it back (with a transcript); storage_* keep small values "
    "under keys. Memories are also resources: memory://{conversationId}/{blockId}."
)


def memory_uri(conversation_id: str, block_id: str) -> str:
    """`memory://{conversationId}/{blockId}`, each part percent-encoded (`/` included)."""
    return f"{MEMORY_SCHEME}{quote(conversation_id, safe='')}/{quote(block_id, safe='')}"


def kv_uri(key: str) -> str:
    return f"{KV_SCHEME}{quote(key, safe='')}"


def _parse_memory_uri(uri: str) -> tuple[str, str, str | None]:
    """(conversationId, blockId, cursor): `memory://{conversationId}/{blockId}`, optionally with
    `?cursor=` (a `dataCursor`) to read the page of messages before it."""
    where, _, query = uri[len(MEMORY_SCHEME) :].partition("?")
    conversation, sep, block = where.partition("/")
    if not sep or not conversation or not block or "/" in block:
        raise _invalid(f"a memory URI is {MEMORY_TEMPLATE}, each part percent-encoded", uri)
    cursor = None
    if query:
        name, eq, value = query.partition("=")
        if name != "cursor" or not eq or not value or "&" in value:
            raise _invalid("a memory URI takes one query parameter: ?cursor=<dataCursor>", uri)
        cursor = unquote(value, errors="strict")
    return unquote(conversation, errors="strict"), unquote(block, errors="strict"), cursor


def _transcript(uri: str, memory: MemoryOut, cursor: str | None) -> str:
    """A memory's messages as text, one `role: content` line each; when they are not all of
    them, a first line that says how many of how many these are and where the earlier ones are."""
    lines = "".join(f"{x.role}: {x.content}\n" for x in memory.messages)
    shown, total = len(memory.messages), memory.message_count
    base = uri.partition("?")[0]
    earlier = (
        f"the earlier ones: read {base}?cursor={quote(memory.data_cursor, safe='')}"
        if memory.data_cursor
        else "there are none earlier"
    )
    if cursor is None:
        if memory.data_cursor is None:
            return lines  # the whole memory
        return f"[{shown} of {total} messages shown, the newest; {earlier}]\n{lines}"
    return f"[{shown} of {total} messages shown, those just before the cursor; {earlier}]\n{lines}"


def _invalid(message: str, uri: str, code: str = "invalid_uri") -> MCPError:
    return MCPError(INVALID_PARAMS, message, data={"uri": uri, "code": code})


def _principal(ctx: Any) -> Principal:
    # Set by McpEndpoint before the SDK saw the request; the SDK hands the request on.
    principal: Principal = ctx.request.scope[PRINCIPAL_SCOPE_KEY]
    return principal


def _tool(manifest: ToolManifest) -> types.Tool:
    return types.Tool(
        name=manifest.name,
        title=manifest.identity.label["en_US"],
        description=manifest.description.llm,
        input_schema=input_schema(manifest),
        output_schema=manifest.output_schema,
    )


def _failure(message: str, code: str) -> types.CallToolResult:
    envelope = {"success": False, "error": message, "message": message, "code": code}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)],
        structured_content=envelope,
        is_error=True,
    )


def _success(outputs: m.NodeOutputs, blobs: list[m.BlobMessage], key: str | None) -> Any:
    structured = outputs.variables
    content: list[Any] = [types.TextContent(type="text", text=outputs.text)]
    # The MCP spec asks tools with structured output to give it as text too, for older clients.
    content.append(types.TextContent(type="text", text=msgspec.json.encode(structured).decode()))
    for blob in blobs:
        content.append(
            types.EmbeddedResource(
                type="resource",
                resource=types.BlobResourceContents(
                    uri=kv_uri(key or blob.filename or "value"),
                    mime_type=blob.mime_type,
                    blob=base64.b64encode(blob.data).decode(),
                ),
            )
        )
    return types.CallToolResult(content=content, structured_content=structured, is_error=False)


class McpEndpoint:
    """One app's MCP server: the SDK's `Server` with our handlers, and its session manager
    (created per lifespan, as the SDK allows one `run()` per manager)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.tools = [_tool(t.manifest) for t in catalogue.tools().values()]
        self.server: Server[Any] = Server(
            "memory-service",
            version=__version__,
            title="memory-service",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
        )
        self.manager: StreamableHTTPSessionManager | None = None
        self.max_body = (services.settings.max_value_bytes + 2) // 3 * 4 + BODY_SLACK

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        self.manager = StreamableHTTPSessionManager(
            app=self.server,
            stateless=True,  # no session state: any replica answers any request
            json_response=True,  # one JSON answer per POST, no SSE stream to hold open
            # DNS-rebinding protection guards unauthenticated local servers; every request
            # here carries a workspace key, and the service runs under any host name.
            security_settings=None,
            max_request_body_size=self.max_body,
        )
        async with self.manager.run():
            yield
        self.manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "POST":
            # Stateless and JSON-only: no server-to-client stream to GET, no session to DELETE
            # (the spec's answer to a GET it does not serve is 405; the SDK would hold it open).
            raise MethodNotAllowedException(headers={"Allow": "POST"})
        # The same checks (credential, rate limit, body encoding) as every /api route, before
        # the body is read; a refusal raises here and Litestar answers it with the usual error
        # envelope. The principal waits in the scope (PRINCIPAL_SCOPE_KEY) for the handlers.
        await admitted(self.services, scope)
        request: Request = Request(scope, receive)
        if self.manager is None:  # outside the app's lifespan
            raise RuntimeError("the MCP endpoint is not running")
        # The SDK's own test of the Content-Type, answered with the status that names it.
        if not request.headers.get("content-type", "").lower().startswith("application/json"):
            raise ClientException(
                "Content-Type must be application/json", status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE
            )
        # The body read here (the SDK's own limit, refused the HTTP API's way) to be checked as
        # every JSON body is (http/json_body.py): the SDK's parser lets a repeated member's last
        # value win. Then the SDK reads it again, from `replay`.
        body = await read_body(request, receive, self.max_body)
        check_members(body)
        # The same ASGI scope and callables, typed by Litestar (TypedDicts) and by Starlette,
        # which the SDK uses (a MutableMapping), in ways mypy does not relate.
        await self.manager.handle_request(
            scope,  # type: ignore[arg-type]
            replay(body, receive),  # type: ignore[arg-type]
            enveloped(send),  # type: ignore[arg-type]
        )

    # --- tools ----------------------------------------------------------------------------------

    async def _list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools)

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> Any:
        tctx = runtime.Context(self.services, _principal(ctx))
        try:
            tool = catalogue.get_tool(params.name)
            prepared = await runtime.prepare(tool, tctx, params.arguments or {})
        except ServiceError as exc:
            self.services.metrics.count_refusal(exc)
            return _failure(exc.message, exc.code)
        collector = m.OutputCollector()
        blobs: list[m.BlobMessage] = []
        async for batch in runtime.invoke(tool, tctx, prepared):
            for message in batch:
                if isinstance(message, m.ErrorMessage):
                    return _failure(message.error, message.code)
                if isinstance(message, m.BlobMessage):
                    blobs.append(message)
                collector.add(message)
        key = (params.arguments or {}).get("key") if blobs else None
        return _success(collector.outputs(), blobs, key)

    # --- resources ------------------------------------------------------------------------------

    async def _list_templates(self, ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    name="memory",
                    title="A conversation memory",
                    uri_template=MEMORY_TEMPLATE,
                    description="The memory of one conversation and block (its messages, as the "
                    "HTTP API answers it); each part percent-encoded. A memory longer than a "
                    "page comes with its newest page and says so; `?cursor=<dataCursor>` reads "
                    "the page before, in order.",
                    mime_type="application/json",
                ),
                types.ResourceTemplate(
                    name="storage entry",
                    uri_template="kv://{key}",
                    description="The value stored under a key (percent-encoded).",
                ),
            ]
        )

    async def _list_resources(self, ctx: Any, params: Any) -> types.ListResourcesResult:
        """The workspace's memories, a page at a time (the service's own cursor)."""
        cursor = params.cursor if params is not None else None
        try:
            page = await self.services.memory.get_page(
                _principal(ctx).workspace_id, None, cursor=cursor, last_n=0
            )
        except ServiceError as exc:
            raise MCPError(INVALID_PARAMS, exc.message, data={"code": exc.code}) from None
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    name=x.key,
                    title=f"{x.conversation_id} / {x.block_name or x.block_id}",
                    uri=memory_uri(x.conversation_id, x.block_id),
                    mime_type="application/json",
                    description=f"{x.message_count} message(s)",
                )
                for x in page.memories
            ],
            next_cursor=page.next_cursor,
        )

    async def _read_resource(self, ctx: Any, params: types.ReadResourceRequestParams) -> Any:
        uri = str(params.uri)
        workspace = _principal(ctx).workspace_id
        try:
            if uri.startswith(MEMORY_SCHEME):
                return await self._read_memory(workspace, uri)
            if uri.startswith(KV_SCHEME):
                return await self._read_entry(workspace, uri)
        except UnicodeDecodeError:
            raise _invalid("the URI's percent-encoding is not UTF-8", uri) from None
        except ServiceError as exc:
            raise _invalid(exc.message, uri, exc.code) from None
        raise _invalid(f"no such resource: use {MEMORY_TEMPLATE} or kv://{{key}}", uri)

    async def _read_memory(self, workspace: int, uri: str) -> types.ReadResourceResult:
        conversation, block, cursor = _parse_memory_uri(uri)
        service = self.services.memory
        if cursor is None:  # the newest page, as a read of the memory answers it
            flt = service.filter(conversation, None, block, None)
            memories = (await service.get_page(workspace, flt)).memories
            if not memories:
                raise NotFound(f"no memory at {uri}", code="memory_not_found")
            memory = memories[0]
        else:  # the page before the cursor, as GET /api/memory/messages answers it
            page = await service.messages(
                workspace, conversation_id=conversation, block_id=block, cursor=cursor
            )
            memory = page.memory
        item = msgspec.json.encode(memory_item(memory)).decode()
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(uri=uri, mime_type="application/json", text=item),
                types.TextResourceContents(
                    uri=uri, mime_type="text/plain", text=_transcript(uri, memory, cursor)
                ),
            ]
        )

    async def _read_entry(self, workspace: int, uri: str) -> types.ReadResourceResult:
        key = unquote(uri[len(KV_SCHEME) :], errors="strict")
        value = await self.services.kv.get(workspace, key)
        return types.ReadResourceResult(
            contents=[
                types.BlobResourceContents(
                    uri=uri,
                    mime_type=value.content_type,
                    blob=base64.b64encode(value.value).decode(),
                )
            ]
        )


# The scope is not copied: the workspace noted in it by the credential check must reach the
# access log line, as for every other route.
@asgi(PATH, copy_scope=False, include_in_schema=False)
async def mcp_handler(scope: Scope, receive: Receive, send: Send) -> None:
    """`/mcp`: the app's McpEndpoint (kept in its state; built by create_app)."""
    await scope["app"].state.mcp(scope, receive, send)
