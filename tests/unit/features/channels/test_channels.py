"""Channels through the test client on the memory broker: policy, recovery, presence, API."""

from __future__ import annotations

import pytest

from dihya_realtime.kernel.auth import hash_api_key
from tests.unit.kernel.test_pipeline import audit_lines

API_KEY = "test-api-key-0123456789"


@pytest.fixture
def rt(make_rt):
    return make_rt(api_keys=hash_api_key(API_KEY))


def pubs(client, channel=None):
    return [p for p in client.events("publication") if channel is None or p["channel"] == channel]


def test_subscribe_then_receive_publications_in_offset_order(rt, connect):
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    reply = alice.call("subscribe", {"channel": "chat:general"})
    assert reply["ok"], reply
    assert reply["data"]["offset"] == 0 and reply["data"]["recovered"] is False
    for i in range(3):
        assert bob.call("publish", {"channel": "chat:general", "data": {"n": i}})["ok"]
    got = pubs(alice, "chat:general")
    assert [p["offset"] for p in got] == [1, 2, 3]
    assert [p["data"] for p in got] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert got[0]["from"] == {"user_id": "bob", "name": "bob"}
    assert {"id", "ts", "epoch"} <= set(got[0])


def test_unknown_namespace_is_not_found_and_bad_name_is_invalid(rt, connect):
    client = connect(rt)
    assert client.call("subscribe", {"channel": "nope:x"})["error"]["code"] == "not_found"
    bad = client.call("subscribe", {"channel": "chat:has space"})
    assert bad["error"]["code"] == "invalid_payload"
    assert bad["error"]["details"][0]["field"] == "channel"


def test_personal_channel_only_for_its_owner(rt, connect):
    alice = connect(rt, "alice")
    assert alice.call("subscribe", {"channel": "user:#alice"})["ok"]
    denied = alice.call("subscribe", {"channel": "user:#bob"})
    assert denied["error"]["code"] == "forbidden"


def test_live_namespace_is_server_only(rt, connect):
    alice = connect(rt, "alice", roles=["user"])
    assert alice.call("subscribe", {"channel": "live:project-9"})["ok"]
    refused = alice.call("publish", {"channel": "live:project-9", "data": 1})
    assert refused["error"]["code"] == "forbidden"
    pub, created = rt.publish("live:project-9", {"status": "deployed"})
    assert created and pub.offset == 1
    assert [p["data"] for p in pubs(alice)] == [{"status": "deployed"}]


def test_subscribe_permission_is_enforced(rt, connect):
    guest = connect(rt, "guest", roles=[])
    assert guest.call("subscribe", {"channel": "chat:general"})["error"]["code"] == "forbidden"
    assert guest.call("publish", {"channel": "chat:general", "data": 1})["error"][
        "code"] == "forbidden"


def test_recovery_returns_exactly_what_was_missed(rt, connect):
    alice = connect(rt, "alice")
    first = alice.call("subscribe", {"channel": "chat:room1"})["data"]
    for i in range(5):
        rt.publish("chat:room1", {"n": i})
    seen = pubs(alice)
    assert [p["offset"] for p in seen] == [1, 2, 3, 4, 5]
    alice.disconnect()
    for i in range(5, 8):
        rt.publish("chat:room1", {"n": i})
    again = connect(rt, "alice")
    reply = again.call("subscribe", {"channel": "chat:room1",
                                     "since": {"offset": 5, "epoch": first["epoch"]}})["data"]
    assert reply["recovered"] is True
    assert [p["offset"] for p in reply["publications"]] == [6, 7, 8]
    rt.publish("chat:room1", {"n": 8})
    assert [p["offset"] for p in pubs(again)] == [9]  # live follows, no repeat


def test_recovery_with_another_epoch_is_refused_not_partial(rt, connect):
    alice = connect(rt, "alice")
    rt.publish("chat:room2", {"n": 1})
    reply = alice.call("subscribe", {"channel": "chat:room2",
                                     "since": {"offset": 0, "epoch": "stale-epoch"}})["data"]
    assert reply["recovered"] is False and reply["publications"] == []
    assert reply["offset"] == 1


