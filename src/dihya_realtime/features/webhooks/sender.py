"""One signed POST to one endpoint, with the receiver treated as hostile.

Why ``http.client`` by hand: every bound is ours to set. The connection and each read time out
after ``DIHYA_RT_WEBHOOK_TIMEOUT``, and the whole exchange is cut after twice that (a receiver
dribbling its status line or body a byte at a time would otherwise hold the worker, and every
other endpoint's deliveries, as long as it likes). A redirect is a failure, never followed (a
receiver must not send our signed body elsewhere); at most
``DIHYA_RT_WEBHOOK_MAX_RESPONSE_BYTES`` of the response are read. Only a 2xx counts as
delivered. The error text names the status or the exception class, never the secret nor the
body.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from dihya_realtime.features.webhooks.signing import HEADER, sign
from dihya_realtime.version import __version__

USER_AGENT = f"dihya-realtime-webhooks/{__version__}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one POST gave: delivered (2xx), else why not."""

    delivered: bool
    status: int | None = None
    error: str | None = None


def post(url: str, secret: str, body: bytes, *, event_id: str, event_type: str,
         timeout: float, max_response_bytes: int) -> Outcome:
    """POST ``body`` to ``url``, signed now with ``secret``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return Outcome(False, error="not an http(s) url")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = cls(parts.hostname, parts.port, timeout=timeout)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        HEADER: sign(secret, body),
        "X-Dihya-Event-Id": event_id,
        "X-Dihya-Event-Type": event_type,
    }
    watchdog = threading.Timer(2 * timeout, _cut, args=(conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(max_response_bytes)  # drained up to the cap, never beyond
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        if not watchdog.is_alive():
            return Outcome(False, error=f"no answer within {2 * timeout:g} s")
        return Outcome(False, error=f"{type(exc).__name__}: {str(exc)[:200]}")
    finally:
        watchdog.cancel()
        conn.close()
    if 200 <= status < 300:
        return Outcome(True, status)
    kind = "redirect not followed" if 300 <= status < 400 else "status"
    return Outcome(False, status, f"{kind} {status}")


def _cut(conn: http.client.HTTPConnection) -> None:
    """The exchange took too long: shut the socket, which wakes the blocked read."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


__all__ = ["USER_AGENT", "Outcome", "post"]
