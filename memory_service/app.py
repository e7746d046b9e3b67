"""The app factory. Nothing here reads configuration at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag

from . import __version__
from .http.admin import AdminController
from .http.error_docs import document_errors
from .http.errors import EXCEPTION_HANDLERS
from .http.fast_path import with_fast_paths
from .http.guards import QueryGuard
from .http.json_body import JsonRequest
from .http.kv import PREFIX as KV_PREFIX
from .http.kv import KvController
from .http.kv_batch import KvBatchController
from .http.kv_get import KvGetFastPath
from .http.kv_set import KvSetFastPath
from .http.mcp import McpEndpoint, mcp_handler
from .http.memory import MemoryController
from .http.memory_add import MemoryAddFastPath
from .http.memory_get import MemoryGetFastPath
from .http.methods import Methods
from .http.observe import ObserveMiddleware
from .http.ops import OpsController
from .http.spec_served import openapi_servers, render_plugins, schema_router
from .http.stats import StatsController
from .http.tools import ToolsController
from .http.ui import UiController, load_assets
from .logs import access_log
from .services.container import Services
from .settings import Settings
from .tools import catalogue

log = logging.getLogger("memory_service")


def openapi_config(settings: Settings) -> OpenAPIConfig:
    return OpenAPIConfig(
        title="memory-service",
        version=__version__,
        description=(
            "Durable conversation memory and a per-workspace key-value store for workflow "
            "engines. Every JSON answer is one of two shapes, told apart by `success`: "
            '`{"success": true, "message": "...", ...}`, or with a 4xx status '
            '`{"success": false, "error": "...", "message": "...", "code": "..."}`. '
            "Every path that answers GET answers HEAD too (GET's status and headers, no body), "
            "and OPTIONS lists the methods of a path, as the `Allow` of its 405s does."
        ),
        servers=openapi_servers(settings),
        render_plugins=render_plugins(),
        openapi_router=schema_router(),
        components=Components(
            security_schemes={
                "BearerAuth": SecurityScheme(
                    type="http", scheme="bearer", description="Workspace API key."
                ),
                "ApiKeyAuth": SecurityScheme(
                    type="apiKey",
                    name="X-API-Key",
                    security_scheme_in="header",
                    description="Workspace API key.",
                ),
                "AdminToken": SecurityScheme(
                    type="http", scheme="bearer", description="MEMORY_ADMIN_TOKEN."
                ),
            }
        ),
        security=[{"BearerAuth": []}, {"ApiKeyAuth": []}],
        tags=[
            Tag(
                name="memory",
                description="Conversation memories by conversationId and blockId (SPEC 3).",
            ),
            Tag(name="kv", description="Per-workspace key-value store of raw bytes."),
            Tag(name="admin", description="Workspaces, keys and quotas."),
            Tag(name="ops", description="Liveness and readiness probes (no credential)."),
            Tag(
                name="tools",
                description="Memory and storage operations as workflow tools: manifests and "
                "streamed tool messages.",
            ),
        ],
        use_handler_docstrings=False,
        create_examples=False,
    )


async def _sweeper(services: Services) -> None:
    interval = services.settings.sweep_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            freed = await services.kv.sweep()
            if freed:
                log.info("sweep freed %d bytes of expired entries", freed)
        except Exception:  # a failed sweep must not end the loop; the next one retries
            log.exception("expired-entry sweep failed")
        try:
            await services.memory.sweep_idempotency()
        except Exception:  # likewise: retried at the next interval
            log.exception("idempotency-record sweep failed")


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], int] | None = None
) -> Litestar:
    settings = settings or Settings.from_env()
    catalogue.tools()  # reads and checks the tool manifests: a broken one stops the start-up
    services = Services.build(settings, clock) if clock else Services.build(settings)
    access = access_log() if settings.access_log else None

    mcp = McpEndpoint(services)  # the tools and memories over MCP, at /mcp

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await services.cursors.load()  # the replicas' shared cursor key, read once
        sweeper = None
        if settings.sweep_interval_seconds > 0:
            sweeper = asyncio.create_task(_sweeper(services))
        if access is not None:
            access.start()
        try:
            yield
        finally:
            if access is not None:
                # After the server's last request: every line queued is written before exit.
                await asyncio.to_thread(access.close)
            if sweeper:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await services.db.dispose()

    app = Litestar(
        route_handlers=[
            KvController,
            KvBatchController,
            MemoryController,
            AdminController,
            OpsController,
            ToolsController,
            StatsController,
            UiController,
            mcp_handler,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        # JSON bodies that repeat a member are refused before they are decoded (http/json_body.py).
        request_class=JsonRequest,
        lifespan=[lifespan, mcp.lifespan],
        state=State({"services": services, "mcp": mcp, "ui_assets": load_assets()}),
        openapi_config=openapi_config(settings),
        # A value may be max_value_bytes; bodies above that are refused before they are read whole.
        request_max_body_size=settings.max_value_bytes + 64 * 1024,
        debug=False,
        # Logging is the process's (JSON lines, set up by `serve`): Litestar must not replace it.
        logging_config=None,
    )
    document_errors(app)  # every operation's error answers, in openapi.yaml
    # Request ids, access logs and request metrics around everything, unrouted requests included
    # (Litestar's own middleware runs only for requests that matched a route).
    # The hottest routes answered in front of Litestar's router (http/fast_path.py).
    fast = [KvGetFastPath, KvSetFastPath, MemoryAddFastPath, MemoryGetFastPath]
    handler = with_fast_paths(app.asgi_handler, app, services, fast)
    # In front of the fast paths too: KV keys made only of slashes routed to the key's route,
    # HEAD on every GET route, OPTIONS that agree with the 405s (http/methods.py).
    handler = Methods(handler, app, opaque_roots=(KV_PREFIX.rstrip("/"),))
    app.asgi_handler = ObserveMiddleware(QueryGuard(handler), services.metrics, access)
    return app
