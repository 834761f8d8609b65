"""The total history a broker keeps is bounded (``DIHYA_RT_MAX_HISTORY_BYTES``, issue 12).

Per-channel caps alone allow ``MAX_HISTORY_CHANNELS`` x ``MAX_HISTORY_BYTES_PER_CHANNEL``
(100,000 x 4 MiB). The memory broker keeps a running total and trims the oldest publications
of the least recently published channels past the budget; the Redis broker leaves the total
to Redis's ``maxmemory`` (see docs/limits.md), and a publish Redis refuses for memory is
``unavailable``, never ``internal``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from dihya_realtime.broker import BrokerUnavailable, MemoryBroker, StreamPosition
from dihya_realtime.broker.base import wire_size
from dihya_realtime.kernel.errors import ErrorCode
from dihya_realtime.kernel.settings import HistoryPolicy, Settings

KEEP = HistoryPolicy(size=1000, ttl=60)
KIB = 1024


def retained_bytes(broker: MemoryBroker, channels: list[str]) -> int:
    """What the channels' history holds, counted from what ``history`` returns."""
    return sum(wire_size(p) for c in channels
               for p in broker.history(c, history=KEEP).publications)


def test_publishing_beyond_the_budget_on_many_channels_keeps_the_total_under_it() -> None:
    broker = MemoryBroker(max_history_bytes=64 * KIB)
    channels = [f"chat:room-{i}" for i in range(300)]
    for round_ in range(3):
        for channel in channels:
            broker.publish(channel, f"{round_}" + "x" * 1000, history=KEEP)
            assert broker.history_bytes <= 64 * KIB
    assert broker.history_bytes == retained_bytes(broker, channels)
    assert broker.history_bytes > 60 * KIB  # trimmed to the budget, not far below it


def test_the_least_recently_published_channel_is_trimmed_first() -> None:
    broker = MemoryBroker(max_history_bytes=30 * KIB)
    for channel in ("chat:old", "chat:middle"):
        for _ in range(10):
            broker.publish(channel, "x" * 1000, history=KEEP)
    for _ in range(12):  # 32 publications of ~1.1 KB no longer fit: 2+ must go
        broker.publish("chat:new", "x" * 1000, history=KEEP)

    old = broker.history("chat:old", history=KEEP).publications
    middle = broker.history("chat:middle", history=KEEP).publications
    assert len(old) < 10
    assert len(middle) == 10
    assert len(broker.history("chat:new", history=KEEP).publications) == 12
    assert [p.offset for p in old] == list(range(11 - len(old), 11))  # its oldest went first


def test_a_bystanders_recovery_after_its_history_was_trimmed_says_not_recovered() -> None:
    broker = MemoryBroker(max_history_bytes=20 * KIB)
    first, _ = broker.publish("chat:bystander", "hello", history=KEEP)
    seen = StreamPosition(0, first.epoch)  # a subscriber that has missed offset 1
    for i in range(100):
        broker.publish(f"chat:flood-{i % 5}", "x" * 1000, history=KEEP)

    result = broker.history("chat:bystander", history=KEEP, since=seen)
    assert result.recovered is False
    assert result.publications == []
    assert result.position == StreamPosition(1, first.epoch)  # offsets and epoch go on


