"""WebSocket frames under ``serve``: the message size limit (1009, refused while the message
arrives) and UTF-8."""

from __future__ import annotations

import json

import websocket

from tests.integration.conftest import raw_socketio


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident memory (VmHWM) in kB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _recv_packet(ws: websocket.WebSocket, prefix: str) -> str:
    """The next text message starting with ``prefix`` (pushes like counts come first)."""
    while not (packet := ws.recv()).startswith(prefix):
        pass
    return packet


def _close_code(ws: websocket.WebSocket) -> int:
    frame = ws.recv_data_frame(control_frame=True)[1]
    while frame.opcode != websocket.ABNF.OPCODE_CLOSE:
        frame = ws.recv_data_frame(control_frame=True)[1]
    return int.from_bytes(frame.data[:2], "big")


def test_oversized_frame_closes_only_that_connection(start_server, sio_client, token):
    server = start_server(MAX_PAYLOAD_BYTES="4096")
    offender = sio_client(server, token=token("mallory"))
    bystander = sio_client(server, token=token("alice"))
    offender_sid = offender.sid

    offender.emit("whoami", {"blob": "x" * 20_000})

    offender.wait_disconnected(timeout=5)
    assert not offender.connected
    refused = server.wait_audit("payload_too_large")
    assert (refused["sid"], refused["user_id"], refused["outcome"]) == (
        offender_sid, "mallory", "payload_too_large")
    assert refused["remote_addr"] == "127.0.0.1"
    assert refused["details"]["max_bytes"] == 4096
    assert refused["details"]["announced_bytes"] > 20_000
    assert bystander.call("whoami")["data"]["user_id"] == "alice"
    assert server.http("GET", "/healthz")[0] == 200
    assert server.running
    # a frame under the limit still goes through on a fresh connection
    again = sio_client(server, token=token("mallory"))
    assert again.call("whoami", {"blob": "x" * 1000})["ok"] is True


def test_oversized_frame_is_refused_while_it_arrives_not_after_buffering(start_server, token):
    server = start_server(MAX_PAYLOAD_BYTES="4096")
    before = peak_rss_kb(server.pid)
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/"
                                     "?EIO=4&transport=websocket", timeout=10)
    ws.recv()  # engine.io open
    ws.send("40" + json.dumps({"token": token("mallory")}))  # Socket.IO connect with auth
    connected = ws.recv()
    assert connected.startswith("40")
    sid = json.loads(connected[2:])["sid"]

    # the server closes while the frame is still being sent: the send fails (reset) or,
    # if it completes, the close frame says 1009
    try:
        ws.send("42" + "x" * (48 * 1024 * 1024))
        assert _close_code(ws) == 1009
    except (OSError, websocket.WebSocketException):
        pass

    ws.close()
    assert peak_rss_kb(server.pid) - before < 16 * 1024  # a 48 MB frame was never held
    assert server.http("GET", "/healthz")[0] == 200
    refused = server.wait_audit("payload_too_large")
    assert (refused["sid"], refused["user_id"]) == (sid, "mallory")
    assert refused["details"] == {"announced_bytes": 2 + 48 * 1024 * 1024, "max_bytes": 4096}

    # before any Socket.IO connect there is no user yet: the address is still recorded
    early = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/"
                                        "?EIO=4&transport=websocket", timeout=10)
    early.recv()
    early.send("40" + "x" * 5000)
    assert _close_code(early) == 1009
    early.close()
    anonymous = server.wait_audit("payload_too_large", lambda e: e["sid"] is None)
    assert anonymous["user_id"] is None and anonymous["remote_addr"] == "127.0.0.1"
    assert anonymous["details"] == {"announced_bytes": 5002, "max_bytes": 4096}


def test_text_frames_must_be_utf8_even_when_split_across_fragments(start_server, token):
    """UTF-8 is checked once per message by the C decoder (not per frame in Python): a
    character split between two fragments passes; invalid bytes close with 1007."""
    server = start_server()
    ws = raw_socketio(server, token("alice"))
    message = ('421["whoami",{"note":"café"}]').encode()
    cut = message.index("é".encode()) + 1  # inside the two bytes of "é"
    ws.send_frame(websocket.ABNF.create_frame(message[:cut], websocket.ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(websocket.ABNF.create_frame(message[cut:], websocket.ABNF.OPCODE_CONT, fin=1))
    reply = _recv_packet(ws, "431")
    assert '"user_id":"alice"' in reply.replace(" ", "")

    ws.send_frame(websocket.ABNF.create_frame(b'421["whoami",{"x":"\xff\xfe"}]',
                                              websocket.ABNF.OPCODE_TEXT))
    assert _close_code(ws) == 1007
    ws.close()
    assert server.http("GET", "/healthz")[0] == 200
    bystander = raw_socketio(server, token("bob"))
    bystander.send('422["whoami"]')
    assert '"ok":true' in _recv_packet(bystander, "432").replace(" ", "")
    bystander.close()


def test_an_oversized_message_is_closed_with_1009(start_server, token):
    server = start_server(MAX_PAYLOAD_BYTES="4096")
    ws = raw_socketio(server, token("mallory"))
    ws.send('42["whoami",{"blob":"' + "x" * 20_000 + '"}]')
    assert _close_code(ws) == 1009
    ws.close()
