"""The webhooks HTTP API: ``POST /api/v1/webhooks/test``, with an API key.

Sends a ``webhook.test`` event at once to one endpoint (``{"endpoint": "search"}``) or to
every configured one (``{}``), and answers each outcome, so an operator sees a wrong URL or a
receiver that rejects the signature without waiting for a real event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify
from pydantic import BaseModel, Field

from dihya_realtime.http.api import require_api_key
from dihya_realtime.http.bodies import body
from dihya_realtime.kernel.errors import not_found

if TYPE_CHECKING:
    from dihya_realtime.features.webhooks.service import WebhookService
    from dihya_realtime.realtime import Realtime


class TestWebhookIn(BaseModel):
    """The body of ``POST /api/v1/webhooks/test``."""

    model_config = {"extra": "forbid"}
    endpoint: str | None = Field(default=None, min_length=1, max_length=64,
                                 description="one endpoint's name; every endpoint if absent")


def register_routes(rt: Realtime, bp: Blueprint, service: WebhookService) -> None:
    """Add the test route to ``bp`` (the API blueprint)."""

    @bp.post("/api/v1/webhooks/test")
    @require_api_key(rt)
    @body(TestWebhookIn, message="invalid webhook test request", optional=True)
    def test_webhook(body: TestWebhookIn) -> Any:
        """Send a test event; 200 with each endpoint's outcome."""
        if not service.endpoints:
            raise not_found("no webhook endpoint is configured (DIHYA_RT_WEBHOOKS)")
        if body.endpoint is not None and body.endpoint not in service.endpoints:
            raise not_found("no such webhook endpoint", {"endpoint": body.endpoint})
        results = service.send_test(body.endpoint)
        return jsonify({"ok": True, "data": {"results": results}}), 200


__all__ = ["TestWebhookIn", "register_routes"]
