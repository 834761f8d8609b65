"""Authentication at the handshake against a real ``dihya-realtime serve``: tokens, headers,
origins."""

from __future__ import annotations

import time

import jwt


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