def test_publications_during_subscribe_are_delivered_once_after_the_reply(rt, connect):
    """A publication landing between the history read and the reply is not lost nor doubled."""
    alice = connect(rt, "alice")
    svc = rt.channels
    original = svc.broker.position

    def position_then_publish(channel, history):
        pos = original(channel, history)
        svc.broker.publish(channel, {"late": True}, history=history)  # lands mid-subscribe
        return pos

    svc.broker.position = position_then_publish
    try:
        reply = alice.call("subscribe", {"channel": "chat:race"})["data"]
    finally:
        svc.broker.position = original
    assert reply["offset"] == 0
    assert [(p["offset"], p["data"]) for p in pubs(alice)] == [(1, {"late": True})]


def test_idempotent_publish_returns_the_first_result(rt, connect):
    alice = connect(rt, "alice")
    alice.call("subscribe", {"channel": "chat:idem"})
    one = alice.call("publish", {"channel": "chat:idem", "data": 1, "idempotency_key": "k1"})
    two = alice.call("publish", {"channel": "chat:idem", "data": 2, "idempotency_key": "k1"})
    assert one["data"] == two["data"]
    assert [p["data"] for p in pubs(alice)] == [1]


def test_presence_is_one_entry_per_user_with_join_and_leave_once(rt, connect):
    watcher = connect(rt, "watcher")
    watcher.call("subscribe", {"channel": "chat:lobby"})
    watcher.get_received()
    tab1, tab2 = connect(rt, "alice", name="Alice"), connect(rt, "alice", name="Alice")
    first = tab1.call("subscribe", {"channel": "chat:lobby"})["data"]
    assert {m["user_id"] for m in first["presence"]["members"]} == {"watcher", "alice"}
    tab2.call("subscribe", {"channel": "chat:lobby"})
    members = watcher.call("presence", {"channel": "chat:lobby"})["data"]["members"]
    alice = next(m for m in members if m["user_id"] == "alice")
    assert alice["connections"] == 2 and alice["name"] == "Alice"
    assert watcher.events("presence:join") == [
        {"channel": "chat:lobby", "user": {"user_id": "alice", "name": "Alice"}}]
    tab1.disconnect()
    assert watcher.events("presence:leave") == []
    tab2.disconnect()
    assert watcher.events("presence:leave") == [
        {"channel": "chat:lobby", "user": {"user_id": "alice", "name": "Alice"}}]


def test_history_with_limit_and_since(rt, connect):
    alice = connect(rt, "alice")
    for i in range(10):
        rt.publish("chat:hist", {"n": i})
    latest = alice.call("history", {"channel": "chat:hist", "limit": 3})["data"]
    assert [p["offset"] for p in latest["publications"]] == [8, 9, 10]
    since = alice.call("history", {"channel": "chat:hist",
                                   "since": {"offset": 7, "epoch": latest["epoch"]}})["data"]
    assert [p["offset"] for p in since["publications"]] == [8, 9, 10]
    bad = alice.call("history", {"channel": "chat:hist", "limit": 500})
    assert bad["error"]["code"] == "invalid_payload"


def test_unsubscribe_stops_delivery(rt, connect):
    alice = connect(rt, "alice")
    alice.call("subscribe", {"channel": "chat:u"})
    assert alice.call("unsubscribe", {"channel": "chat:u"})["data"]["unsubscribed"] is True
    rt.publish("chat:u", 1)
    assert pubs(alice) == []


def test_server_side_unsubscribe_and_disconnect_user(rt, connect):
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    alice.call("subscribe", {"channel": "chat:x"})
    rt.unsubscribe("alice", "chat:x")
    assert alice.events("unsubscribed") == [{"channel": "chat:x", "reason": "server"}]
    rt.disconnect_user("alice", "maintenance")
    assert not alice.is_connected() and bob.is_connected()


def test_refresh_with_fewer_roles_unsubscribes_what_they_no_longer_allow(rt, connect,
                                                                        make_token):
    alice = connect(rt, "alice", roles=["user"])
    for channel in ("chat:general", "live:project-9", "user:#alice"):
        assert alice.call("subscribe", {"channel": channel})["ok"]
    alice.get_received()

    reply = alice.call("auth:refresh", {"token": make_token("alice", roles=[], ttl=600)})

    assert reply["ok"], reply
    assert sorted(alice.events("unsubscribed"), key=lambda e: e["channel"]) == [
        {"channel": "chat:general", "reason": "forbidden"},
        {"channel": "live:project-9", "reason": "forbidden"}]
    assert rt.presence("chat:general") == []
    rt.publish("chat:general", 1)
    rt.publish("live:project-9", 2)
    rt.publish("user:#alice", 3)  # the personal channel needs no role: it stays
    assert [p["channel"] for p in pubs(alice)] == ["user:#alice"]
    dropped = audit_lines(rt, "unsubscribed")
    assert sorted(e["details"]["channel"] for e in dropped) == ["chat:general", "live:project-9"]
    assert {(e["event"], e["outcome"], e["user_id"]) for e in dropped} == {
        ("auth:refresh", "forbidden", "alice")}


