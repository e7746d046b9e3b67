"""Errors a client can cause. The HTTP layer turns each into the envelope
`{"success": false, "error": message, "code": code}` with its status."""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        if code:
            self.code = code


class BadRequest(ServiceError):
    pass


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class PreconditionFailed(ServiceError):
    status = 412
    code = "precondition_failed"


class TooLarge(ServiceError):
    status = 413
    code = "too_large"


class QuotaExceeded(ServiceError):
    status = 413
    code = "quota_exceeded"


class RateLimited(ServiceError):
    """The workspace sent more requests than its rate limit allows; `Retry-After` says when."""

    status = 429
    code = "rate_limited"
