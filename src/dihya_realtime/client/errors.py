"""The client side of the error envelope: ``{"ok": false, "error": {...}}`` as an exception.

Its own class, not the server's :class:`dihya_realtime.RealtimeError`: a client also sees
codes that no server sends (``timeout``: no reply in time; ``disconnected``: the connection
closed before the reply, so the server may or may not have acted), and codes a newer server
adds must not break an older client.
"""

from __future__ import annotations

from typing import Any

TIMEOUT = "timeout"
DISCONNECTED = "disconnected"


class RealtimeError(Exception):
    """A refused or failed call: ``code``, ``message``, ``details``, ``retry_after``."""

    def __init__(self, code: str, message: str, details: Any = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after

    @classmethod
    def from_error(cls, error: Any) -> RealtimeError:
        """From an envelope's ``error`` (or a ``connect_error``'s data); tolerant of junk."""
        if not isinstance(error, dict):
            return cls("internal", f"malformed error: {error!r}"[:200])
        retry_after = error.get("retry_after")
        return cls(str(error.get("code", "internal")), str(error.get("message", "")),
                   error.get("details"),
                   float(retry_after) if isinstance(retry_after, int | float) else None)

    def __repr__(self) -> str:
        return f"RealtimeError({self.code!r}, {self.message!r})"


def unwrap(event: str, reply: Any) -> Any:
    """The ``data`` of a success envelope; raises :class:`RealtimeError` for anything else."""
    if isinstance(reply, dict) and reply.get("ok") is True:
        return reply.get("data")
    if isinstance(reply, dict) and reply.get("ok") is False:
        raise RealtimeError.from_error(reply.get("error"))
    raise RealtimeError("internal", f"{event}: not an envelope: {reply!r}"[:200])
