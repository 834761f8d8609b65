"""The :class:`Realtime` Flask extension: composes the kernel, the transport and the features.

``Realtime(app)`` (or ``Realtime().init_app(app)``) gives a Flask app authenticated,
validated, audited Socket.IO events, the HTTP API and the metrics. ``create_app()``
(:mod:`dihya_realtime.app`) builds the standalone service that ``dihya-realtime serve`` runs.

This module only builds and wires: the connection lifecycle is
:mod:`dihya_realtime.kernel.lifecycle`'s, the event pipeline
:mod:`dihya_realtime.kernel.pipeline`'s, the python-socketio hooks they stand on
:mod:`dihya_realtime.transport.hooks`'s, and what happens before any CONNECT (Engine.IO
sessions, CONNECT packets per session, unknown namespaces)
:mod:`dihya_realtime.transport.sessions`'s. What it keeps is the server-side API a host app
calls (``rt.publish``, ``rt.notify``, ``rt.disconnect_user`` …). docs/architecture.md
draws the layers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, overload

from flask import Flask
from flask_socketio import SocketIO

from dihya_realtime.broker import (
    Broker,
    Message,
    Publication,
    RecoveryResult,
    StreamPosition,
    create_broker,
)
from dihya_realtime.broker.control import ControlBus
from dihya_realtime.features import enabled_features, hidden_feature_modules, setup_features
from dihya_realtime.features.channels.service import ChannelService
from dihya_realtime.kernel.audit import AuditLog
from dihya_realtime.kernel.auth import ApiKeyChecker, TokenVerifier, Verifier
from dihya_realtime.kernel.client_address import client_address, parse_networks
from dihya_realtime.kernel.connections import Connection, ConnectionTable
from dihya_realtime.kernel.domain_events import DomainEvents
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.expiry import ExpiryWatch
from dihya_realtime.kernel.identity_flask_jwt import FlaskJwtExtendedVerifier
from dihya_realtime.kernel.identity_flask_login import require_flask_login
from dihya_realtime.kernel.lifecycle import (
    ConnectHook,
    ConnectionLifecycle,
    DisconnectHook,
    RefreshHook,
    refusal,
)
from dihya_realtime.kernel.metrics import Metrics
from dihya_realtime.kernel.outbox import Outbox, Queued
from dihya_realtime.kernel.permissions import RolePolicy
from dihya_realtime.kernel.pipeline import Pipeline
from dihya_realtime.kernel.principal import Principal
from dihya_realtime.kernel.ratelimit import KeyedBuckets
from dihya_realtime.kernel.redaction import Redactor
from dihya_realtime.kernel.refusals import RefusalAudit
from dihya_realtime.kernel.registry import Registry, registry
from dihya_realtime.kernel.registry_view import RegistryView
from dihya_realtime.kernel.relay import RoomRelay
from dihya_realtime.kernel.rooms import user_room
from dihya_realtime.kernel.settings import Settings, load_settings
from dihya_realtime.store import Database
from dihya_realtime.transport import hooks as event_hooks
from dihya_realtime.transport.cors import CorsForAllowedOrigins
from dihya_realtime.transport.inbound import InboundGuard
from dihya_realtime.transport.packets import (
    PacketJSON,
    refuse_failed_requests,
    refuse_malformed_packets,
)
from dihya_realtime.transport.sessions import SessionGuard
from dihya_realtime.transport.websocket import EIO_SID_KEY, adapt_websocket_driver, pings_on_timers

if TYPE_CHECKING:
    from flask import Blueprint

    from dihya_realtime.features.admin.service import AdminService
    from dihya_realtime.features.chat.service import ChatService
    from dihya_realtime.features.collab.service import DocService
    from dihya_realtime.features.notifications.service import NotificationService
    from dihya_realtime.features.webhooks.service import WebhookService
    from dihya_realtime.kernel.outbox.queue import HostSession

log = logging.getLogger("dihya_realtime")

USER_EMIT = "emit"
"""The control action of :meth:`Realtime.emit_to_users`, sent on the users' topics."""

OUTBOX_PUBLISH = "publish"
OUTBOX_NOTIFY = "notify"
OUTBOX_SYSTEM_MESSAGE = "chat.system_message"
"""The kinds of outbox rows (``session=``): :meth:`Realtime.publish`, :meth:`Realtime.notify`,
``rt.chat.send_system_message``."""