def test_a_failing_refresh_hook_fails_the_refresh_but_the_other_hooks_still_run(
        rt, connect, make_token):
    """A bug in one feature's re-check must not leave another feature's access in place."""

    def broken(ctx):
        raise RuntimeError("bug in a feature")

    rt.refresh_hooks.insert(0, broken)
    alice = connect(rt, "alice")
    assert alice.call("subscribe", {"channel": "chat:general"})["ok"]
    alice.get_received()
    reply = alice.call("auth:refresh", {"token": make_token("alice", roles=[], ttl=600)})
    assert reply["error"]["code"] == "internal"
    assert alice.events("unsubscribed") == [{"channel": "chat:general", "reason": "forbidden"}]


def test_refresh_with_the_same_roles_keeps_every_subscription(rt, connect, make_token):
    alice = connect(rt, "alice")
    alice.call("subscribe", {"channel": "chat:general"})
    assert alice.call("auth:refresh", {"token": make_token("alice", ttl=600)})["ok"]
    assert alice.events("unsubscribed") == []
    rt.publish("chat:general", 1)
    assert [p["data"] for p in pubs(alice)] == [1]


# -- the HTTP API

def api(rt):
    return rt.app.test_client()


def auth(key=API_KEY):
    return {"Authorization": f"Bearer {key}"}


def test_http_publish_needs_a_valid_api_key(rt):
    assert api(rt).post("/api/v1/publish", json={"channel": "live:a", "data": 1}).status_code \
        == 401
    bad = api(rt).post("/api/v1/publish", json={"channel": "live:a", "data": 1},
                       headers=auth("wrong"))
    assert bad.status_code == 401


def test_http_publish_delivers_and_validates(rt, connect):
    alice = connect(rt, "alice")
    alice.call("subscribe", {"channel": "live:deploy"})
    ok = api(rt).post("/api/v1/publish", json={"channel": "live:deploy", "data": {"s": 1}},
                      headers={"X-API-Key": API_KEY})
    assert ok.status_code == 200 and ok.json["data"]["offset"] == 1
    assert [p["data"] for p in pubs(alice)] == [{"s": 1}]
    assert api(rt).post("/api/v1/publish", data="not json", headers=auth()).status_code == 400
    missing = api(rt).post("/api/v1/publish", json={"data": 1}, headers=auth())
    assert missing.status_code == 400
    assert missing.json["error"]["details"][0]["field"] == "channel"
    unknown = api(rt).post("/api/v1/publish", json={"channel": "zz:a", "data": 1},
                           headers=auth())
    assert unknown.status_code == 404


def test_http_broadcast_presence_history_and_disconnect(rt, connect):
    alice = connect(rt, "alice")
    alice.call("subscribe", {"channel": "chat:b1"})
    r = api(rt).post("/api/v1/broadcast", json={"channels": ["chat:b1", "live:b2"], "data": 7},
                     headers=auth())
    assert r.status_code == 200 and len(r.json["data"]["publications"]) == 2
    presence = api(rt).get("/api/v1/channels/chat:b1/presence", headers=auth()).json
    assert [m["user_id"] for m in presence["data"]["members"]] == ["alice"]
    history = api(rt).get("/api/v1/channels/live:b2/history?limit=10", headers=auth()).json
    assert [p["data"] for p in history["data"]["publications"]] == [7]
    r = api(rt).post("/api/v1/users/alice/disconnect", json={"reason": "bye"}, headers=auth())
    assert r.status_code == 200 and not alice.is_connected()
    with open(rt.settings.audit_log) as fh:
        calls = [line for line in fh if '"api_call"' in line]
    assert len(calls) >= 4


def test_http_api_responses_are_redacted_too(rt):
    r = api(rt).post("/api/v1/publish", json={"channel": "live:r", "data": {
        "note": "ok", "password": "hunter2", "nested": {"api_key": "k"}}}, headers=auth())
    assert r.status_code == 200
    history = api(rt).get("/api/v1/channels/live:r/history", headers=auth())
    assert history.json["data"]["publications"][0]["data"] == {
        "note": "ok", "password": "[redacted]", "nested": {"api_key": "[redacted]"}}
    assert b"hunter2" not in history.get_data()
