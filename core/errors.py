"""Typed domain errors with stable codes; admin_api turns them into JSON answers."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    code = "bad_request"
    # Seconds after which trying again may succeed: sent as Retry-After.
    retry_after: float | None = None

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidInput(DomainError):
    status = 422
    code = "invalid_input"


class PaymentRequired(DomainError):
    """The prepaid balance cannot pay for what was asked; nothing was changed."""

    status = 402
    code = "insufficient_balance"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class TooLarge(DomainError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(DomainError):
    """A file of a type the route does not take (a visitor's upload that is not a picture, PDF,
    office document or text)."""

    status = 415
    code = "unsupported_type"


class Busy(DomainError):
    """Overload: nothing was done; try again after ``retry_after`` seconds (503 with Retry-After)."""

    status = 503
    code = "busy"
    retry_after = 1


class RequestTimeout(DomainError):
    status = 408
    code = "request_timeout"


class TooManyRequests(DomainError):
    status = 429
    code = "too_many_requests"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class UnknownTenant(NotFound):
    code = "unknown_tenant"


class DeliveryError(DomainError):
    """A connector could not hand a message to its channel. ``retry`` says whether trying again can help."""

    status = 502
    code = "delivery_failed"

    def __init__(self, message: str, *, retry: bool = True, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry = retry
