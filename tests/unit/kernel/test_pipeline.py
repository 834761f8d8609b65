"""The event pipeline and the wire contract, through the Flask-SocketIO test client."""

from __future__ import annotations

import json
import time

import jwt
from pydantic import BaseModel, Field

from dihya_realtime.kernel.settings import RateLimit
from tests.unit.conftest import fresh_registry


def audit_lines(rt, type_: str | None = None) -> list[dict]:
    rt.audit.flush()
    with open(rt.settings.audit_log) as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return [r for r in rows if type_ is None or r["type"] == type_]


class EchoPayload(BaseModel):
    text: str = Field(min_length=1, max_length=10)
    count: int = Field(ge=1, le=3)


def registry_with_test_events():
    reg = fresh_registry()

    @reg.event("test:echo", payload=EchoPayload)
    def echo(ctx, payload):
        """Echo the text back."""
        return {"text": payload.text * payload.count}

    @reg.event("test:admin_only", permission="admin:do")
    def admin_only(ctx, payload):
        """Only admins."""
        return {"done": True}

    @reg.event("test:boom")
    def boom(ctx, payload):
        """Always fails."""
        raise RuntimeError("secret internal detail")

    @reg.event("test:leaky")
    def leaky(ctx, payload):
        """Returns secrets that must not leave."""
        return {"name": "x", "Password": "hunter2", "nested": [{"api_key": "k", "ok": 1}]}

    @reg.event("test:slow", rate=RateLimit(rate=1, burst=2))
    def limited(ctx, payload):
        """Rate limited to a burst of two."""
        return {"n": 1}

    return reg


# -- authentication at the handshake

def test_connection_without_token_is_refused(rt, connect):
    client = connect(rt, user=None)
    assert not client.is_connected()
    assert client.connect_error["code"] == "unauthenticated"
    assert client.connect_error["reason"] == "missing_token"
    refused = audit_lines(rt, "connect_refused")
    assert refused and refused[-1]["details"]["reason"] == "missing_token"


def test_token_with_wrong_signature_is_refused(rt, connect, make_token):
    client = connect(rt, token=make_token("alice", secret="another-secret-" + "y" * 32))
    assert not client.is_connected()
    assert client.connect_error["reason"] == "invalid_token"


def test_expired_token_is_refused(rt, connect, make_token):
    client = connect(rt, token=make_token("alice", ttl=-10))
    assert client.connect_error["reason"] == "token_expired"


def test_alg_none_token_is_refused(rt, connect):
    unsigned = jwt.encode({"sub": "alice", "exp": time.time() + 60}, None, algorithm="none")
    client = connect(rt, token=unsigned)
    assert not client.is_connected()
    assert client.connect_error["reason"] == "invalid_token"


def test_wrong_issuer_and_audience_are_refused(make_rt, connect, make_token):
    rt = make_rt(jwt_issuer="https://id.example", jwt_audience="dihya")
    assert connect(rt, token=make_token(iss="https://evil", aud="dihya")).connect_error[
        "reason"] == "invalid_token"
    assert connect(rt, token=make_token(iss="https://id.example", aud="other")).connect_error[
        "reason"] == "invalid_token"
    assert connect(rt, token=make_token(iss="https://id.example", aud="dihya")).is_connected()


def test_token_never_appears_in_the_audit_trail(rt, connect, make_token):
    token = make_token("alice", ttl=-5)
    connect(rt, token=token)
    good = make_token("alice")
    connect(rt, token=good)
    rt.audit.flush()
    with open(rt.settings.audit_log) as fh:
        text = fh.read()
    assert token not in text and good not in text


def test_session_cookie_from_disallowed_origin_is_refused(make_rt, connect):
    rt = make_rt(session_auth=True, allowed_origins="https://app.example")
    rt.app.add_url_rule("/login", "login", lambda: _login())
    flask_client = rt.app.test_client()
    assert flask_client.get("/login").status_code == 200
    bad = connect(rt, user=None, flask_client=flask_client,
                  headers={"Origin": "https://evil.example"})
    assert not bad.is_connected()
    assert bad.connect_error["reason"] == "origin_not_allowed"
    good = connect(rt, user=None, flask_client=flask_client,
                   headers={"Origin": "https://app.example"})
    assert good.is_connected()
    assert good.call("whoami")["data"]["user_id"] == "carol"


def _login():
    from flask import session

    session["user_id"] = "carol"
    session["roles"] = ["user"]
    return "ok"


