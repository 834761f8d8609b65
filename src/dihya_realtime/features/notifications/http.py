"""The notifications HTTP API: ``POST /api/v1/notifications``, creating with an API key.

Creating is server-side only: this route or :meth:`Realtime.notify` (Python). Registered by
:func:`.events.setup`; the body's model is in :mod:`.schemas`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify

from dihya_realtime.features.notifications.schemas import NotificationIn
from dihya_realtime.http.api import require_api_key
from dihya_realtime.http.bodies import body

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


__all__ = ["register_routes"]