def test_concurrent_publishers_keep_the_running_total_exact() -> None:
    import threading

    broker = MemoryBroker(max_history_bytes=32 * KIB)
    channels = [f"chat:room-{i}" for i in range(40)]

    def publish(worker: int) -> None:
        for i in range(150):
            broker.publish(channels[(worker * 7 + i) % len(channels)], "x" * 500, history=KEEP)

    threads = [threading.Thread(target=publish, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert broker.history_bytes == retained_bytes(broker, channels)
    broker.publish("chat:room-0", "x" * 500, history=KEEP)  # alone again: exactly in budget
    assert broker.history_bytes <= 32 * KIB


def test_the_channel_published_to_keeps_at_least_its_newest_publication() -> None:
    broker = MemoryBroker(max_history_bytes=4 * KIB)
    broker.publish("chat:other", "y" * 2000, history=KEEP)
    pub, created = broker.publish("chat:big", "x" * 8000, history=KEEP)  # over the budget alone

    assert created
    assert broker.history("chat:big", history=KEEP).publications == [pub]
    assert broker.history("chat:other", history=KEEP).publications == []
    pub2, _ = broker.publish("chat:big", "x" * 8000, history=KEEP)
    assert broker.history("chat:big", history=KEEP).publications == [pub2]
    assert broker.history_bytes == wire_size(pub2)


def test_expired_and_evicted_history_is_taken_off_the_total() -> None:
    broker = MemoryBroker(max_history_bytes=1024 * KIB, max_history_channels=2,
                          history_evict_idle=0)
    short = HistoryPolicy(size=10, ttl=0.05)
    broker.publish("chat:a", "x" * 1000, history=short)
    time.sleep(0.06)
    broker.position("chat:a", short)  # the expired stream is replaced by a new epoch
    assert broker.history_bytes == 0

    broker.publish("chat:b", "x" * 1000, history=KEEP)
    broker.publish("chat:c", "x" * 1000, history=KEEP)
    broker.publish("chat:d", "x" * 1000, history=KEEP)  # evicts chat:b's (idle time 0)
    assert broker.history_bytes == retained_bytes(broker, ["chat:b", "chat:c", "chat:d"])

    broker.publish("chat:c", "x", history=HistoryPolicy(size=0, ttl=60))  # history off
    assert broker.history_bytes == retained_bytes(broker, ["chat:d"])


def test_the_budget_is_a_setting_with_a_256_mib_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(jwt_secret="x" * 40).max_history_bytes == 256 * 1024 * 1024
    monkeypatch.setenv("DIHYA_RT_MAX_HISTORY_BYTES", "1048576")
    assert Settings(jwt_secret="x" * 40).max_history_bytes == 1024 * 1024


# -- Redis: the total is Redis's maxmemory; a refused write is `unavailable` -------------------


@pytest.fixture
def small_redis(request: pytest.FixtureRequest) -> Iterator[str]:
    """A private redis-server with a 4 MiB maxmemory and the eviction policy the test names
    (``noeviction``, Redis's default, unless parametrized), so the shared one's settings are
    left alone."""
    policy = getattr(request, "param", "noeviction")
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxmemory", "4mb", "--maxmemory-policy", policy],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


def test_a_publish_redis_refuses_for_memory_is_unavailable_and_history_stays_readable(
    small_redis: str,
) -> None:
    from dihya_realtime.broker.redis import RedisBroker

    broker = RedisBroker(small_redis, "budget", socket_timeout=2)
    try:
        first, _ = broker.publish("chat:bystander", "hello", history=KEEP)
        with pytest.raises(BrokerUnavailable) as refused:
            for i in range(200):
                broker.publish(f"chat:flood-{i}", "x" * 60_000, history=KEEP)
        assert refused.value.code == ErrorCode.UNAVAILABLE
        assert "memory" in refused.value.message
        # what was accepted is kept and still served
        result = broker.history("chat:bystander", history=KEEP,
                                since=StreamPosition(0, first.epoch))
        assert result.recovered and [p.id for p in result.publications] == [first.id]
    finally:
        broker.close()


def test_an_evicted_stream_gives_its_channel_its_whole_byte_cap_back(
    redis_url: str, redis_prefix: str
) -> None:
    """Under ``maxmemory-policy volatile-lru`` Redis may evict a channel's stream and keep its
    meta: the bytes the meta counted must not keep shrinking the channel's history."""
    import redis as redis_py

    from dihya_realtime.broker.redis import RedisBroker

    broker = RedisBroker(redis_url, redis_prefix, socket_timeout=2,
                         max_history_bytes_per_channel=20 * KIB)
    admin = redis_py.Redis.from_url(redis_url)
    try:
        for _ in range(15):
            broker.publish("chat:a", "x" * 1000, history=KEEP)
        before = broker.history("chat:a", history=KEEP)
        admin.delete(f"{redis_prefix}:{{chat:a}}:stream")  # what an eviction does

        pubs = [broker.publish("chat:a", "y" * 1000, history=KEEP)[0] for _ in range(15)]

        assert broker.history("chat:a", history=KEEP).publications == pubs
        # the evicted ones are not served: recovery reaching back is refused, not partial
        since = StreamPosition(before.position.offset - 1, before.position.epoch)
        assert broker.history("chat:a", history=KEEP, since=since).recovered is False
    finally:
        admin.close()
        broker.close()


@pytest.mark.parametrize("small_redis", ["volatile-lru"], indirect=True)
def test_with_volatile_lru_redis_evicts_history_only_and_recovery_stays_honest(
    small_redis: str,
) -> None:
    """The policy docs/limits.md recommends: publishes go on, presence (keys without a ttl)
    is never evicted, and evicted history makes recovery say recovered=false."""
    import redis as redis_py

    from dihya_realtime.broker.redis import RedisBroker

    broker = RedisBroker(small_redis, "budget", socket_timeout=2)
    admin = redis_py.Redis.from_url(small_redis)
    try:
        broker.presence_add("chat:bystander", "c1", {"user_id": "7", "name": "B"}, "node-1")
        first, _ = broker.publish("chat:bystander", "hello", history=KEEP)
        for i in range(200):  # 12 MB of publications into a 4 MB Redis: none refused
            broker.publish(f"chat:flood-{i}", "x" * 60_000, history=KEEP)

        assert admin.info("memory")["used_memory"] <= 4.5 * 1024 * 1024
        assert [m["user_id"] for m in broker.presence("chat:bystander")] == ["7"]
        result = broker.history("chat:bystander", history=KEEP,
                                since=StreamPosition(0, first.epoch))
        # evicted or not (Redis's LRU samples), never a partial or wrong answer
        assert result.recovered is False or [p.id for p in result.publications] == [first.id]
        newest = broker.history("chat:flood-199", history=KEEP).publications
        assert [p.data[:1] for p in newest] == ["x"]
    finally:
        admin.close()
        broker.close()


# -- end to end: the setting reaches the broker, and a client hears the truth ----------------


def test_a_subscriber_recovering_history_trimmed_for_the_budget_is_told_not_recovered(
    make_rt, connect,  # noqa: ANN001
) -> None:
    rt = make_rt(max_history_bytes=16 * KIB)
    assert rt.broker.max_history_bytes == 16 * KIB
    bob, mallory = connect(rt, "bob"), connect(rt, "mallory")
    first = bob.call("publish", {"channel": "chat:bystander", "data": "hello"})["data"]
    for i in range(40):  # ~40 KB over other channels, within every per-channel cap
        assert mallory.call("publish", {"channel": f"chat:fill-{i % 4}",
                                        "data": "x" * 1000})["ok"]

    reply = bob.call("subscribe", {"channel": "chat:bystander",
                                   "since": {"offset": 0, "epoch": first["epoch"]}})
    assert reply["ok"]
    assert reply["data"]["recovered"] is False
    assert reply["data"]["publications"] == []
    assert rt.broker.history_bytes <= 16 * KIB


def test_history_holds_what_the_caps_count_not_the_decoded_objects() -> None:
    """The caps count JSON bytes; decoded JSON weighs far more in Python objects (a 60 KB
    ``[{}, {}, …]`` is 20,000 dicts). History kept as objects held ~20× what the caps said."""
    import tracemalloc

    from dihya_realtime.broker.memory import MemoryBroker
    from dihya_realtime.kernel.settings import HistoryPolicy

    broker = MemoryBroker(max_history_bytes_per_channel=1024 * 1024)
    policy = HistoryPolicy(size=200, ttl=3600)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(40):
            broker.publish("chat:objects", [{} for _ in range(20_000)], history=policy)
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert broker.history_bytes <= 1024 * 1024
    assert retained < 2 * 1024 * 1024, retained  # objects: ~25 MB
    recovered = broker.history("chat:objects", history=policy).publications
    assert recovered and recovered[-1].data == [{}] * 20_000
