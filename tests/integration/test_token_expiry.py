"""Token expiry on a live connection: warned, then disconnected unless refreshed."""

from __future__ import annotations

import time


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
