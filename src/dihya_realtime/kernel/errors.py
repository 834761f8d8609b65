"""The error values of the wire contract.

Every failure a client can see is a :class:`RealtimeError` with one of the :class:`ErrorCode`
codes; it becomes the reply envelope ``{"ok": false, "error": {...}}``. Never a bare string,
never a traceback.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    INVALID_PAYLOAD = "invalid_payload"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RATE_LIMITED = "rate_limited"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


HTTP_STATUS = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.INVALID_PAYLOAD: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}


class RealtimeError(Exception):
    """A failure the client can act on. Raise it from any handler or service."""

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        if self.retry_after is not None:
            error["retry_after"] = round(self.retry_after, 3)
        return error

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]


def forbidden(message: str = "permission denied", details: Any = None) -> RealtimeError:
    return RealtimeError(ErrorCode.FORBIDDEN, message, details)


def not_found(message: str, details: Any = None) -> RealtimeError:
    return RealtimeError(ErrorCode.NOT_FOUND, message, details)


def invalid(message: str, details: Any = None) -> RealtimeError:
    return RealtimeError(ErrorCode.INVALID_PAYLOAD, message, details)


def conflict(message: str, details: Any = None) -> RealtimeError:
    return RealtimeError(ErrorCode.CONFLICT, message, details)


def ok(data: Any = None) -> dict[str, Any]:
    """The success envelope."""
    return {"ok": True, "data": data}


def fail(error: RealtimeError) -> dict[str, Any]:
    """The failure envelope."""
    return {"ok": False, "error": error.to_dict()}
