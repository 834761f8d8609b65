"""Built-in events: who am I, and refreshing the token of a live connection."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from dihya_realtime.features.session.resync import ResyncNotice
from dihya_realtime.kernel.auth import AuthError
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.pipeline import EventContext
from dihya_realtime.kernel.registry import event, server_event
from dihya_realtime.kernel.settings import RateLimit

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

    Ctx = EventContext[Realtime]  # handlers see the facade: mypy follows ctx.rt.<feature>

log = logging.getLogger("dihya_realtime.events")


class WhoAmIReply(BaseModel):
    user_id: str
    roles: list[str]
    name: str | None
    sid: str = Field(description="this connection's id")
    server_time: float = Field(description="UNIX seconds on the server")
    expires_at: float | None = Field(description="the token's exp, or null")


@event("whoami", reply=WhoAmIReply)
def whoami(ctx: Ctx, payload: object) -> WhoAmIReply:
    """Who this connection is authenticated as.

    Payload: none. Reply example::

        {"ok": true, "data": {"user_id": "17", "roles": ["user"], "name": "Alice",
         "sid": "hG3…", "server_time": 1795000000.123, "expires_at": 1795003600}}
    """
    p = ctx.conn.principal
    return WhoAmIReply(user_id=p.user_id, roles=list(p.roles), name=p.name, sid=ctx.sid,
                       server_time=time.time(), expires_at=p.expires_at)


class RefreshPayload(BaseModel):
    token: str = Field(min_length=1, max_length=8192, description="a new JWT for the same sub")


class RefreshReply(BaseModel):
    expires_at: float | None


@event("auth:refresh", payload=RefreshPayload, reply=RefreshReply,
       rate=RateLimit(rate=1, burst=5), emits=("unsubscribed", "doc:closed"))
def refresh(ctx: Ctx, payload: RefreshPayload) -> RefreshReply:
    """Extend a live connection with a fresh token for the same user.

    Send it after ``auth:expiring``. A token for another ``sub`` → ``forbidden``; an invalid
    or expired token → ``unauthenticated``. Payload example: ``{"token": "eyJhbGciOi…"}``.
    The new token's roles apply at once: every channel the connection may no longer read is
    unsubscribed, with an ``unsubscribed`` event (``reason: "forbidden"``) for each, and every
    joined document it may no longer read is left, with a ``doc:closed`` event for each.
    """
    rt = ctx.rt
    try:
        principal = rt.verifier.verify(payload.token)
    except AuthError as exc:
        ctx.audit("auth_refresh_refused", outcome="unauthenticated", reason=exc.reason)
        raise RealtimeError(ErrorCode.UNAUTHENTICATED, exc.message, {"reason": exc.reason}) \
            from None
    if principal.user_id != ctx.user_id:
        raise RealtimeError(ErrorCode.FORBIDDEN, "the token is for another user")
    rt.connections.replace_principal(ctx.conn, principal, rt.principal_permissions(principal))
    rt.expiry.watch(ctx.conn)
    ctx.audit("auth_refreshed", expires_at=principal.expires_at)
    rt.lifecycle.hooks.refreshed(ctx)  # each feature takes back what the new roles forbid
    return RefreshReply(expires_at=principal.expires_at)


class ExpiringEvent(BaseModel):
    expires_in: float = Field(description="seconds until the token's exp")


class ExpiredEvent(BaseModel):
    reason: str = Field(description='"token_expired"')


class ErrorBody(BaseModel):
    code: str = Field(description="unauthenticated | forbidden | invalid_payload | not_found | "
                      "conflict | rate_limited | payload_too_large | unavailable | internal")
    message: str
    details: object | None = None
    retry_after: float | None = None


class ErrorEvent(BaseModel):
    event: str = Field(description="the client event that failed")
    error: ErrorBody


class DisconnectingEvent(BaseModel):
    reason: str


class ResyncEvent(BaseModel):
    reason: Literal["fanout_restored"] = Field(
        description="fanout_restored: this server lost its broker links for a while and has "
                    "them back")


server_event("auth:expiring", ExpiringEvent, """
    The connection's token expires soon: send ``auth:refresh`` with a new one.

    Sent ``DIHYA_RT_EXPIRY_WARNING_SECONDS`` (default 60) before ``exp``. Without a refresh
    the server disconnects ``DIHYA_RT_EXPIRY_GRACE_SECONDS`` (default 25) after ``exp``.
""")
server_event("auth:expired", ExpiredEvent, """
    The token expired and was not refreshed; the server disconnects right after this.
""")
server_event("error", ErrorEvent, """
    The failure of a client event that was sent without an ack.

    Example: ``{"event": "publish", "error": {"code": "forbidden", "message": "…"}}``.
""")
server_event("disconnecting", DisconnectingEvent, """
    The server is about to disconnect this connection (an operator or the HTTP API asked).
""")
server_event("resync", ResyncEvent, """
    Live events may have been missed: re-read what you show, as after a reconnect.

    Sent to every connection of a server whose links to the broker (Redis) broke and are back
    (a Redis restart, a failover, a dropped connection): room messages, notifications,
    document updates and other user-addressed events sent meanwhile never reached it. Read
    again what you show, as after a reconnect: the history after your last ``seq``, the
    counts, the document state (docs/scaling.md lists the calls). Channel subscriptions need
    nothing: the server catches them up from history itself, or removes them with
    ``unsubscribed`` (``reason: "recover"``). Example: ``{"reason": "fanout_restored"}``.
""")


def setup(rt: Realtime) -> None:
    """Tell connections to ``resync`` when the broker's fan-out comes back
    (:mod:`.resync`); ``whoami`` and ``auth:refresh`` need only the kernel (a refresh runs the
    hooks the other features attached with ``rt.on_refresh``)."""
    ResyncNotice(rt).attach()
