"""Malformed Socket.IO packets are refused cleanly: one log line, no traceback.

Why: python-socketio decodes each Engine.IO message inside engine.io's ``message`` handler;
a packet it cannot decode (JSON nested past the parser's depth, a truncated document, an
unknown packet type) raises there, and engine.io logs ``message handler error`` with the
whole traceback, once per packet: anyone, before logging in, could fill the error log with
tracebacks and hide real errors among them. The handler is wrapped (through engine.io's
public ``on("message", ...)``): such a packet is answered, and logged as one warning line
naming the client address and the problem (never the Engine.IO session id, which is a
credential over long-polling):

- a malformed ``CONNECT`` gets a ``connect_error`` with code ``invalid_payload`` (the shape
  of every connect refusal) and the session stays open, as after any refused CONNECT;
- a malformed ``EVENT`` whose header names an ack id gets the ``invalid_payload`` ack and the
  session stays open (the whole packet was one text message: nothing is left to misread);
- any other malformed packet (a binary header whose attachments would follow, an Engine.IO
  message that is not a Socket.IO packet at all) closes the Engine.IO session, as the
  JavaScript server does on a parse error.

The warnings themselves are bounded (:data:`WARNINGS_PER_SECOND`, then one line counting what
was left out), and :func:`refuse_failed_requests` is the same promise one layer down: an
exception escaping engine.io's handling of a Socket.IO HTTP request (a polling payload it
cannot decode, a WebSocket message that is not an Engine.IO packet) is one warning line and a
400 (or the end of that WebSocket), never a traceback from the WSGI server.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import orjson
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from socketio import packet as sio_packet

from dihya_realtime.kernel.ratelimit import TokenBucket
from dihya_realtime.kernel.settings import RateLimit
from dihya_realtime.transport.http import hide_session_ids, safe_text

log = logging.getLogger("dihya_realtime.packets")

MALFORMED = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError)
"""What python-socketio's packet decoding and dispatch raise for bad input: JSON errors are
ValueErrors; a packet whose data is not an event list (``42{}``, ``42null``, ``42[]``) fails
with TypeError, KeyError or IndexError before any handler runs. Handlers' own exceptions never
get here: the pipeline answers them with ``internal``."""

WARNINGS_PER_SECOND = 5.0
"""Malformed-packet warnings logged per second, process-wide; the rest are counted."""

_ACK_HEADER = re.compile(r"2(/[^,]{0,200},)?(\d{1,15})")
"""A text EVENT packet's header: ``2``, an optional namespace and the ack id, if any."""


class _WarningBudget:
    """A token bucket for log lines: an attacker's malformed packets must not fill the log."""

    def __init__(self, rate: float = WARNINGS_PER_SECOND) -> None:
        self.bucket = TokenBucket(RateLimit(rate=rate, burst=int(rate * 4)))
        self.suppressed = 0

    def allow(self) -> bool:
        if self.bucket.take():
            self.suppressed += 1
            return False
        return True


_budget = _WarningBudget()


def _warn(message: str, *args: Any) -> None:
    if not _budget.allow():
        return
    if _budget.suppressed:
        message += "; %d more such warnings not logged"
        args = (*args, _budget.suppressed)
        _budget.suppressed = 0
    log.warning(message, *args)


def refuse_malformed_packets(server: Any) -> None:
    """Wrap ``server``'s (a ``socketio.Server``) Engine.IO ``message`` handler."""
    eio = server.eio
    handler = getattr(eio, "handlers", {}).get("message")
    if handler is None:
        raise RuntimeError("dihya_realtime.transport.packets (malformed packets refused without a "
                           "traceback) needs engine.io's handlers['message'], set by "
                           "python-socketio: this version is not supported")

    def on_message(eio_sid: str, data: Any) -> Any:
        try:
            if not isinstance(data, str | bytes):
                # engine.io JSON-decodes a message not starting with a digit (``4{}``): never
                # a Socket.IO packet, whose text always starts with its type digit
                raise ValueError("not a Socket.IO packet")
            return handler(eio_sid, data)
        except MALFORMED as exc:
            _refuse(server, eio_sid, data, exc)
            return None

    eio.on("message", on_message)
    if getattr(server, "_handle_eio_message", None) == handler:
        # Also where a later wrapper of python-socketio's message handler (one that reads
        # ``server._handle_eio_message`` and registers itself with ``eio.on``) finds it,
        # so the guard holds whichever is installed first.
        server._handle_eio_message = on_message
    hide_session_ids()
    downgrade_client_caused_errors()


def _refuse(server: Any, eio_sid: str, data: Any, exc: BaseException) -> None:
    environ = server.environ.get(eio_sid) or {}
    text = data if isinstance(data, str) else ""
    connect = text.startswith("0")
    header = _ACK_HEADER.match(text)
    problem = safe_text(f"{type(exc).__name__}: {exc}", 160)
    size = len(data) if isinstance(data, str | bytes) else 0
    _warn("malformed Socket.IO packet from %s (%d %s): %s; %s",
          safe_text(environ.get("REMOTE_ADDR") or "-", 64), size,
          "bytes" if isinstance(data, bytes) else "characters", problem,
          "connect refused" if connect else "answered" if header else "session closed")
    try:
        if connect:
            error = {"code": "invalid_payload", "message": "malformed CONNECT packet"}
            server.eio.send(eio_sid, "4" + orjson.dumps({**error, "data": error}).decode())
        elif header:
            namespace = (header.group(1) or "/,")[:-1]
            envelope = {"ok": False, "error": {"code": "invalid_payload",
                                               "message": "malformed event packet"}}
            server._send_packet(eio_sid, server.packet_class(
                sio_packet.ACK, namespace=namespace, data=[envelope],
                id=int(header.group(2))))
        else:
            # not here: engine.io's close waits for a polling client to collect the CLOSE
            # packet, and this may run inside that client's POST
            server.eio.start_background_task(server.eio.disconnect, eio_sid)
    except Exception as send_exc:  # the session may be gone already
        log.debug("could not answer a malformed packet: %s", send_exc)


