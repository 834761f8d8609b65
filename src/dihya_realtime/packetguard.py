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
- any other malformed packet closes the Engine.IO session (what the JavaScript server does
  on a parse error).
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from dihya_realtime.httpguard import hide_session_ids, safe_text

log = logging.getLogger("dihya_realtime.packets")

MALFORMED = (ValueError, RecursionError)
"""What python-socketio's packet decoding raises for bad input (JSON errors are ValueErrors)."""


def refuse_malformed_packets(server: Any) -> None:
    """Wrap ``server``'s (a ``socketio.Server``) Engine.IO ``message`` handler."""
    eio = server.eio
    handler = getattr(eio, "handlers", {}).get("message")
    if handler is None:
        raise RuntimeError("dihya_realtime.packetguard (malformed packets refused without a "
                           "traceback) needs engine.io's handlers['message'], set by "
                           "python-socketio: this version is not supported")

    def on_message(eio_sid: str, data: Any) -> Any:
        try:
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


def _refuse(server: Any, eio_sid: str, data: Any, exc: BaseException) -> None:
    environ = server.environ.get(eio_sid) or {}
    connect = isinstance(data, str) and data.startswith("0")
    problem = safe_text(f"{type(exc).__name__}: {exc}", 160)
    log.warning("malformed Socket.IO packet from %s (%d %s): %s; %s",
                safe_text(environ.get("REMOTE_ADDR") or "-", 64), len(data),
                "characters" if isinstance(data, str) else "bytes", problem,
                "connect refused" if connect else "session closed")
    try:
        if connect:
            error = {"code": "invalid_payload", "message": "malformed CONNECT packet"}
            server.eio.send(eio_sid, "4" + orjson.dumps({**error, "data": error}).decode())
        else:
            # not here: engine.io's close waits for a polling client to collect the CLOSE
            # packet, and this may run inside that client's POST
            server.eio.start_background_task(server.eio.disconnect, eio_sid)
    except Exception as send_exc:  # the session may be gone already
        log.debug("could not answer a malformed packet: %s", send_exc)
