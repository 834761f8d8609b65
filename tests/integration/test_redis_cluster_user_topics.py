"""Users' topics (``Broker.send``) on a local Redis Cluster: a message sent through any node,
alone or several in one pipeline spanning every primary, reaches the processes watching its
topic and no other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from dihya_realtime.broker import Message
from dihya_realtime.broker.redis import RedisBroker
from tests.integration.redis_cluster import RedisCluster, redis_cluster  # noqa: F401


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def brokers(redis_cluster: RedisCluster) -> Iterator[Callable[[int], RedisBroker]]:  # noqa: F811
    """Brokers on the cluster, each through another node's URL, under one fresh prefix."""
    prefix = f"dihya-cluster-{uuid.uuid4().hex[:8]}"
    made: list[RedisBroker] = []

    def make(node: int) -> RedisBroker:
        broker = RedisBroker(f"redis://127.0.0.1:{redis_cluster.ports[node]}/0", prefix,
                             socket_timeout=3)
        broker.start()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


def _topics_on_every_primary(broker: RedisBroker) -> list[str]:
    client = broker._redis
    by_node: dict[str, str] = {}
    for i in range(1000):
        topic = f"__user:u{i}"
        node = client.nodes_manager.get_node_from_slot(client.keyslot(broker._shard(topic)))
        by_node.setdefault(node.name, topic)
    return sorted(by_node.values())


def test_users_messages_reach_only_the_processes_watching_them(brokers) -> None:
    sender, idle, watching = brokers(0), brokers(1), brokers(2)
    got: list[Message] = []
    watching.set_handler(lambda m: got.append(m) if isinstance(m, Message) else None)
    topics = _topics_on_every_primary(sender)
    assert len(topics) == 3
    for topic in topics:
        watching.watch(topic)

    sender.send(topics, {"n": 1})  # one pipeline over the three primaries
    for topic in topics:
        sender.send(topic, {"n": 2})
    sender.send("__user:nobody", {"n": 3})

    wait_until(lambda: len(got) == 6)
    time.sleep(0.2)
    assert sorted((m.topic, m.data["n"]) for m in got) == sorted(
        [(t, 1) for t in topics] + [(t, 2) for t in topics])
    assert idle.fanout_received == 0