def refuse_failed_requests(app: Callable, path: str = "/socket.io/") -> Callable:
    """WSGI middleware: an exception escaping engine.io's handling of a request on ``path``
    is one warning line and a 400 (or, for a WebSocket already upgraded, its end).

    engine.io decodes polling payloads and WebSocket messages itself (``int(packet[0])``,
    base64, JSON) outside any ``try``: bytes that are not Engine.IO raise through the WSGI
    server, which logs a traceback per request. The client's session is lost either way;
    the log must not be an attacker's to fill.
    """

    def refuse(environ: dict, start_response: Callable, exc: BaseException) -> list[bytes]:
        _warn("malformed Engine.IO request from %s: %s",
              safe_text(environ.get("REMOTE_ADDR") or "-", 64),
              safe_text(f"{type(exc).__name__}: {exc}", 160))
        body = orjson.dumps({"ok": False, "error": {
            "code": "invalid_payload", "message": "malformed Engine.IO request"}})
        start_response("400 Bad Request", [("Content-Type", "application/json"),
                                           ("Content-Length", str(len(body)))])
        return [body]

    def middleware(environ: dict, start_response: Callable) -> Any:
        if not environ.get("PATH_INFO", "").startswith(path):
            return app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "POST":
            # engine.io decodes a polling payload inside a catch-all that logs a traceback
            # and answers 200: decode it here first (what engine.io reads: Content-Length
            # bytes, bounded before this by the HTTP body limit)
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            try:
                decoded = eio_payload.Payload(encoded_payload=body.decode("utf-8"))
                if any(not 0 <= p.packet_type < len(eio_packet.packet_names)
                       for p in decoded.packets):
                    # engine.io would close the session from inside this POST and wait
                    # there for a poll that never comes: a greenlet held per request
                    raise ValueError("unknown Engine.IO packet type")
            except (*MALFORMED, UnicodeDecodeError) as exc:
                return refuse(environ, start_response, exc)
            environ["wsgi.input"] = io.BytesIO(body)
        started: list[bool] = []

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            started.append(True)
            return start_response(status, headers, exc_info)

        try:
            return app(environ, start)
        except MALFORMED as exc:
            if started or environ.get("wsgi.websocket") is not None:
                _warn("malformed Engine.IO message from %s: %s",
                      safe_text(environ.get("REMOTE_ADDR") or "-", 64),
                      safe_text(f"{type(exc).__name__}: {exc}", 160))
                return []
            return refuse(environ, start_response, exc)

    return middleware


class ClientCausedErrors(logging.Filter):
    """engine.io logs what a client did wrong (polling a closed session, an unknown session
    id, an HTTP request after the upgrade) at ERROR the first time: an error level any
    client can produce at will. They become INFO, as engine.io logs them afterwards."""

    ONCE = "further occurrences of this error will be logged with level INFO"

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and not record.exc_info \
                and self.ONCE in str(record.msg):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def downgrade_client_caused_errors() -> None:
    """Install :class:`ClientCausedErrors` on engine.io's server logger (once)."""
    logger = logging.getLogger("engineio.server")
    if not any(isinstance(f, ClientCausedErrors) for f in logger.filters):
        logger.addFilter(ClientCausedErrors())


class PacketJSON:
    """The JSON module python-socketio / engine.io use for packets: orjson, stdlib as fallback.

    Packet encoding and decoding was ~5% of the acked path's profile with the stdlib. orjson
    is several times faster; wherever it would refuse what the stdlib accepts (integers past
    64 bits, NaN literals on input) the stdlib does the job, so the wire accepts the same
    documents as before. (It is a process-wide setting of python-socketio's packet class.)
    """

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        try:
            return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            return json.dumps(obj, **kwargs)

    @staticmethod
    def loads(data: str | bytes, **kwargs: Any) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            value = json.loads(data, **kwargs)
        if _SURROGATE_ESCAPE.search(data if isinstance(data, str) else data.decode("latin-1")):
            # a lone surrogate (``"\ud83d"``) decodes to a string no encoder will write back:
            # every later reply, redaction or INSERT carrying it failed (`internal`)
            value = without_lone_surrogates(value)
        return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def without_lone_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) replaced by U+FFFD, the
    replacement character (the stdlib decoder has already joined valid pairs)."""

    def clean(item: Any) -> Any:
        return _LONE_SURROGATE.sub("\ufffd", item) if isinstance(item, str) else item

    root = [value]
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            for i, item in enumerate(node):
                node[i] = clean(item)
                if isinstance(item, dict | list):
                    stack.append(item)
        elif isinstance(node, dict):
            for key in list(node):
                item = node.pop(key)
                node[clean(key)] = clean(item)
                if isinstance(item, dict | list):
                    stack.append(item)
    return root[0]
