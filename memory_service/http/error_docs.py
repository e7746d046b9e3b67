"""Document the error answers of every operation in the OpenAPI document, in one place.

Every error is the envelope `Failure` (`{"success": false, "error", "message", "code"}`), and
which statuses an operation can answer follows from what it is: authenticated or not, with
parameters or a body, a write, conditional on an entity tag. Rather than repeat `responses={...}`
on each route (and forget one), the document is completed here once it is built; a status a route
documents itself (more precisely) is left as the route wrote it. The rules generated clients need
beyond the errors are applied next (spec_rules.py).
"""

from __future__ import annotations

from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin  # builds the document; no public name in 2.x
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
)

from .spec_rules import finish

FAILURE = "Failure"
DESCRIPTIONS = {
    304: "Not modified: the entry still has the version named in If-None-Match.",
    400: "Invalid request: malformed parameters, headers or body.",
    401: "Missing, invalid or revoked credential.",
    404: "Not found (data of other workspaces is never found; the admin API is 404 when off).",
    409: "Conflict with the current state (see `code`).",
    412: "Precondition failed: If-Match / If-None-Match did not hold; nothing changed.",
    413: "Too large: the body, a value or message, or the workspace quota; nothing stored.",
    415: "Unsupported Content-Encoding (only `identity`: bodies are never decoded); nothing "
    "stored.",
    429: "Rate limited: retry after the Retry-After header's seconds.",
}
WRITES = {"post", "put", "patch", "delete"}
WITH_BODY = {"post", "put", "patch"}


def _failure_schema() -> Schema:
    return Schema(
        title=FAILURE,
        type=OpenAPIType.OBJECT,
        required=["code", "error", "message", "success"],
        properties={
            "success": Schema(type=OpenAPIType.BOOLEAN, const=False),
            "error": Schema(type=OpenAPIType.STRING),
            "message": Schema(type=OpenAPIType.STRING),
            "code": Schema(type=OpenAPIType.STRING),
        },
    )


def error_statuses(method: str, operation: Operation, global_security: list) -> set[int]:
    """The error statuses an operation can answer, from its shape."""
    security = operation.security if operation.security is not None else global_security
    authenticated = any(requirement for requirement in security or [])
    admin = any("AdminToken" in requirement for requirement in security or [])
    headers = {
        p.name.lower()
        for p in operation.parameters or []
        if not isinstance(p, Reference) and p.param_in == "header"
    }
    statuses: set[int] = set()
    if operation.parameters or operation.request_body or method in WITH_BODY:
        statuses.add(400)
    if authenticated:
        statuses |= {400, 401, 404}  # 400: two credentials (ambiguous_credentials)
        if not admin:
            statuses.add(429)  # per-workspace rate limit (MEMORY_RATE_LIMIT_RPS)
        if method in WRITES:
            statuses.add(409)
    if method in WITH_BODY:
        statuses |= {413, 415}
    # RFC 9110 13: If-Match fails with 412 on any method; If-None-Match is a 304 on a read and
    # a 412 on a write.
    reads = ("get", "head")
    if "if-match" in headers or (method not in reads and "if-none-match" in headers):
        statuses.add(412)
    if method in reads and "if-none-match" in headers:
        statuses.add(304)
    return statuses


def _litestar_default(response: OpenAPIResponse | Reference) -> bool:
    """Litestar's own 400 for handlers with parameters describes its ValidationException
    shape, which the app never sends (its exception handler answers the envelope)."""
    return (
        isinstance(response, OpenAPIResponse)
        and response.description == "Bad request syntax or unsupported method"
    )


def complete(openapi: OpenAPI) -> OpenAPI:
    """Add the error responses (and the Failure schema) to every operation of `openapi`."""
    components = openapi.components
    components.schemas.setdefault(FAILURE, _failure_schema())
    envelope = {
        "application/json": OpenAPIMediaType(schema=Reference(f"#/components/schemas/{FAILURE}"))
    }
    for item in (openapi.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch", "head"):
            operation: Operation | None = getattr(item, method, None)
            if operation is None:
                continue
            responses = operation.responses if operation.responses is not None else {}
            for status in sorted(error_statuses(method, operation, openapi.security or [])):
                if str(status) in responses and not _litestar_default(responses[str(status)]):
                    continue  # the route documented it itself
                no_body = status == 304 or method == "head"
                responses[str(status)] = OpenAPIResponse(
                    description=DESCRIPTIONS[status], content=None if no_body else dict(envelope)
                )
            operation.responses = dict(sorted(responses.items()))
    return openapi


class _DocumentingOpenAPIPlugin(OpenAPIPlugin):
    """Litestar's OpenAPI plugin, completing the document each time it is (re)built."""

    __slots__ = ()

    def provide_openapi(self) -> OpenAPI:
        fresh = self._openapi is None
        openapi = super().provide_openapi()
        if fresh:
            complete(openapi)
            finish(openapi, self.app.state.services.settings)
        return openapi


def document_errors(app: Litestar) -> None:
    """Complete the app's OpenAPI document when Litestar builds it (lazily, on first use)."""
    # Litestar 2 has no hook to post-process the document and the plugin has __slots__; the
    # subclass adds no state, so the running plugin can take its behaviour.
    app.plugins.get(OpenAPIPlugin).__class__ = _DocumentingOpenAPIPlugin
