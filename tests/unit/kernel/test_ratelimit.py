"""Token buckets, keyed buckets, and per-event limits that survive a reconnect."""

from __future__ import annotations

import pytest

from dihya_realtime.kernel.ratelimit import KeyedBuckets, TokenBucket
from dihya_realtime.kernel.settings import RateLimit


def test_token_bucket_allows_its_burst_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(RateLimit(rate=2, burst=3), now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0  # one token refilled in half a second
    assert bucket.take(0.5) == pytest.approx(0.5)


def test_token_bucket_never_saves_more_than_its_burst() -> None:
    bucket = TokenBucket(RateLimit(rate=10, burst=2), now=0.0)
    assert [bucket.take(100.0) for _ in range(3)][-1] > 0


def test_keyed_buckets_keep_one_bucket_per_key() -> None:
    buckets = KeyedBuckets(RateLimit(rate=1, burst=1))
    assert buckets.take("a", now=0.0) == 0.0
    assert buckets.take("a", now=0.0) > 0
    assert buckets.take("b", now=0.0) == 0.0


def test_keyed_buckets_forget_the_least_recently_used_past_max_keys() -> None:
    buckets = KeyedBuckets(RateLimit(rate=1, burst=1), max_keys=2)
    buckets.take("a", now=0.0)
    buckets.take("b", now=0.0)
    buckets.take("a", now=0.0)  # a is now the most recent
    buckets.take("c", now=0.0)
    assert len(buckets) == 2
    assert buckets.take("a", now=0.0) > 0  # still remembered: still empty
    assert buckets.take("b", now=0.0) == 0.0  # forgotten: a new bucket


def test_keyed_buckets_take_a_limit_per_call() -> None:
    buckets = KeyedBuckets(RateLimit(rate=1, burst=1))
    slow = RateLimit(rate=0.5, burst=1)
    assert buckets.take(("u", "slow"), now=0.0, limit=slow) == 0.0
    assert buckets.take(("u", "slow"), now=0.0, limit=slow) == pytest.approx(2.0)


def test_per_event_limit_survives_a_reconnect(make_rt, connect) -> None:
    rt = make_rt(rate_limit_events={"presence": {"rate": 0.5, "burst": 2}})
    allowed = 0
    for _ in range(6):
        client = connect(rt, "alice")
        for _ in range(10):
            reply = client.call("presence", {"channel": "chat:general"})
            if reply["ok"]:
                allowed += 1
            else:
                assert reply["error"]["code"] == "rate_limited"
                assert reply["error"]["retry_after"] > 0
        client.disconnect()
    assert allowed <= 3


def test_per_event_limit_is_per_user_not_shared(make_rt, connect) -> None:
    rt = make_rt(rate_limit_events={"presence": {"rate": 0.5, "burst": 2}})
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    assert [alice.call("presence", {"channel": "chat:general"})["ok"] for _ in range(3)] == [
        True, True, False]
    assert bob.call("presence", {"channel": "chat:general"})["ok"]


def test_unknown_events_share_one_bucket_per_user(make_rt, connect) -> None:
    rt = make_rt(rate_limit_event={"rate": 1, "burst": 2})
    alice = connect(rt, "alice")
    codes = [alice.call(f"nope{i}")["error"]["code"] for i in range(3)]
    assert codes == ["not_found", "not_found", "rate_limited"]


def test_anonymous_connections_do_not_share_a_per_event_budget(make_rt, connect) -> None:
    rt = make_rt(anonymous=True, namespaces={"pub": {"anonymous": True}},
                 rate_limit_events={"presence": {"rate": 0.5, "burst": 1}})
    first, second = connect(rt, None), connect(rt, None)
    assert first.is_connected() and second.is_connected()
    assert first.call("presence", {"channel": "pub:x"})["error"]["code"] == "not_found"
    assert first.call("presence", {"channel": "pub:x"})["error"]["code"] == "rate_limited"
    assert second.call("presence", {"channel": "pub:x"})["error"]["code"] == "not_found"


def test_chat_create_room_limit_is_not_reset_by_reconnecting(rt, connect) -> None:
    """Issue 12: declared 0.5/s with a burst of 10, 60 rooms were made in 0.4 s over 6
    reconnects. Now the burst is the user's, whatever the connections."""
    created = 0
    for i in range(6):
        client = connect(rt, "alice")
        for j in range(10):
            reply = client.call("chat:create_room", {"name": f"r{i}-{j}",
                                                       "visibility": "public"})
            created += reply["ok"]
        client.disconnect()
    assert 10 <= created <= 11, created  # the burst, plus at most one token refilled meanwhile


def test_token_bucket_takes_a_cost_and_caps_it_at_the_burst() -> None:
    bucket = TokenBucket(RateLimit(rate=100, burst=1000), now=0.0)
    assert bucket.take(0.0, cost=600) == 0.0
    assert bucket.take(0.0, cost=600) == pytest.approx(2.0)  # 200 missing at 100/s
    assert bucket.tokens == pytest.approx(400)  # a refusal takes nothing
    assert bucket.take(6.0, cost=5000) == 0.0  # above the burst: waits for a full bucket


