"""Regression tests for defects found in review: each one failed before its fix."""

from __future__ import annotations

import json

from flask import Flask
from flask_socketio import SocketIO

from dihya_realtime.auth import hash_api_key
from tests.unit.conftest import Client

API_KEY = "review-api-key-0123456789"


def audit_lines(rt, type_=None):
    rt.audit.flush()
    with open(rt.settings.audit_log) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [r for r in rows if type_ is None or r["type"] == type_]


def test_a_client_cannot_fake_the_disconnect_event_to_escape_kicks(rt, connect):
    mallory = connect(rt, "mallory")
    reply = mallory.call("disconnect")
    assert reply["error"]["code"] == "not_found"
    assert [c.user_id for c in rt.connections] == ["mallory"]  # still tracked
    rt.disconnect_user("mallory", "kicked")
    assert not mallory.is_connected()


def test_a_client_cannot_fake_the_connect_event_to_forge_its_address(rt, connect):
    mallory = connect(rt, "mallory")
    reply = mallory.call("connect", {"REMOTE_ADDR": "10.6.6.6"}, {"token": "x"})
    assert reply["error"]["code"] == "not_found"
    assert {c.remote_addr for c in rt.connections} != {"10.6.6.6"}
    assert len(rt.connections) == 1


def test_unknown_events_are_rate_limited_before_they_are_audited(make_rt, connect):
    rt = make_rt(rate_limit_event={"rate": 0.01, "burst": 3}, rate_limit_abuse_strikes=3)
    client = connect(rt)
    codes = []
    for _ in range(20):
        if not client.is_connected():
            break
        try:
            codes.append(client.call("no:such")["error"]["code"])
        except RuntimeError:
            break
    assert codes[:3] == ["not_found"] * 3 and "rate_limited" in codes
    assert len(audit_lines(rt, "unknown_event")) == 3
    assert not client.is_connected()


def test_idempotency_keys_of_different_users_do_not_collide(rt, connect):
    alice, bob, watcher = connect(rt, "alice"), connect(rt, "bob"), connect(rt, "w")
    watcher.call("subscribe", {"channel": "chat:k"})
    a = alice.call("publish", {"channel": "chat:k", "data": "a", "idempotency_key": "c1-42"})
    b = bob.call("publish", {"channel": "chat:k", "data": "b", "idempotency_key": "c1-42"})
    assert a["data"]["id"] != b["data"]["id"]
    assert [p["data"] for p in watcher.events("publication")] == ["a", "b"]
    again = alice.call("publish", {"channel": "chat:k", "data": "a2", "idempotency_key": "c1-42"})
    assert again["data"] == a["data"]  # the same user's resend is still idempotent


def test_deeply_nested_data_is_refused_and_the_channel_keeps_working(make_rt, connect):
    rt = make_rt(api_keys=hash_api_key(API_KEY))
    alice = connect(rt)
    alice.call("subscribe", {"channel": "chat:deep"})
    deep: object = "x"
    for _ in range(200):
        deep = [deep]
    reply = alice.call("publish", {"channel": "chat:deep", "data": deep})
    assert reply["error"]["code"] == "invalid_payload"
    assert reply["error"]["details"][0]["field"] == "data"
    http = rt.app.test_client().post("/api/v1/publish", json={"channel": "chat:deep",
                                                              "data": deep},
                                     headers={"X-API-Key": API_KEY})
    assert http.status_code == 400
    assert alice.call("history", {"channel": "chat:deep"})["data"]["publications"] == []


def test_a_subscribe_racing_a_disconnect_leaves_no_ghost_in_presence(rt, connect):
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    original = rt.broker.position

    def close_alice_meanwhile(channel, history):
        sid = next(c.sid for c in rt.connections if c.user_id == "alice")
        rt._disconnect(sid, "transport close")  # the disconnect hook runs mid-subscribe
        return original(channel, history)

    rt.broker.position = close_alice_meanwhile
    try:
        reply = alice.call("subscribe", {"channel": "chat:ghost"})
    finally:
        rt.broker.position = original
    assert reply["ok"] is False
    bob.call("subscribe", {"channel": "chat:ghost"})
    members = bob.call("presence", {"channel": "chat:ghost"})["data"]["members"]
    assert [m["user_id"] for m in members] == ["bob"]


def test_a_host_connect_handler_that_refuses_leaves_nothing_behind(settings_overrides,
                                                                  make_token):
    from dihya_realtime.events import register_socketio_events

    app = Flask("host")
    socketio = SocketIO(app, async_mode="threading")
    rt = register_socketio_events(socketio, **settings_overrides)
    rt.db.migrate()
    try:
        @socketio.on("connect")
        def refuse(auth=None):
            return False

        for _ in range(3):
            client = Client(app, socketio, auth={"token": make_token("alice")})
            assert not client.is_connected()
        assert len(rt.connections) == 0
        assert "dihya_rt_connections 0.0" in rt.metrics.render().decode()
        assert len(audit_lines(rt, "disconnect")) == 3
    finally:
        rt.close()


def test_an_event_name_with_a_lone_surrogate_is_still_audited(rt, connect):
    client = connect(rt)
    assert client.call("x\ud800")["error"]["code"] == "not_found"
    assert len(audit_lines(rt, "unknown_event")) == 1


def test_cors_headers_only_on_the_socketio_path_and_credentials_only_for_listed(make_rt):
    rt = make_rt(allowed_origins="https://app.example")
    http = rt.app.test_client()
    host_route = http.get("/healthz", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in host_route.headers
    poll = http.get("/socket.io/?EIO=4&transport=polling",
                    headers={"Origin": "https://app.example"})
    assert poll.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert poll.headers["Access-Control-Allow-Credentials"] == "true"
    evil = http.get("/socket.io/?EIO=4&transport=polling",
                    headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in evil.headers

    star = make_rt(allowed_origins="*").app.test_client()
    any_origin = star.get("/socket.io/?EIO=4&transport=polling",
                          headers={"Origin": "https://anyone.example"})
    assert any_origin.headers["Access-Control-Allow-Origin"] == "https://anyone.example"
    assert "Access-Control-Allow-Credentials" not in any_origin.headers
