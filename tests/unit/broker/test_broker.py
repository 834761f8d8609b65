"""One suite, two brokers: every contract of :class:`Broker` holds for memory and for Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_py

from dihya_realtime.broker import (
    Broker,
    BrokerUnavailable,
    MemoryBroker,
    PresenceEvent,
    Publication,
    StreamPosition,
    create_broker,
)
from dihya_realtime.broker.redis import RedisBroker
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.settings import HistoryPolicy

KEEP = HistoryPolicy(size=100, ttl=60)
ALICE = {"user_id": "1", "name": "Alice"}
BOB = {"user_id": "2", "name": "Bob"}


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Received(list[Any]):
    """What the broker's handler was given, in order."""

    def publications(self, channel: str | None = None) -> list[Publication]:
        return [x for x in self if isinstance(x, Publication) and channel in (None, x.channel)]

    def presence(self) -> list[tuple[str, str, str]]:
        return [
            (e.channel, e.kind, e.user["user_id"]) for e in self if isinstance(e, PresenceEvent)
        ]


@pytest.fixture(params=["memory", "redis"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "memory":
        instance: Broker = MemoryBroker()
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        instance = RedisBroker(url, prefix, socket_timeout=2)
    instance.start()
    yield instance
    instance.close()


@pytest.fixture(params=["memory", "redis"])
def make_broker(request: pytest.FixtureRequest) -> Iterator[Callable[..., Broker]]:
    """A broker of either kind built with the caps a test gives (history channels, bytes)."""
    made: list[Broker] = []

    def make(**caps: Any) -> Broker:
        if request.param == "memory":
            instance: Broker = MemoryBroker(**caps)
        else:
            instance = RedisBroker(request.getfixturevalue("redis_url"),
                                   request.getfixturevalue("redis_prefix"), socket_timeout=2,
                                   **caps)
        instance.start()
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.close()


@pytest.fixture
def received(broker: Broker) -> Received:
    items = Received()
    broker.set_handler(items.append)
    for channel in ("chat:a", "chat:b", "live:x"):  # the channels the tests below listen to
        broker.watch(channel)
    return items


def publish_n(
    broker: Broker, channel: str, n: int, history: HistoryPolicy = KEEP
) -> list[Publication]:
    return [broker.publish(channel, {"n": i}, history=history)[0] for i in range(1, n + 1)]


# -- publications and history ---------------------------------------------------------------


def test_offsets_grow_by_one_and_the_handler_sees_them_in_order(
    broker: Broker, received: Received
) -> None:
    pubs = publish_n(broker, "chat:a", 5)
    publish_n(broker, "chat:b", 2)

    assert [p.offset for p in pubs] == [1, 2, 3, 4, 5]
    assert len({p.epoch for p in pubs}) == 1
    assert len({p.id for p in pubs}) == 5
    wait_until(lambda: len(received.publications()) == 7)
    seen = received.publications("chat:a")
    assert [(p.offset, p.data) for p in seen] == [(i, {"n": i}) for i in range(1, 6)]
    assert [p.offset for p in received.publications("chat:b")] == [1, 2]
    assert broker.position("chat:a", KEEP) == StreamPosition(5, pubs[0].epoch)


def test_publication_carries_its_publisher_on_the_wire(broker: Broker, received: Received) -> None:
    pub, created = broker.publish("chat:a", {"text": "hi"}, history=KEEP, from_=ALICE)

    assert created
    wait_until(lambda: len(received.publications()) == 1)
    delivered = received.publications()[0]
    assert delivered == pub
    assert delivered.to_wire() == {
        "channel": "chat:a",
        "offset": 1,
        "epoch": pub.epoch,
        "id": pub.id,
        "ts": pub.ts,
        "data": {"text": "hi"},
        "from": ALICE,
    }
    assert "from" not in broker.publish("chat:a", 1, history=KEEP)[0].to_wire()


def test_history_since_returns_exactly_the_missed_publications(broker: Broker) -> None:
    pubs = publish_n(broker, "chat:a", 6)

    result = broker.history("chat:a", history=KEEP, since=StreamPosition(2, pubs[0].epoch))

    assert result.recovered
    assert result.publications == pubs[2:]
    assert result.position == StreamPosition(6, pubs[0].epoch)


def test_since_with_another_epoch_is_not_recovered(broker: Broker) -> None:
    publish_n(broker, "chat:a", 3)

    result = broker.history("chat:a", history=KEEP, since=StreamPosition(1, "not-this-epoch"))

    assert not result.recovered
    assert result.publications == []
    assert result.position.offset == 3


def test_since_older_than_retained_history_is_never_partial(broker: Broker) -> None:
    small = HistoryPolicy(size=3, ttl=60)
    pubs = publish_n(broker, "chat:a", 10, small)
    epoch = pubs[0].epoch

    gone = broker.history("chat:a", history=small, since=StreamPosition(2, epoch))
    reachable = broker.history("chat:a", history=small, since=StreamPosition(7, epoch))

    assert (gone.recovered, gone.publications) == (False, [])
    assert gone.position == StreamPosition(10, epoch)
    assert reachable.recovered
    assert [p.offset for p in reachable.publications] == [8, 9, 10]


def test_since_at_the_top_recovers_with_nothing_missed(broker: Broker) -> None:
    pubs = publish_n(broker, "chat:a", 4)

    result = broker.history("chat:a", history=KEEP, since=StreamPosition(4, pubs[0].epoch))

    assert result.recovered
    assert result.publications == []


def test_since_beyond_the_top_is_not_recovered(broker: Broker) -> None:
    pubs = publish_n(broker, "chat:a", 2)

    result = broker.history("chat:a", history=KEEP, since=StreamPosition(9, pubs[0].epoch))

    assert not result.recovered


def test_recovery_larger_than_limit_is_refused_not_truncated(broker: Broker) -> None:
    pubs = publish_n(broker, "chat:a", 6)
    since = StreamPosition(1, pubs[0].epoch)

    assert not broker.history("chat:a", history=KEEP, since=since, limit=3).recovered
    assert len(broker.history("chat:a", history=KEEP, since=since, limit=5).publications) == 5


def test_history_limit_returns_the_latest_in_ascending_order(broker: Broker) -> None:
    publish_n(broker, "chat:a", 5)

    latest = broker.history("chat:a", history=KEEP, limit=2)
    everything = broker.history("chat:a", history=KEEP)
    none = broker.history("chat:a", history=KEEP, limit=0)

    assert latest.recovered
    assert [p.offset for p in latest.publications] == [4, 5]
    assert [p.offset for p in everything.publications] == [1, 2, 3, 4, 5]
    assert none.publications == []
    assert none.position.offset == 5


def test_zero_size_history_advances_offsets_but_stores_nothing(
    broker: Broker, received: Received
) -> None:
    live = HistoryPolicy(size=0, ttl=60)
    pubs = publish_n(broker, "live:x", 3, live)

    assert [p.offset for p in pubs] == [1, 2, 3]
    assert broker.history("live:x", history=live).publications == []
    assert not broker.history(
        "live:x", history=live, since=StreamPosition(1, pubs[0].epoch)
    ).recovered
    wait_until(lambda: len(received.publications()) == 3)


def test_position_creates_an_epoch_once(broker: Broker) -> None:
    first = broker.position("chat:new", KEEP)
    again = broker.position("chat:new", KEEP)
    pub, _ = broker.publish("chat:new", 1, history=KEEP)

    assert first.offset == 0
    assert first.epoch
    assert again == first
    assert (pub.offset, pub.epoch) == (1, first.epoch)


def test_idle_channel_expires_into_a_new_epoch(broker: Broker) -> None:
    short = HistoryPolicy(size=10, ttl=1)
    old = publish_n(broker, "chat:a", 3, short)
    time.sleep(1.2)

    result = broker.history("chat:a", history=short, since=StreamPosition(1, old[0].epoch))
    pub, _ = broker.publish("chat:a", "again", history=short)

    assert not result.recovered
    assert result.position.epoch != old[0].epoch
    assert (pub.offset, pub.epoch) == (1, result.position.epoch)


# -- idempotency ------------------------------------------------------------------------------


def test_repeated_idempotency_key_returns_the_first_publication_once(
    broker: Broker, received: Received
) -> None:
    first, created = broker.publish("chat:a", {"v": 1}, history=KEEP, idempotency_key="m-1")
    again, created_again = broker.publish("chat:a", {"v": 2}, history=KEEP, idempotency_key="m-1")
    other, other_created = broker.publish("chat:b", {"v": 3}, history=KEEP, idempotency_key="m-1")

    assert created and not created_again and other_created
    assert (again.channel, again.offset, again.epoch, again.id) == (
        first.channel, first.offset, first.epoch, first.id)
    assert other.channel == "chat:b"
    assert broker.position("chat:a", KEEP).offset == 1
    wait_until(lambda: len(received.publications()) == 2)
    time.sleep(0.1)  # a duplicate fan-out would arrive in this time
    assert [p.data for p in received.publications()] == [{"v": 1}, {"v": 3}]


def test_idempotency_key_is_forgotten_after_its_ttl(broker: Broker) -> None:
    first, _ = broker.publish("chat:a", 1, history=KEEP, idempotency_key="k", idempotency_ttl=0.3)
    time.sleep(0.4)
    second, created = broker.publish("chat:a", 2, history=KEEP, idempotency_key="k")

    assert created
    assert second.offset == first.offset + 1


def test_idempotency_entry_keeps_only_the_result_not_the_data(
    broker: Broker, received: Received
) -> None:
    big = "x" * 60_000
    first, _ = broker.publish("chat:a", big, history=KEEP, idempotency_key="k-1")
    again, created = broker.publish("chat:a", big, history=KEEP, idempotency_key="k-1")

    assert not created
    assert (again.offset, again.epoch, again.id) == (first.offset, first.epoch, first.id)
    assert again.data is None  # the duplicate answers with the result, not a copy of the data
    if isinstance(broker, RedisBroker):
        keys = list(broker._redis.scan_iter(match=f"{broker._prefix}*idem*"))
        assert len(keys) == 1
        assert broker._redis.strlen(keys[0]) < 200
    else:
        entries = [e for ch in broker._channels.values() for e in ch.idempotency.values()]
        assert entries and all(not isinstance(e[0], Publication) for e in entries)


def test_idempotency_keys_with_separators_never_collide(broker: Broker) -> None:
    # channel "chat:a" with key "x}:idem:y" must not be channel "chat:a}:idem:x" with key "y"
    a, _ = broker.publish("chat:a", 1, history=KEEP, idempotency_key="x}:idem:y")
    b, created = broker.publish("chat:a}:idem:x", 2, history=KEEP, idempotency_key="y")
    assert created and b.channel == "chat:a}:idem:x"


# -- retained memory caps ---------------------------------------------------------------------


def test_history_is_trimmed_to_its_byte_cap_and_recovery_then_says_not_recovered(
    make_broker: Callable[..., Broker]
) -> None:
    broker = make_broker(max_history_bytes_per_channel=50_000)
    for i in range(10):
        broker.publish("chat:a", "x" * 10_000 + str(i), history=KEEP)

    kept = broker.history("chat:a", history=KEEP).publications
    assert 1 <= len(kept) <= 5
    assert [p.offset for p in kept] == list(range(11 - len(kept), 11))
    lost = broker.history("chat:a", history=KEEP, since=StreamPosition(0, kept[0].epoch))
    assert not lost.recovered and lost.publications == []
    near = broker.history("chat:a", history=KEEP,
                          since=StreamPosition(kept[0].offset - 1, kept[0].epoch))
    assert near.recovered and [p.offset for p in near.publications] == [p.offset for p in kept]


def test_new_channels_with_history_are_refused_past_the_cap_while_the_others_are_recent(
    make_broker: Callable[..., Broker]
) -> None:
    broker = make_broker(max_history_channels=3)  # default idle time: 10 minutes
    for name in ("a", "b", "c"):
        broker.publish(f"chat:{name}", name, history=KEEP)

    with pytest.raises(RealtimeError) as refused:
        broker.publish("chat:attacker", 1, history=KEEP)
    assert refused.value.code is ErrorCode.UNAVAILABLE
    assert refused.value.details == {"reason": "history_channels", "limit": 3}
    # bystanders keep publishing on, and reading, the channels they had
    pub, created = broker.publish("chat:a", "again", history=KEEP)
    assert created and pub.offset == 2
    assert [p.data for p in broker.history("chat:b", history=KEEP).publications] == ["b"]
    # channels without history are not counted
    assert broker.publish("chat:nohistory", 1, history=HistoryPolicy(size=0, ttl=60))[1]


def test_at_the_cap_the_least_recently_published_idle_channel_makes_room(
    make_broker: Callable[..., Broker]
) -> None:
    broker = make_broker(max_history_channels=2, history_evict_idle=0.3)
    old, _ = broker.publish("chat:old", "old", history=KEEP)
    time.sleep(0.2)
    broker.publish("chat:recent", "recent", history=KEEP)
    time.sleep(0.15)  # old: idle 0.35 s; recent: 0.15 s

    assert broker.publish("chat:new", "new", history=KEEP)[1]
    assert broker.history("chat:old", history=KEEP).publications == []
    gone = broker.history("chat:old", history=KEEP, since=StreamPosition(0, old.epoch))
    assert not gone.recovered  # said, never silent
    assert [p.data for p in broker.history("chat:recent", history=KEEP).publications] == [
        "recent"]
    # recent is protected: one more newcomer is refused
    with pytest.raises(RealtimeError):
        broker.publish("chat:another", 1, history=KEEP)
    # the evicted channel goes on with its offsets (it claims a place again when one frees)
    time.sleep(0.35)
    again, created = broker.publish("chat:old", "again", history=KEEP)
    assert created and again.offset == 2 and again.epoch == old.epoch


def test_an_expired_channel_frees_its_place_under_the_cap(
    make_broker: Callable[..., Broker]
) -> None:
    broker = make_broker(max_history_channels=1)
    short = HistoryPolicy(size=10, ttl=0.2)
    broker.publish("chat:a", 1, history=short)
    time.sleep(0.3)
    assert broker.publish("chat:b", 1, history=short)[1]


def test_recovery_pages_by_count_and_says_so(broker: Broker) -> None:
    first = publish_n(broker, "chat:a", 7)[0]
    page = broker.history("chat:a", history=KEEP, since=StreamPosition(0, first.epoch),
                          page=3)
    assert page.recovered and page.more
    assert [p.offset for p in page.publications] == [1, 2, 3]
    assert page.position.offset == 7
    rest = broker.history("chat:a", history=KEEP, since=StreamPosition(3, first.epoch), page=10)
    assert rest.recovered and not rest.more
    assert [p.offset for p in rest.publications] == [4, 5, 6, 7]


# -- presence ---------------------------------------------------------------------------------


def test_presence_counts_users_not_connections(broker: Broker, received: Received) -> None:
    assert broker.presence_add("chat:a", "c1", ALICE, "node-1") is True
    assert broker.presence_add("chat:a", "c2", ALICE, "node-2") is False
    assert broker.presence_add("chat:a", "c3", BOB, "node-1") is True

    members = {m["user_id"]: m for m in broker.presence("chat:a")}
    assert set(members) == {"1", "2"}
    assert members["1"]["connections"] == 2
    assert members["1"]["name"] == "Alice"
    assert members["2"]["connections"] == 1
    assert abs(members["1"]["since"] - time.time()) < 60

    assert broker.presence_remove("chat:a", "c1") is False
    assert broker.presence("chat:a")[0]["connections"] in (1,)
    assert broker.presence_remove("chat:a", "c2") is True
    assert broker.presence_remove("chat:a", "c2") is False
    assert [m["user_id"] for m in broker.presence("chat:a")] == ["2"]
    wait_until(lambda: len(received.presence()) == 3)
    assert received.presence() == [
        ("chat:a", "join", "1"),
        ("chat:a", "join", "2"),
        ("chat:a", "leave", "1"),
    ]


def test_adding_the_same_connection_twice_changes_nothing(broker: Broker) -> None:
    broker.presence_add("chat:a", "c1", ALICE, "node-1")

    assert broker.presence_add("chat:a", "c1", ALICE, "node-1") is False
    assert broker.presence("chat:a")[0]["connections"] == 1
    assert broker.presence_remove("chat:a", "c1") is True


def test_reaping_removes_only_dead_nodes_entries(broker: Broker, received: Received) -> None:
    broker.heartbeat("dead")
    broker.presence_add("chat:a", "d1", ALICE, "dead")
    broker.presence_add("chat:b", "d2", ALICE, "dead")
    broker.presence_add("chat:a", "d3", BOB, "dead")
    broker.presence_add("chat:a", "l1", BOB, "live")
    time.sleep(0.6)
    broker.heartbeat("live")

    removed = broker.reap_dead_nodes(ttl=0.5)

    assert removed == 3
    assert broker.presence("chat:b") == []
    assert [(m["user_id"], m["connections"]) for m in broker.presence("chat:a")] == [("2", 1)]
    wait_until(lambda: len([e for e in received.presence() if e[1] == "leave"]) == 2)
    time.sleep(0.1)
    leaves = sorted(e for e in received.presence() if e[1] == "leave")
    assert leaves == [("chat:a", "leave", "1"), ("chat:b", "leave", "1")]
    assert broker.reap_dead_nodes(ttl=0.5) == 0


def test_concurrent_reapers_reap_a_dead_node_once(broker: Broker, received: Received) -> None:
    for i in range(10):
        broker.presence_add("chat:a", f"c{i}", {"user_id": str(i), "name": None}, "dead")
    time.sleep(0.4)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(broker.reap_dead_nodes(ttl=0.3)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(results) == [0, 0, 0, 10]
    assert broker.presence("chat:a") == []
    wait_until(lambda: len(received.presence()) == 20)
    time.sleep(0.1)
    assert len([e for e in received.presence() if e[1] == "leave"]) == 10


def test_maintenance_heartbeats_so_a_live_node_is_not_reaped(broker: Broker) -> None:
    broker.presence_add("chat:a", "c1", ALICE, "me")
    broker.run_maintenance("me", interval=0.1, ttl=0.5)
    try:
        time.sleep(0.7)
        assert broker.reap_dead_nodes(ttl=0.5) == 0
        assert len(broker.presence("chat:a")) == 1
    finally:
        broker.stop()


def test_ping_succeeds_when_the_backend_is_up(broker: Broker) -> None:
    broker.ping()


def test_create_broker_picks_the_backend(redis_url: str, redis_prefix: str) -> None:
    assert isinstance(create_broker(None, "x"), MemoryBroker)
    made = create_broker(redis_url, redis_prefix)
    try:
        assert isinstance(made, RedisBroker)
    finally:
        made.close()


# -- Redis only: several processes, outages ---------------------------------------------------


def test_concurrent_publishers_in_two_processes_are_seen_in_offset_order(
    redis_url: str, redis_prefix: str
) -> None:
    publishers = [RedisBroker(redis_url, redis_prefix) for _ in range(2)]
    listener = RedisBroker(redis_url, redis_prefix)
    received = Received()
    listener.set_handler(received.append)
    listener.start()
    listener.watch("chat:race")
    try:
        threads = [
            threading.Thread(
                target=lambda b=b: [b.publish("chat:race", i, history=KEEP) for i in range(200)]
            )
            for b in publishers
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        wait_until(lambda: len(received) >= 400, timeout=10)
        time.sleep(0.1)
        assert [p.offset for p in received.publications()] == list(range(1, 401))
        assert len({p.id for p in received.publications()}) == 400
        recovered = listener.history(
            "chat:race", history=KEEP, since=StreamPosition(300, received[0].epoch)
        )
        assert recovered.publications == received.publications()[300:]
    finally:
        for b in [*publishers, listener]:
            b.close()


def test_listener_resubscribes_after_its_connection_is_killed(
    redis_url: str, redis_prefix: str
) -> None:
    listener = RedisBroker(redis_url, redis_prefix)
    received = Received()
    listener.set_handler(received.append)
    listener.start()
    listener.watch("chat:a")
    admin = redis_py.Redis.from_url(redis_url)
    try:
        name = f"dihya-broker:{redis_prefix}"
        subscribers = [c for c in admin.client_list() if c["name"] == name and int(c["ssub"]) > 0]
        assert subscribers
        for client in subscribers:
            admin.client_kill_filter(_id=client["id"])

        def delivered() -> bool:
            listener.publish("chat:a", "after", history=KEEP)
            time.sleep(0.2)
            return bool(received.publications())

        wait_until(delivered, timeout=10)
    finally:
        admin.close()
        listener.close()


def test_unreachable_redis_raises_broker_unavailable_quickly() -> None:
    broker = RedisBroker("redis://127.0.0.1:1/0", "x", socket_timeout=0.5, connect_timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(BrokerUnavailable) as err:
            broker.publish("chat:a", 1, history=KEEP)
        with pytest.raises(BrokerUnavailable):
            broker.ping()
        with pytest.raises(BrokerUnavailable):
            broker.presence_add("chat:a", "c1", ALICE, "n")
    finally:
        broker.close()
    assert time.monotonic() - started < 3
    assert err.value.code == "unavailable"


def test_start_with_redis_down_does_not_raise() -> None:
    broker = RedisBroker("redis://127.0.0.1:1/0", "x", connect_timeout=0.2)
    broker.start()
    broker.close()


def test_lost_channel_meta_starts_a_clean_epoch(redis_url: str, redis_prefix: str) -> None:
    """Meta gone but stream left (a partial loss): the old entries must not leak into it."""
    broker = RedisBroker(redis_url, redis_prefix)
    admin = redis_py.Redis.from_url(redis_url)
    try:
        old = [broker.publish("chat:a", i, history=KEEP)[0] for i in range(3)]
        admin.delete(f"{redis_prefix}:{{chat:a}}:meta")

        pub, _ = broker.publish("chat:a", "new", history=KEEP)

        assert (pub.offset, pub.epoch != old[0].epoch) == (1, True)
        assert broker.history("chat:a", history=KEEP).publications == [pub]
    finally:
        admin.close()
        broker.close()


def test_publish_with_history_works_when_its_script_is_not_loaded(
    redis_url: str, redis_prefix: str
) -> None:
    broker = RedisBroker(redis_url, redis_prefix, socket_timeout=2)
    try:
        broker.publish("chat:a", 1, history=KEEP)
        broker._publish.sha = "0" * 40  # not loaded, as after a Redis restart (no global flush)
        pub, created = broker.publish("chat:a", 2, history=KEEP)
        assert created and pub.offset == 2
    finally:
        broker.close()
