"""The pywsgi handler's guards for hostile HTTP: header deadline, body limit, safe logs.

Why here and not in Flask: pywsgi reads a request's headers before any application code
runs, and after the application it reads and discards whatever body is left (a 30 MB body
refused by Flask would still be read to the end). So, in the handler ``serve`` uses:

- **Header deadline** (``DIHYA_RT_HTTP_HEADER_TIMEOUT``): the request line and headers must
  arrive within that many seconds in total (a per-``recv`` timeout would let a client drip a
  byte at a time); else the connection is closed. 300 half-open requests no longer hold 300
  greenlets and sockets. The same deadline bounds an idle keep-alive connection.
- **Body limit** (``DIHYA_RT_MAX_HTTP_BODY_BYTES``): a ``Content-Length`` over the limit is
  answered ``413`` with the JSON error envelope (``payload_too_large``) before a byte of the
  body is read, and the connection is closed; a chunked body is read up to the limit (then
  refused the same way) and handed to the application with its ``Content-Length`` set, so
  engine.io's polling transport also bounds it by ``DIHYA_RT_MAX_PAYLOAD_BYTES`` (engine.io
  reads ``Content-Length`` bytes, and refuses more than its ``max_http_buffer_size``).
- **Access and error log lines** name the method and the *path* only (and engine.io's own
  log lines have their session ids replaced, :func:`hide_session_ids`): a query string can
  hold an Engine.IO session id (enough to post as its owner over polling) or a token
  (``DIHYA_RT_ALLOW_QUERY_TOKEN``). Control bytes and other non-printable characters are
  escaped (``\\x1b``), so a request line cannot forge or colour a log line.

pywsgi internals relied on (checked at start-up by :func:`check_pywsgi`, bounded in
pyproject.toml): ``Input._chunked_input_error`` (set, pywsgi skips its read-and-discard of
the rest of a refused body), ``WSGIHandler.read_request`` / ``handle_one_request`` /
``format_request`` / ``log_error`` and the handler's ``wsgi_input``.
"""

from __future__ import annotations

import io
import logging
import re
import socket
import time
from datetime import datetime
from typing import Any

import orjson

log = logging.getLogger("dihya_realtime.http")

REFUSAL_LINGER_SECONDS = 0.5
REFUSAL_LINGER_BYTES = 256 * 1024
MAX_LOGGED_PATH = 256
_QUERY = re.compile(r"\?[^\s'\"]*")


