"""Channels stay consistent under awkward input: idempotency keys are per user, deeply
nested data is refused, a subscribe racing a disconnect leaves no ghost in presence."""

from __future__ import annotations

from dihya_realtime.kernel.auth import hash_api_key

API_KEY = "review-api-key-0123456789"


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
