"""The foundation against a real ``dihya-realtime serve`` (gevent) over WebSocket on loopback."""

from __future__ import annotations

import json
import re
import sqlite3
import time

import jwt
import pytest
import socketio
import websocket


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident memory (VmHWM) in kB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


# -- authentication at the handshake


def test_token_in_auth_payload_connects_and_whoami_replies(start_server, sio_client, token):
    server = start_server()
    client = sio_client(server, token=token("alice", roles=("user", "moderator"), name="Alice"))

    reply = client.call("whoami")

    assert reply["ok"] is True
    data = reply["data"]
    assert data["user_id"] == "alice"
    assert data["roles"] == ["user", "moderator"]
    assert data["name"] == "Alice"
    assert data["sid"] == client.sid
    assert abs(data["server_time"] - time.time()) < 5
    connect = server.wait_audit("connect", lambda e: e["sid"] == client.sid)
    assert connect["user_id"] == "alice" and connect["remote_addr"] == "127.0.0.1"


def test_refused_handshakes_name_the_reason(start_server, connect_error, token, jwt_secret):
    server = start_server()
    now = int(time.time())
    unsigned = jwt.encode({"sub": "mallory", "exp": now + 600}, None, algorithm="none")

    missing = connect_error(server)
    wrong_key = connect_error(server, token=token("alice", secret="another-secret-" + "y" * 32))
    expired = connect_error(server, token=token("alice", ttl=-30))
    alg_none = connect_error(server, token=unsigned)

    assert missing["code"] == "unauthenticated" and missing["reason"] == "missing_token"
    assert wrong_key["reason"] == "invalid_token" and "signature" in wrong_key["message"]
    assert expired["reason"] == "token_expired"
    assert alg_none["reason"] == "invalid_token" and "algorithm" in alg_none["message"]
    reasons = [e["details"]["reason"] for e in server.audit_lines()
               if e["type"] == "connect_refused"]
    # one row per (address, reason) and window: the second invalid_token is only counted,
    # in the connect_refused_summary written when the window closes (refusals.py)
    assert reasons == ["missing_token", "invalid_token", "token_expired"]
    server.stop()
    summary = server.wait_audit("connect_refused_summary")
    assert summary["details"]["reason"] == "invalid_token" and summary["details"]["count"] == 2
    assert not any(e["type"] == "connect" for e in server.audit_lines())


def test_authorization_bearer_header_is_accepted(start_server, sio_client, token):
    server = start_server()
    client = sio_client(server, headers={"Authorization": f"Bearer {token('bob')}"})

    assert client.call("whoami")["data"]["user_id"] == "bob"


def test_query_string_token_is_refused_by_default(start_server, connect_error, token):
    server = start_server()

    error = connect_error(server, url=f"{server.url}/?token={token('alice')}")

    assert error["reason"] == "missing_token"


def test_disallowed_origin_is_refused_and_allowed_origin_connects(
        start_server, connect_error, sio_client, token):
    server = start_server(ALLOWED_ORIGINS="https://app.example")

    error = connect_error(server, token=token("alice"),
                          headers={"Origin": "https://evil.example"})
    allowed = sio_client(server, token=token("alice"), headers={"Origin": "https://app.example"})

    assert error["code"] == "unauthenticated" and error["reason"] == "origin_not_allowed"
    assert allowed.call("whoami")["ok"] is True
    refused = server.wait_audit("connect_refused")
    assert refused["origin"] == "https://evil.example"
    assert refused["details"]["reason"] == "origin_not_allowed"


# -- the event pipeline


def test_invalid_payload_names_the_field(start_server, sio_client, token):
    server = start_server()
    client = sio_client(server, token=token("alice"))

    reply = client.call("auth:refresh", {"token": 42})

    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_payload"
    assert [d["field"] for d in reply["error"]["details"]] == ["token"]
    assert server.wait_audit("invalid_payload")["details"] == {"fields": ["token"]}


def test_unknown_event_is_not_found_and_connection_stays_usable(start_server, sio_client, token):
    server = start_server()
    client = sio_client(server, token=token("alice"))

    reply = client.call("nope:nothing", {"x": 1})

    assert reply == {"ok": False, "error": {"code": "not_found",
                                            "message": "unknown event 'nope:nothing'",
                                            "details": {"event": "nope:nothing"}}}
    assert client.call("whoami")["ok"] is True
    assert client.connected


def test_event_without_ack_gets_error_event(start_server, sio_client, token):
    server = start_server()
    client = sio_client(server, token=token("alice"))

    client.emit("nope:nothing", {})

    error = client.wait_for("error")
    assert error["event"] == "nope:nothing" and error["error"]["code"] == "not_found"


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


def _raw_socketio(server, token: str) -> websocket.WebSocket:
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/socket.io/"
                                     "?EIO=4&transport=websocket", timeout=10)
    ws.recv()  # engine.io open
    ws.send("40" + json.dumps({"token": token}))
    assert ws.recv().startswith("40")
    return ws


def _recv_packet(ws: websocket.WebSocket, prefix: str) -> str:
    """The next text message starting with ``prefix`` (pushes like counts come first)."""
    while not (packet := ws.recv()).startswith(prefix):
        pass
    return packet


