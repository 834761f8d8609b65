"""A minimal Socket.IO v5 / Engine.IO v4 client over a raw WebSocket, for hostile traffic.

python-socketio's client refuses to send what a fuzzer needs (bad packet types, wrong
attachment counts, fragmented or oversized frames, invalid UTF-8), so this speaks the wire
itself: RFC 6455 framing on a plain TCP socket, Engine.IO packets in text/binary frames and
Socket.IO packets inside them. It is deliberately small and blocking (one thread per
connection); it answers the server's pings so an idle connection stays up.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

WS_PATH = "/socket.io/?EIO=4&transport=websocket"


class Closed(Exception):
    """The server closed the WebSocket (or the TCP connection)."""


class Timeout(Exception):
    """No answer in time."""


ZERO_KEY = bytes(4)


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0,
          length: int | None = None, key: bytes = ZERO_KEY) -> bytes:
    """One RFC 6455 frame; ``length`` lies about the payload length (for hostile frames).

    Client frames must be masked; the default key is zero, which leaves the payload as it is
    (masking megabytes in Python would make the fuzzer, not the server, the bottleneck)."""
    n = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 1 << 16:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    return bytes(head) + key + (payload if key == ZERO_KEY else _mask(payload, key))


def _mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    reps = (len(data) + 3) // 4
    k = int.from_bytes(key * reps, "big")
    return (int.from_bytes(data, "big") ^ (k >> (8 * (4 * reps - len(data))))).to_bytes(
        len(data), "big")


@dataclass
class Packet:
    """A decoded Socket.IO packet (type 0-6) with its attachments put back."""

    type: int
    namespace: str = "/"
    ack_id: int | None = None
    data: Any = None


def _fill(obj: Any, attachments: list[bytes]) -> Any:
    if isinstance(obj, dict):
        if obj.get("_placeholder") is True and isinstance(obj.get("num"), int):
            num = obj["num"]
            return attachments[num] if 0 <= num < len(attachments) else None
        return {k: _fill(v, attachments) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fill(v, attachments) for v in obj]
    return obj


def parse_sio(text: str) -> tuple[Packet, int]:
    """A Socket.IO packet from an Engine.IO message's text, and its attachment count."""
    ptype, i, count = int(text[0]), 1, 0
    if ptype in (5, 6):
        dash = text.index("-", i)
        count, i = int(text[i:dash]), dash + 1
    ns = "/"
    if i < len(text) and text[i] == "/":
        comma = text.find(",", i)
        ns, i = (text[i:], len(text)) if comma < 0 else (text[i:comma], comma + 1)
    j = i
    while j < len(text) and text[j].isdigit():
        j += 1
    ack = int(text[i:j]) if j > i else None
    data = json.loads(text[j:]) if j < len(text) else None
    return Packet(ptype, ns, ack, data), count


