"""The admin console's events (``/admin``): read with ``admin:read``, act with ``admin:write``.

Same authentication as every other event: the connection's token. The ``admin`` role grants
both permissions (it grants ``*``); give them to another role in ``[roles]`` to share the
console. A caller without the permission gets ``forbidden`` and a ``permission_denied`` audit
row (the pipeline's rule for every event). docs/admin.md describes the console.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dihya_realtime.features.admin.schemas import (
    AuditPayload,
    AuditReply,
    ChannelsPayload,
    ChannelsReply,
    ConnectionsPayload,
    ConnectionsReply,
    DisconnectPayload,
    DisconnectReply,
    MetricsReply,
    VerifyReply,
)
from dihya_realtime.features.admin.service import AdminService
from dihya_realtime.kernel.pipeline import EventContext
from dihya_realtime.kernel.registry import event
from dihya_realtime.kernel.settings import RateLimit

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

    Ctx = EventContext[Realtime]

ADMIN_READ = "admin:read"
ADMIN_WRITE = "admin:write"
SNAPSHOT_RATE = RateLimit(rate=2, burst=10)
"""Each snapshot asks every process: a console refreshing every few seconds fits."""


def _service(ctx: Ctx) -> AdminService:
    return ctx.rt.admin


@event("admin:connections", payload=ConnectionsPayload, reply=ConnectionsReply,
       permission=ADMIN_READ, rate=SNAPSHOT_RATE, allow_anonymous=False)
def connections(ctx: Ctx, payload: ConnectionsPayload) -> dict:
    """The live connections, by process and by user.

    With Redis every process is asked (the control bus) and those that answer within
    ``DIHYA_RT_ADMIN_GATHER_TIMEOUT`` are listed; each lists at most
    ``DIHYA_RT_ADMIN_MAX_CONNECTIONS`` (``truncated`` says so). Payload example:
    ``{"user_id": "alice"}`` (optional: one user's connections).
    """
    return _service(ctx).connections(payload.user_id)


@event("admin:channels", payload=ChannelsPayload, reply=ChannelsReply,
       permission=ADMIN_READ, rate=SNAPSHOT_RATE, allow_anonymous=False)
def channels(ctx: Ctx, payload: ChannelsPayload) -> dict:
    """Channels with subscribers, the busiest first, with their presence.

    Subscriber counts add up every process's subscribed connections; presence is the
    broker's (at most 20 members listed, ``presence_count`` is whole; ``null`` for a
    namespace without presence). Payload example: ``{"offset": 0, "limit": 50}``.
    """
    return _service(ctx).channels(payload.offset, payload.limit)


@event("admin:audit", payload=AuditPayload, reply=AuditReply, permission=ADMIN_READ,
       allow_anonymous=False)
def audit(ctx: Ctx, payload: AuditPayload) -> dict:
    """A page of the audit trail, newest first, filtered by type, user, outcome or event.

    Pass the reply's ``next_before_id`` as ``before_id`` for the next page. ``not_found``
    when the trail is not stored in the database (``DIHYA_RT_AUDIT_DB=false``). Payload
    example: ``{"type": "permission_denied", "limit": 50}``.
    """
    filters = {"type": payload.type, "user_id": payload.user_id, "outcome": payload.outcome,
               "event": payload.event}
    return _service(ctx).audit(filters=filters, before_id=payload.before_id,
                               limit=payload.limit)


@event("admin:audit_verify", reply=VerifyReply, permission=ADMIN_READ,
       rate=RateLimit(rate=0.1, burst=2), allow_anonymous=False, audit="admin_audit_verify",
       audit_details=lambda payload, reply: {"ok": reply["ok"], "rows": reply["rows"]})
def audit_verify(ctx: Ctx, payload: object) -> dict:
    """Walk the stored audit trail as ``dihya-realtime audit verify`` does.

    Reads every row: rate-limited to one call per 10 s (burst 2), and one walk at a time per
    process (who asks during a walk gets its result). ``ok`` is true when the hash chain
    holds and no record was lost; ``reason`` says what is wrong otherwise.
    """
    return _service(ctx).verify()


@event("admin:disconnect_user", payload=DisconnectPayload, reply=DisconnectReply,
       permission=ADMIN_WRITE, rate=RateLimit(rate=1, burst=10), allow_anonymous=False,
       audit="admin_disconnect_user",
       audit_details=lambda payload, reply: {"target": payload.user_id,
                                             "reason": payload.reason})
def disconnect_user(ctx: Ctx, payload: DisconnectPayload) -> dict:
    """Disconnect every connection of a user, on every process.

    Each connection gets ``disconnecting`` with the reason, then is closed. Audited as
    ``admin_disconnect_user`` with the administrator as the actor and the user as
    ``details.target``. The user may connect again: revoke their token to keep them out.
    Payload example: ``{"user_id": "mallory", "reason": "spam"}``.
    """
    return _service(ctx).disconnect_user(payload.user_id, payload.reason)


@event("admin:metrics", reply=MetricsReply, permission=ADMIN_READ, allow_anonymous=False)
def metrics(ctx: Ctx, payload: object) -> dict:
    """Key metrics of the last hour, one sample a minute, of the process serving you.

    Connections, events (and those answered with an error) and publications per minute,
    plus the minute in progress. Per process: with several, each keeps its own hour
    (Prometheus's ``/metrics`` of each process has the same counters).
    """
    return _service(ctx).metrics()


def setup(rt: Realtime) -> None:
    """Build ``rt.admin``: answer other processes' snapshot requests, sample metrics."""
    service = rt.admin = AdminService(rt, rt.channels.node_id)
    service.attach()
