"""One error envelope for everything: `{"success": false, "error", "message", "code"}` (SPEC 7).

Registered at the app layer, because router-level 404/405 reach only app-level handlers.
"""

from __future__ import annotations

import logging

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ExceptionHandlersMap

from ..errors import StorageUnavailable, WorkspaceGone
from ..services.errors import ServiceError
from .methods import allow_header

log = logging.getLogger("memory_service.errors")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    412: "precondition_failed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
}


def status_code_name(status: int) -> str:
    """The envelope's `code` for an HTTP status that has no more specific one."""
    return _CODES.get(status, "internal_error" if status >= 500 else "error")


_KV_ROOTS = ("/api/kv", "/api/kv/")
# HEAD of the root is the listing's (http/methods.py), as GET is.
_KEYED_METHODS = ("PUT", "DELETE")


def envelope(
    status: int, message: str, code: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        # `message` repeats `error`: the Memory block's contract has every answer carry one.
        content={"success": False, "error": message, "message": message, "code": code},
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _validation_message(exc: ValidationException) -> str:
    parts = []
    for item in exc.extra or []:
        if isinstance(item, dict):
            where = item.get("key") or item.get("source") or ""
            msg = item.get("message", "")
            parts.append(f"{where}: {msg}" if where else str(msg))
    detail = "; ".join(p for p in parts if p)
    if "JSON is malformed" in (exc.detail or "") or "malformed" in detail.lower():
        return f"request body is not valid JSON{': ' + detail if detail else ''}"
    return f"invalid request: {detail}" if detail else f"invalid request: {exc.detail}"


def handle_service_error(request: Request, exc: ServiceError) -> Response:
    request.app.state.services.metrics.count_refusal(exc)
    return envelope(exc.status, exc.message, exc.code, exc.headers or None)


def handle_http_exception(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500 and exc.detail == "client disconnected prematurely":
        # Litestar's word (as a 500) for a client that left mid-body: nothing of the request was
        # stored, nobody reads the answer, and it is no fault of the server's.
        log.info("client left before its body arrived on %s %s", request.method, request.url.path)
        return envelope(400, "request body incomplete: the client disconnected", "bad_request")
    if status >= 500:
        log.error("server error on %s %s: %s", request.method, request.url.path, exc.detail)
        return envelope(status, "internal server error", "internal_error")
    if isinstance(exc, ValidationException):
        return envelope(400, _validation_message(exc), "invalid_request")
    message = exc.detail or "error"
    if status == 405 and request.method in _KEYED_METHODS and request.url.path in _KV_ROOTS:
        # `PUT /api/kv/` is a write with an empty key, not a request for another method.
        return envelope(
            400, "key must not be empty: use /api/kv/{key} with a 1-512 byte key", "invalid_key"
        )
    if status == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
        # Litestar's list leaves out the HEAD that every GET route answers.
        allow = (exc.headers or {}).get("allow")
        if allow is not None:
            headers = {**(exc.headers or {}), "allow": allow_header(allow.split(", "))}
            return envelope(status, message, "method_not_allowed", headers)
    elif status == 413:
        message = "request body is too large"
    elif status == 400 and request.method in ("POST", "PUT", "PATCH"):
        # Litestar reports undecodable bodies as a bare 400 with the decoder's words.
        message = f"request body is not valid: {message}"
    return envelope(status, message, status_code_name(status), exc.headers or None)


def handle_workspace_gone(_: Request, exc: WorkspaceGone) -> Response:
    # A key checked (and cached) just before its workspace was deleted, here or on a replica.
    return envelope(401, "invalid or revoked API key (its workspace was deleted)", "unauthorized")


def handle_storage_unavailable(request: Request, exc: StorageUnavailable) -> Response:
    # Answered at once (never a request left hanging); /ready says 503 too, so a balancer
    # takes this process out of rotation.
    log.error("request refused on %s %s: %s", request.method, request.url.path, exc)
    return envelope(503, "the service cannot store data right now; retry later", "unavailable")


def handle_undecodable(request: Request, exc: UnicodeDecodeError) -> Response:
    # msgspec raises UnicodeDecodeError (not a DecodeError, which Litestar turns into a 400) for
    # invalid UTF-8 inside a JSON string; Litestar lets it through as a 500.
    log.info("undecodable request on %s %s: %s", request.method, request.url.path, exc)
    return envelope(400, "request body is not valid UTF-8 JSON", "invalid_request")


def handle_too_deep(request: Request, exc: RecursionError) -> Response:
    # JSON nested thousands deep exhausts the decoder's recursion (msgspec raises this for a
    # body of any declared type): the client's doing, answered like any malformed body.
    log.info("request nested too deeply on %s %s", request.method, request.url.path)
    return envelope(400, "request body is nested too deeply", "invalid_request")


def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return envelope(HTTP_500_INTERNAL_SERVER_ERROR, "internal server error", "internal_error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ServiceError: handle_service_error,
    WorkspaceGone: handle_workspace_gone,
    StorageUnavailable: handle_storage_unavailable,
    HTTPException: handle_http_exception,
    UnicodeDecodeError: handle_undecodable,
    RecursionError: handle_too_deep,
    Exception: handle_unexpected,
}