def test_seed_usage_keeps_working_and_is_authenticated(settings_overrides, make_token):
    """The platform brief's own example: SocketIO(app) + register_socketio_events(socketio)."""
    from flask import Flask
    from flask_socketio import SocketIO, emit

    from dihya_realtime.app import register_socketio_events
    from tests.unit.conftest import Client

    app = Flask("seed")
    socketio = SocketIO(app, cors_allowed_origins="*", async_mode="threading")
    rt = register_socketio_events(socketio, **settings_overrides)
    rt.db.migrate()
    try:

        @socketio.on("message")
        def handle_message(data):
            emit("response", {"data": data}, broadcast=True)

        anonymous = Client(app, socketio)
        assert not anonymous.is_connected()
        client = Client(app, socketio, auth={"token": make_token("alice")})
        client.send("hello")
        assert [m["args"][0] for m in client.get_received() if m["name"] == "response"] == [
            {"data": "hello"}]
        assert client.call("whoami")["data"]["user_id"] == "alice"
    finally:
        rt.close()


# -- the envelope and each failure

def test_whoami_tells_identity_and_server_time(rt, connect):
    client = connect(rt, "alice", roles=["user", "moderator"], name="Alice")
    reply = client.call("whoami")
    assert reply["ok"] is True
    data = reply["data"]
    assert data["user_id"] == "alice" and data["roles"] == ["user", "moderator"]
    assert data["name"] == "Alice"
    assert abs(data["server_time"] - time.time()) < 5
    assert data["sid"]


def test_invalid_payload_names_each_bad_field(make_rt, connect):
    rt = make_rt(registry_=registry_with_test_events())
    client = connect(rt)
    reply = client.call("test:echo", {"text": "", "count": 9})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid_payload"
    fields = {d["field"] for d in reply["error"]["details"]}
    assert fields == {"text", "count"}
    not_a_dict = client.call("test:echo", "just a string")
    assert not_a_dict["error"]["code"] == "invalid_payload"
    assert audit_lines(rt, "invalid_payload")[-1]["details"]["fields"] == ["payload"]
    assert client.call("test:echo", {"text": "ab", "count": 2}) == {
        "ok": True, "data": {"text": "abab"}}


def test_permission_is_denied_and_audited(make_rt, connect):
    rt = make_rt(registry_=registry_with_test_events())
    reply = connect(rt, "bob", roles=["user"]).call("test:admin_only")
    assert reply["error"]["code"] == "forbidden"
    assert reply["error"]["details"] == {"permission": "admin:do"}
    denied = audit_lines(rt, "permission_denied")
    assert denied[-1]["user_id"] == "bob" and denied[-1]["event"] == "test:admin_only"
    assert connect(rt, "root", roles=["admin"]).call("test:admin_only")["ok"] is True


def test_handler_exception_is_internal_with_error_id_and_connection_survives(make_rt, connect):
    rt = make_rt(registry_=registry_with_test_events())
    client = connect(rt)
    reply = client.call("test:boom")
    assert reply["error"]["code"] == "internal"
    error_id = reply["error"]["details"]["error_id"]
    assert error_id in reply["error"]["message"]
    assert "secret internal detail" not in json.dumps(reply)
    assert audit_lines(rt, "handler_error")[-1]["details"]["error_id"] == error_id
    assert client.is_connected()
    assert client.call("whoami")["ok"] is True


def test_unknown_event_is_not_found_and_audited(rt, connect):
    client = connect(rt)
    reply = client.call("no:such_event", {"x": 1})
    assert reply["error"]["code"] == "not_found"
    assert audit_lines(rt, "unknown_event")[-1]["event"] == "no:such_event"
    assert client.is_connected()


def test_failure_without_ack_arrives_as_error_event(rt, connect):
    client = connect(rt)
    client.get_received()
    client.emit("no:such_event", {"x": 1})
    errors = client.events("error")
    assert errors == [{"event": "no:such_event", "error": {
        "code": "not_found", "message": "unknown event 'no:such_event'",
        "details": {"event": "no:such_event"}}}]


def test_rate_limit_answers_retry_after_then_disconnects_abuse(make_rt, connect):
    rt = make_rt(registry_=registry_with_test_events(), rate_limit_abuse_strikes=5)
    client = connect(rt)
    assert client.call("test:slow")["ok"] and client.call("test:slow")["ok"]
    limited = client.call("test:slow")
    assert limited["error"]["code"] == "rate_limited"
    assert 0 < limited["error"]["retry_after"] <= 1
    assert audit_lines(rt, "rate_limited")[-1]["details"]["scope"] == "connection"
    strikes = 1
    deadline = time.time() + 5
    while client.is_connected() and time.time() < deadline:
        try:
            if client.call("test:slow")["error"]["code"] == "rate_limited":
                strikes += 1
        except RuntimeError:  # disconnected between the check and the call
            break
        time.sleep(0.01)
    assert not client.is_connected()
    assert strikes >= 5  # not before the configured number of strikes
    assert audit_lines(rt, "disconnect_abuse")


def test_per_user_rate_limit_spans_connections(make_rt, connect):
    rt = make_rt(rate_limit_user={"rate": 0.5, "burst": 3})
    one, two = connect(rt, "alice"), connect(rt, "alice")
    replies = [c.call("whoami") for c in (one, two, one, two)]
    assert [r["ok"] for r in replies] == [True, True, True, False]
    assert replies[-1]["error"]["details"] == {"scope": "user"}
    assert connect(rt, "bob").call("whoami")["ok"] is True


