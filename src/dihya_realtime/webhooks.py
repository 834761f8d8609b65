"""What a host app needs to receive dihya-realtime webhooks: :func:`verify_signature`.

``from dihya_realtime.webhooks import verify_signature`` loads the standard library's
``hmac`` and nothing of the server. docs/webhooks.md shows it in a Flask route.
"""

from __future__ import annotations

from dihya_realtime.features.webhooks.signing import HEADER, sign, verify_signature

__all__ = ["HEADER", "sign", "verify_signature"]
