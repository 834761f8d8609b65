"""Hostile input on the connection surface: Engine.IO sessions that never authenticate,
connect floods, per-address and per-user caps, namespaces, proxies — against real servers.

Raw Engine.IO (websocket-client, plain HTTP polling) opens sessions that a Socket.IO client
never would: no CONNECT at all, or a stream of token-less CONNECTs on one session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import socketio
import websocket

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _ws(port: int, headers: list[str] | None = None) -> websocket.WebSocket:
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
                                     timeout=5, header=headers or [])
    assert ws.recv().startswith("0")  # engine.io open
    return ws


def _poll_handshake(port: int, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read().decode()
            return resp.status, json.loads(body[1:])["sid"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _poll(port: int, sid: str, timeout: float = 4) -> tuple[int, str]:
    url = f"http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling&sid={sid}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _closed_within(ws: websocket.WebSocket, seconds: float) -> bool:
    """Does the server close ``ws`` within ``seconds`` (answering its pings meanwhile)?"""
    deadline = time.monotonic() + seconds
    ws.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            continue
        except (websocket.WebSocketConnectionClosedException, OSError):
            return True
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return True
        if data == b"2":
            ws.send("3")
        if data == b"1":  # engine.io close packet
            return True
    return False


def _connect_errors(server) -> list[dict]:  # noqa: ANN001
    return [line for line in server.audit_lines()
            if line["type"] in ("connect_refused", "connect_refused_summary")]


# -- #7: Engine.IO sessions are limited, timed out and audited

def test_unauthenticated_websocket_session_is_closed_after_connect_timeout(start_server, token):
    server = start_server(CONNECT_TIMEOUT="1")
    idle = _ws(server.port)
    authed = _ws(server.port)
    authed.send("40" + json.dumps({"token": token("alice")}))
    assert authed.recv().startswith("40")
    assert _closed_within(idle, 3.0)
    assert not _closed_within(authed, 0.5)  # an authenticated session stays
    line = server.wait_audit("connect_refused",
                             lambda e: e["details"]["reason"] == "connect_timeout")
    assert line["remote_addr"] == "127.0.0.1"


def test_unauthenticated_polling_session_is_closed_after_connect_timeout(start_server):
    server = start_server(CONNECT_TIMEOUT="1")
    status, sid = _poll_handshake(server.port)
    assert status == 200
    time.sleep(1.8)
    status, body = _poll(server.port, sid)
    assert status == 400 or body.startswith("1"), (status, body)


def test_pending_sessions_per_address_are_capped_for_polling_and_websocket(start_server, token,
                                                                          sio_client):
    server = start_server(MAX_PENDING_PER_IP="3", CONNECT_TIMEOUT="2")
    held = [_poll_handshake(server.port) for _ in range(3)]
    assert [status for status, _ in held] == [200, 200, 200]
    status, body = _poll_handshake(server.port)
    assert status == 429
    assert json.loads(body)["code"] == "rate_limited"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _ws(server.port)
    assert refused.value.status_code == 429
    # once the pending sessions time out, the address may open sessions again
    time.sleep(2.8)
    assert sio_client(server, token=token("alice")).call("whoami")["ok"] is True


def test_client_address_honours_x_forwarded_for_only_from_trusted_proxies(start_server, token,
                                                                          sio_client):
    trusted = start_server(MAX_PENDING_PER_IP="2", TRUSTED_PROXIES="127.0.0.0/8")
    behind = {"X-Forwarded-For": "198.51.100.7, 10.1.1.1"}  # 10.1.1.1 is not trusted
    assert _poll_handshake(trusted.port, behind)[0] == 200
    assert _poll_handshake(trusted.port, behind)[0] == 200
    assert _poll_handshake(trusted.port, behind)[0] == 429  # 10.1.1.1 has 2 pending
    assert _poll_handshake(trusted.port, {"X-Forwarded-For": "10.2.2.2"})[0] == 200
    client = sio_client(trusted, token=token("alice"), transports=["polling"],
                        headers={"X-Forwarded-For": "203.0.113.9"})
    assert client.call("whoami")["ok"] is True
    line = trusted.wait_audit("connect", lambda e: e["user_id"] == "alice")
    assert line["remote_addr"] == "203.0.113.9"

    untrusted = start_server(MAX_PENDING_PER_IP="2")
    assert _poll_handshake(untrusted.port, {"X-Forwarded-For": "10.0.0.1"})[0] == 200
    assert _poll_handshake(untrusted.port, {"X-Forwarded-For": "10.0.0.2"})[0] == 200
    assert _poll_handshake(untrusted.port, {"X-Forwarded-For": "10.0.0.3"})[0] == 429


# -- per-user connection cap

def test_connections_per_user_are_capped(start_server, token, sio_client, connect_error):
    server = start_server(MAX_CONNECTIONS_PER_USER="2")
    first = sio_client(server, token=token("alice"))
    sio_client(server, token=token("alice"))
    error = connect_error(server, token=token("alice"))
    assert error["code"] == "rate_limited"
    assert error["reason"] == "too_many_connections_for_user"
    assert sio_client(server, token=token("bob")).call("whoami")["ok"] is True
    first.disconnect()
    deadline = time.monotonic() + 3
    while True:  # the slot is free once the server has seen the disconnect
        try:
            sio_client(server, token=token("alice"))
            break
        except pytest.fail.Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- #6: the connect bucket charges failures, not real users; storms become summaries

def test_tokenless_connect_flood_costs_other_users_nothing_and_is_audited_as_summaries(
        start_server, token, sio_client):
    server = start_server(RATE_LIMIT_CONNECT_IP='{"rate": 1, "burst": 5}',
                          MAX_CONNECTS_PER_SESSION="10", REFUSAL_AUDIT_WINDOW="1")
    refused = 0
    for _ in range(6):
        ws = _ws(server.port)
        closed = False
        for _ in range(40):
            try:
                ws.send("40")
                reply = ws.recv()
            except (websocket.WebSocketConnectionClosedException, OSError):
                closed = True
                break
            if not reply or reply.startswith("1"):
                closed = True
                break
            assert reply.startswith("44"), reply
            refused += 1
        assert closed, "the session survives unlimited CONNECT attempts"
        ws.close()
    assert refused == 6 * 10
    # ten real users from the same address are not refused
    for i in range(10):
        assert sio_client(server, token=token(f"user{i}")).call("whoami")["ok"] is True

    time.sleep(1.5)  # the refusal window closes; a later refusal flushes its summary
    server.wait_audit("connect_refused_summary", timeout=3)
    rows = _connect_errors(server)
    assert len(rows) <= 8, [(r["type"], r["outcome"]) for r in rows]
    total = 0
    by_key: dict[tuple, int] = {}
    for row in rows:
        key = (row["remote_addr"], row["details"]["reason"])
        if row["type"] == "connect_refused_summary":
            by_key[key] = row["details"]["count"]
        else:
            by_key.setdefault(key, 1)
    counted = {k: v for k, v in by_key.items() if k[1] != "too_many_connect_attempts"}
    total = sum(counted.values())
    assert total == refused, by_key
    assert by_key[("127.0.0.1", "too_many_connect_attempts")] == 6


# -- #4: every namespace is authenticated; undeclared namespaces are refused

def test_undeclared_namespace_is_refused_with_a_clear_connect_error(start_server, token):
    server = start_server()
    ws = _ws(server.port)
    ws.send("40/nope," + json.dumps({"token": token("alice")}))
    reply = ws.recv()
    assert reply.startswith("44/nope,"), reply
    data = json.loads(reply[len("44/nope,"):])
    assert data["code"] == "not_found" and data["reason"] == "unknown_namespace"
    ws.close()


@pytest.fixture
def embedded_server(server_env, tmp_path):  # noqa: ANN001, ANN201
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIHYA_RT_")}
    env.update(server_env)
    env.update({"DIHYA_RT_DATABASE_URL": f"sqlite:///{tmp_path / 'e.db'}",
                "DIHYA_RT_AUDIT_LOG": str(tmp_path / "audit.log"), "PYTHONPATH": str(ROOT),
                "PYTHONUNBUFFERED": "1"})
    out = open(tmp_path / "out.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "tests.embedded_admin_app", str(port)],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while b"embedded ready" not in (tmp_path / "out.log").read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail((tmp_path / "out.log").read_text())
        time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(5)
    out.close()


def test_host_handlers_on_other_namespaces_run_only_for_authenticated_connections(
        embedded_server, token):
    port = embedded_server
    anonymous = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        anonymous.connect(f"http://127.0.0.1:{port}", namespaces=["/admin"],
                          transports=["websocket"], wait_timeout=3)
    anonymous.disconnect()

    # one Engine.IO session: authenticated on "/", then a CONNECT to "/admin" without a token
    ws = _ws(port)
    ws.send("40" + json.dumps({"token": token("alice")}))
    assert ws.recv().startswith("40")
    ws.send("40/admin,")
    while (reply := ws.recv()).startswith("42"):  # pushes on "/" (counts) come first
        pass
    assert reply.startswith("44/admin,"), reply
    assert json.loads(reply[len("44/admin,"):])["code"] == "unauthenticated"
    ws.send('42/admin,1["call"]')
    ws.settimeout(0.5)
    with pytest.raises(websocket.WebSocketTimeoutException):
        while "admin secret" not in ws.recv():
            pass
    ws.close()

    client = socketio.Client(reconnection=False)
    client.connect(f"http://127.0.0.1:{port}", namespaces=["/", "/admin"],
                   auth={"token": token("alice")}, transports=["websocket"], wait_timeout=3)
    assert client.call("call", namespace="/admin", timeout=3) == "admin secret for alice"
    client.disconnect()
