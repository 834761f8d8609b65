"""The notifications HTTP API: ``POST /api/v1/notifications``, creating with an API key, and
``GET /api/v1/push/vapid-key``, the Web Push public key for the page.

Creating is server-side only: this route or :meth:`Realtime.notify` (Python). Registered by
:func:`.events.setup`; the body's model is in :mod:`.schemas`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify

from dihya_realtime.features.notifications.schemas import NotificationIn
from dihya_realtime.http.api import error_response, require_api_key
from dihya_realtime.http.bodies import body
from dihya_realtime.kernel.errors import not_found

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


def register_routes(rt: Realtime, bp: Blueprint) -> None:
    """Add the notification route to ``bp`` (the API blueprint), serving ``rt.notifications``."""
    service = rt.notifications

    @bp.post("/api/v1/notifications")
    @require_api_key(rt)
    @body(NotificationIn, message="invalid notification")
    def create_notifications(body: NotificationIn) -> Any:
        """Create notifications; 201 when any is new, 200 when an idempotent repeat."""
        notifications, created = service.create(service.check_target(body))
        reply = {"ok": True, "data": {"notifications": notifications, "created": created}}
        return jsonify(reply), (201 if created else 200)

    @bp.get("/api/v1/push/vapid-key")
    def push_vapid_key() -> Any:
        """The VAPID public key (``applicationServerKey`` form), for ``pushManager.subscribe``.

        Public, like ``/healthz``: the key is public by design (every push carries it), and a
        page asks for it before it subscribes. 404 ``not_found`` when Web Push is off.
        """
        web_push = service.web_push
        if web_push is None:
            return error_response(not_found("Web Push is not configured on this server"))
        return jsonify({"ok": True, "data": {"public_key": web_push.keys.public_key}})


__all__ = ["register_routes"]
