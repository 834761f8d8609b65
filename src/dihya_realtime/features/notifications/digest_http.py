"""The digest's HTTP routes: the unsubscribe link, and addresses for the standalone service.

- ``GET /digest/unsubscribe?token=…`` shows a confirmation page and changes nothing (mail
  scanners open links); ``POST`` to the same URL turns the digest off. That POST is also RFC
  8058's one-click unsubscribe (``List-Unsubscribe-Post: List-Unsubscribe=One-Click``), which
  mail clients send without opening a page. No sign-in: the signed token is the authority.
- ``PUT /api/v1/users/<user_id>/email`` (API key) stores the address digests go to, or forgets
  it with ``{"email": null}``; a host app with a loader does not need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, Field

from dihya_realtime.features.notifications.digest import valid_email
from dihya_realtime.features.notifications.digest_tokens import BadToken, UnsubscribeTokens
from dihya_realtime.http.api import require_api_key
from dihya_realtime.http.bodies import body
from dihya_realtime.kernel.errors import invalid

if TYPE_CHECKING:
    from dihya_realtime.features.notifications.digest import DigestService
    from dihya_realtime.realtime import Realtime

UNSUBSCRIBE_PAGE = "digest_unsubscribe.html"


class EmailIn(BaseModel):
    email: str | None = Field(max_length=254, description="one plain address, or null")


def _page(digest: DigestService, status: int, **context: Any) -> Response:
    html = digest.templates.render(UNSUBSCRIBE_PAGE, **context)
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def register_digest_routes(rt: Realtime, bp: Blueprint, digest: DigestService) -> None:
    """Add the address route to ``bp`` (the API blueprint) and the unsubscribe page, a page
    for people rather than an API, on a blueprint of its own (``dihya_digest``)."""
    pages = Blueprint("dihya_digest", __name__)

    def user_of(token: str) -> str:
        return UnsubscribeTokens.from_settings(rt.settings).user_of(token)

    @pages.route("/digest/unsubscribe", methods=["GET", "POST"])
    def digest_unsubscribe() -> Any:
        """Confirm (GET) or do (POST, one-click too) the unsubscribe of the token's user."""
        token = request.args.get("token", "")
        try:
            user_id = user_of(token)
        except BadToken as exc:
            rt.audit.record("digest_unsubscribed", outcome="bad_token",
                            remote_addr=request.remote_addr,
                            details={"expired": exc.expired})
            return _page(digest, 400, state="invalid", reason=str(exc))
        if request.method == "GET":
            return _page(digest, 200, state="confirm", action=request.full_path)
        digest.set_frequency(user_id, "off")
        rt.audit.record("digest_unsubscribed", user_id=user_id, outcome="ok",
                        remote_addr=request.remote_addr)
        return _page(digest, 200, state="done")

    @bp.put("/api/v1/users/<user_id>/email")
    @require_api_key(rt)
    @body(EmailIn, message="invalid email")
    def set_user_email(user_id: str, body: EmailIn) -> Any:
        """Store (or, with null, forget) the address the user's digests go to."""
        if not 1 <= len(user_id) <= 128:
            raise invalid("user id must be 1-128 characters")
        if body.email is not None and not valid_email(body.email):
            raise invalid("invalid email", [{"field": "email", "type": "value_error",
                                             "message": "not one plain email address"}])
        digest.set_email(user_id, body.email)
        return jsonify({"ok": True, "data": {"user_id": user_id,
                                             "email": body.email}})

    if rt.app is not None:
        rt.app.register_blueprint(pages)


__all__ = ["EmailIn", "register_digest_routes"]