class Realtime:
    """The dihya-realtime extension for one Flask app.

    Attributes a host app uses: :attr:`settings`, :attr:`socketio`, :attr:`audit`,
    :attr:`db`, :attr:`broker`, and the feature services that the event modules attach
    (``rt.channels`` …). Declare your own events with :meth:`event`.
    """

    # Set by each feature's setup (``features.setup_features``), typed here so that the path of
    # an event from the socket to the database is visible to mypy and to readers.
    blueprint: Blueprint
    admin: AdminService
    chat: ChatService
    docs: DocService
    notifications: NotificationService
    webhooks: WebhookService

    def __init__(
        self,
        app: Flask | None = None,
        *,
        settings: Settings | None = None,
        socketio: SocketIO | None = None,
        registry_: Registry | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = settings or load_settings(**overrides)
        self.features: list[str] = enabled_features(self.settings.features)  # fails if unknown
        hidden = hidden_feature_modules(self.settings.features)
        base = registry_ or registry
        self.registry: Registry | RegistryView = (
            RegistryView(base, hidden) if hidden else base)
        self.socketio: SocketIO = socketio
        self.connections = ConnectionTable()
        # authenticated connections on the host app's other namespaces (sid → Connection)
        self.namespace_connections = ConnectionTable()
        self.trusted_proxies = parse_networks(self.settings.trusted_proxies)
        self.metrics = Metrics()
        self.domain_events = DomainEvents()  # what features tell (webhooks listen)
        self.redactor = Redactor(self.settings.redact_keys)
        self.roles = RolePolicy(self.settings.roles)
        self.verifier: Verifier = TokenVerifier(self.settings)
        self.api_keys = ApiKeyChecker(self.settings)
        self.user_buckets = KeyedBuckets(self.settings.rate_limit_user)
        self.ip_buckets = KeyedBuckets(self.settings.rate_limit_connect_ip)
        self.db = Database(self.settings.database_url)
        self.audit = AuditLog(self.db if self.settings.audit_db else None,
                              self.settings.audit_log)
        self.refusals = RefusalAudit(self.audit.record, self.settings.refusal_audit_window)
        self.guard = SessionGuard(self)
        self.broker: Broker = create_broker(
            self.settings.redis_url, self.settings.redis_prefix,
            max_history_channels=self.settings.max_history_channels,
            max_history_bytes_per_channel=self.settings.max_history_bytes_per_channel,
            max_history_bytes=self.settings.max_history_bytes,
            history_evict_idle=self.settings.history_evict_idle)
        self.control: ControlBus = ControlBus(self.broker)  # what every process is asked
        self.relay = RoomRelay(self)  # rooms with members on several processes, by interest
        self.control.register(USER_EMIT, self._emit_to_user_here, to_users=True)
        self.pipeline = Pipeline(self)
        self.channels = ChannelService(self)
        self.expiry = ExpiryWatch(self)
        self.broker_handlers: list[Callable[[Any], None]] = []
        self.lifecycle = ConnectionLifecycle(self)
        # transactional publish: rows written in the host's session, relayed after commit
        self.outbox = Outbox(self.db, self.settings, self.metrics, self.audit)
        self.outbox.handle(OUTBOX_PUBLISH, self._publish_from_outbox)
        self.outbox.handle(OUTBOX_NOTIFY, self._notify_from_outbox)
        self.outbox.handle(OUTBOX_SYSTEM_MESSAGE, self._system_message_from_outbox)
        if app is not None:
            self.init_app(app, socketio=socketio)

    # -- Flask integration
    def init_app(self, app: Flask, socketio: SocketIO | None = None) -> Realtime:
        """Attach to ``app``: Socket.IO server, event pipeline, HTTP API, features."""
        from dihya_realtime.http.api import create_blueprint

        settings = self.settings
        # the host app's own identity stack (optional extras): checked before anything starts
        if settings.flask_login:
            require_flask_login(app)
        if settings.flask_jwt_extended and isinstance(self.verifier, TokenVerifier):
            self.verifier = FlaskJwtExtendedVerifier(app, settings, fallback=self.verifier)
        app.extensions["dihya_realtime"] = self
        self.audit.start()
        if socketio is None:
            socketio = SocketIO(app, **self.socketio_options())
        else:
            self._adopt(socketio)
        self.socketio = socketio
        adapt_websocket_driver(socketio.server.eio, settings.max_payload_bytes,
                                 self._audit_oversized_message)
        pings_on_timers(socketio.server.eio)
        # first, so that InboundGuard (below) wraps it: bytes and binary are bounded before a
        # packet is decoded, and a packet that will not decode is refused without a traceback
        refuse_malformed_packets(socketio.server)
        server = socketio.server
        # authentication before any connect handler, declared events, acks: transport/hooks.py
        event_hooks.install(server, events=self.registry.events, dispatch=self.pipeline.dispatch,
                            lifecycle=self.lifecycle,
                            around_event_call=self.pipeline.around_event_call)
        self.guard.install(server)  # Engine.IO sessions, CONNECT packets: see transport/sessions.py
        app.wsgi_app = self.guard.wsgi(app.wsgi_app)  # type: ignore[method-assign]
        InboundGuard(self).install(server)  # bounds binary packets and inbound bytes per second
        if settings.allowed_origins:
            app.wsgi_app = CorsForAllowedOrigins(  # type: ignore[method-assign]
                app.wsgi_app, settings)
        # outermost on the Socket.IO path: what engine.io cannot decode is a 400, not a traceback
        app.wsgi_app = refuse_failed_requests(app.wsgi_app)  # type: ignore[method-assign]
        blueprint = create_blueprint(self)
        setup_features(self)  # the enabled features add their hooks, services and HTTP routes
        app.register_blueprint(blueprint)
        self.broker.set_handler(self._on_broker_message)
        self.broker.start()
        if settings.outbox_enabled:
            self.outbox.start()  # publishes what host transactions committed (also on restart)
        return self

    def socketio_options(self) -> dict[str, Any]:
        s = self.settings
        options: dict[str, Any] = {
            "async_mode": s.async_mode,
            # handle a client's events in its reader greenlet, in order, instead of spawning
            # a greenlet per event: acked publish +10%, p99 halved (benchmarks/README.md)
            "async_handlers": False,
            # Origin is checked at connect by us, with a clear refusal reason; engine.io's
            # own check would answer a bare HTTP 400. CORS headers: CorsForAllowedOrigins.
            "cors_allowed_origins": [],
            "max_http_buffer_size": s.max_payload_bytes,
            "ping_interval": s.ping_interval,
            "ping_timeout": s.ping_timeout,
            "manage_session": False,
            "logger": False,
            "engineio_logger": False,
            "json": PacketJSON,
        }
        if s.redis_url:
            from dihya_realtime.broker.socketio_queue import socketio_queue

            options["message_queue"] = s.redis_url
            options["client_manager"] = socketio_queue(s.redis_url, f"{s.redis_prefix}-socketio")
        return options

    def _adopt(self, socketio: SocketIO) -> None:
        """Take over a host-made SocketIO (the seed's usage): our limits, our Origin check."""
        eio = socketio.server.eio
        if eio.cors_allowed_origins not in ([], None):
            log.warning("cors_allowed_origins of the host SocketIO is replaced by "
                        "DIHYA_RT_ALLOWED_ORIGINS (checked at connect)")
        eio.cors_allowed_origins = []
        eio.max_http_buffer_size = self.settings.max_payload_bytes

    @property
    def app(self) -> Flask | None:
        """The Flask app this extension's SocketIO serves (``None`` before :meth:`init_app`,
        and in a worker's ``Realtime()``). Derived, never stored: Flask's extension guide."""
        mw = getattr(self.socketio, "sockio_mw", None)
        return mw.flask_app if mw is not None else None

    # -- declaring events (host apps use this for their own handlers)
    def event(self, name: str, **kwargs: Any) -> Callable:
        """Declare an event of the host app; it runs through the same pipeline."""
        return self.registry.event(name, **kwargs)

    # -- emitting
    def emit(self, event: str, data: Any, to: str | list[str] | None = None,
             skip_sid: str | list[str] | None = None, local: bool = False) -> None:
        """Emit through the redaction filter, to a sid or a room (every process).

        To a connection of this process, the emit stays local: through the message queue it
        would cost a Redis publish that every other process receives and drops.
        """
        clean = self.redact(data, event=event)
        if not local and isinstance(to, str) and self.connections.get(to) is not None:
            local = True
        self.socketio.server.emit(event, clean, to=to, skip_sid=skip_sid, namespace="/",
                                  ignore_queue=local)

    def emit_to_user(self, user_id: str, event: str, data: Any,
                     skip_sid: str | None = None) -> None:
        """Emit to every connection of ``user_id``, on every process."""
        self.emit_to_users([user_id], event, data, skip_sid=skip_sid)

    def emit_to_users(self, user_ids: Iterable[str], event: str, data: Any,
                      skip_sid: str | None = None) -> None:
        """Emit to every connection of each of ``user_ids``, on every process (a worker's
        ``Realtime()`` too, when Redis is configured).

        Redacted once, then sent on each user's topic (``rt.control.send_to_users``): only
        the processes where the user has a connection receive it, and each emits to its own
        connections of the user, but ``skip_sid``. Never raises: with the broker unavailable
        this process's connections still get it (a warning is logged); a payload that is not
        JSON (binary) goes over the Socket.IO message queue as before.
        """
        users = list(dict.fromkeys(str(u) for u in user_ids))
        if not users or (self.socketio is None and self.settings.redis_url is None):
            return  # nobody to deliver to: a worker without Redis (nor a redaction to audit)
        clean = self.redact(data, event=event)
        args: dict[str, Any] = {"event": event, "data": clean}
        if skip_sid is not None:
            args["skip_sid"] = skip_sid
        try:
            self.control.send_to_users(users, USER_EMIT, **args)
            return
        except RealtimeError:
            log.warning("the broker is unavailable: %r reaches the users' connections on this "
                        "process only", event)
            local = True
        except (TypeError, ValueError):  # not JSON (binary): what python-socketio encodes
            local = False
        if self.socketio is not None:
            self.socketio.server.emit(event, clean, to=[user_room(u) for u in users],
                                      skip_sid=skip_sid, namespace="/", ignore_queue=local)

    def _emit_to_user_here(self, data: dict[str, Any]) -> None:
        """An :meth:`emit_to_users` message on a user's topic: to the user's connections on
        this process (the other processes holding some got the same message)."""
        if self.socketio is None:
            return
        self.socketio.server.emit(data["event"], data.get("data"), to=user_room(data["user_id"]),
                                  skip_sid=data.get("skip_sid"), namespace="/", ignore_queue=True)

    def redact(self, value: Any, *, event: str, conn: Connection | None = None) -> Any:
        clean, paths = self.redactor.redact(value)
        if paths:
            fields = conn.audit_fields() if conn else {}
            self.audit.record("redaction", event=event, outcome="redacted",
                              details={"paths": paths}, **fields)
        return clean

    # -- notifications
    @overload
    def notify(self, *, session: None = None, **fields: Any) -> list[dict[str, Any]]: ...
    @overload
    def notify(self, *, session: HostSession, **fields: Any) -> Queued: ...
    def notify(self, *, session: HostSession | None = None,
               **fields: Any) -> list[dict[str, Any]] | Queued:
        """Create in-app notifications: see :meth:`NotificationService.notify`.

        Works without a Flask app too (a worker's ``Realtime()``): it stores, then delivers
        on the users' topics when Redis is configured. Raises ``RuntimeError`` when
        ``DIHYA_RT_FEATURES`` leaves notifications off (its tables are not even migrated).
        With ``session=`` (the host's SQLAlchemy session) the request is checked now and
        written as an outbox row in the host's transaction; the notifications are created
        once it commits (docs/host-integration.md).
        """
        service = self._notification_service()
        if session is not None:
            return service.notify(session=session, **fields)
        return service.notify(**fields)

    def _notification_service(self) -> NotificationService:
        service = getattr(self, "notifications", None)
        if service is None:
            if "notifications" not in self.features:
                raise RuntimeError("rt.notify: DIHYA_RT_FEATURES leaves notifications off")
            from dihya_realtime.features.notifications.service import NotificationService

            service = self.notifications = NotificationService(self)
        return service

    # -- connections
    def disconnect_sid(self, sid: str) -> None:
        self.socketio.server.disconnect(sid, namespace="/")

    # -- the server-side API (also from a worker with no sockets: only the broker is needed)
    @overload
    def publish(self, channel: str, data: Any, idempotency_key: str | None = None, *,
                session: None = None) -> tuple[Publication, bool]: ...
    @overload
    def publish(self, channel: str, data: Any, idempotency_key: str | None = None, *,
                session: HostSession) -> Queued: ...
    def publish(self, channel: str, data: Any, idempotency_key: str | None = None, *,
                session: HostSession | None = None) -> tuple[Publication, bool] | Queued:
        """Publish ``data`` on ``channel`` from the server; returns ``(publication, created)``.

        Raises ``RealtimeError`` (``not_found`` for an unknown namespace, ``invalid_payload``
        for a bad name, ``unavailable`` when the broker is down: never a silent loss).

        With ``session=`` (the host's SQLAlchemy session, e.g. Flask-SQLAlchemy's
        ``db.session``): the channel is checked now, and an outbox row is written in the
        host's transaction; the relay publishes it once that commits, in commit order per
        channel, once (the row's id is the idempotency key unless ``idempotency_key`` is
        given). Returns :class:`~dihya_realtime.kernel.outbox.Queued`. Nothing is published
        if the transaction rolls back.
        """
        if session is None:
            return self.channels.publish(channel, data, idempotency_key=idempotency_key)
        ref = self.channels.resolve(channel)  # an unknown namespace or a bad name: refused now
        payload: dict[str, Any] = {"channel": ref.channel, "data": data}
        if idempotency_key is not None:
            payload["idempotency_key"] = idempotency_key
        return self.outbox.enqueue(session, OUTBOX_PUBLISH, ref.channel, payload)

    # -- what outbox rows do once their transaction committed (kernel/outbox/relay.py)
    def _publish_from_outbox(self, outbox_id: str, payload: dict[str, Any]) -> None:
        key = payload.get("idempotency_key") or f"outbox:{outbox_id}"
        self.channels.publish(payload["channel"], payload.get("data"), idempotency_key=key)

    def _notify_from_outbox(self, outbox_id: str, payload: dict[str, Any]) -> None:
        if "notifications" not in self.features:
            raise RealtimeError(ErrorCode.NOT_FOUND, "DIHYA_RT_FEATURES leaves notifications off")
        fields = {"idempotency_key": f"outbox:{outbox_id}", **payload}
        self._notification_service().notify(**fields)

    def _system_message_from_outbox(self, outbox_id: str, payload: dict[str, Any]) -> None:
        chat = getattr(self, "chat", None)
        if chat is None:
            if "chat" not in self.features:
                raise RealtimeError(ErrorCode.NOT_FOUND, "DIHYA_RT_FEATURES leaves chat off")
            raise RealtimeError(ErrorCode.UNAVAILABLE, "chat is not set up in this process")
        chat.send_system_message(payload["room_id"], payload["text"], payload.get("data"))

    def broadcast(self, channels: Iterable[str], data: Any) -> list[Publication]:
        """Publish the same ``data`` on several channels (every name is checked first)."""
        names = list(channels)
        for name in names:
            self.channels.resolve(name)
        return [self.publish(name, data)[0] for name in names]

    def presence(self, channel: str) -> list[dict]:
        return self.channels.presence(self.channels.resolve(channel))

    def history(self, channel: str, limit: int | None = None,
                since: StreamPosition | None = None) -> RecoveryResult:
        return self.channels.history(self.channels.resolve(channel), limit, since)

    def unsubscribe(self, user_id: str, channel: str, reason: str = "server") -> None:
        """Remove every connection of ``user_id`` from ``channel``, on every process (sent on
        the user's topic: only the processes holding a connection of the user receive it)."""
        self.channels.resolve(channel)
        self.control.send_to_users([user_id], "unsubscribe", channel=channel, reason=reason)

    def disconnect_user(self, user_id: str, reason: str = "disconnected by server") -> None:
        """Disconnect every connection of ``user_id``, on every process (sent on the user's
        topic: only the processes holding a connection of the user receive it)."""
        self.audit.record("disconnect_user_requested", outcome="ok", user_id=user_id,
                          details={"reason": reason})
        self.control.send_to_users([user_id], "disconnect_user", reason=reason)

    def disconnect_user_here(self, user_id: str, reason: str = "disconnected by server") -> int:
        """Disconnect every connection of ``user_id`` on this process; returns how many."""
        conns = self.connections.of_user(user_id)
        for conn in conns:
            self.audit.record("disconnect_user", outcome="disconnected",
                              details={"reason": reason}, **conn.audit_fields())
            self.emit("disconnecting", {"reason": reason}, to=conn.sid, local=True)
            self.disconnect_sid(conn.sid)
        others = self.namespace_connections.of_user(user_id)
        for conn in others:  # the host app's namespaces
            self.audit.record("disconnect_user", outcome="disconnected",
                              details={"reason": reason, "namespace": conn.namespace},
                              **conn.audit_fields())
            self.socketio.server.disconnect(conn.sid, namespace=conn.namespace)
        return len(conns) + len(others)

    # -- the connection lifecycle's hooks (kernel/lifecycle.py runs them)
    @property
    def connect_hooks(self) -> list[ConnectHook]:
        return self.lifecycle.hooks.connect

    @property
    def disconnect_hooks(self) -> list[DisconnectHook]:
        return self.lifecycle.hooks.disconnect

    @property
    def refresh_hooks(self) -> list[RefreshHook]:
        return self.lifecycle.hooks.refresh

    def on_connect(self, fn: ConnectHook) -> ConnectHook:
        """Run ``fn(conn)`` after a connection is authenticated (features push state here)."""
        self.lifecycle.hooks.connect.append(fn)
        return fn

    def on_disconnect(self, fn: DisconnectHook) -> DisconnectHook:
        """Run ``fn(conn, reason)`` after a connection closed (features forget it here)."""
        self.lifecycle.hooks.disconnect.append(fn)
        return fn

    def on_refresh(self, fn: RefreshHook) -> RefreshHook:
        """Run ``fn(ctx)`` after ``auth:refresh`` gave ``ctx.conn`` its new principal.

        Access is checked when something is opened (a subscribe, a ``doc:join``); a refresh
        with fewer roles must take back at once what the new roles no longer allow, so every
        feature that holds per-connection access checks it again here and audits what it
        takes back with ``ctx.audit``. A hook should decide every item itself (a check that
        cannot be made takes the item back); if one raises anyway, it is logged, the other
        hooks still run, and the refresh then fails (``internal`` for an unexpected error).
        """
        self.lifecycle.hooks.refresh.append(fn)
        return fn

    def principal_permissions(self, principal: Principal):  # noqa: ANN201 - PermissionSet
        return self.roles.permissions_for(principal.roles)

    def client_address(self, environ: dict) -> str | None:
        """The client's address of a request: ``REMOTE_ADDR``, or ``X-Forwarded-For`` from a
        proxy in ``DIHYA_RT_TRUSTED_PROXIES`` (see :mod:`dihya_realtime.kernel.client_address`)."""
        return client_address(environ, self.trusted_proxies)

    def connection(self, sid: str, namespace: str = "/") -> Connection | None:
        """The authenticated connection ``sid`` of ``namespace`` (a host handler on its own
        namespace finds its user here: ``rt.connection(request.sid, "/admin").user_id``)."""
        table = self.connections if namespace == "/" else self.namespace_connections
        return table.get(sid)

    def _disconnect(self, sid: str, reason: Any, namespace: str = "/") -> None:
        self.lifecycle.disconnect(sid, reason, namespace)

    def _audit_oversized_message(self, environ: dict, size: int) -> None:
        """Audit a WebSocket message refused by size while it arrived (see
        :func:`adapt_websocket_driver`), with the connection's fields when it has
        authenticated, else what the request tells (address, origin, agent)."""
        eio_sid = environ.get(EIO_SID_KEY)
        sid = self.socketio.server.manager.sid_from_eio_sid(eio_sid, "/") if eio_sid else None
        conn = self.connections.get(sid) if sid else None
        fields: dict[str, Any] = conn.audit_fields() if conn is not None else {
            "sid": sid, "remote_addr": self.client_address(environ),
            "origin": environ.get("HTTP_ORIGIN"), "user_agent": environ.get("HTTP_USER_AGENT")}
        self.audit.record("payload_too_large", outcome="payload_too_large",
                          details={"announced_bytes": size,
                                   "max_bytes": self.settings.max_payload_bytes}, **fields)

    def _on_broker_message(self, message: Any) -> None:
        if self.control.dispatch(message):
            return
        if isinstance(message, Message):
            self.relay.deliver(message)  # a relayed room's emit; other topics: nothing here
            return
        for handler in self.broker_handlers:
            handler(message)

    def close(self) -> None:
        """Stop background work and flush the audit trail (tests and shutdown)."""
        self.outbox.stop()
        self.expiry.stop()
        if (webhooks := getattr(self, "webhooks", None)) is not None:
            webhooks.stop()
        self.guard.stop()
        self.broker.close()
        self.audit.flush()
        self.audit.close()
        self.db.dispose()


__all__ = ["Realtime", "refusal", "user_room"]
