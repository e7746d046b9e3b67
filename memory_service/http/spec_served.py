"""The OpenAPI document as served under /schema: naming the service's absolute URL.

Tools that import a spec by URL (a workflow builder's "custom tool from OpenAPI") call the
operations at `servers[0].url`, so it must be absolute: `MEMORY_PUBLIC_URL` when set (behind a
proxy or a load balancer), else the origin the request itself reached. The committed openapi.yaml
names the configured host and port instead (see `openapi_servers`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Request, Response, Router
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    OpenAPIRenderPlugin,
    RapidocRenderPlugin,
    RedocRenderPlugin,
    StoplightRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.openapi.spec import Server

from ..settings import Settings


def openapi_servers(settings: Settings) -> list[Server]:
    """The document's own `servers` (the committed file, and `app.openapi_schema`)."""
    return [Server(url=settings.public_url or f"http://{settings.host}:{settings.port}")]


def public_url(request: Request) -> str:
    configured = request.app.state.services.settings.public_url
    return configured or str(request.base_url).rstrip("/")


P = TypeVar("P", bound=OpenAPIRenderPlugin)


def _served_here(cls: type[P]) -> type[P]:
    # A base class held in a variable is not one mypy can check against (valid-type, misc);
    # each of Litestar's plugins is subclassed the same way, so the check is `render` below.
    class ServedHere(cls):  # type: ignore[valid-type,misc]
        def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
            here = {**openapi_schema, "servers": [{"url": public_url(request)}]}
            rendered: bytes = super().render(request, here)
            return rendered

    ServedHere.__name__ = ServedHere.__qualname__ = cls.__name__
    return ServedHere


def render_plugins() -> list[OpenAPIRenderPlugin]:
    """Litestar's default schema sites and files (Redoc at /schema), each naming this service."""
    return [
        _served_here(RedocRenderPlugin)(),  # first: the default site, also at /schema itself
        _served_here(SwaggerRenderPlugin)(),
        _served_here(StoplightRenderPlugin)(),
        _served_here(RapidocRenderPlugin)(),
        _served_here(JsonRenderPlugin)(),
        _served_here(YamlRenderPlugin)(),
    ]


def _envelope_404(response: Response[Any]) -> Response[Any]:
    # Litestar answers an unknown /schema/... path with an HTML page of its own; every refusal
    # of this service is the error envelope.
    if response.status_code != 404:
        return response
    message = "no such schema page: see /schema, /schema/openapi.json or /schema/openapi.yaml"
    return Response(
        {"success": False, "error": message, "message": message, "code": "not_found"},
        status_code=404,
        media_type="application/json",
    )


def schema_router() -> Router:
    """The router Litestar fills with the schema pages (OpenAPIConfig.openapi_router)."""
    return Router(
        "/schema", route_handlers=[], include_in_schema=False, after_request=_envelope_404
    )
