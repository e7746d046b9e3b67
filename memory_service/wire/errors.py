"""Exceptions of the Python client, and of the tool-message rules it shares with the server.

Every error the server answers carries `{"error": <message>, "code": <machine code>}`; the
exception keeps both, plus the HTTP status when there was one. No imports here on purpose: the
tool runtime uses `OutputError` and `ToolError` too.
"""

from __future__ import annotations


class MemoryServiceError(Exception):
    """Base class: `message` (the server's words), `code` (machine code), `status` (HTTP)."""

    default_code = "error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status

    def __str__(self) -> str:
        where = f"{self.status} " if self.status else ""
        return f"{self.message} ({where}{self.code})"


class BadRequestError(MemoryServiceError):
    """400: the request was malformed or a parameter was invalid."""

    default_code = "bad_request"


class AuthError(MemoryServiceError):
    """401 (or 403): missing, wrong or revoked API key."""

    default_code = "unauthorized"


class NotFoundError(MemoryServiceError):
    """404: no such key, memory, tool or endpoint (in the caller's workspace)."""

    default_code = "not_found"


class ConflictError(MemoryServiceError):
    """409: the request conflicts with the current state."""

    default_code = "conflict"


class PreconditionFailedError(ConflictError):
    """412: an If-Match / If-None-Match condition did not hold; nothing was changed."""

    default_code = "precondition_failed"


class TooLargeError(MemoryServiceError):
    """413: a value, content or request body is larger than the server accepts."""

    default_code = "too_large"


class QuotaExceededError(TooLargeError):
    """413 with code `quota_exceeded`: the write would exceed the workspace quota."""

    default_code = "quota_exceeded"


class RateLimitedError(MemoryServiceError):
    """429: too many requests; `retry_after` seconds if the server said."""

    default_code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class ServerError(MemoryServiceError):
    """5xx: the server failed (never expected for anything a client sends)."""

    default_code = "internal_error"


class ToolError(MemoryServiceError):
    """A tool invocation ended with an `error` message in its stream."""

    default_code = "tool_error"


class StreamError(MemoryServiceError):
    """The message stream itself was malformed or cut (a half line, bad JSON)."""

    default_code = "bad_stream"


class OutputError(MemoryServiceError, ValueError):
    """A message stream broke the output rules of SPEC 5: a reserved variable name, a streamed
    non-string, or variables that do not match the tool's output_schema."""

    default_code = "invalid_output"


def error_for_status(
    status: int, message: str, code: str | None = None, retry_after: float | None = None
) -> MemoryServiceError:
    """The typed exception for an error answer of the server."""
    if status == 429:
        return RateLimitedError(message, code=code, status=status, retry_after=retry_after)
    cls: type[MemoryServiceError]
    if status in (401, 403):
        cls = AuthError
    elif status == 404:
        cls = NotFoundError
    elif status == 409:
        cls = ConflictError
    elif status == 412:
        cls = PreconditionFailedError
    elif status == 413:
        cls = QuotaExceededError if code == "quota_exceeded" else TooLargeError
    elif status >= 500:
        cls = ServerError
    elif 400 <= status < 500:
        cls = BadRequestError
    else:
        cls = MemoryServiceError
    return cls(message, code=code, status=status)