def test_failed_connection_attempts_per_ip_are_limited_but_valid_ones_never(make_rt, connect):
    rt = make_rt(rate_limit_connect_ip={"rate": 0.1, "burst": 2})
    failed = [connect(rt, token="not-a-jwt") for _ in range(3)]
    assert [c.connect_error["code"] for c in failed] == [
        "unauthenticated", "unauthenticated", "rate_limited"]
    assert failed[-1].connect_error["retry_after"] > 0
    # the address's bucket is empty: valid credentials from it still connect
    assert all(connect(rt).is_connected() for _ in range(3))


def test_sensitive_keys_are_redacted_at_any_depth_and_audited(make_rt, connect):
    rt = make_rt(registry_=registry_with_test_events())
    reply = connect(rt).call("test:leaky")
    assert reply["data"] == {"name": "x", "Password": "[redacted]",
                             "nested": [{"api_key": "[redacted]", "ok": 1}]}
    assert "hunter2" not in json.dumps(reply)
    assert set(audit_lines(rt, "redaction")[-1]["details"]["paths"]) == {
        "Password", "nested[0].api_key"}


def test_emits_are_redacted_too(rt, connect):
    client = connect(rt)
    client.get_received()
    rt.emit_to_user("alice", "note", {"text": "hi", "token": "abc"})
    assert client.events("note") == [{"text": "hi", "token": "[redacted]"}]


# -- token refresh and live expiry

def test_refresh_with_own_token_extends_and_other_users_token_is_forbidden(rt, connect,
                                                                          make_token):
    client = connect(rt, "alice", ttl=30)
    other = client.call("auth:refresh", {"token": make_token("mallory", ttl=600)})
    assert other["error"]["code"] == "forbidden"
    expired = client.call("auth:refresh", {"token": make_token("alice", ttl=-60)})
    assert expired["error"]["code"] == "unauthenticated"
    assert expired["error"]["details"] == {"reason": "token_expired"}
    reply = client.call("auth:refresh", {"token": make_token("alice", ttl=600)})
    assert reply["ok"] and reply["data"]["expires_at"] > time.time() + 500
    assert audit_lines(rt, "auth_refreshed")


def test_expiring_token_is_warned_then_disconnected_unless_refreshed(rt, connect, make_token):
    client = connect(rt, "alice", ttl=30)
    refreshed = connect(rt, "alice", ttl=30)
    exp = rt.connections.get(next(iter(rt.connections)).sid).principal.expires_at
    rt.expiry.run_due(exp - 59)  # inside the 60 s warning window (the watch may be first)
    warnings = client.events("auth:expiring")
    assert warnings and 0 < warnings[0]["expires_in"] <= 60
    assert refreshed.call("auth:refresh", {"token": make_token("alice", ttl=3600)})["ok"]
    rt.expiry.run_due(exp + rt.settings.expiry_grace_seconds + 1)
    assert not client.is_connected()
    assert refreshed.is_connected()
    expired = audit_lines(rt, "auth_expired")
    assert len(expired) == 1 and expired[0]["user_id"] == "alice"


def test_closed_connections_leave_no_expiry_deadlines_behind(make_rt, connect):
    rt = make_rt(rate_limit_connect_ip={"rate": 1, "burst": 100})
    for i in range(40):
        connect(rt, f"u{i}").disconnect()
    assert len(rt.expiry) == 0
    keeper = connect(rt, "keeper")
    for i in range(40):
        connect(rt, f"v{i}").disconnect()
    # the keeper's warning and deadline, and never more retired entries than live ones
    assert len(rt.expiry) <= 4
    keeper.disconnect()
    assert len(rt.expiry) == 0


def test_refreshes_do_not_pile_up_expiry_deadlines(rt, connect, make_token):
    client = connect(rt, "alice", ttl=3600)
    for _ in range(5):
        assert client.call("auth:refresh", {"token": make_token("alice", ttl=600)})["ok"]
    assert len(rt.expiry) <= 4
    exp = rt.connections.get(next(iter(rt.connections)).sid).principal.expires_at
    rt.expiry.run_due(exp - 59)  # only the latest token's warning is sent, once
    assert len(client.events("auth:expiring")) == 1


# -- audit of the connection lifecycle

def test_connect_and_disconnect_are_audited_with_timestamp_and_duration(rt, connect):
    client = connect(rt, headers={"User-Agent": "pytest-agent"})
    client.disconnect()
    connected = audit_lines(rt, "connect")[-1]
    gone = audit_lines(rt, "disconnect")[-1]
    assert connected["user_id"] == "alice" and connected["user_agent"] == "pytest-agent"
    assert connected["ts"].endswith("Z") and "T" in connected["ts"]
    assert gone["sid"] == connected["sid"]
    assert gone["details"]["duration"] >= 0 and "reason" in gone["details"]
