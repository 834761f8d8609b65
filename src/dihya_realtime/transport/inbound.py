"""Inbound Engine.IO messages: what one connection may make the server read and hold.

Every message a client sends passes here before python-socketio decodes it, for two bounds
python-socketio does not have:

- **Bytes per second.** Each Engine.IO message is charged, by its size in bytes, to the
  session's ``DIHYA_RT_RATE_LIMIT_BYTES`` bucket (before authentication too). Over it the
  message is dropped and answered ``rate_limited`` with ``retry_after`` (an ack, or an
  ``error`` event), and it is a strike like the per-event limiter's:
  ``DIHYA_RT_RATE_LIMIT_ABUSE_STRIKES`` strikes close the session. The reader also lets the
  other connections run after every 64 KiB it reads (see :meth:`InboundGuard.on_message`).
- **Binary packets.** A binary packet is a text header announcing N attachments, then N binary
  messages; python-socketio buffers them in ``Server._binary_packet`` with no bound on N or
  their bytes, and its placeholders may name one attachment any number of times (one 60 KB
  attachment became 18 MB). Here the header is checked before anything is buffered: the event
  must be declared ``binary=True`` (else ``invalid_payload``), N at most
  ``DIHYA_RT_MAX_ATTACHMENTS`` (else ``payload_too_large``), each attachment referenced exactly
  once (else ``invalid_payload``); then every attachment is added to a running total, header
  included, that may not pass ``DIHYA_RT_MAX_PAYLOAD_BYTES`` (else ``payload_too_large``).

A refused packet is answered, audited (within a per-session budget: a storm is counted, not
written row by row), and the rest of it is read and dropped, never kept: the connection stays
usable. That resynchronisation is safe because Socket.IO v5 sends
every packet header as a text message and every attachment as a binary one (Engine.IO v4 has
no other encoding, over WebSocket or polling), so the next text message starts the next
packet. An attacker who keeps streaming attachments is stopped by the byte rate instead.

python-socketio internals used (pinned ``<6``; :func:`check_internals` fails start-up loudly
if one is missing): ``Server._handle_eio_message`` (wrapped, and re-registered as Engine.IO's
``message`` handler, which holds the bound method), ``Server._binary_packet``,
``Server._send_packet``, ``Server.packet_class``, ``Server.environ`` (this module's
per-session state lives in the session's environ, so it goes when the session goes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from socketio import packet as sio_packet

from dihya_realtime.kernel.errors import ErrorCode, RealtimeError, fail
from dihya_realtime.kernel.pipeline import UNKNOWN
from dihya_realtime.kernel.ratelimit import TokenBucket
from dihya_realtime.kernel.settings import RateLimit

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.kernel.host import Host


STATE_KEY = "dihya_realtime.transport.inbound"
"""Where a session's :class:`SessionInbound` lives in its WSGI environ."""

REQUIRED_INTERNALS = ("_handle_eio_message", "_binary_packet", "_send_packet", "packet_class",
                      "environ", "manager", "eio")

YIELD_BYTES = 64 * 1024
YIELD_SECONDS = 0.0002
# A session's reader lets the others run for a moment after reading YIELD_BYTES (on_message).

AUDIT_BUDGET = RateLimit(rate=1, burst=10)
"""Audit rows for refused packets, per session: a client's refusal storm is counted, not
written row by row into the hash chain."""

MAX_NAME = 128
"""Longest event name repeated in a reply or an audit row (the name is the client's)."""

_BINARY_HEADERS = (str(sio_packet.BINARY_EVENT), str(sio_packet.BINARY_ACK))
_PEEK = re.compile(r'([0-6])(?:\d{1,10}-)?(/[^,]{0,200},)?(\d{1,19})?'
                   r'(?:\[\s*"((?:[^"\\]|\\.){0,200})")?')


class InternalsMissing(RuntimeError):
    """python-socketio lacks an internal the inbound guard adapts (a new major version?)."""


def check_internals(server: Any) -> None:
    """Fail loudly, naming the adaptation, if ``server`` lacks what the guard wraps."""
    missing = [name for name in REQUIRED_INTERNALS if not hasattr(server, name)]
    if not missing and not isinstance(server._binary_packet, dict):
        missing.append("_binary_packet (a dict by Engine.IO session)")
    if not missing and "message" not in getattr(server.eio, "handlers", {}):
        missing.append("eio.handlers['message']")
    if missing:
        raise InternalsMissing(
            "dihya-realtime's inbound packet guard (dihya_realtime.transport.inbound: bounded "
            "binary "
            "attachments, inbound bytes per second) needs python-socketio's "
            f"Server.{', Server.'.join(missing)}, which this version lacks; "
            "install python-socketio<6 or adapt dihya_realtime.transport.inbound")


