"""Starting and stopping ``serve``: refused configurations, dev mode, SIGTERM, restart, kill."""

from __future__ import annotations

import re

import pytest
import socketio


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