def test_text_frames_must_be_utf8_even_when_split_across_fragments(start_server, token):
    """UTF-8 is checked once per message by the C decoder (not per frame in Python): a
    character split between two fragments passes; invalid bytes close with 1007."""
    server = start_server()
    ws = _raw_socketio(server, token("alice"))
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
    bystander = _raw_socketio(server, token("bob"))
    bystander.send('422["whoami"]')
    assert '"ok":true' in _recv_packet(bystander, "432").replace(" ", "")
    bystander.close()


def _close_code(ws: websocket.WebSocket) -> int:
    frame = ws.recv_data_frame(control_frame=True)[1]
    while frame.opcode != websocket.ABNF.OPCODE_CLOSE:
        frame = ws.recv_data_frame(control_frame=True)[1]
    return int.from_bytes(frame.data[:2], "big")


def test_an_oversized_message_is_closed_with_1009(start_server, token):
    server = start_server(MAX_PAYLOAD_BYTES="4096")
    ws = _raw_socketio(server, token("mallory"))
    ws.send('42["whoami",{"blob":"' + "x" * 20_000 + '"}]')
    assert _close_code(ws) == 1009
    ws.close()


def test_pings_keep_a_live_client_connected_across_many_ping_cycles(start_server, sio_client,
                                                                   token):
    """Pings are scheduled on timers (no greenlet per connection): they must still go out,
    or the client, hearing nothing for ping interval + timeout, would give up."""
    server = start_server(PING_INTERVAL="1", PING_TIMEOUT="1")
    client = sio_client(server, token=token("alice"))
    time.sleep(5)  # five ping cycles; two silent seconds would end the session
    assert client.connected
    assert client.call("whoami")["data"]["user_id"] == "alice"
    assert not [e for e in server.audit_lines() if e["type"] == "disconnect"]


def test_a_client_gone_silent_is_disconnected_and_its_tcp_connection_closed(start_server, token):
    """A client that stops reading and answering pings (its network vanished, no FIN): the
    session ends after ping interval + timeout, and so does the TCP connection — the reader
    does not wait for TCP to give up (minutes)."""
    server = start_server(PING_INTERVAL="1", PING_TIMEOUT="1")
    ws = _raw_socketio(server, token("ghost"))
    raw = ws.sock
    raw.settimeout(10)
    started = time.monotonic()
    while raw.recv(65536):  # drop everything, answer nothing, until the server closes
        pass
    assert time.monotonic() - started < 8
    gone = server.wait_audit("disconnect", lambda e: e["user_id"] == "ghost")
    assert gone["user_id"] == "ghost"
    raw.close()


def test_rate_limit_replies_rate_limited_with_retry_after(start_server, sio_client, token):
    server = start_server(RATE_LIMIT_EVENT='{"rate": 1, "burst": 2}')
    client = sio_client(server, token=token("alice"))

    replies = [client.call("whoami") for _ in range(3)]

    assert [r["ok"] for r in replies] == [True, True, False]
    error = replies[2]["error"]
    assert error["code"] == "rate_limited"
    assert 0 < error["retry_after"] <= 1
    assert server.wait_audit("rate_limited")["event"] == "whoami"
    time.sleep(error["retry_after"] + 0.05)
    assert client.call("whoami")["ok"] is True


# -- token expiry on a live connection


def test_expiring_token_is_warned_then_disconnected_unless_refreshed(
        start_server, sio_client, token):
    server = start_server(EXPIRY_WARNING_SECONDS="2", EXPIRY_GRACE_SECONDS="1")
    lapsing = sio_client(server, token=token("alice", ttl=3))
    refreshing = sio_client(server, token=token("bob", ttl=3))

    warning = lapsing.wait_for("auth:expiring", timeout=4)
    refreshing.wait_for("auth:expiring", timeout=4)
    reply = refreshing.call("auth:refresh", {"token": token("bob", ttl=600)})

    assert 0 <= warning["expires_in"] <= 2
    assert reply["ok"] is True and reply["data"]["expires_at"] > time.time() + 500
    lapsing.wait_disconnected(timeout=5)
    assert lapsing.events("auth:expired") == [{"reason": "token_expired"}]
    expired = server.wait_audit("auth_expired")
    assert expired["user_id"] == "alice"
    time.sleep(1.0)  # past bob's old exp + grace + one expiry tick
    assert refreshing.connected
    assert refreshing.call("whoami")["data"]["user_id"] == "bob"
    assert not [e for e in server.audit_lines()
                if e["type"] == "auth_expired" and e["user_id"] == "bob"]


# -- HTTP: health, readiness, metrics


def test_readyz_and_metrics(start_server, sio_client, token):
    server = start_server()
    sio_client(server, token=token("alice"))
    sio_client(server, token=token("bob"))

    status, body = server.http("GET", "/readyz")
    metrics_status, metrics = server.http("GET", "/metrics")

    assert status == 200
    assert body == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    assert metrics_status == 200
    assert re.search(r"^dihya_rt_connections 2\.0$", metrics, re.M), metrics


