"""Hostile binary packets and inbound byte floods against a real ``dihya-realtime serve``.

A Socket.IO binary packet is a text header announcing N attachments, then N binary
WebSocket messages; the server assembles them. These tests speak raw Engine.IO over one
WebSocket (:class:`RawSocket`) to send what python-socketio's client never would: millions of
announced attachments, one attachment referenced many times, endless attachment streams.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pycrdt
import pytest
import websocket

MAX = 65536  # the default DIHYA_RT_MAX_PAYLOAD_BYTES
FRAME = 60_000
UNLIMITED_BYTES = {"rate": 1e12, "burst": 10**12}  # to prove the packet bound on its own


def placeholder(num: int) -> dict[str, Any]:
    return {"_placeholder": True, "num": num}


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def yjs_update(text: str) -> bytes:
    doc = pycrdt.Doc()
    doc["t"] = pycrdt.Text()
    doc["t"] += text
    return doc.get_update()


class RawSocket:
    """A Socket.IO v5 client on one raw WebSocket: it sends exactly the frames it is given."""

    def __init__(self, server: Any, token: str) -> None:
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket", timeout=5)
        opened = self.ws.recv()
        assert opened.startswith("0{"), opened
        self.ws.send("40" + json.dumps({"token": token}))
        first = self.recv()
        assert isinstance(first, str) and first.startswith("0{"), first
        self.sid = json.loads(first[1:])["sid"]
        self.next_id = 1

    def recv(self, timeout: float = 5.0) -> str | bytes:
        """The next Socket.IO message (Engine.IO pings answered on the way)."""
        self.ws.settimeout(timeout)
        while True:
            message = self.ws.recv()
            if message == "2":
                self.ws.send("3")
                continue
            if message == "1":
                raise ConnectionError("Engine.IO session closed by the server")
            if isinstance(message, str):
                assert message[:1] == "4", f"unexpected Engine.IO packet {message[:40]!r}"
                return message[1:]
            return message

    def send_event(self, event: str, data: Any, attachments: list[bytes] | None = None,
                   count: int | None = None, ack: bool = True) -> int | None:
        """Send ``[event, data]`` (``data`` may hold placeholders); ``count`` overrides the
        announced number of attachments. Returns the ack id."""
        ack_id = self.next_id if ack else None
        self.next_id += 1
        body = json.dumps([event, data])
        ident = "" if ack_id is None else str(ack_id)
        if attachments is None and count is None:
            self.ws.send(f"42{ident}{body}")
        else:
            announced = len(attachments or []) if count is None else count
            self.ws.send(f"45{announced}-{ident}{body}")
            for blob in attachments or []:
                self.ws.send_binary(blob)
        return ack_id

    def stream(self, total: int, frame: int = FRAME) -> int:
        """Send ``total`` bytes as binary messages; returns how many were sent before the
        server closed the connection."""
        sent = 0
        blob = b"\xab" * frame
        try:
            while sent < total:
                self.ws.send_binary(blob)
                sent += frame
        except (websocket.WebSocketException, OSError):
            pass
        return sent

    def wait_ack(self, ack_id: int, timeout: float = 10.0) -> Any:
        """The reply envelope for ``ack_id`` (binary acks' attachments are read and skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.1, deadline - time.monotonic()))
            if isinstance(message, bytes):
                continue
            kind, rest = message[:1], message[1:]
            if kind == "6":
                _, _, rest = rest.partition("-")
            if kind in "36" and rest.startswith(str(ack_id)) and rest[len(str(ack_id))] == "[":
                return json.loads(rest[len(str(ack_id)):])[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no ack {ack_id} within {timeout} s")

    def wait_event(self, name: str, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            message = self.recv(max(0.1, deadline - time.monotonic()))
            if isinstance(message, str) and message.startswith("2["):
                event, *args = json.loads(message[1:])
                if event == name:
                    return args[0] if args else None

    def call(self, event: str, data: Any = None) -> Any:
        return self.wait_ack(self.send_event(event, data))  # type: ignore[arg-type]

    def closed_within(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.recv(max(0.1, deadline - time.monotonic()))
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return True
        except websocket.WebSocketTimeoutException:
            return False
        return False

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def raw_socket():
    sockets: list[RawSocket] = []

    def open_(server: Any, token: str) -> RawSocket:
        sock = RawSocket(server, token)
        sockets.append(sock)
        return sock

    yield open_
    for sock in sockets:
        sock.close()


def audit_of(server: Any, type_: str) -> list[dict[str, Any]]:
    return [line for line in server.audit_lines() if line["type"] == type_]


# -- the packet's attachments are bounded as they arrive


def test_binary_event_announcing_millions_of_attachments_is_refused_at_its_header(
        start_server, raw_socket, token):
    server = start_server(RATE_LIMIT_BYTES=UNLIMITED_BYTES)
    sock = raw_socket(server, token("mallory"))
    ack = sock.send_event("doc:update", {"doc_id": "d1", "update": placeholder(0)},
                          count=5_000_000)

    reply = sock.wait_ack(ack)  # type: ignore[arg-type]

    assert reply["ok"] is False and reply["error"]["code"] == "payload_too_large"
    row = server.wait_audit("payload_too_large", lambda e: e["sid"] == sock.sid)
    assert row["details"]["announced_attachments"] == 5_000_000
    assert sock.call("whoami")["ok"] is True


def test_attachment_stream_after_a_refused_header_is_not_buffered(
        start_server, raw_socket, token):
    server = start_server(RATE_LIMIT_BYTES=UNLIMITED_BYTES)
    sock = raw_socket(server, token("mallory"))
    assert sock.call("whoami")["ok"] is True
    before = rss_kb(server.pid)

    ack = sock.send_event("doc:update", {"doc_id": "d1", "update": placeholder(0)},
                          count=5_000_000)
    sent = sock.stream(16 * 1024 * 1024)
    reply = sock.wait_ack(ack)  # type: ignore[arg-type]
    whoami = sock.call("whoami")  # the stream resynchronises on the next text message

    grown_mb = (rss_kb(server.pid) - before) / 1024
    assert sent >= 16 * 1024 * 1024
    assert reply["error"]["code"] == "payload_too_large"
    assert whoami["ok"] is True
    assert grown_mb < 6, f"server RSS grew {grown_mb:.1f} MB while 16 MB were discarded"
    assert len(audit_of(server, "payload_too_large")) == 1  # counted, not one row per frame


def test_other_connections_keep_their_latency_while_one_streams_attachments(
        start_server, raw_socket, token):
    server = start_server(RATE_LIMIT_BYTES=UNLIMITED_BYTES)
    attacker = raw_socket(server, token("mallory"))
    bystander = raw_socket(server, token("bob"))
    latencies: list[float] = []
    done = threading.Event()

    def measure() -> None:
        while not done.is_set():
            started = time.monotonic()
            assert bystander.call("whoami")["ok"] is True
            latencies.append(time.monotonic() - started)
            time.sleep(0.02)

    thread = threading.Thread(target=measure)
    thread.start()
    attacker.send_event("doc:update", {"doc_id": "d1", "update": placeholder(0)},
                        count=5_000_000)
    attacker.stream(24 * 1024 * 1024)
    done.set()
    thread.join(10)

    assert len(latencies) >= 5
    assert max(latencies) < 0.5, f"bystander waited {max(latencies):.2f} s"


def test_binary_packet_is_refused_once_its_attachments_pass_max_payload_bytes(
        start_server, raw_socket, token):
    server = start_server(RATE_LIMIT_BYTES=UNLIMITED_BYTES)
    sock = raw_socket(server, token("mallory"))
    parts = [b"\x01" * 30_000 for _ in range(4)]
    data = {"doc_id": "d1", "update": placeholder(0),
            "extra": [placeholder(1), placeholder(2), placeholder(3)]}

    reply = sock.wait_ack(sock.send_event("doc:update", data, attachments=parts))  # type: ignore[arg-type]

    assert reply["ok"] is False and reply["error"]["code"] == "payload_too_large"
    row = server.wait_audit("payload_too_large", lambda e: e["sid"] == sock.sid)
    assert row["details"]["received_bytes"] <= MAX
    assert row["details"]["max_bytes"] == MAX
    assert sock.call("whoami")["ok"] is True


# -- binary only where an event declares it


def test_publish_with_a_hundred_attachments_is_refused_and_nothing_is_stored(
        start_server, sio_client, token):
    server = start_server()
    attacker = sio_client(server, token("mallory"))
    reader = sio_client(server, token("bob"))
    blobs = [bytes([i]) * FRAME for i in range(100)]

    reply = attacker.call("publish", {"channel": "chat:binary", "data": blobs}, timeout=15)

    assert reply["ok"] is False and reply["error"]["code"] == "invalid_payload"
    history = reader.call("history", {"channel": "chat:binary"})
    assert history["ok"] is True and history["data"]["publications"] == []
    assert server.wait_audit("invalid_payload",
                             lambda e: e["event"] == "publish" and e["user_id"] == "mallory")


def test_binary_for_a_non_binary_event_without_ack_gets_an_error_event(
        start_server, sio_client, token):
    server = start_server()
    client = sio_client(server, token("mallory"))

    client.emit("publish", {"channel": "chat:binary", "data": b"\x00\x01"})
    error = client.wait_for("error")

    assert error["event"] == "publish" and error["error"]["code"] == "invalid_payload"
    assert client.call("whoami")["ok"] is True


def test_binary_for_an_undeclared_event_is_invalid_payload(start_server, sio_client, token):
    server = start_server()
    client = sio_client(server, token("mallory"))

    reply = client.call("nope:binary", {"blob": b"\x00" * 10})

    assert reply["ok"] is False and reply["error"]["code"] == "invalid_payload"


def test_one_attachment_referenced_three_hundred_times_is_refused(
        start_server, raw_socket, sio_client, token):
    server = start_server()
    sock = raw_socket(server, token("mallory"))
    reader = sio_client(server, token("bob"))

    reply = sock.wait_ack(sock.send_event(  # type: ignore[arg-type]
        "publish", {"channel": "chat:amp", "data": [placeholder(0)] * 300},
        attachments=[b"\xcd" * FRAME]))

    assert reply["ok"] is False and reply["error"]["code"] == "invalid_payload"
    assert reader.call("history", {"channel": "chat:amp"})["data"]["publications"] == []


def test_a_storm_of_refused_binary_packets_is_answered_each_time_and_audited_as_a_count(
        start_server, raw_socket, token):
    server = start_server()
    sock = raw_socket(server, token("mallory"))

    ids = [sock.send_event("publish", {"channel": "chat:x", "data": placeholder(0)},
                           attachments=[b"\x00"]) for _ in range(40)]
    replies = [sock.wait_ack(ack_id) for ack_id in ids]  # type: ignore[arg-type]
    sock.call("whoami")  # the audit rows of the storm are written by now

    assert {r["error"]["code"] for r in replies} == {"invalid_payload"}
    rows = [e for e in audit_of(server, "invalid_payload") if e["user_id"] == "mallory"]
    assert 1 <= len(rows) <= 12, f"{len(rows)} audit rows for 40 refusals"
    sock.close()
    summary = server.wait_audit("inbound_refusals", lambda e: e["user_id"] == "mallory")
    counted = sum(r["details"].get("refusals_not_audited_before", 0) for r in rows)
    assert len(rows) + counted + summary["details"]["refusals_not_audited_before"] == 40


def test_binary_event_placeholder_used_twice_is_refused(start_server, raw_socket, token):
    server = start_server()
    sock = raw_socket(server, token("alice"))
    assert sock.call("doc:join", {"doc_id": "amp-1"})["ok"] is True
    update = yjs_update("hello")

    reply = sock.wait_ack(sock.send_event(  # type: ignore[arg-type]
        "doc:update", {"doc_id": "amp-1", "update": placeholder(0),
                       "pad": [placeholder(0)] * 300}, attachments=[update]))
    fine = sock.wait_ack(sock.send_event(  # type: ignore[arg-type]
        "doc:update", {"doc_id": "amp-1", "update": placeholder(0)}, attachments=[update]))

    assert reply["ok"] is False and reply["error"]["code"] == "invalid_payload"
    assert fine["ok"] is True and fine["data"]["seq"] == 1


# -- inbound bytes per connection


def test_inbound_bytes_over_the_rate_are_refused_with_retry_after_then_disconnected(
        start_server, sio_client, token):
    server = start_server(RATE_LIMIT_BYTES={"rate": 20_000, "burst": 100_000},
                          RATE_LIMIT_ABUSE_STRIKES="3")
    client = sio_client(server, token("mallory"))
    bystander = sio_client(server, token("bob"))
    text = "x" * 30_000

    replies = []
    for _ in range(5):
        replies.append(client.call("publish", {"channel": "chat:flood", "data": text}))

    assert [r["ok"] for r in replies[:3]] == [True, True, True]
    limited = replies[3]["error"]
    assert limited["code"] == "rate_limited" and limited["retry_after"] > 0
    assert limited["details"]["scope"] == "bytes"
    client.emit("publish", {"channel": "chat:flood", "data": text})
    client.wait_disconnected()
    assert server.wait_audit("disconnect_abuse", lambda e: e["user_id"] == "mallory")
    assert bystander.call("whoami")["ok"] is True


def test_attachment_flood_is_closed_by_the_byte_rate_before_megabytes_are_read(
        start_server, raw_socket, token):
    server = start_server()  # default byte rate
    sock = raw_socket(server, token("mallory"))
    before = rss_kb(server.pid)

    sock.send_event("doc:update", {"doc_id": "d1", "update": placeholder(0)}, count=16)
    sock.stream(64 * 1024 * 1024)

    assert sock.closed_within(5)
    assert (rss_kb(server.pid) - before) / 1024 < 6
    row = server.wait_audit("disconnect_abuse", lambda e: e["sid"] == sock.sid)
    assert row["details"]["strikes"] >= 1


def test_binary_over_long_polling_is_bounded_the_same_way(start_server, sio_client, token):
    server = start_server()
    client = sio_client(server, token("alice"), transports=["polling"])

    joined = client.call("doc:join", {"doc_id": "poll-1"})
    updated = client.call("doc:update", {"doc_id": "poll-1", "update": yjs_update("hi")})
    refused = client.call("publish", {"channel": "chat:poll", "data": b"\x00"})

    assert joined["ok"] is True and isinstance(joined["data"]["sync_step2"], bytes)
    assert updated["ok"] is True
    assert refused["ok"] is False and refused["error"]["code"] == "invalid_payload"
