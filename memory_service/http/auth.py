"""Credentials: workspace API keys and the admin token.

A request's credential is checked before its body is read (`admit`, a guard: Litestar runs
guards before it parses a body; the fast paths call the same checks first). A client without a
good key therefore gets its 401 at once, and http/protocol.py closes the connection rather than
wait for a body nobody will read. The principal found is kept in the request's scope, so the
`principal` dependency, a fast path handing a request on to Litestar, and the MCP endpoint
reuse it: one authentication per request.
"""

from __future__ import annotations

import secrets
from typing import cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.types import Scope

from ..services.container import Services
from ..services.errors import BadRequest, NotFound, Unauthorized
from ..services.workspaces import Principal
from .guards import check_content_encoding

CREDENTIAL_HEADERS = frozenset((b"authorization", b"x-api-key"))
_AMBIGUOUS = (
    "the request carries two credentials (Authorization and X-API-Key headers together, or "
    "one of them twice): send exactly one"
)


def first_headers(scope: Scope, names: frozenset[bytes]) -> dict[bytes, str] | None:
    """The value of each of these headers (decoded as Latin-1, as Litestar decodes them), or
    None when one of them comes more than once."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in names:
            if name in found:
                return None
            found[name] = value.decode("latin-1")
    return found


def secret_of(headers: dict[bytes, str]) -> str | None:
    return credential(headers.get(b"authorization"), headers.get(b"x-api-key"))


def request_secret(scope: Scope) -> str | None:
    """The secret a request presents; a 400 when it presents two (which one would count?)."""
    headers = first_headers(scope, CREDENTIAL_HEADERS)
    if headers is None:
        raise BadRequest(_AMBIGUOUS, code="ambiguous_credentials")
    return secret_of(headers)


def credential(authorization: str | None, api_key: str | None) -> str | None:
    """The secret a request presents: `Authorization: Bearer <key>` or `X-API-Key`."""
    if authorization is not None and api_key is not None:
        raise BadRequest(_AMBIGUOUS, code="ambiguous_credentials")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    return api_key or None


# Where the workspace of an authenticated request is noted for its access log line.
WORKSPACE_SCOPE_KEY = "memory_service.workspace"
# Where its principal is kept for the rest of the request (never a second authentication).
PRINCIPAL_SCOPE_KEY = "memory_service.principal"


def address_of(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


async def admitted(services: Services, scope: Scope) -> Principal:
    """A request to a workspace route, checked before its body is read: its credential, then its
    body's encoding."""
    principal = await principal_of(services, scope, request_secret(scope))
    check_content_encoding(scope)
    return principal


async def admit(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """Guard of the workspace routes (`admitted`)."""
    await admitted(connection.app.state.services, connection.scope)


async def provide_principal(request: Request, state: State) -> Principal:
    # Found by `admit` (or a fast path) already, unless a route was given other guards.
    return await principal_of(state.services, request.scope, request_secret(request.scope))


async def principal_of(services: Services, scope: Scope, secret: str | None) -> Principal:
    """The workspace a request's secret opens, noted in its scope, and its rate limit charged;
    once per request (a second call answers what the first found)."""
    known = scope.get(PRINCIPAL_SCOPE_KEY)
    if known is not None:
        return cast(Principal, known)
    principal = await services.workspaces.authenticate(secret, address_of(scope))
    # Extension keys of the ASGI scope; Litestar's Scope type lists only the spec's keys.
    scope[WORKSPACE_SCOPE_KEY] = principal.workspace  # type: ignore[literal-required]
    if services.limiter is not None:  # per workspace, refused before any database work
        services.limiter.check(principal.workspace_id)
    scope[PRINCIPAL_SCOPE_KEY] = principal  # type: ignore[literal-required]
    return principal


async def admin_guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    """Guard of the admin API: 404 when it is off, 401 without the right token."""
    token = connection.app.state.services.settings.admin_token
    if not token:
        raise NotFound(
            "the admin API is off: set MEMORY_ADMIN_TOKEN to enable it", code="admin_disabled"
        )
    given = request_secret(connection.scope)
    if not given or not secrets.compare_digest(given.encode(), token.encode()):
        failures = connection.app.state.services.workspaces.failures
        address = address_of(connection.scope)
        if given:  # a wrong token, not a missing one: a guess, bounded like unknown API keys
            failures.check(address)
            failures.failed(address)
        raise Unauthorized("admin token missing or wrong", code="admin_unauthorized")
    check_content_encoding(connection.scope)