def safe_text(text: str | None, limit: int = MAX_LOGGED_PATH) -> str:
    """``text`` for a log line: printable ASCII kept, every other character escaped, cut at
    ``limit`` characters (marked with ``…``)."""
    if not text:
        return ""
    out = "".join(c if " " <= c <= "~" and c not in '\\"' else
                  (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}") for c in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


_SESSION_ID = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{20}(?![A-Za-z0-9_-])")
SESSION_LOGGERS = ("engineio.server", "socketio.server", "engineio.client", "socketio.client")


class HideSessionIds(logging.Filter):
    """Replaces anything shaped like an Engine.IO session id (20 URL-safe base64 characters)
    in engine.io's and python-socketio's own log lines (``Invalid session <sid>``, ``Session
    is disconnected <sid>``) with ``<sid>``: a sid is enough to post as its owner."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _SESSION_ID.sub("<sid>", message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def hide_session_ids() -> None:
    """Install :class:`HideSessionIds` on engine.io's and python-socketio's loggers (once)."""
    for name in SESSION_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HideSessionIds) for f in logger.filters):
            logger.addFilter(HideSessionIds())


def check_pywsgi() -> None:
    """Fail loudly, naming the adaptation, if gevent's pywsgi lost what this module uses."""
    from gevent import pywsgi

    missing = [name for name in ("read_request", "handle_one_request", "format_request",
                                 "log_error", "wsgi_input") if not hasattr(pywsgi.WSGIHandler,
                                                                           name)]
    if "_chunked_input_error" not in getattr(pywsgi.Input, "__slots__", ()):
        missing.append("Input._chunked_input_error")
    if missing:
        raise RuntimeError("dihya_realtime.transport.http (header deadline, HTTP body limit, safe "
                           "access log) needs gevent.pywsgi's " + ", ".join(missing)
                           + ": this gevent version is not supported")


def half_close_and_drain(sock: Any, seconds: float, max_bytes: int) -> None:
    """Send FIN, then read and drop what the peer still sends until its own FIN, at most
    ``max_bytes`` or ``seconds``.

    Closing a socket with unread input makes the kernel answer with a reset, which can reach
    the client before what was just written (a 413, a WebSocket close frame with 1009): the
    client would see "connection reset", not why.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        drained = 0
        while drained < max_bytes:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:
        pass  # reset or timed out: the socket is closed next anyway


def too_large_body(limit: int) -> bytes:
    return orjson.dumps({"ok": False, "error": {
        "code": "payload_too_large",
        "message": f"the request body is over {limit} bytes",
        "details": {"max_bytes": limit}}})


def _is_polling_post(environ: dict) -> bool:
    query = environ.get("QUERY_STRING") or ""
    return environ.get("REQUEST_METHOD") == "POST" and "EIO=" in query \
        and "transport=polling" in query


def guarded_handler(base: type, *, header_timeout: float | None, max_body: int | None,
                    max_polling_body: int | None = None) -> type:
    """``base`` (a pywsgi handler class) with the guards of this module.

    ``max_polling_body`` bounds Engine.IO long-polling POSTs here, before engine.io: engine.io
    refuses one over its ``max_http_buffer_size`` too, but then closes the session *waiting*
    for the client's next GET, inside the POST: without that GET the POST (and its greenlet)
    hung for good (measured: still open after 15 s with a 2 s ping timeout)."""
    check_pywsgi()
    import gevent

    class GuardedHandler(base):
        _header_timer: Any = None

        # -- header deadline
        def handle_one_request(self) -> Any:
            timer = None
            if header_timeout:
                timer = gevent.Timeout(header_timeout)
                timer.start()
            self._header_timer = timer
            try:
                return super().handle_one_request()
            except gevent.Timeout as exc:
                if exc is not timer:
                    raise
                self.close_connection = True
                return None  # pywsgi closes the connection
            finally:
                if timer is not None:
                    timer.close()
                self._header_timer = None

        def read_request(self, raw_requestline: str) -> Any:
            try:
                return super().read_request(raw_requestline)
            finally:
                if self._header_timer is not None:  # the headers are in: no deadline now
                    self._header_timer.close()

        # -- body limit
        def run_application(self) -> None:
            limit = max_body
            if max_polling_body is not None and _is_polling_post(self.environ):
                limit = max_polling_body if limit is None else min(limit, max_polling_body)
            if limit is not None and not self._body_within_limit(limit):
                self._refuse_too_large(limit)
                return
            super().run_application()

        def _body_within_limit(self, limit: int) -> bool:
            if self.content_length is not None:
                return int(self.content_length) <= limit
            wsgi_input = self.wsgi_input
            if wsgi_input is None or not getattr(wsgi_input, "chunked_input", False):
                return True
            chunks, size = [], 0
            while size <= limit:
                chunk = wsgi_input.read(min(65536, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > limit:
                return False
            body = b"".join(chunks)
            self.environ["wsgi.input"] = io.BytesIO(body)
            self.environ["CONTENT_LENGTH"] = str(len(body))
            return True

        def _refuse_too_large(self, limit: int) -> None:
            body = too_large_body(limit)
            self.close_connection = True
            if self.wsgi_input is not None:
                # pywsgi would read (and discard) the rest of the body after the response
                self.wsgi_input._chunked_input_error = True
            self.start_response("413 Payload Too Large", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                ("Connection", "close")])
            self.write(body)
            self._drain()

        def _drain(self) -> None:
            """Half-close, then drop what the client still sends (bounded), so that the
            kernel does not answer its unread body with a reset before it reads the 413."""
            half_close_and_drain(self.socket, REFUSAL_LINGER_SECONDS, REFUSAL_LINGER_BYTES)

        # -- log lines
        def format_request(self) -> str:
            now = datetime.now().replace(microsecond=0)
            length = self.response_length or "-"
            delta = f"{self.time_finish - self.time_start:.6f}" if self.time_finish else "-"
            address = self.client_address
            address = address[0] if isinstance(address, tuple) else address
            if getattr(self, "command", None) and getattr(self, "path", None):
                line = " ".join((safe_text(self.command, 16),
                                 safe_text(self.path.split("?", 1)[0]),
                                 safe_text(self.request_version or "", 16)))
            else:
                line = safe_text(_QUERY.sub("?…", self.requestline or ""))
            status = (getattr(self, "_orig_status", None) or self.status or "000").split()[0]
            return f'{address or "-"} - - [{now}] "{line}" {status} {length} {delta}'

        def log_error(self, msg: str, *args: Any) -> None:
            try:
                text = msg % args if args else msg
            except (TypeError, ValueError):
                text = f"{msg} {args!r}"
            super().log_error("%s", safe_text(_QUERY.sub("?…", text), 1024))

    return GuardedHandler
