"""Credentials: workspace API keys and the admin token."""

from __future__ import annotations

import secrets

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.types import Scope

from ..services.container import Services
from ..services.errors import NotFound, Unauthorized
from ..services.workspaces import Principal


def bearer_or_api_key(request: ASGIConnection) -> str | None:
    return credential(request.headers.get("authorization"), request.headers.get("x-api-key"))


def credential(authorization: str | None, api_key: str | None) -> str | None:
    """The secret a request presents: `Authorization: Bearer <key>`, else `X-API-Key`."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return api_key or None


# Where the workspace of an authenticated request is noted for its access log line.
WORKSPACE_SCOPE_KEY = "memory_service.workspace"


def address_of(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


async def provide_principal(request: Request, state: State) -> Principal:
    return await principal_of(state.services, request.scope, bearer_or_api_key(request))


async def principal_of(services: Services, scope: Scope, secret: str | None) -> Principal:
    """The workspace a request's secret opens, noted in its scope, and its rate limit charged."""
    principal = await services.workspaces.authenticate(secret, address_of(scope))
    # An extension key of the ASGI scope; Litestar's Scope type lists only the spec's keys.
    scope[WORKSPACE_SCOPE_KEY] = principal.workspace  # type: ignore[literal-required]
    if services.limiter is not None:  # per workspace, refused before any database work
        services.limiter.check(principal.workspace_id)
    return principal


async def admin_guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """Guard of the admin API: 404 when it is off, 401 without the right token."""
    token = connection.app.state.services.settings.admin_token
    if not token:
        raise NotFound(
            "the admin API is off: set MEMORY_ADMIN_TOKEN to enable it", code="admin_disabled"
        )
    given = bearer_or_api_key(connection)
    if not given or not secrets.compare_digest(given.encode(), token.encode()):
        failures = connection.app.state.services.workspaces.failures
        address = address_of(connection.scope)
        if given:  # a wrong token, not a missing one: a guess, bounded like unknown API keys
            failures.check(address)
            failures.failed(address)
        raise Unauthorized("admin token missing or wrong", code="admin_unauthorized")
