"""Engine.IO pings keep live clients connected; a client gone silent is dropped and its TCP
connection closed."""

from __future__ import annotations

import time

from tests.integration.conftest import raw_socketio


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
    ws = raw_socketio(server, token("ghost"))
    raw = ws.sock
    raw.settimeout(10)
    started = time.monotonic()
    while raw.recv(65536):  # drop everything, answer nothing, until the server closes
        pass
    assert time.monotonic() - started < 8
    gone = server.wait_audit("disconnect", lambda e: e["user_id"] == "ghost")
    assert gone["user_id"] == "ghost"
    raw.close()
