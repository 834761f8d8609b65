"""Interest routing on one Redis: a broker receives a channel's publications only while it
watches the channel, and ``watch`` returns only once Redis confirmed the subscription."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import redis as redis_py

from dihya_realtime.broker import MemoryBroker, Message, PresenceEvent, Publication
from dihya_realtime.broker.redis import RedisBroker
from dihya_realtime.kernel.settings import HistoryPolicy
from tests.conftest import REDIS_URL

KEEP = HistoryPolicy(size=100, ttl=60)


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def pair(redis_url: str, redis_prefix: str) -> Iterator[tuple[RedisBroker, RedisBroker]]:
    """A publisher and a listener: two processes' brokers on one Redis."""
    publisher = RedisBroker(redis_url, redis_prefix, socket_timeout=2)
    listener = RedisBroker(redis_url, redis_prefix, socket_timeout=2)
    listener.start()
    yield publisher, listener
    publisher.close()
    listener.close()


def _publications(items: list[Publication | PresenceEvent]) -> list[int]:
    return [p.offset for p in items if isinstance(p, Publication)]


def test_only_watched_channels_are_received_in_offset_order(pair) -> None:
    publisher, listener = pair
    received: list[Publication | PresenceEvent] = []
    listener.set_handler(received.append)

    publisher.publish("chat:a", 1, history=KEEP)  # not watched yet
    listener.watch("chat:a")
    for i in range(2, 12):
        publisher.publish("chat:a", i, history=KEEP)
    publisher.publish("chat:other", 0, history=KEEP)  # never watched
    wait_until(lambda: len(received) == 10)
    time.sleep(0.2)

    assert _publications(received) == list(range(2, 12))
    assert {p.channel for p in received} == {"chat:a"}
    assert listener.fanout_received == 10


def test_after_unwatch_nothing_more_arrives(pair) -> None:
    publisher, listener = pair
    received: list[Publication | PresenceEvent] = []
    listener.set_handler(received.append)
    listener.watch("chat:a")
    publisher.publish("chat:a", 1, history=KEEP)
    wait_until(lambda: len(received) == 1)

    listener.unwatch("chat:a")
    wait_until(lambda: _shard_subscriptions(listener) == 0)
    publisher.publish("chat:a", 2, history=KEEP)
    publisher.presence_add("chat:a", "c1", {"user_id": "1"}, "node")
    time.sleep(0.3)

    assert _publications(received) == [1]
    assert listener.fanout_received == 1


def test_watch_returns_once_the_subscription_is_confirmed(pair) -> None:
    """Whatever is published right after ``watch`` returns is received: for each of many
    channels, one publication straight after the watch."""
    publisher, listener = pair
    received: list[Publication | PresenceEvent] = []
    listener.set_handler(received.append)
    channels = [f"chat:c{i}" for i in range(50)]
    for channel in channels:
        listener.watch(channel)
        publisher.publish(channel, "first", history=KEEP)

    wait_until(lambda: len(received) == 50)
    assert sorted(p.channel for p in received) == sorted(channels)
    assert _shard_subscriptions(listener) == 50


def test_a_broker_never_watching_gets_no_pubsub_traffic(pair) -> None:
    publisher, listener = pair
    for i in range(100):
        publisher.publish(f"chat:busy{i % 5}", i, history=KEEP)
        publisher.presence_add("chat:busy0", f"c{i}", {"user_id": str(i)}, "node")
    time.sleep(0.3)

    assert listener.fanout_received == 0


def test_watching_before_start_subscribes_at_start(redis_url: str, redis_prefix: str) -> None:
    publisher = RedisBroker(redis_url, redis_prefix)
    listener = RedisBroker(redis_url, redis_prefix)
    received: list[Publication | PresenceEvent] = []
    listener.set_handler(received.append)
    listener.watch("chat:early")
    listener.start()
    try:
        publisher.publish("chat:early", 1, history=KEEP)
        wait_until(lambda: len(received) == 1)
    finally:
        publisher.close()
        listener.close()


def _shard_subscriptions(broker: RedisBroker) -> int:
    """``ssub`` of the broker's pub/sub connection, as Redis counts it."""
    admin = redis_py.Redis.from_url(REDIS_URL)
    try:
        name = f"dihya-broker:{broker._prefix}"
        return sum(int(c["ssub"]) for c in admin.client_list() if c["name"] == name
                   and "P" in c["flags"])
    finally:
        admin.close()


def _messages(items: list) -> list[tuple[str, object]]:
    return [(m.topic, m.data) for m in items if isinstance(m, Message)]


def test_sent_messages_reach_only_the_watchers_of_their_topic(pair) -> None:
    """``send``: one SPUBLISH per topic (one round trip for several), data encoded once,
    received where the topic is watched and nowhere else."""
    publisher, listener = pair
    received: list = []
    listener.set_handler(received.append)
    listener.watch("__user:alice")

    publisher.send("__user:bob", {"n": 0})  # not watched
    publisher.send(["__user:alice", "__user:bob", "__user:carol"], {"n": 1, "big": 2**70})
    publisher.send("__user:alice", {"n": 2})
    wait_until(lambda: len(received) == 2)
    time.sleep(0.2)

    assert _messages(received) == [("__user:alice", {"n": 1, "big": 2**70}),
                                   ("__user:alice", {"n": 2})]
    assert listener.fanout_received == 2


def test_sending_what_is_not_json_raises_and_sends_nothing(pair) -> None:
    publisher, listener = pair
    received: list = []
    listener.set_handler(received.append)
    listener.watch("__user:alice")

    with pytest.raises(TypeError):
        publisher.send("__user:alice", {"blob": object()})
    publisher.send("__user:alice", "after")
    wait_until(lambda: len(received) == 1)
    assert _messages(received) == [("__user:alice", "after")]


def test_the_memory_broker_hands_a_message_over_once_per_topic() -> None:
    broker = MemoryBroker()
    received: list = []
    broker.set_handler(received.append)

    broker.send(["__user:a", "__user:b"], {"n": 1})
    broker.send("__user:a", {"n": 2})

    assert _messages(received) == [("__user:a", {"n": 1}), ("__user:b", {"n": 1}),
                                   ("__user:a", {"n": 2})]
