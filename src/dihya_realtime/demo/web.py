"""The demo web client and the rendered events reference, served by the standalone service.

``create_app`` registers :func:`create_web_blueprint`; a host app embedding ``Realtime`` does
not get these pages (they are a demo and a reference, not part of a product's UI).

- ``GET /``: the demo app (``templates/index.html`` + the esbuild bundle ``static/app.js``
  built from ``web/src`` by ``make web``);
- ``GET /sw.js``: the demo's service worker (``web/src/sw.js``, bundled with the app), served
  at the root so that its scope covers the page (Web Push);
- ``GET /docs/events``: the AsyncAPI document rendered as a page (:mod:`events_page`), with no
  external asset;
- ``GET /admin``: the admin console (``templates/admin.html`` + ``static/admin.js``); the page
  is public, its data is not: every call is an ``admin:*`` event that needs ``admin:read``;
- dev mode only (``DIHYA_RT_DEV`` / ``serve --dev``; absent, hence 404, in production):
  ``POST /dev/token`` mints a short-lived token for any user name and roles, and
  ``POST /dev/publish`` publishes on a ``live:`` channel without an API key. Both answer only
  a loopback ``Host`` (else 403: no DNS rebinding), and ``/dev/token`` exists only while the
  JWT secret is the generated dev secret, never a configured one (see :mod:`devmode`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import (
    Blueprint,
    Response,
    abort,
    jsonify,
    render_template,
    request,
    send_from_directory,
)
from pydantic import BaseModel, Field

from dihya_realtime.demo.events_page import doc_html, events_page  # noqa: F401 - doc_html re-exported
from dihya_realtime.http.api import error_response
from dihya_realtime.http.bodies import body
from dihya_realtime.kernel.devmode import is_dev_secret, is_loopback_host
from dihya_realtime.kernel.errors import RealtimeError, forbidden, invalid
from dihya_realtime.version import __version__

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.web")
PACKAGE_DIR = Path(__file__).parent.parent  # templates/ and static/ stay at the package root
STATIC_DIR = PACKAGE_DIR / "static"
DEV_TOKEN_TTL = 15 * 60
"""Seconds a dev-mode token lives: short, so the demo shows ``auth:expiring`` / ``auth:refresh``."""

# The demo needs nothing from another origin: a strict policy proves it (no CDN, no inline JS).
CONTENT_SECURITY_POLICY = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
                           "style-src 'self'; script-src 'self'; base-uri 'none'; "
                           "frame-ancestors 'none'; form-action 'self'")


class DevTokenRequest(BaseModel):
    user_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$",
                         examples=["alice"])
    name: str | None = Field(default=None, max_length=80, examples=["Alice"])
    roles: list[str] = Field(default_factory=lambda: ["user"], max_length=10)


class DevPublishRequest(BaseModel):
    channel: str = Field(default="live:demo", pattern=r"^live:", max_length=161)
    data: Any = Field(default=None, description="any JSON value; a timestamped note if absent")


def asset_version() -> str:
    """Changes whenever the bundle is rebuilt, so browsers never run a stale ``app.js``."""
    try:
        return str(int((STATIC_DIR / "app.js").stat().st_mtime))
    except FileNotFoundError:
        return "missing"


def create_web_blueprint(rt: Realtime) -> Blueprint:
    """The demo pages and, in dev mode only, the dev endpoints."""
    bp = Blueprint("dihya_web", __name__, template_folder=str(PACKAGE_DIR / "templates"),
                   static_folder=str(STATIC_DIR), static_url_path="/static")
    settings = rt.settings

    @bp.after_request
    def security_headers(response: Response) -> Response:
        if response.mimetype == "text/html":
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @bp.get("/")
    def index() -> Any:
        """The demo web client."""
        events = rt.registry.events
        config = {"dev": settings.dev, "version": __version__,
                  "roles": sorted(settings.roles), "live_channel": "live:demo",
                  # the page hides what this server does not offer (a feature not installed)
                  "features": {"chat": "chat:send" in events,
                               "notifications": "notifications:list" in events,
                               "docs": "doc:join" in events}}
        return render_template("index.html", config=config, asset_version=asset_version())

    @bp.get("/sw.js")
    def service_worker() -> Any:
        """The demo's service worker (Web Push), at the root so that its scope is the site."""
        response = send_from_directory(STATIC_DIR, "sw.js", mimetype="text/javascript",
                                       max_age=0)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @bp.get("/admin")
    def admin_console() -> Any:
        """The admin console: served to anyone; every call it makes needs ``admin:read``
        (absent, 404, when ``DIHYA_RT_FEATURES`` leaves the admin feature off)."""
        if "admin:connections" not in rt.registry.events:
            abort(404)
        config = {"dev": settings.dev, "roles": sorted(settings.roles)}
        return render_template("admin.html", config=config, asset_version=asset_version())

    @bp.get("/docs/events")
    def docs_events() -> Any:
        """The AsyncAPI document of every Socket.IO event, as a page (no external asset)."""
        from dihya_realtime.docs import asyncapi_document

        limits = {}
        for spec in rt.registry.events.values():
            limit = rt.pipeline.limit_for(spec)
            limits[spec.name] = f"{limit.rate:g} calls/s, bursts of {limit.burst}"
        page = events_page(asyncapi_document(rt.registry), limits, settings.max_payload_bytes)
        return render_template("events.html", page=page, asset_version=asset_version())

    if not settings.dev:
        return bp

    @bp.before_request
    def loopback_only() -> Any:
        """The dev endpoints answer a loopback ``Host`` only: a page of another site whose
        name resolves to 127.0.0.1 (DNS rebinding) sends its own name and is refused."""
        if request.path.startswith("/dev/") and not is_loopback_host(request.host):
            return error_response(forbidden("the dev endpoints answer a loopback Host only"))
        return None

    # The dev endpoints answer their errors as the API does: ``{"ok": false, "error": …}``.
    bp.register_error_handler(RealtimeError, error_response)
    publish_route(bp, rt)
    if not is_dev_secret(settings.jwt_secret):
        log.warning("dev mode with a configured JWT secret: POST /dev/token is off (it signs "
                    "only with the generated dev secret)")
        return bp

    @bp.post("/dev/token")
    @body(DevTokenRequest)
    def dev_token(body: DevTokenRequest) -> Any:
        """Dev mode only: a token for any user name and roles (the demo's sign-in)."""
        from dihya_realtime.kernel.auth import mint_token

        unknown = [r for r in body.roles if r not in settings.roles]
        if unknown:
            raise invalid(f"unknown roles: {', '.join(unknown)}",
                          [{"field": "roles", "message": "known roles: "
                            + ", ".join(sorted(settings.roles))}])
        token = mint_token(settings, body.user_id, body.roles, name=body.name or body.user_id,
                           ttl=DEV_TOKEN_TTL)
        rt.audit.record("dev_token", outcome="ok", user_id=body.user_id,
                        remote_addr=request.remote_addr, details={"roles": body.roles})
        return jsonify({"ok": True, "data": {"token": token, "user_id": body.user_id,
                                             "expires_at": time.time() + DEV_TOKEN_TTL}})

    return bp


def publish_route(bp: Blueprint, rt: Realtime) -> None:
    """``POST /dev/publish`` (dev mode only; its errors are answered by the handler that
    :func:`create_web_blueprint` registers)."""

    @bp.post("/dev/publish")
    @body(DevPublishRequest, optional=True)
    def dev_publish(body: DevPublishRequest) -> Any:
        """Dev mode only: publish on a ``live:`` channel (production: ``POST /api/v1/publish``)."""
        data = body.data if body.data is not None else {
            "text": "published from the demo", "at": time.time()}
        pub, _ = rt.publish(body.channel, data)
        return jsonify({"ok": True, "data": {"channel": pub.channel, "offset": pub.offset,
                                             "epoch": pub.epoch, "id": pub.id}})
