"""Credentials: workspace API keys and the admin token."""

from __future__ import annotations

import secrets

from litestar import Request
from litestar.datastructures import State

from ..services.errors import NotFound, Unauthorized
from ..services.workspaces import Principal


def bearer_or_api_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return request.headers.get("x-api-key") or None


async def provide_principal(request: Request, state: State) -> Principal:
    return await state.services.workspaces.authenticate(bearer_or_api_key(request))


async def require_admin(request: Request, state: State) -> None:
    token = state.services.settings.admin_token
    if not token:
        raise NotFound(
            "the admin API is off: set MEMORY_ADMIN_TOKEN to enable it", code="admin_disabled"
        )
    given = bearer_or_api_key(request)
    if not given or not secrets.compare_digest(given.encode(), token.encode()):
        raise Unauthorized("admin token missing or wrong", code="admin_unauthorized")
