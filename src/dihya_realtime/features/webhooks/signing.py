"""The ``X-Dihya-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``.

Why the timestamp is signed with the body: a captured delivery replayed later fails the
``tolerance`` check, and the receiver cannot be fooled into accepting an old body under a new
time. Standard library only, so a host imports :func:`verify_signature` (re-exported as
``dihya_realtime.webhooks.verify_signature``) without loading the server.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Dihya-Signature"
MAX_HEADER_LENGTH = 1024


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The header value signing ``body`` at ``timestamp`` (now by default)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_digest(secret, t, body)}"


def verify_signature(secret: str | bytes, header: str | None, body: bytes,
                     tolerance: float = 300, now: float | None = None) -> bool:
    """Is ``header`` a valid signature of ``body`` made within ``tolerance`` seconds?

    ``body`` is the raw request body (bytes, before any JSON parsing). Several ``v1=`` values
    are accepted (one per secret, during a rotation); any one matching suffices. Compared in
    constant time. Returns ``False`` for anything malformed; never raises on input.
    """
    if not header or len(header) > MAX_HEADER_LENGTH or not isinstance(body, bytes | bytearray):
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, bytes(body))
    return any(hmac.compare_digest(expected, c) for c in candidates)


__all__ = ["HEADER", "sign", "verify_signature"]
