"""The WebSocket transport under gevent: engine.io + gevent-websocket, adapted.

``serve`` runs engine.io's gevent-websocket driver (benchmarks/README.md says why: memory and
speed). Each function here corrects one thing that stack does, found by a profile or a test
and measured (benchmarks/README.md, rounds 1 and 5): no message size limit, close frames
without their status code, a pure-Python UTF-8 pass over every frame, a ``getsockopt`` system
call before every write, no read timeout (a client gone without a FIN held its connection for
minutes), a sleeping greenlet per connection for engine.io's pings. Everything is applied per
engine.io server instance (or per connection), never by patching the libraries' classes, and
only under gevent; the simple-websocket fallback keeps its own behaviour apart from the size
limit. Each adaptation first checks that what it patches exists in the installed libraries
and raises :class:`TransportAdaptationError`, naming itself, when it does not: a library
upgrade stops the server at start-up instead of silently dropping a limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dihya_realtime")

EIO_SID_KEY = "dihya_rt.eio_sid"
"""Where a gevent-websocket socket's environ holds its engine.io session id (set as the
WebSocket is handed to engine.io), so a size refusal can name the connection."""

OversizeHook = Callable[[dict, int], None]
"""``fn(environ, announced_bytes)``: a WebSocket message over the limit was refused."""


class TransportAdaptationError(RuntimeError):
    """An adaptation of this module found the library internal it patches missing.

    Raised at start-up (never at the first connection) with the adaptation's name and what
    is missing: a limit or a fix must never silently disappear with a library upgrade.
    """


def _require(adaptation: str, missing: list[str], hint: str) -> None:
    if missing:
        raise TransportAdaptationError(
            f"dihya_realtime.transport.websocket ({adaptation}): the installed libraries lack "
            + "; ".join(missing) + f". {hint}")


ENGINEIO_PIN = "Pin python-engineio<5."
GEVENT_WS_PIN = "Pin gevent-websocket<0.11 (or uninstall it: simple-websocket is used then)."


def adapt_websocket_driver(eio: Any, limit: int, on_oversize: OversizeHook | None = None
                           ) -> None:
    """Give ``eio`` a WebSocket driver with a message size limit and, under gevent-websocket,
    the fixes of :func:`_limited_gevent_ws` (close codes, no Python UTF-8 pass), writes in one
    system call (:func:`_send_all`) and the read timeout engine.io intends.

    The size limit: the WebSocket layer refuses a message over ``limit`` bytes while it arrives.

    engine.io checks ``max_http_buffer_size`` only once a whole message has been buffered, and
    its gevent drivers pass no limit to the WebSocket library: one client could make the
    server hold a 200 MB frame in memory before it is refused. With the limit, the connection
    is closed (1009, message too big) as soon as a frame header announces more than ``limit``
    bytes in the message, before its payload is read. Both drivers engine.io may pick under
    gevent are covered: gevent-websocket (what ``serve`` uses, see :func:`_limited_gevent_ws`)
    and simple-websocket (when gevent-websocket is not installed).

    Under gevent-websocket, ``on_oversize`` is then called with the request's environ (where
    :data:`EIO_SID_KEY` names the engine.io session, hence the Socket.IO connection) and the
    size the message announced, so the refusal can be audited. simple-websocket closes the
    connection inside its own reader and tells nobody: there the refusal is not reported.
    """
    adaptation = "WebSocket message size limit"
    drivers = getattr(eio, "_async", None)
    base = drivers.get("websocket") if isinstance(drivers, dict) else None
    _require(adaptation, [] if isinstance(base, type) else
             ["engineio.Server._async['websocket'] (the WebSocket driver class)"], ENGINEIO_PIN)
    assert isinstance(drivers, dict) and isinstance(base, type)
    from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI

    if issubclass(base, SimpleWebSocketWSGI):

        class LimitedWebSocket(base):  # type: ignore[misc, valid-type]
            def __init__(self, handler: Any, server: Any, **kwargs: Any) -> None:
                super().__init__(handler, server, **kwargs)
                self.server_args["max_message_size"] = limit

        _check_simple_websocket(LimitedWebSocket, limit)
        driver: type = LimitedWebSocket
    elif base.__module__ == "engineio.async_drivers.gevent":  # the gevent-websocket driver
        _require(adaptation, [] if _stores_app(base) else
                 ["engineio's gevent WebSocketWSGI(handler, server).app (the session's "
                  "handler)"], ENGINEIO_PIN)
        limited = _limited_gevent_ws(limit, on_oversize)

        class LimitedGeventWebSocket(base):  # type: ignore[misc, valid-type]
            def __call__(self, environ: dict, start_response: Any) -> Any:
                ws = environ.get("wsgi.websocket")
                if ws is not None:
                    ws.__class__ = limited
                    sock = ws.stream.handler.socket
                    ws.raw_write = _send_all(sock)
                    # engine.io means to give the WebSocket a read timeout of ping interval +
                    # ping timeout (a live client answers every ping), but finds no
                    # `settimeout` on gevent-websocket's object: a client gone without a FIN
                    # held its reader (and session) until TCP gave up, many minutes later.
                    sock.settimeout(eio.ping_interval + eio.ping_timeout)
                    # The handler is the engine.io socket's bound method: its session id
                    # is the one link from this WebSocket to the Socket.IO connection. It goes
                    # in the socket's own environ: Flask-SocketIO handed us a copy.
                    ws.environ[EIO_SID_KEY] = getattr(getattr(self.app, "__self__", None),
                                                      "sid", None)
                return super().__call__(environ, start_response)

        driver = LimitedGeventWebSocket
    else:
        raise TransportAdaptationError(
            f"dihya_realtime.transport.websocket ({adaptation}): engine.io picked the WebSocket "
            f"driver "
            f"{base.__module__}.{base.__qualname__}, which this release does not know how to "
            f"limit. {ENGINEIO_PIN}")
    # a copy: the driver's dict is shared by every engine.io server in the process
    eio._async = {**eio._async, "websocket": driver}


def _check_simple_websocket(driver: type, limit: int) -> None:
    """The simple-websocket driver passes ``server_args`` to ``simple_websocket.Server``,
    which must take ``max_message_size``."""
    import inspect

    import simple_websocket

    missing = []
    made = driver(None, None)
    if getattr(made, "server_args", {}).get("max_message_size") != limit:
        missing.append("engineio SimpleWebSocketWSGI.server_args")
    server = getattr(simple_websocket, "Server", None)
    if server is None or "max_message_size" not in inspect.signature(server).parameters:
        missing.append("simple_websocket.Server(max_message_size=...)")
    _require("WebSocket message size limit", missing,
             "Pin python-engineio<5 and simple-websocket<2.")


def _stores_app(base: type) -> bool:
    def handler() -> None:
        return None

    try:
        return getattr(base(handler, None), "app", None) is handler
    except Exception:
        return False


def pings_on_timers(eio: Any) -> None:
    """Under gevent, wait for each connection's next ping on a timer, not in a greenlet.

    engine.io starts, per connection and per ping cycle, a greenlet that sleeps
    ``ping_interval`` then sends the ping: one sleeping greenlet per idle connection, ~3 KB
    of saved stack each (tracemalloc, benchmarks/README.md round 5). ``gevent.spawn_later``
    keeps only a timer and an unstarted greenlet until the ping is due; the ping itself is
    what engine.io's ``Socket._send_ping`` does after its sleep.
    """
    if eio.async_mode != "gevent":
        return
    import time

    import gevent
    from engineio import packet
    from engineio.socket import Socket

    send_ping = getattr(Socket, "_send_ping", None)
    start = getattr(eio, "start_background_task", None)
    _require("pings on timers", [name for name, found in (
        ("engineio.socket.Socket._send_ping", callable(send_ping)),
        ("engineio.Server.start_background_task", callable(start)),
        ("engineio.packet.PING", hasattr(packet, "PING")),
    ) if not found], ENGINEIO_PIN)
    assert start is not None

    def ping(sock: Any) -> None:
        if not sock.closing and not sock.closed:
            sock.last_ping = time.time()
            sock.send(packet.Packet(packet.PING))

    def start_background_task(target: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(target, "__func__", None) is send_ping and not args and not kwargs:
            return gevent.spawn_later(eio.ping_interval, ping, target.__self__)
        return start(target, *args, **kwargs)

    eio.start_background_task = start_background_task


def _send_all(sock: Any) -> Callable[[bytes], None]:
    """``sendall`` in one system call when the kernel takes the whole frame (nearly always).

    gevent's ``sendall`` asks the kernel for the socket's send-buffer size
    (``getsockopt(SO_SNDBUF)``) before every write, to size its chunks: one extra system
    call per frame, 18% of the event loop while fanning a publication out to 1,000
    connections. ``send`` writes what fits; the rare remainder goes through ``sendall``.
    """

    def write(data: bytes) -> None:
        sent = sock.send(data)
        if sent < len(data):
            sock.sendall(memoryview(data)[sent:])

    return write


def _limited_gevent_ws(limit: int, on_oversize: OversizeHook | None = None) -> type:
    """A gevent-websocket ``WebSocket`` whose messages may not exceed ``limit`` bytes.

    gevent-websocket has no size limit of its own: ``read_frame`` reads whatever length a
    frame header announces, and ``read_message`` joins fragments without bound. This class
    (swapped onto each connection's socket object, same slots) checks the announced length
    against what is left of the message's budget *before* reading the payload, and answers
    an overrun with close code 1009, then calls ``on_oversize(environ, announced)``;
    ``receive()`` then returns ``None`` and engine.io ends the session.
    """
    _check_gevent_websocket()
    from geventwebsocket.exceptions import ProtocolError, WebSocketError
    from geventwebsocket.websocket import MSG_ALREADY_CLOSED, Header, WebSocket

    data_opcodes = (WebSocket.OPCODE_TEXT, WebSocket.OPCODE_BINARY,
                    WebSocket.OPCODE_CONTINUATION)
    left: dict[int, int] = {}  # id(websocket) → bytes the current message may still add

    class TooBig(ProtocolError):
        def __init__(self, announced: int) -> None:
            super().__init__(f"message over {limit} bytes")
            self.announced = announced

    class LimitedGeventWS(WebSocket):
        __slots__ = ()

        def close(self, code: int = 1000, message: bytes = b"") -> None:
            """gevent-websocket's ``close`` drops ``code``: its close frame carried no status,
            so a client saw neither 1009 (too big) nor 1007 (invalid UTF-8). RFC 6455 §5.5.1:
            the body is the 2-byte code, then the reason."""
            ws: Any = self  # gevent-websocket is untyped; its slots are set here as it does
            if ws.closed:
                ws.current_app.on_close(MSG_ALREADY_CLOSED)
            try:
                reason = message.encode() if isinstance(message, str) else bytes(message)
                ws.send_frame(code.to_bytes(2, "big") + reason[:123], ws.OPCODE_CLOSE)
            except WebSocketError:
                pass  # the peer is gone: nothing to tell it
            finally:
                ws.closed = True
                ws.stream = None
                ws.raw_write = None
                ws.raw_read = None
                ws.environ = None

        def validate_utf8(self, payload: Any) -> None:
            """No-op: gevent-websocket ran a pure-Python UTF-8 automaton over every text frame
            and again over the whole message (9% of the event loop under acked load), then
            decoded the message anyway. That final ``bytes.decode`` (C) refuses invalid
            UTF-8 with close code 1007 just the same, and a message is bounded by ``limit``."""

        def read_message(self) -> Any:
            left[id(self)] = limit
            try:
                return super().read_message()
            except TooBig as exc:
                environ = self.environ or {}  # close() clears it
                self.close(1009, b"message too big")
                if on_oversize is not None:
                    try:
                        on_oversize(environ, exc.announced)
                    except Exception:
                        log.exception("could not report an oversized message")
                return None
            finally:
                left.pop(id(self), None)

        def read_frame(self) -> Any:
            header = Header.decode_header(self.stream)
            if header.flags:
                raise ProtocolError
            if header.opcode in data_opcodes:
                budget = left.get(id(self), limit) - header.length
                if budget < 0:
                    raise TooBig(limit - budget)  # the message's bytes so far + this frame
                left[id(self)] = budget
            if not header.length:
                return header, b""
            try:
                payload = self.raw_read(header.length)
            except OSError:
                payload = b""
            if len(payload) != header.length:
                raise WebSocketError("Unexpected EOF reading frame payload")
            if header.mask:
                payload = unmask(payload, header.mask)
            return header, payload

    return LimitedGeventWS


def unmask(payload: bytes, mask: bytes) -> bytes:
    """A client frame's payload XOR its 4-byte mask (RFC 6455 §5.3), in C.

    gevent-websocket's ``Header.unmask_payload`` XORs byte by byte in Python: about 100 ms
    per MB of client frames, on the event loop, so a client sending large frames stalled
    every other connection of the process (a quarter of the server's samples under the fuzz
    campaign). Here the mask is repeated to the payload's length and the two are XORed as
    integers, in C: about 8 ms per MB (``tests/unit/transport/test_websocket_unmask.py``
    checks it against gevent-websocket's on every length modulo 4)."""
    n = len(payload)
    if not n:
        return b""
    key = (bytes(mask) * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        n, "little")


def _check_gevent_websocket() -> None:
    """What :func:`_limited_gevent_ws` overrides, calls or sets in gevent-websocket."""
    from geventwebsocket import exceptions, websocket

    missing = [f"geventwebsocket.exceptions.{name}" for name in
               ("ProtocolError", "WebSocketError") if not hasattr(exceptions, name)]
    missing += [f"geventwebsocket.websocket.{name}" for name in
                ("MSG_ALREADY_CLOSED", "Header", "WebSocket", "Stream")
                if not hasattr(websocket, name)]
    ws = getattr(websocket, "WebSocket", None)
    header = getattr(websocket, "Header", None)
    stream = getattr(websocket, "Stream", None)
    missing += [f"WebSocket.{name}" for name in
                ("read_message", "read_frame", "send_frame", "close", "validate_utf8",
                 "current_app", "OPCODE_TEXT", "OPCODE_BINARY", "OPCODE_CONTINUATION",
                 "OPCODE_CLOSE") if ws is not None and not hasattr(ws, name)]
    missing += [f"WebSocket.__slots__ {name!r}" for name in
                ("environ", "closed", "stream", "raw_write", "raw_read")
                if ws is not None and name not in getattr(ws, "__slots__", ())]
    missing += [f"Header.{name}" for name in
                ("decode_header", "flags", "opcode", "length", "mask")
                if header is not None and not hasattr(header, name)]
    if stream is not None and "handler" not in getattr(stream, "__slots__", ()):
        missing.append("Stream.__slots__ 'handler'")
    _require("gevent-websocket frame limit, close codes and UTF-8", missing, GEVENT_WS_PIN)


def pywsgi_handler_class(fallback: type, *, header_timeout: float | None = None,
                         max_body: int | None = None,
                         max_polling_body: int | None = None) -> type:
    """The pywsgi handler ``serve`` uses: gevent-websocket's (when importable, else
    ``fallback``), closing the TCP connection after a WebSocket session, with a small read
    buffer and a lingering close (see :func:`_closing_handler`); its request line and headers
    must arrive within ``header_timeout`` seconds, and request bodies over ``max_body`` bytes
    (Engine.IO polling POSTs: ``max_polling_body``) are refused with 413 (see
    :mod:`dihya_realtime.transport.http`)."""
    from dihya_realtime.transport.http import guarded_handler

    return guarded_handler(_closing_handler(_websocket_handler(fallback)),
                           header_timeout=header_timeout, max_body=max_body,
                           max_polling_body=max_polling_body)


def _websocket_handler(fallback: type) -> type:
    """gevent-websocket's pywsgi handler, or ``fallback`` when it is not importable.

    engine.io uses gevent-websocket under gevent whenever it can import it, and that driver
    needs this handler (it performs the upgrade and puts the socket in ``wsgi.websocket``).
    Chosen over simple-websocket for speed and memory: see benchmarks/README.md. Without it,
    engine.io falls back to simple-websocket on the plain handler.
    """
    try:
        from geventwebsocket.handler import WebSocketHandler
    except ImportError:
        return fallback
    _check_closing_handler(WebSocketHandler)
    return WebSocketHandler


def _check_closing_handler(base: type) -> None:
    """What :func:`_closing_handler` overrides or sets on a pywsgi handler."""
    import inspect

    missing = [f"{base.__qualname__}.{name}" for name in ("run_application", "__init__")
               if not callable(getattr(base, name, None))]
    if not missing and "rfile" not in inspect.signature(base).parameters:
        missing.append(f"{base.__qualname__}.__init__(..., rfile)")
    _require("pywsgi WebSocket handler (close after a session, small read buffer)", missing,
             "Pin gevent<27 and gevent-websocket<0.11.")


RFILE_BUFFER_BYTES = 2048
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20


def _closing_handler(base: type) -> type:
    """A pywsgi handler that closes the TCP connection once a WebSocket session ends.

    Once a WebSocket session ends (normally, or refused for an oversized message whose rest
    is still arriving) pywsgi would keep the connection alive and parse what follows - the
    client's close frame, the remains of the frame - as a new HTTP request ("Invalid HTTP
    method" in the error log, a 400 written into the stream). Same for both WebSocket stacks.
    """

    _check_closing_handler(base)

    class ClosingHandler(base):
        def __init__(self, sock: Any, address: Any, server: Any, rfile: Any = None) -> None:
            # pywsgi's default read buffer is 8 KB per connection, kept for the connection's
            # life: most of it never holds anything (a handshake is < 1 KB, frames are
            # small, and a larger read bypasses the buffer). 2 KB: −6 KB per idle connection.
            if rfile is None:
                rfile = sock.makefile("rb", RFILE_BUFFER_BYTES)
            super().__init__(sock, address, server, rfile)

        def run_application(self) -> None:
            try:
                super().run_application()
            finally:
                if str(self.environ.get("HTTP_UPGRADE", "")).lower() == "websocket":
                    self.close_connection = True
                    self._linger()

        def _linger(self) -> None:
            """FIN after the close frame, then drain until the client's own FIN (bounded):
            see :func:`~dihya_realtime.transport.http.half_close_and_drain`."""
            from dihya_realtime.transport.http import half_close_and_drain

            half_close_and_drain(self.socket, LINGER_SECONDS, LINGER_BYTES)

    return ClosingHandler
