"""The guard around Engine.IO sessions: what a client gets before it has authenticated.

The event pipeline guards authenticated connections; this guards the layer below, where an
Engine.IO session (WebSocket or long-polling) exists before any Socket.IO CONNECT:

- a session that has no authenticated Socket.IO connection within
  ``DIHYA_RT_CONNECT_TIMEOUT`` is closed (also one whose last connection went away: the
  clock starts again), and the closing is audited (counted, see
  :mod:`dihya_realtime.kernel.refusals`);
- sessions not yet authenticated are capped per client address
  (``DIHYA_RT_MAX_PENDING_PER_IP``): the next handshake from that address gets HTTP 429,
  a WebSocket upgrade included (refused before the upgrade when :meth:`install_upgrade_hook`
  is on the gevent server, as ``serve`` does; else the WebSocket is closed with 1013);
- CONNECT packets per session are capped (``DIHYA_RT_MAX_CONNECTS_PER_SESSION``): past it the
  session is closed, so a stream of token-less CONNECTs costs one session, not other users;
- a CONNECT to a namespace nobody declared gets a ``connect_error`` in the contract's shape
  (``not_found`` / ``unknown_namespace``) instead of python-socketio's bare string.

Hooks, all per server instance: engine.io's ``connect``/``disconnect`` handlers are wrapped
through ``eio.on`` (the public way; python-socketio's own handlers still run first and last);
python-socketio's ``Server._handle_connect`` is shadowed by an instance attribute (the one
place that sees a CONNECT packet's Engine.IO session and namespace before a handler), and
sessions are closed through ``eio.sockets``. :func:`check_internals` fails start-up naming
what is missing if a python-socketio / python-engineio release changes these.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from socketio import packet as sio_packet

from dihya_realtime.kernel.sweeper import Sweeper

if TYPE_CHECKING:
    from dihya_realtime.kernel.host import Host

log = logging.getLogger("dihya_realtime")

REFUSE_KEY = "dihya_rt.refused_handshake"
"""Set in a request's environ by the upgrade hook: the refusal the middleware answers
(``None``: admitted)."""

SOCKETIO_PATH = "/socket.io/"


class GuardAdaptationError(RuntimeError):
    """A library internal the connection guard relies on is missing (see the message)."""


def check_internals(server: Any) -> None:
    """Fail loudly if python-socketio / python-engineio lack what :class:`SessionGuard` uses."""
    eio = getattr(server, "eio", None)
    missing = []
    if not callable(getattr(server, "_handle_connect", None)):
        missing.append("socketio.Server._handle_connect (namespace CONNECT hook)")
    if not callable(getattr(server, "_send_packet", None)):
        missing.append("socketio.Server._send_packet (unknown-namespace connect_error)")
    if not callable(getattr(getattr(server, "manager", None), "eio_sid_from_sid", None)):
        missing.append("socketio manager.eio_sid_from_sid (session of a connection)")
    handlers = getattr(eio, "handlers", None)
    if not isinstance(handlers, dict) or not {"connect", "disconnect"} <= handlers.keys():
        missing.append("engineio.Server.handlers['connect'/'disconnect'] (session tracking)")
    if not isinstance(getattr(eio, "sockets", None), dict):
        missing.append("engineio.Server.sockets (closing sessions that time out)")
    if missing:
        raise GuardAdaptationError(
            "dihya-realtime connection guard: this python-socketio/python-engineio release "
            "lacks " + "; ".join(missing) + ". Pin python-socketio<6 and python-engineio<5.")


@dataclass(slots=True)
class _Session:
    address: str
    since: float  # monotonic: when the session became (again) unauthenticated
    connects: int = 0
    authenticated: int = 0  # authenticated Socket.IO connections open on this session


class SessionGuard:
    """Tracks Engine.IO sessions; see the module docstring."""

    def __init__(self, rt: Host) -> None:
        self.rt = rt
        s = rt.settings
        self.timeout = s.connect_timeout
        self.max_pending = s.max_pending_per_ip
        self.max_connects = s.max_connects_per_session
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}
        self._pending: Counter[str] = Counter()
        self._sweeper: Sweeper | None = None  # made at install: it needs engine.io's sleep
        self.eio: Any = None
        self.server: Any = None

    # -- installation
    def install(self, server: Any) -> None:
        check_internals(server)
        self.server = server
        self.eio = eio = server.eio
        self._sweeper = Sweeper("connection guard", min(1.0, self.timeout / 4),
                                self._sweep_pass, spawn=eio.start_background_task,
                                sleep=eio.sleep, persistent=True)
        on_connect, on_disconnect = eio.handlers["connect"], eio.handlers["disconnect"]

        def eio_connect(eio_sid: str, environ: dict) -> Any:
            self.opened(eio_sid, environ)
            return on_connect(eio_sid, environ)

        def eio_disconnect(eio_sid: str, *args: Any) -> Any:
            try:
                return on_disconnect(eio_sid, *args)
            finally:
                self.closed(eio_sid)

        eio.on("connect", eio_connect)
        eio.on("disconnect", eio_disconnect)
        setattr(server, "_handle_connect", self._around_connect(server._handle_connect))  # noqa: B010

    def install_upgrade_hook(self, wsgi_server: Any) -> None:
        """On a gevent ``WSGIServer`` running gevent-websocket's handler: decide about a
        handshake before the WebSocket upgrade, so a refused one gets a real HTTP 429."""

        def pre_start(handler: Any) -> bool:
            environ = getattr(handler, "environ", None)
            if not isinstance(environ, dict):
                return False
            error = environ[REFUSE_KEY] = self.handshake_refusal(environ)
            # True: gevent-websocket runs the app as plain WSGI (no upgrade) → the 429
            return error is not None

        wsgi_server.pre_start_hook = pre_start

    def wsgi(self, app: Callable) -> Callable:
        """WSGI middleware answering a refused Engine.IO handshake (429) before engine.io."""

        def middleware(environ: dict, start_response: Callable) -> Any:
            error = (environ[REFUSE_KEY] if REFUSE_KEY in environ  # decided by the hook
                     else self.handshake_refusal(environ))
            if error is None:
                return app(environ, start_response)
            ws = environ.get("wsgi.websocket")
            if ws is not None:  # already upgraded by a server without the hook
                ws.close(1013, b"too many unauthenticated sessions from this address")
                return []
            body = orjson.dumps(error)
            start_response("429 Too Many Requests", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                ("Retry-After", str(math.ceil(error["retry_after"]))),
                ("Connection", "close")])
            return [body]

        return middleware

    # -- decisions
    def handshake_refusal(self, environ: dict) -> dict[str, Any] | None:
        """The 429 body for a new Engine.IO session over the per-address cap, else None."""
        if (environ.get("REQUEST_METHOD") != "GET"
                or not str(environ.get("PATH_INFO", "")).startswith(SOCKETIO_PATH)):
            return None
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        if "sid" in query:
            return None
        address = self.rt.client_address(environ) or "?"
        with self._lock:
            pending = self._pending[address]
        if pending < self.max_pending:
            return None
        self._refused("too_many_pending_sessions", "rate_limited", environ, address,
                      {"pending": pending, "max": self.max_pending})
        self.rt.metrics.rate_limited.labels("pending_sessions").inc()
        return {"code": "rate_limited", "reason": "too_many_pending_sessions",
                "message": "too many unauthenticated sessions from this address",
                "details": {"reason": "too_many_pending_sessions"},
                "retry_after": float(self.timeout)}

    def _around_connect(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def handle_connect(eio_sid: str, namespace: str | None, data: Any) -> Any:
            namespace = namespace or "/"
            with self._lock:
                session = self._sessions.get(eio_sid)
                if session is not None:
                    session.connects += 1
                    over = session.connects > self.max_connects
                else:
                    over = False
            if over:
                environ = self.server.environ.get(eio_sid, {})
                self._refused("too_many_connect_attempts", "rate_limited", environ,
                              details={"max": self.max_connects})
                self.close(eio_sid)
                return None
            if not self.declared(namespace):
                environ = self.server.environ.get(eio_sid, {})
                self._refused("unknown_namespace", "not_found", environ,
                              details={"namespace": namespace[:64]})
                error = {"code": "not_found", "reason": "unknown_namespace",
                         "message": "unknown namespace"}
                self.server._send_packet(eio_sid, self.server.packet_class(
                    sio_packet.CONNECT_ERROR, data={**error, "data": dict(error)},
                    namespace=namespace))
                return None
            return original(eio_sid, namespace, data)

        return handle_connect

    def _refused(self, reason: str, outcome: str, environ: dict, address: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        self.rt.refusals.refused(
            reason, outcome=outcome, remote_addr=address or self.rt.client_address(environ),
            origin=environ.get("HTTP_ORIGIN"), user_agent=environ.get("HTTP_USER_AGENT"),
            details=details)

    def declared(self, namespace: str) -> bool:
        """Has someone (us or the host app) registered a handler on ``namespace``? A host's
        catch-all namespace handler (``namespace="*"``) declares every namespace."""
        server = self.server
        return (namespace == "/"
                or any(n in server.handlers or n in server.namespace_handlers
                       for n in (namespace, "*")))

    # -- session lifetime
    def opened(self, eio_sid: str, environ: dict) -> None:
        address = self.rt.client_address(environ) or "?"
        with self._lock:
            self._sessions[eio_sid] = _Session(address, time.monotonic())
            self._pending[address] += 1
        if self._sweeper is not None:
            self._sweeper.wake()  # one task per process, from the first session on

    def closed(self, eio_sid: str) -> None:
        with self._lock:
            session = self._sessions.pop(eio_sid, None)
            if session is not None and session.authenticated == 0:
                self._release_pending(session.address)

    def authenticated(self, eio_sid: str | None) -> None:
        """A Socket.IO connection of this session authenticated."""
        with self._lock:
            session = self._sessions.get(eio_sid or "")
            if session is not None:
                session.authenticated += 1
                if session.authenticated == 1:
                    self._release_pending(session.address)

    def released(self, eio_sid: str | None) -> None:
        """An authenticated connection of this session ended; none left → pending again."""
        with self._lock:
            session = self._sessions.get(eio_sid or "")
            if session is not None and session.authenticated > 0:
                session.authenticated -= 1
                if session.authenticated == 0:
                    session.since = time.monotonic()
                    self._pending[session.address] += 1

    def _release_pending(self, address: str) -> None:
        self._pending[address] -= 1
        if self._pending[address] <= 0:
            del self._pending[address]

    def pending(self, address: str) -> int:
        with self._lock:
            return self._pending.get(address, 0)

    def close(self, eio_sid: str) -> None:
        """Close an Engine.IO session now, without waiting for its queue to drain (a
        long-polling session may never be polled again)."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is None:
            return
        try:
            sock.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
        except Exception:  # already closing: nothing else to do
            log.debug("closing engine.io session failed", exc_info=True)
        self.eio.sockets.pop(eio_sid, None)

    # -- the timeout sweep (one task per process, started with the first session)
    def sweep(self, now: float | None = None) -> int:
        """Close the sessions past the connect timeout; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            late = [(sid, s) for sid, s in self._sessions.items()
                    if s.authenticated == 0 and now - s.since >= self.timeout]
        for eio_sid, session in late:
            environ = self.server.environ.get(eio_sid, {})
            self._refused("connect_timeout", "connect_timeout", environ, session.address,
                          {"timeout": self.timeout})
            self.close(eio_sid)
            self.closed(eio_sid)  # a socket engine.io already forgot sends no disconnect
        self.rt.refusals.flush()
        return len(late)

    def _sweep_pass(self) -> bool:
        self.sweep()
        return True  # persistent: refusal summaries are flushed on this beat too

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
        self.rt.refusals.flush(everything=True)
