"""The HTTP side: health, readiness, metrics, the AsyncAPI document, and the server API.

Feature modules add their routes to the blueprint through :func:`route` helpers in their own
``setup(rt)``; everything under ``/api/v1`` needs an API key (:func:`require_api_key`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, g, jsonify, request

from dihya_realtime.kernel.errors import ErrorCode, RealtimeError

if TYPE_CHECKING:
    from dihya_realtime.kernel.host import Host


def error_response(exc: RealtimeError) -> tuple[Response, int]:
    return jsonify({"ok": False, "error": exc.to_dict()}), exc.http_status


def require_api_key(rt: Host) -> Callable:
    """Decorator: the route needs ``Authorization: Bearer <key>`` or ``X-API-Key``; audited."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            fields: dict[str, Any] = {
                "remote_addr": request.remote_addr,
                "origin": request.headers.get("Origin"),
                "user_agent": request.headers.get("User-Agent"),
                "event": f"{request.method} {request.path}",
            }
            key = rt.api_keys.from_headers(request.headers.items())
            if not rt.api_keys.check(key):
                rt.metrics.auth_failures.labels("api_key").inc()
                rt.audit.record("api_refused", outcome="unauthenticated", **fields)
                return error_response(RealtimeError(ErrorCode.UNAUTHENTICATED,
                                                    "a valid API key is required"))
            g.audit_fields = fields
            try:
                response = view(*args, **kwargs)
            except RealtimeError as exc:
                rt.audit.record("api_call", outcome=exc.code.value, **fields)
                return error_response(exc)
            rt.audit.record("api_call", outcome="ok", **fields)
            return response

        return wrapper

    return decorate


def create_blueprint(rt: Host) -> Blueprint:
    bp = Blueprint("dihya_realtime", __name__)
    rt.blueprint = bp

    @bp.after_request
    def redact_json(response: Response) -> Response:
        """The HTTP API is on the wire too: its JSON passes the same redaction filter."""
        if request.path.startswith("/api/") and response.is_json \
                and not response.direct_passthrough:
            data = response.get_json(silent=True)
            clean = rt.redact(data, event=f"{request.method} {request.path}")
            if clean is not data:
                response.set_data(json.dumps(clean))
        return response

    @bp.get("/healthz")
    def healthz() -> Any:
        """Liveness: the process answers."""
        return jsonify({"status": "ok"})

    @bp.get("/readyz")
    def readyz() -> Any:
        """Readiness: 200 when the database and the broker answer, else 503 naming what is down."""
        checks: dict[str, str] = {}
        body: dict[str, Any]
        for name, ping in (("database", rt.db.ping), ("broker", rt.broker.ping)):
            try:
                ping()
                checks[name] = "ok"
            except Exception as exc:  # any failure means not ready; say which one
                checks[name] = f"down: {type(exc).__name__}"
        down = [n for n, v in checks.items() if v != "ok"]
        body = {"status": "ok" if not down else "unavailable", "checks": checks}
        if down:
            body["down"] = down
        return jsonify(body), (503 if down else 200)

    @bp.get("/metrics")
    def metrics() -> Any:
        """Prometheus metrics."""
        return Response(rt.metrics.render(), mimetype="text/plain; version=0.0.4")

    @bp.get("/openapi.json")
    def openapi() -> Any:
        """The OpenAPI document of this HTTP API."""
        from flask import current_app

        from dihya_realtime.http.openapi import openapi_document

        return jsonify(openapi_document(current_app))

    @bp.get("/asyncapi.json")
    def asyncapi() -> Any:
        """The AsyncAPI 3.0 document of every Socket.IO event."""
        from dihya_realtime.docs import asyncapi_document

        return jsonify(asyncapi_document(rt.registry))

    return bp
