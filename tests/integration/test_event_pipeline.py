"""Client events over a real WebSocket: validation errors, unknown events, missing acks,
rate limits."""

from __future__ import annotations

import time


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
