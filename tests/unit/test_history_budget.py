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
from dihya_realtime.errors import ErrorCode
from dihya_realtime.settings import HistoryPolicy, Settings

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
def small_redis() -> Iterator[str]:
    """A private redis-server with a 4 MiB maxmemory and no eviction (Redis's default
    policy), so the shared one's settings are left alone."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxmemory", "4mb", "--maxmemory-policy", "noeviction"],
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
