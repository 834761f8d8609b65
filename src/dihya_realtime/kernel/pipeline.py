"""The event pipeline: every client event goes through here, once.

    rate limit → validation → permission → anonymous rule → handler → audit → redaction
    → metrics

What an event declares (:meth:`~dihya_realtime.kernel.registry.Registry.event`) is enforced
here, so a handler repeats none of it: its permission, whether anonymous users may call it,
and the audit row its success records.

A handler only holds its feature's logic. Every failure becomes a value from the wire
contract (:mod:`dihya_realtime.kernel.errors`): a reply envelope when the client asked for an ack,
else an ``error`` event. A handler's exception is logged with an error id and answered with
``internal``; the connection stays usable.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from dihya_realtime.kernel.connections import Connection
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError, fail, ok
from dihya_realtime.kernel.payloads import clip_text, validate
from dihya_realtime.kernel.ratelimit import KeyedBuckets
from dihya_realtime.kernel.registry import EventSpec
from dihya_realtime.kernel.settings import RateLimit

if TYPE_CHECKING:
    from dihya_realtime.kernel.host import Host

log = logging.getLogger("dihya_realtime.events")

HostT = TypeVar("HostT", bound="Host", covariant=True)
"""What ``ctx.rt`` is: the kernel knows it as a :class:`~dihya_realtime.kernel.host.Host`; a
feature's handlers take ``EventContext[Realtime]`` so mypy follows ``ctx.rt.chat`` to the
feature's service."""

_call = threading.local()
"""Per event call: did the client ask for an ack, and what runs after the reply is sent.

Under gevent this is greenlet-local; python-socketio runs each event in its own task.
"""


UNKNOWN = "<unknown>"
"""The bucket and metric label that every unknown event name shares."""

RESERVED_EVENTS = frozenset({"connect", "disconnect", "connect_error"})
"""Lifecycle event names a client must not be able to trigger with an EVENT packet."""


def anonymous_refusal(spec: EventSpec) -> str:
    """The ``forbidden`` message for an anonymous caller of an ``allow_anonymous=False``
    event: ``"notifications need a signed-in user"``."""
    return f"{spec.feature} need a signed-in user"


def client_event() -> bool:
    """True while a client's EVENT packet is being handled (not connect/disconnect)."""
    return getattr(_call, "client", False)