# -- the audit trail


def test_audit_verify_passes_after_traffic_and_names_a_tampered_row(
        start_server, sio_client, connect_error, token):
    server = start_server()
    client = sio_client(server, token=token("alice"))
    client.call("whoami")
    client.call("nope:nothing")
    connect_error(server)
    client.disconnect()
    server.wait_audit("disconnect")
    assert server.stop() == 0  # SIGTERM: the server flushes its queued audit rows

    intact = server.cli("audit", "verify")

    lines = server.audit_lines()
    db_path = server.env["DIHYA_RT_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT type FROM audit_events ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [line["type"] for line in lines]
    assert intact.returncode == 0, intact.stderr
    assert f"{len(lines)} rows" in intact.stdout

    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE audit_events SET user_id='mallory' WHERE id=2")
    tampered = server.cli("audit", "verify")

    assert tampered.returncode == 1
    assert "row 2" in tampered.stderr and "TAMPERED" in tampered.stderr


# -- start-up


def test_production_mode_refuses_to_start_without_a_jwt_key(start_server):
    server = start_server(JWT_SECRET=None, start=False)

    result = server.cli("serve", "--port", str(server.port), timeout=15)

    assert result.returncode != 0
    assert "DIHYA_RT_JWT_SECRET" in result.stderr
    assert "ready on" not in result.stdout


def test_bad_setting_value_stops_start_up_naming_it(start_server):
    server = start_server(MAX_PAYLOAD_BYTES="abc", migrate=False, start=False)

    result = server.cli("serve", "--port", str(server.port), timeout=15)

    assert result.returncode != 0
    assert "DIHYA_RT_MAX_PAYLOAD_BYTES" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_mode_prints_ready_line_and_demo_tokens_that_connect(start_server, sio_client):
    server = start_server(args=("--dev",), migrate=False, JWT_SECRET=None, API_KEYS=None,
                          DATABASE_URL=None)

    lines = server.wait_output(r"^demo token for ", count=2)
    tokens = dict(re.match(r"demo token for (\w+) \([\w,]+\): (\S+)$", line).groups()
                  for line in lines)

    assert server.ready_line.startswith(f"dihya-realtime ready on http://127.0.0.1:{server.port}")
    assert "dev mode" in server.ready_line
    assert set(tokens) == {"alice", "bob"}
    alice = sio_client(server, token=tokens["alice"])
    whoami = alice.call("whoami")["data"]
    assert whoami["user_id"] == "alice" and "moderator" in whoami["roles"]
    assert (server.workdir / "dihya_realtime.db").exists()


def test_sigterm_disconnects_clients_cleanly_and_flushes_the_audit_trail(
        start_server, sio_client, token):
    server = start_server()
    client = sio_client(server, token=token("alice"))
    sid = client.sid
    client.call("nope:nothing")  # an audit row recorded just before the stop

    assert server.stop() == 0

    # told by the server (not a dropped transport), and the process exits 0 by itself
    assert client.wait_disconnected(timeout=1) == "server disconnect"
    disconnect = server.wait_audit("disconnect", lambda e: e["sid"] == sid)
    assert disconnect["details"]["reason"] == "server disconnect"
    result = server.cli("audit", "verify")
    assert result.returncode == 0, result.stderr
    assert f"{len(server.audit_lines())} rows" in result.stdout


def test_restart_keeps_the_port_and_clients_reconnect(start_server, sio_client, token):
    server = start_server()
    first = sio_client(server, token=token("alice"))
    old_pid = server.pid

    server.restart()

    first.wait_disconnected(timeout=5)
    assert server.pid != old_pid
    again = sio_client(server, token=token("alice"))
    assert again.call("whoami")["ok"] is True


def test_killed_server_drops_clients(start_server, sio_client, token):
    server = start_server()
    client = sio_client(server, token=token("alice"))

    server.kill()

    client.wait_disconnected(timeout=5)
    with pytest.raises(socketio.exceptions.ConnectionError):
        socketio.Client(reconnection=False).connect(server.url, transports=["websocket"],
                                                    auth={"token": token("alice")},
                                                    wait_timeout=2)


# -- two processes, one Redis, one PostgreSQL


@pytest.mark.redis
@pytest.mark.postgres
def test_two_processes_share_one_audit_chain(two_servers, sio_client, token):
    first, second = two_servers
    clients = [sio_client(server, token=token(user))
               for server in (first, second) for user in ("alice", "bob")]

    for _ in range(5):  # interleaved traffic: both processes append to one chain at once
        for client in clients:
            assert client.call("nope:nothing")["error"]["code"] == "not_found"
    for client in clients:
        client.disconnect()
    assert first.stop() == 0 and second.stop() == 0

    result = first.cli("audit", "verify")

    written = len(first.audit_lines()) + len(second.audit_lines())
    assert written == 2 * (2 + 5 * 2 + 2)  # per process: 2 connects, 10 unknown events, 2 leaves
    assert result.returncode == 0, result.stderr
    assert f"{written} rows" in result.stdout
    for server in two_servers:
        assert "redis broker" in server.ready_line and "postgresql" in server.ready_line
