"""The hash-chained audit trail: verified after traffic, a tampered row named, one
chain for two processes."""

from __future__ import annotations

import sqlite3

import pytest


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