class EventContext(Generic[HostT]):
    """What a handler gets besides its payload: who called, and ways to answer."""

    __slots__ = ("rt", "conn", "event", "audit_skipped")

    def __init__(self, rt: HostT, conn: Connection, event: str) -> None:
        self.rt = rt
        self.conn = conn
        self.event = event
        self.audit_skipped = False

    @property
    def user_id(self) -> str:
        return self.conn.principal.user_id

    @property
    def sid(self) -> str:
        return self.conn.sid

    def emit(self, event: str, data: Any, to: str | None = None) -> None:
        """Emit to this connection (default) or to a room, through the redaction filter."""
        self.rt.emit(event, data, to=to or self.conn.sid)

    def after_reply(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the reply has been sent (e.g. to start live delivery after it)."""
        hooks = getattr(_call, "after", None)
        if hooks is None:
            fn()
        else:
            hooks.append(fn)

    def skip_audit(self) -> None:
        """Record no success row for this call: only the handler knew nothing worth it
        happened (an author deleting their own message is no moderation)."""
        self.audit_skipped = True

    def audit(self, type_: str, outcome: str = "ok", **details: Any) -> None:
        self.rt.audit.record(type_, event=self.event, outcome=outcome, details=details or None,
                             **self.conn.audit_fields())


class Pipeline:
    """Runs declared events for one :class:`~dihya_realtime.realtime.Realtime`."""

    def __init__(self, rt: Host) -> None:
        self.rt = rt
        settings = rt.settings
        self.event_limit = settings.rate_limit_event
        self.event_limits = settings.rate_limit_events  # per-event overrides, by name
        self.abuse_strikes = settings.rate_limit_abuse_strikes
        # Per-event buckets are keyed by user, not kept on the connection: reconnecting must
        # not refill them (60 `chat:create_room` in 0.4 s over 6 reconnects, issue 12).
        self.event_buckets = KeyedBuckets(self.event_limit, settings.rate_limit_max_keys)
        # Metric children bound once per (event, outcome): ``.labels()`` hashes its label
        # values and takes a lock on every call, which showed in the acked path's profile.
        self._counters: dict[tuple[str, str], Any] = {}
        self._timers: dict[str, Any] = {}

    def _observe(self, name: str, outcome: str, seconds: float) -> None:
        counter = self._counters.get((name, outcome))
        if counter is None:
            counter = self._counters[name, outcome] = self.rt.metrics.events.labels(name, outcome)
        timer = self._timers.get(name)
        if timer is None:
            timer = self._timers[name] = self.rt.metrics.latency.labels(name)
        counter.inc()
        timer.observe(seconds)

    def limit_for(self, spec: EventSpec) -> RateLimit:
        """The per-user limit of ``spec``: settings override, declared, default."""
        return self.event_limits.get(spec.name) or spec.rate or self.event_limit

    # -- hooks into python-socketio's event call, to know about acks
    def around_event_call(self, original: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ``Server._handle_event_internal`` to learn whether the client wants an ack.

        python-socketio does not tell the handler; the ack id is only known one level up.
        """

        def handle_event_internal(server: Any, sid: str, eio_sid: str, data: Any,
                                  namespace: str, id: Any) -> Any:
            _call.ack = id is not None
            _call.after = []
            _call.client = True
            try:
                return original(server, sid, eio_sid, data, namespace, id)
            finally:
                _call.client = False
                hooks, _call.after = _call.after, None
                for hook in hooks:
                    try:
                        hook()
                    except Exception:
                        log.exception("after-reply hook failed")

        return handle_event_internal

    # -- the pipeline
    def dispatch(self, spec: EventSpec | None, name: str, sid: str, args: tuple) -> Any:
        """Handle one event; returns the ack envelope (or ``None`` when no ack was asked)."""
        started = time.perf_counter()
        rt = self.rt
        conn = rt.connections.get(sid)
        outcome = "ok"
        if spec is None:
            name = clip_text(str(name))  # a client's unknown name: bounded in replies and audit
        try:
            if conn is None:
                raise RealtimeError(ErrorCode.UNAUTHENTICATED, "connection is not authenticated")
            if spec is None:
                self._check_rate(None, conn, name)
                rt.audit.record("unknown_event", event=name, outcome="not_found",
                                **conn.audit_fields())
                raise RealtimeError(ErrorCode.NOT_FOUND, f"unknown event {name!r}",
                                    {"event": name})
            self._check_rate(spec, conn, name)
            payload = self._validate(spec, conn, args)
            if spec.permission is not None and not conn.can(spec.permission):
                rt.audit.record("permission_denied", event=name, outcome="forbidden",
                                details={"permission": spec.permission},
                                **conn.audit_fields())
                raise RealtimeError(ErrorCode.FORBIDDEN,
                                    f"missing permission {spec.permission!r}",
                                    {"permission": spec.permission})
            if not spec.allow_anonymous and conn.principal.anonymous:
                raise RealtimeError(ErrorCode.FORBIDDEN, anonymous_refusal(spec))
            ctx = EventContext(rt, conn, name)
            result = spec.handler(ctx, payload)
            if isinstance(result, BaseModel):
                result = result.model_dump(mode="json", by_alias=True)
            if spec.audit is not None and not ctx.audit_skipped:
                self._audit_success(spec.audit, spec, conn, payload, result)
            envelope = ok(rt.redact(result, event=name, conn=conn))
        except RealtimeError as exc:
            outcome = exc.code.value
            if exc.code is ErrorCode.FORBIDDEN and conn is not None and spec is not None \
                    and exc.details != {"permission": spec.permission}:
                rt.audit.record("permission_denied", event=name, outcome="forbidden",
                                details={"message": exc.message}, **conn.audit_fields())
            envelope = fail(exc)
        except Exception:
            outcome = "internal"
            error_id = uuid.uuid4().hex[:12]
            log.exception("handler for %r failed (error id %s)", name, error_id)
            if conn is not None:
                rt.audit.record("handler_error", event=name, outcome="internal",
                                details={"error_id": error_id}, **conn.audit_fields())
            envelope = fail(RealtimeError(ErrorCode.INTERNAL,
                                          f"internal error (error id {error_id})",
                                          {"error_id": error_id}))
        # unknown names share one label: a client must not grow the metric's cardinality
        self._observe(name if spec else UNKNOWN, outcome, time.perf_counter() - started)
        if getattr(_call, "ack", True):
            return envelope
        if not envelope["ok"]:
            rt.emit("error", {"event": name, "error": envelope["error"]}, to=sid)
        return None

    def _audit_success(self, action: str, spec: EventSpec, conn: Connection, payload: Any,
                       reply: Any) -> None:
        """The row ``spec`` declares for a success, before the reply is redacted and sent."""
        details = None
        if spec.audit_details is not None:
            details = spec.audit_details(payload, reply)
            if details is None:
                return  # the reply shows nothing worth auditing happened
        self.rt.audit.record(action, event=spec.name, outcome="ok",
                             details=details or None, **conn.audit_fields())

    def _check_rate(self, spec: EventSpec | None, conn: Connection, name: str) -> None:
        """Per user and event (unknown names share one bucket), then per user overall.

        What events cost in bytes is charged before they are decoded, per connection, by
        :mod:`dihya_realtime.transport.inbound` (``DIHYA_RT_RATE_LIMIT_BYTES``, scope ``bytes``).

        Anonymous principals get a new id per connection anyway; theirs stay per connection
        rather than per client address, which behind a proxy or NAT would make strangers
        share one budget (reconnects there are bounded by the per-IP connect limit). The
        scope reported stays ``connection`` for the per-event limit (the wire contract's).
        """
        key = spec.name if spec is not None else UNKNOWN
        limit = self.limit_for(spec) if spec is not None else self.event_limit
        who = ("conn", conn.sid) if conn.principal.anonymous else ("user", conn.user_id)
        wait = self.event_buckets.take((*who, key), limit=limit)
        scope = "connection"
        if not wait:
            wait = self.rt.user_buckets.take(conn.user_id)
            scope = "user"
        if not wait:
            return
        conn.strikes += 1
        rt = self.rt
        rt.metrics.rate_limited.labels(scope).inc()
        rt.audit.record("rate_limited", event=name, outcome="rate_limited",
                        details={"scope": scope, "retry_after": round(wait, 3),
                                 "strikes": conn.strikes}, **conn.audit_fields())
        if conn.strikes >= self.abuse_strikes:
            rt.audit.record("disconnect_abuse", event=name, outcome="disconnected",
                            details={"strikes": conn.strikes}, **conn.audit_fields())
            rt.socketio.server.start_background_task(rt.disconnect_sid, conn.sid)
        raise RealtimeError(ErrorCode.RATE_LIMITED, f"too many {name!r} events",
                            {"scope": scope}, retry_after=wait)

    def _validate(self, spec: EventSpec, conn: Connection, args: tuple) -> Any:
        if spec.payload is None:
            return args[0] if args else None
        raw = args[0] if args else {}
        try:
            return validate(spec.payload, raw, f"invalid payload for {spec.name!r}")
        except RealtimeError as exc:
            self.rt.audit.record(
                "invalid_payload", event=spec.name, outcome="invalid_payload",
                details={"fields": [d["field"] for d in exc.details]}, **conn.audit_fields())
            raise
