"""Packets that are not what Socket.IO sends, against a real ``serve`` process: each gets an
answer the client can act on (or the end of its own session), never a traceback in the log,
and the connection stays usable wherever the whole bad packet has been read.

Found by ``make fuzz``: engine.io and python-socketio decode and dispatch outside any ``try``,
so ``42{}``, ``4{}``, a text frame ``n`` or JSON nested 5,000 deep each logged a traceback (and
killed the request's greenlet); a lone surrogate in a string made every reply carrying it fail.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import websocket

from tests.integration.conftest import ServerProcess


class Polling:
    """One Engine.IO long-polling session, spoken by hand."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        with urllib.request.urlopen(self.url(), timeout=5) as resp:
            self.sid = json.loads(resp.read().decode()[1:])["sid"]

    def url(self) -> str:
        sid = getattr(self, "sid", None)
        base = f"{self.server.url}/socket.io/?EIO=4&transport=polling"
        return base + (f"&sid={sid}" if sid else "")

    def post(self, *packets: str | bytes) -> int:
        body = b"\x1e".join(p.encode() if isinstance(p, str) else p for p in packets)
        req = urllib.request.Request(self.url(), data=body, method="POST",
                                     headers={"Content-Type": "text/plain;charset=UTF-8"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def poll(self) -> list[str]:
        try:
            with urllib.request.urlopen(self.url(), timeout=5) as resp:
                return resp.read().decode().split("\x1e")
        except urllib.error.HTTPError as exc:
            return [f"HTTP {exc.code}"]

    def connect(self, token: str) -> None:
        assert self.post("40" + json.dumps({"token": token})) == 200
        assert self.poll()[0].startswith("40{"), "CONNECT refused"

    def call(self, packet: str, ack_id: int) -> dict:
        """Send ``packet`` (its text after ``42``/``ack_id``) and return the ack's envelope."""
        assert self.post(f"42{ack_id}{packet}") == 200
        for _ in range(5):
            for answer in self.poll():
                if answer.startswith(f"43{ack_id}["):
                    return json.loads(answer[len(f"43{ack_id}"):])[0]
        raise AssertionError(f"no ack {ack_id}")


def quiet_log(server: ServerProcess) -> str:
    time.sleep(0.3)  # the server writes its log lines after answering
    log = server.stdout() + server.stderr()
    assert "Traceback" not in log
    assert " ERROR " not in log
    return log


@pytest.mark.parametrize("body", [
    "{}",                                  # an object, not an event list
    "null",
    "[]",                                  # no event name
    "[42]",                                # an event name that is not a string: unknown
    "[" * 5000 + "]" * 5000,               # nested past any decoder's depth
    '["whoami"',                           # truncated
])
def test_a_malformed_event_with_an_ack_id_is_answered_and_the_session_goes_on(
        start_server, token, body: str) -> None:
    server = start_server()
    client = Polling(server)
    client.connect(token("alice"))
    reply = client.call(body, 1)
    assert reply["ok"] is False
    assert reply["error"]["code"] == ("not_found" if body == "[42]" else "invalid_payload")
    assert client.call('["whoami"]', 2)["data"]["user_id"] == "alice"
    log = quiet_log(server)
    assert body == "[42]" or "malformed" in log


@pytest.mark.parametrize("packet", ["4{}", "4-1", "4true", '4"x"', "4[1]"])
def test_an_engineio_message_that_is_not_a_socketio_packet_ends_only_its_session(
        start_server, sio_client, token, packet: str) -> None:
    server = start_server()
    bystander = sio_client(server, token=token("bob"))
    client = Polling(server)
    client.connect(token("alice"))
    assert client.post(packet) == 200
    answers = client.poll()
    assert answers[0] in ("1", "6") or answers[0].startswith("HTTP 400"), answers
    quiet_log(server)
    assert bystander.call("whoami")["ok"]


@pytest.mark.parametrize("body", [b"n", b"b!!!not-base64", b"9", b"4" + b"[" * 5000])
def test_a_polling_payload_engineio_cannot_decode_is_a_400_without_a_traceback(
        start_server, body: bytes) -> None:
    server = start_server()
    client = Polling(server)
    assert client.post(body) == 400
    quiet_log(server)


def test_a_websocket_text_frame_that_is_not_engineio_ends_that_socket_without_a_traceback(
        start_server, sio_client, token) -> None:
    server = start_server()
    bystander = sio_client(server, token=token("bob"))
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket", timeout=5)
    assert ws.recv().startswith("0{")
    ws.send("40" + json.dumps({"token": token("alice")}))
    assert ws.recv().startswith("40{")
    ws.send("not an engine.io packet")
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        for _ in range(5):
            ws.recv()  # the server ends this socket (a ping may come first)
    ws.close()
    quiet_log(server)
    assert bystander.call("whoami")["ok"]


def test_a_lone_surrogate_is_replaced_and_the_publication_reaches_subscribers(
        start_server, sio_client, token) -> None:
    server = start_server()
    reader = sio_client(server, token=token("bob"))
    assert reader.call("subscribe", {"channel": "chat:general"})["ok"]
    client = Polling(server)
    client.connect(token("alice"))
    reply = client.call('["publish", {"channel": "chat:general", "data": {"t": "a\\ud83db", '
                        '"\\udfff": "\\ud83d\\ude00"}}]', 1)
    assert reply["ok"], reply
    pub = reader.wait_for("publication")
    assert pub["data"] == {"t": "a\ufffdb", "\ufffd": "\U0001F600"}
    quiet_log(server)