def attachment_problem(data: Any, count: int) -> str | None:
    """Why a binary header's placeholders do not reference each of its ``count`` attachments
    exactly once (``None``: they do). A placeholder is what python-socketio replaces: a dict
    with a true ``_placeholder`` and a ``num``."""
    seen: set[int] = set()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            if item.get("_placeholder") and "num" in item:
                num = item["num"]
                if type(num) is not int or not 0 <= num < count:
                    return f"placeholder {str(num)[:20]!r} names no attachment"
                if num in seen:
                    return f"attachment {num} is referenced more than once"
                seen.add(num)
            else:
                stack.extend(item.values())
    if len(seen) != count:
        return f"{count - len(seen)} of {count} attachments are never referenced"
    return None


def peek(data: str) -> tuple[int | None, str, int | None, str | None]:
    """``(packet type, namespace, ack id, event name)`` of an encoded packet, read from its
    first bytes only (to answer a message without decoding it)."""
    match = _PEEK.match(data[:300])
    if match is None:
        return None, "/", None, None
    kind, namespace, ack_id, name = match.groups()
    if name is not None:
        try:
            name = json.loads(f'"{name}"')
        except ValueError:
            name = None
    return (int(kind), namespace[:-1] if namespace else "/",
            int(ack_id) if ack_id else None, name)


class Pending:
    """The binary packet being assembled on one session, and its bytes so far."""

    __slots__ = ("event", "namespace", "id", "announced", "received", "attachments")

    def __init__(self, event: str, namespace: str, id_: int | None, announced: int,
                 received: int) -> None:
        self.event = event
        self.namespace = namespace
        self.id = id_
        self.announced = announced
        self.received = received
        self.attachments = 0


class SessionInbound:
    """One Engine.IO session's inbound state."""

    __slots__ = ("bucket", "strikes", "pending", "discarding", "limited", "closing",
                 "unyielded", "audit_budget", "unaudited")

    def __init__(self, limit: RateLimit) -> None:
        self.bucket = TokenBucket(limit)
        self.strikes = 0  # before authentication; after it, the connection's own count
        self.pending: Pending | None = None
        self.discarding = False  # dropping the binary messages of a refused packet
        self.limited = False  # inside a run of rate-limited messages (audited once)
        self.closing = False
        self.unyielded = 0  # bytes read since this session's reader last let others run
        self.audit_budget = TokenBucket(AUDIT_BUDGET)  # audit rows for refused packets
        self.unaudited = 0


