"""The life of a connection, from its CONNECT packet to its disconnect, in one place.

A CONNECT (of any namespace) is authenticated here before any handler runs; the connection is
counted against its user's cap, registered, audited, and the features' connect hooks run; the
user's first connection here makes this process receive the messages addressed to the user
(:mod:`dihya_realtime.kernel.user_interest`), before the CONNECT is acknowledged.
``auth:refresh`` runs the refresh hooks, and a disconnect the disconnect hooks, through the
same :class:`Hooks` object, with one rule for all three: a hook that raises is logged and the
others still run (a refresh then fails, so the client hears about it).

Features never reach in here: they attach hooks with ``rt.on_connect`` / ``on_refresh`` /
``on_disconnect`` (see :mod:`dihya_realtime.kernel.host`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from socketio.exceptions import ConnectionRefusedError as SioConnectionRefused

from dihya_realtime.kernel.auth import AuthError, authenticate_connection
from dihya_realtime.kernel.connections import Connection
from dihya_realtime.kernel.identity_flask_login import flask_login_principal
from dihya_realtime.kernel.rooms import user_room
from dihya_realtime.kernel.user_interest import UserInterest

if TYPE_CHECKING:
    from dihya_realtime.kernel.host import Host
    from dihya_realtime.kernel.pipeline import EventContext

log = logging.getLogger("dihya_realtime")

ConnectHook = Callable[[Connection], None]
DisconnectHook = Callable[[Connection, str], None]
RefreshHook = Callable[["EventContext"], None]


def refusal(error: dict[str, Any]) -> SioConnectionRefused:
    """A connect refusal whose ``connect_error`` data is ``error`` itself.

    The fields sit at the top level (what a python-socketio client's ``connect_error``
    handler receives) and again under ``data`` (what socket.io-client exposes as ``err.data``).
    """
    exc = SioConnectionRefused(error["message"])
    exc.error_args = {**error, "data": dict(error)}
    return exc


class Hooks:
    """What features run when a connection is opened, refreshed or closed."""

    def __init__(self) -> None:
        self.connect: list[ConnectHook] = []
        self.refresh: list[RefreshHook] = []
        self.disconnect: list[DisconnectHook] = []

    def connected(self, conn: Connection) -> None:
        for hook in self.connect:
            try:
                hook(conn)
            except Exception:
                log.exception("connect hook %r failed", hook)

    def refreshed(self, ctx: EventContext) -> None:
        """Run every refresh hook; if any raised, raise the first error after all ran."""
        failed: Exception | None = None
        for hook in self.refresh:  # each feature takes back what the new roles do not allow
            try:
                hook(ctx)
            except Exception as exc:
                log.exception("refresh hook %r failed", hook)
                failed = failed or exc
        if failed is not None:
            raise failed

    def disconnected(self, conn: Connection, reason: str) -> None:
        for hook in self.disconnect:
            try:
                hook(conn, reason)
            except Exception:
                log.exception("disconnect hook %r failed", hook)


class ConnectionLifecycle:
    """Authenticates CONNECTs, keeps the connection tables, runs the hooks."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.hooks = Hooks()
        self.hooks.refresh.append(self._refresh_namespace_connections)
        # the users connected here: this process receives their topics
        self.users = UserInterest(host, host.settings.interest_linger)

    def connect(self, sid: str, environ: dict, auth: Any, namespace: str = "/") -> None:
        """Authenticate the CONNECT of ``sid`` on ``namespace``; raise a refusal if not."""
        host = self.host
        settings = host.settings
        server = host.socketio.server
        remote = host.client_address(environ)
        eio_sid = server.manager.eio_sid_from_sid(sid, namespace)
        fields: dict[str, Any] = {"sid": sid, "remote_addr": remote,
                                  "origin": environ.get("HTTP_ORIGIN"),
                                  "user_agent": environ.get("HTTP_USER_AGENT")}
        session = None
        login_user = None
        app = environ.get("flask.app")  # set by Flask-SocketIO's middleware
        if (settings.session_auth or settings.flask_login) and app is not None:
            with app.request_context(environ):
                from flask import session as flask_session

                if settings.session_auth:
                    session = dict(flask_session)
                if settings.flask_login:  # current_user, through the host app's user_loader
                    login_user = flask_login_principal(settings)
        try:
            principal = authenticate_connection(settings, host.verifier, environ, auth, session,
                                                login_user)
        except AuthError as exc:
            host.metrics.auth_failures.labels(exc.reason).inc()
            # the per-address bucket measures failed attempts only: valid credentials never
            # pay for, nor wait on, what others sent from the same address
            wait = host.ip_buckets.take(remote or "?")
            if wait:
                host.metrics.rate_limited.labels("connect_ip").inc()
                host.refusals.refused("too_many_connections", outcome="rate_limited", **fields)
                raise refusal({"code": "rate_limited", "reason": "too_many_connections",
                               "message": "too many failed connection attempts from this "
                                          "address", "retry_after": round(wait, 3)}) from None
            host.refusals.refused(exc.reason, outcome="unauthenticated", **fields)
            raise refusal(exc.to_connect_error()) from None
        user_id = principal.user_id
        held = len(host.connections.of_user(user_id)) + len(
            host.namespace_connections.of_user(user_id))
        if held >= settings.max_connections_per_user:
            host.metrics.rate_limited.labels("connections_per_user").inc()
            host.refusals.refused("too_many_connections_for_user", outcome="rate_limited",
                                  user_id=user_id,
                                  details={"max": settings.max_connections_per_user}, **fields)
            raise refusal({"code": "rate_limited", "reason": "too_many_connections_for_user",
                           "message": "too many connections for this user",
                           "details": {"max": settings.max_connections_per_user},
                           "retry_after": 1.0})
        conn = Connection(sid=sid, principal=principal,
                          permissions=host.principal_permissions(principal),
                          remote_addr=remote, origin=fields["origin"],
                          user_agent=fields["user_agent"], namespace=namespace,
                          eio_sid=eio_sid)
        host.guard.authenticated(eio_sid)
        if namespace != "/":
            host.namespace_connections.add(conn)
            self.users.acquire(user_id)
            host.audit.record("connect", outcome="ok",
                              details={"method": principal.method, "namespace": namespace,
                                       "roles": list(principal.roles)},
                              **conn.audit_fields())
            return
        host.connections.add(conn)
        server.enter_room(sid, user_room(principal.user_id), namespace="/")
        self.users.acquire(user_id)
        host.metrics.connections.inc()
        host.expiry.watch(conn)
        host.audit.record("connect", outcome="ok",
                          details={"method": principal.method, "roles": list(principal.roles)},
                          **conn.audit_fields())
        self.hooks.connected(conn)

    def disconnect(self, sid: str, reason: Any, namespace: str = "/") -> None:
        """Forget ``sid`` (idempotent), run the disconnect hooks, audit how long it lived."""
        host = self.host
        if namespace != "/":
            conn = host.namespace_connections.remove(sid)
            if conn is not None:
                self.users.release(conn.user_id)
                host.guard.released(conn.eio_sid)
                host.audit.record("disconnect", outcome="ok",
                                  details={"reason": str(reason), "namespace": namespace,
                                           "duration": round(time.time() - conn.connected_at,
                                                             3)},
                                  **conn.audit_fields())
            return
        conn = host.connections.remove(sid)
        if conn is None:
            return
        self.users.release(conn.user_id)
        host.guard.released(conn.eio_sid)
        host.expiry.forget(sid)
        host.metrics.connections.dec()
        self.hooks.disconnected(conn, str(reason))
        host.audit.record("disconnect", outcome="ok",
                          details={"reason": str(reason),
                                   "duration": round(time.time() - conn.connected_at, 3)},
                          **conn.audit_fields())

    def namespace_connection_valid(self, sid: str, namespace: str) -> bool:
        """Is ``sid`` an authenticated connection of ``namespace`` whose token (refreshed with
        ``auth:refresh`` on "/" of the same session) has not expired past the grace period?
        If it has, the connection is audited and disconnected."""
        host = self.host
        conn = host.namespace_connections.get(sid)
        if conn is None:
            return False
        exp = conn.principal.expires_at
        if exp is None or time.time() <= exp + host.settings.expiry_grace_seconds:
            return True
        host.audit.record("auth_expired", outcome="disconnected",
                          details={"expired_at": exp, "namespace": namespace},
                          **conn.audit_fields())
        host.socketio.server.disconnect(sid, namespace=namespace)
        return False

    def _refresh_namespace_connections(self, ctx: EventContext) -> None:
        """``auth:refresh`` on "/" gives the new principal to the same Engine.IO session's
        connections on other namespaces too."""
        eio_sid = ctx.conn.eio_sid
        if eio_sid is None:
            return
        table = self.host.namespace_connections
        for conn in table:
            if conn.eio_sid == eio_sid:
                table.replace_principal(conn, ctx.conn.principal, ctx.conn.permissions)


__all__ = ["ConnectHook", "ConnectionLifecycle", "DisconnectHook", "Hooks", "RefreshHook",
           "refusal"]
