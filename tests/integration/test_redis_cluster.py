"""The Redis broker on a local Redis Cluster (three primaries, three replicas): the URL of any
node works unchanged, publications and presence cross processes over sharded pub/sub, in
offset order, for channels on every shard, and a process without interest in a channel
receives none of its traffic."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from dihya_realtime.broker import PresenceEvent, Publication
from dihya_realtime.broker.redis import RedisBroker
from dihya_realtime.kernel.settings import HistoryPolicy
from tests.integration.redis_cluster import RedisCluster, redis_cluster  # noqa: F401

KEEP = HistoryPolicy(size=100, ttl=60)
ALICE = {"user_id": "1", "name": "Alice"}


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
        url = f"redis://127.0.0.1:{redis_cluster.ports[node]}/0"
        broker = RedisBroker(url, prefix, socket_timeout=3)
        broker.start()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


def _channels_on_every_primary(broker: RedisBroker) -> list[str]:
    """One channel name per primary (their hash tags fall in slots of different nodes)."""
    client = broker._redis
    by_node: dict[str, str] = {}
    for i in range(1000):
        channel = f"chat:room-{i}"
        node = client.nodes_manager.get_node_from_slot(client.keyslot(broker._shard(channel)))
        by_node.setdefault(node.name, channel)
    return sorted(by_node.values())


def test_any_node_url_finds_the_cluster(brokers) -> None:
    broker = brokers(3)  # a replica, perhaps: any node will do

    assert broker.cluster
    broker.ping()
    pub, created = broker.publish("chat:x", 1, history=KEEP)
    assert created and pub.offset == 1
    assert broker.history("chat:x", history=KEEP).publications == [pub]


def test_publications_cross_processes_in_order_on_every_shard(brokers) -> None:
    publisher, subscriber = brokers(0), brokers(1)
    received: list[Publication | PresenceEvent] = []
    subscriber.set_handler(received.append)
    channels = _channels_on_every_primary(publisher)
    assert len(channels) == 3
    for channel in channels:
        subscriber.watch(channel)

    threads = [threading.Thread(target=lambda c=c: [publisher.publish(c, i, history=KEEP)
                                                    for i in range(50)]) for c in channels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    wait_until(lambda: len(received) == 150)
    for channel in channels:
        got = [p for p in received if isinstance(p, Publication) and p.channel == channel]
        assert [p.offset for p in got] == list(range(1, 51))
        assert [p.data for p in got] == list(range(50))


def test_presence_join_and_leave_cross_processes(brokers) -> None:
    here, there = brokers(0), brokers(2)
    received: list[Publication | PresenceEvent] = []
    there.set_handler(received.append)
    there.watch("chat:presence")

    assert here.presence_add("chat:presence", "c1", ALICE, "node-a") is True
    assert here.presence_remove("chat:presence", "c1") is True

    wait_until(lambda: len(received) == 2)
    assert [(e.kind, e.user["user_id"]) for e in received
            if isinstance(e, PresenceEvent)] == [("join", "1"), ("leave", "1")]


def test_a_process_without_interest_receives_no_traffic(brokers) -> None:
    publisher, idle, watching = brokers(0), brokers(1), brokers(2)
    seen: list[Publication | PresenceEvent] = []
    idle.set_handler(seen.append)
    channels = _channels_on_every_primary(publisher)
    for channel in channels:
        watching.watch(channel)

    for channel in channels:
        for i in range(20):
            publisher.publish(channel, i, history=KEEP)
        publisher.presence_add(channel, "c1", ALICE, "node-a")

    wait_until(lambda: watching.fanout_received == 63)
    time.sleep(0.2)
    assert idle.fanout_received == 0
    assert seen == []


def test_a_script_never_touches_two_slots(brokers) -> None:
    """Every script ran above without CROSSSLOT; reaping (node keys elsewhere) too."""
    broker = brokers(0)
    broker.presence_add("chat:a", "c1", ALICE, "dead-node")
    broker.presence_add("chat:b", "c2", ALICE, "dead-node")
    time.sleep(0.3)
    try:
        assert broker.reap_dead_nodes(ttl=0.2) == 2
    except redis.ResponseError as exc:  # pragma: no cover - the failure this test looks for
        pytest.fail(f"a command spanned slots: {exc}")
    assert broker.presence("chat:a") == []


def test_two_serve_processes_on_the_cluster(redis_cluster, start_server,  # noqa: F811
                                            sio_client, token) -> None:
    """The service itself, each process given another node's URL: delivery and presence."""
    from tests.integration.conftest import TEST_API_KEY

    prefix = f"dihya-cluster-{uuid.uuid4().hex[:8]}"
    a, b = (start_server(start=False, REDIS_PREFIX=prefix,
                         REDIS_URL=f"redis://127.0.0.1:{redis_cluster.ports[i]}/0")
            for i in (0, 1))
    a.launch()
    b.launch()
    a.wait_ready()
    b.wait_ready()
    on_a, on_b = sio_client(a, token("alice")), sio_client(b, token("bob"))
    assert on_a.call("subscribe", {"channel": "chat:multi"})["ok"]
    assert on_b.call("subscribe", {"channel": "chat:multi"})["ok"]
    on_a.wait_for("presence:join", lambda e: e["user"]["user_id"] == "bob")

    for i in range(20):
        status, body = b.http("POST", "/api/v1/publish", {"channel": "chat:multi", "data": i},
                              headers={"X-API-Key": TEST_API_KEY})
        assert status == 200, body
    on_a.wait_for("publication", lambda p: p["data"] == 19)
    assert [p["data"] for p in on_a.events("publication")] == list(range(20))