def encode_event(event: str, data: Any, ack_id: int | None = None, namespace: str = "/"
                 ) -> tuple[str, list[bytes]]:
    """``42[…]`` or, with ``bytes`` in ``data``, ``45<n>-[…]`` plus its attachments."""
    attachments: list[bytes] = []

    def walk(obj: Any) -> Any:
        if isinstance(obj, bytes | bytearray):
            attachments.append(bytes(obj))
            return {"_placeholder": True, "num": len(attachments) - 1}
        if isinstance(obj, dict):
            return {k: walk(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [walk(v) for v in obj]
        return obj

    args = [event, data] if data is not None else [event]
    try:  # the common case, in C; bytes make it fail, then placeholders are put in
        body = json.dumps(args, ensure_ascii=True, allow_nan=True)
    except TypeError:
        body = json.dumps(walk(args), ensure_ascii=True, allow_nan=True)
    ns = "" if namespace == "/" else namespace + ","
    ack = "" if ack_id is None else str(ack_id)
    if attachments:
        return f"45{len(attachments)}-{ns}{ack}{body}", attachments
    return f"42{ns}{ack}{body}", attachments


@dataclass
class WsConn:
    """One WebSocket to the server: raw frames in and out, Engine.IO pings answered."""

    host: str
    port: int
    timeout: float = 5.0
    path: str = WS_PATH
    headers: dict[str, str] = field(default_factory=dict)
    sock: socket.socket | None = None
    buf: bytearray = field(default_factory=bytearray)
    closed: bool = False
    open_packet: dict[str, Any] | None = None

    def open(self, *, handshake_only: bool = False) -> WsConn:
        """TCP + WebSocket handshake; then (unless ``handshake_only``) the Engine.IO open."""
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        req = (f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n")
        sock.sendall(req.encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            self.close()
            raise Closed(f"handshake refused: {status.decode(errors='replace')}")
        if not handshake_only:
            msg = self.recv_message()
            if not isinstance(msg, str) or not msg.startswith("0"):
                raise Closed(f"no Engine.IO open packet: {msg!r:.200}")
            self.open_packet = json.loads(msg[1:])
        return self

    # -- bytes
    def _fill(self, deadline: float | None = None) -> None:
        assert self.sock is not None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout("no data")
            self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError as exc:
            raise Timeout("no data") from exc
        except OSError as exc:
            self.closed = True
            raise Closed(str(exc)) from exc
        if not chunk:
            self.closed = True
            raise Closed("connection closed by the server")
        self.buf += chunk

    def send_raw(self, data: bytes) -> None:
        if self.sock is None or self.closed:
            raise Closed("not open")
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.closed = True
            raise Closed(str(exc)) from exc

    def send_text(self, text: str) -> None:
        self.send_raw(frame(0x1, text.encode("utf-8", "surrogatepass")))

    def send_binary(self, data: bytes) -> None:
        self.send_raw(frame(0x2, data))

    def recv_frame(self, deadline: float | None = None) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 2:
                b0, b1 = self.buf[0], self.buf[1]
                n, i = b1 & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, i = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, i = struct.unpack("!Q", self.buf[2:10])[0], 10
                if (b1 & 0x7F) < 126 or i > 2:
                    if b1 & 0x80:
                        i += 4  # the server never masks, but be tolerant
                    if len(self.buf) >= i + n:
                        payload = bytes(self.buf[i:i + n])
                        del self.buf[:i + n]
                        return b0 & 0xF, payload
            self._fill(deadline)

    def recv_message(self, deadline: float | None = None) -> str | bytes:
        """The next Engine.IO message; pings are answered, closes raise :class:`Closed`."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        while True:
            op, payload = self.recv_frame(deadline)
            if op == 0x8:
                self.closed = True
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(f"WebSocket close {code}")
            if op == 0x9:
                self.send_raw(frame(0xA, payload))
                continue
            if op == 0x2:
                return payload
            if op == 0x1:
                text = payload.decode("utf-8", "replace")
                if text == "2":
                    self.send_text("3")
                    continue
                if text.startswith("1"):
                    self.closed = True
                    raise Closed("Engine.IO close packet")
                return text

    def close(self) -> None:
        self.closed = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()


@dataclass
class SioConn(WsConn):
    """Socket.IO on top: CONNECT, acked calls, binary packets."""

    next_ack: int = 1
    events: int = 0

    def connect(self, auth: Any = None, namespace: str = "/") -> Packet:
        """Send CONNECT; return the server's CONNECT (type 0) or CONNECT_ERROR (type 4)."""
        if self.sock is None:
            self.open()
        ns = "" if namespace == "/" else namespace + ","
        self.send_text("40" + ns + (json.dumps(auth) if auth is not None else ""))
        deadline = time.monotonic() + self.timeout
        while True:
            pkt = self.recv_packet(deadline)
            if pkt.type in (0, 4) and pkt.namespace == namespace:
                return pkt

    def recv_packet(self, deadline: float | None = None) -> Packet:
        msg = self.recv_message(deadline)
        if not isinstance(msg, str):
            raise Closed(f"unexpected binary message of {len(msg)} bytes")
        if not msg.startswith("4"):
            return Packet(-1, data=msg)
        pkt, count = parse_sio(msg[1:])
        if count:
            attachments = []
            for _ in range(count):
                part = self.recv_message(deadline)
                attachments.append(part if isinstance(part, bytes) else part.encode())
            pkt.data = _fill(pkt.data, attachments)
        if pkt.type in (2, 5):
            self.events += 1
        return pkt

    def send_event(self, event: str, data: Any = None, *, ack: bool = True,
                   namespace: str = "/") -> int | None:
        ack_id = None
        if ack:
            ack_id = self.next_ack
            self.next_ack += 1
        text, attachments = encode_event(event, data, ack_id, namespace)
        self.send_text(text)
        for part in attachments:
            self.send_binary(part)
        return ack_id

    def wait_ack(self, ack_id: int, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            pkt = self.recv_packet(deadline)
            if pkt.type in (3, 6) and pkt.ack_id == ack_id:
                return pkt.data[0] if isinstance(pkt.data, list) and pkt.data else pkt.data
            if pkt.type == 1 and pkt.namespace == "/":
                self.closed = True
                raise Closed("Socket.IO disconnect from the server")

    def call(self, event: str, data: Any = None, timeout: float | None = None) -> Any:
        ack_id = self.send_event(event, data)
        assert ack_id is not None
        return self.wait_ack(ack_id, timeout)


def connect(host: str, port: int, token: str | None, *, timeout: float = 5.0) -> SioConn:
    """An authenticated Socket.IO connection on ``/``; raises :class:`Closed` when refused."""
    conn = SioConn(host, port, timeout=timeout)
    conn.open()
    pkt = conn.connect({"token": token} if token else None)
    if pkt.type != 0:
        conn.close()
        raise Closed(f"connect refused: {json.dumps(pkt.data)[:200]}")
    return conn