class InboundGuard:
    """Wraps one python-socketio server's message handling (see the module docstring)."""

    def __init__(self, rt: Host) -> None:
        settings = rt.settings
        self.rt = rt
        self.byte_limit = settings.rate_limit_bytes
        self.max_bytes = settings.max_payload_bytes
        self.max_attachments = settings.max_attachments
        self.abuse_strikes = settings.rate_limit_abuse_strikes
        self.server: Any = None
        self.original: Callable[[str, Any], Any] = lambda eio_sid, data: None

    def install(self, server: Any) -> InboundGuard:
        """Put :meth:`on_message` in front of ``server._handle_eio_message``."""
        check_internals(server)
        self.server = server
        self.original = server._handle_eio_message
        # an instance attribute (what Flask-SocketIO's test client calls) and Engine.IO's
        # handler (which holds the bound method it was given at construction)
        setattr(server, "_handle_eio_message", self.on_message)  # noqa: B010
        server.eio.on("message", self.on_message)
        self.rt.on_disconnect(self._summarise)
        return self

    def _summarise(self, conn: Connection, reason: str) -> None:
        """At disconnect, audit the refusals the session's audit budget left uncounted."""
        eio_sid = self.server.manager.eio_sid_from_sid(conn.sid, "/")
        state = (self.server.environ.get(eio_sid) or {}).get(STATE_KEY)
        if state is not None and state.unaudited:
            self.rt.audit.record("inbound_refusals", outcome="summary",
                                 details={"refusals_not_audited_before": state.unaudited},
                                 **conn.audit_fields())
            state.unaudited = 0

    # -- every message
    def on_message(self, eio_sid: str, data: Any) -> Any:
        environ = self.server.environ.get(eio_sid)
        if environ is None:  # a session already closed: what its reader still gets is dropped
            self.server.sleep(YIELD_SECONDS)
            return None
        if not isinstance(data, str | bytes):
            return self.original(eio_sid, data)  # not a Socket.IO packet: refused below
        state = environ.get(STATE_KEY)
        if state is None:
            state = environ[STATE_KEY] = SessionInbound(self.byte_limit)
        size = len(data) if not isinstance(data, str) or data.isascii() else \
            len(data.encode("utf-8", "replace"))  # bytes on the wire (isascii: O(1))
        state.unyielded += size
        if state.unyielded >= YIELD_BYTES or state.closing:
            # A client streaming at line rate keeps this session's socket readable, so its
            # reader never blocks and, under gevent, nothing else would run: not the other
            # connections, not the writer that closes this one. Measured: a bystander's
            # `whoami` waited 3.4 s while one client streamed 32 MB of attachments. A timed
            # sleep, not sleep(0): gevent runs the event loop's I/O polling only for the former.
            state.unyielded = 0
            self.server.sleep(YIELD_SECONDS)
            if state.closing:
                return None
        wait = state.bucket.take(cost=size)
        if wait:
            return self._over_rate(eio_sid, state, data, wait)
        state.limited = False
        if isinstance(data, str):
            if state.pending is not None:
                self._drop_pending(eio_sid, state, ErrorCode.INVALID_PAYLOAD,
                                   "binary packet interrupted before its last attachment")
            state.discarding = False
            if data[:1] in _BINARY_HEADERS:
                return self._header(eio_sid, state, data, size)
            return self.original(eio_sid, data)
        return self._attachment(eio_sid, state, data)

    # -- binary packets
    def _header(self, eio_sid: str, state: SessionInbound, data: str, size: int) -> None:
        server = self.server
        state.discarding = True  # until this header is accepted, its attachments are dropped
        try:
            pkt = server.packet_class(encoded_packet=data)
        except ValueError:
            _, namespace, ack_id, name = peek(data)
            sid = server.manager.sid_from_eio_sid(eio_sid, namespace)
            self._refuse(eio_sid, state, sid, namespace, ack_id, (name or "<none>")[:MAX_NAME],
                         RealtimeError(ErrorCode.INVALID_PAYLOAD, "malformed binary packet"), {})
            return
        namespace = pkt.namespace or "/"
        sid = server.manager.sid_from_eio_sid(eio_sid, namespace)
        if not sid:  # not connected to that namespace (python-socketio raises, logging a trace)
            return
        body = pkt.data if isinstance(pkt.data, list) else []
        name = body[0][:MAX_NAME] if body and isinstance(body[0], str) else "<none>"
        count = pkt.attachment_count
        details = {"announced_attachments": count, "max_attachments": self.max_attachments}
        spec = self.rt.registry.events.get(name) if namespace == "/" else None
        error: RealtimeError | None = None
        if pkt.packet_type != sio_packet.BINARY_EVENT:
            error = RealtimeError(ErrorCode.INVALID_PAYLOAD,
                                  "binary acks are not accepted: the server asks for none")
        elif spec is None or not spec.binary:
            error = RealtimeError(ErrorCode.INVALID_PAYLOAD,
                                  f"event {name!r} takes no binary attachments",
                                  {"event": name})
        elif count > self.max_attachments:
            error = RealtimeError(ErrorCode.PAYLOAD_TOO_LARGE,
                                  f"more than {self.max_attachments} binary attachments",
                                  details)
        elif count < 1:
            error = RealtimeError(ErrorCode.INVALID_PAYLOAD,
                                  "a binary packet announces at least one attachment")
        else:
            problem = attachment_problem(pkt.data, count)
            if problem is not None:
                error = RealtimeError(ErrorCode.INVALID_PAYLOAD,
                                      f"binary attachments: {problem}", {"event": name})
        if error is not None:
            ack_id = pkt.id if pkt.packet_type == sio_packet.BINARY_EVENT else None
            self._refuse(eio_sid, state, sid, namespace, ack_id, name, error, details)
            return
        state.discarding = False
        server._binary_packet[eio_sid] = pkt
        state.pending = Pending(name, namespace, pkt.id, count, size)

    def _attachment(self, eio_sid: str, state: SessionInbound, data: Any) -> Any:
        if state.discarding:
            return None
        pending = state.pending
        if pending is None or eio_sid not in self.server._binary_packet:
            # python-socketio would decode a stray binary message as a packet of its own
            state.pending = None
            state.discarding = True
            sid = self.server.manager.sid_from_eio_sid(eio_sid, "/")
            self._refuse(eio_sid, state, sid, "/", None, "<none>",
                         RealtimeError(ErrorCode.INVALID_PAYLOAD,
                                       "binary message outside a binary packet"),
                         {"bytes": len(data)})
            return None
        if pending.received + len(data) > self.max_bytes:
            self._drop_pending(eio_sid, state, ErrorCode.PAYLOAD_TOO_LARGE,
                               f"binary attachments larger than {self.max_bytes} bytes")
            return None
        pending.received += len(data)
        pending.attachments += 1
        try:
            return self.original(eio_sid, data)
        finally:
            if eio_sid not in self.server._binary_packet:
                state.pending = None

    def _drop_pending(self, eio_sid: str, state: SessionInbound, code: ErrorCode,
                      message: str) -> None:
        """Forget the packet being assembled, answer and audit it; drop the rest of it."""
        pending = state.pending
        state.pending = None
        state.discarding = True
        self.server._binary_packet.pop(eio_sid, None)
        if pending is None:
            return
        details = {"announced_attachments": pending.announced,
                   "received_attachments": pending.attachments,
                   "received_bytes": pending.received, "max_bytes": self.max_bytes}
        sid = self.server.manager.sid_from_eio_sid(eio_sid, pending.namespace)
        self._refuse(eio_sid, state, sid, pending.namespace, pending.id, pending.event,
                     RealtimeError(code, message, details), details)

    def _refuse(self, eio_sid: str, state: SessionInbound, sid: str | None, namespace: str,
                ack_id: int | None, name: str, error: RealtimeError,
                details: dict[str, Any]) -> None:
        """Answer a refused packet, count it, and audit it within the session's audit budget
        (refusals past it are counted in the next row written, never one row each)."""
        conn = self.rt.connections.get(sid) if sid and namespace == "/" else None
        self._answer(eio_sid, sid, namespace, ack_id, name, error)
        code = error.code.value
        label = name if name in self.rt.registry.events else UNKNOWN
        self.rt.metrics.events.labels(label, code).inc()
        if state.audit_budget.take():
            state.unaudited += 1
            return
        details = {**details, "message": error.message}
        if state.unaudited:
            details["refusals_not_audited_before"] = state.unaudited
            state.unaudited = 0
        self.rt.audit.record(code, event=name, outcome=code, details=details,
                             **self._fields(eio_sid, sid, conn))

    # -- bytes per second
    def _over_rate(self, eio_sid: str, state: SessionInbound, data: Any, wait: float) -> None:
        server = self.server
        namespace, ack_id, name, answerable = "/", None, "<none>", False
        pending = state.pending
        if pending is not None:  # the packet being assembled is dropped with this message
            state.pending = None
            state.discarding = True
            server._binary_packet.pop(eio_sid, None)
        if isinstance(data, str):
            kind, namespace, ack_id, peeked = peek(data)
            answerable = kind in (sio_packet.EVENT, sio_packet.BINARY_EVENT)
            if not answerable:
                ack_id = None
            name = (peeked or name)[:MAX_NAME]
            state.discarding = kind == sio_packet.BINARY_EVENT  # its attachments: dropped too
        elif pending is not None:
            namespace, ack_id, name = pending.namespace, pending.id, pending.event
            answerable = True
        sid = server.manager.sid_from_eio_sid(eio_sid, namespace)
        conn = self.rt.connections.get(sid) if sid and namespace == "/" else None
        if conn is not None:
            conn.strikes += 1
            strikes = conn.strikes
        else:
            state.strikes += 1
            strikes = state.strikes
        self.rt.metrics.rate_limited.labels("bytes").inc()
        fields = self._fields(eio_sid, sid, conn)
        if not state.limited:  # one row per run of refused messages, not one per message
            state.limited = True
            self.rt.audit.record("rate_limited", event=name, outcome="rate_limited",
                                 details={"scope": "bytes", "retry_after": round(wait, 3),
                                          "strikes": strikes}, **fields)
        if answerable:
            self._answer(eio_sid, sid, namespace, ack_id, name, RealtimeError(
                ErrorCode.RATE_LIMITED, "too many bytes sent on this connection",
                {"scope": "bytes"}, retry_after=wait))
        if strikes >= self.abuse_strikes:
            state.closing = True
            self.rt.audit.record("disconnect_abuse", event=name, outcome="disconnected",
                                 details={"strikes": strikes, "scope": "bytes"}, **fields)
            server.start_background_task(server.eio.disconnect, eio_sid)
        server.sleep(YIELD_SECONDS)  # let the disconnect run (see on_message)

    # -- answering
    def _answer(self, eio_sid: str, sid: str | None, namespace: str, ack_id: int | None,
                name: str, error: RealtimeError) -> None:
        """The pipeline's answer: an ack with the failure envelope, else an ``error`` event."""
        if not sid:
            return
        envelope = fail(error)
        if ack_id is not None:
            pkt = self.server.packet_class(sio_packet.ACK, namespace=namespace, id=ack_id,
                                           data=[envelope])
        else:
            pkt = self.server.packet_class(
                sio_packet.EVENT, namespace=namespace,
                data=["error", {"event": name, "error": envelope["error"]}])
        self.server._send_packet(eio_sid, pkt)

    def _fields(self, eio_sid: str, sid: str | None, conn: Connection | None) -> dict[str, Any]:
        if conn is not None:
            return conn.audit_fields()
        environ = self.server.environ.get(eio_sid) or {}
        return {"sid": sid, "remote_addr": environ.get("REMOTE_ADDR"),
                "origin": environ.get("HTTP_ORIGIN"),
                "user_agent": environ.get("HTTP_USER_AGENT")}
