"""A Redis Cluster primary is killed (``kill -9``) under a steady stream of acked publications:
service resumes once its replica is promoted, publications made meanwhile fail with
``unavailable`` (never a silent loss), ``/readyz`` is 503 until the fan-out is subscribed
again on the promoted node, and a subscriber on the other process ends up with every acked
publication, in order, exactly once (from the server's catch-up, or by subscribing again with
its last position when told to recover).

Each test has a cluster of its own (``failover_cluster``, 1 s node timeout): killing a primary
of the shared one would disturb the other tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from dihya_realtime.broker import BrokerUnavailable
from dihya_realtime.broker.redis import RedisBroker
from dihya_realtime.kernel.settings import HistoryPolicy
from tests.integration.conftest import ServerProcess
from tests.integration.redis_cluster import RedisCluster, failover_cluster  # noqa: F401

CHANNEL = "live:failover"
KEEP = HistoryPolicy(size=100, ttl=60)
PACE = 0.02  # seconds between two publications


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


class Publisher(threading.Thread):
    """Publishes 0, 1, 2… over HTTP at a steady pace; records each outcome in order."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stopping = threading.Event()
        self.outcomes: list[tuple[int, int, Any]] = []  # (data, HTTP status, body)

    def run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            try:
                status, body = self.server.http("POST", "/api/v1/publish",
                                                {"channel": CHANNEL, "data": i},
                                                api_key=True, timeout=10)
            except OSError as exc:  # no answer at all: counted as a failure the test reports
                status, body = 0, repr(exc)
            self.outcomes.append((i, status, body))
            i += 1
            time.sleep(PACE)

    def acked(self) -> list[tuple[int, int, str]]:
        """(data, offset, epoch) of every publication acked, in ack order."""
        return [(data, body["data"]["offset"], body["data"]["epoch"])
                for data, status, body in self.outcomes
                if status == 200]

    def failures(self) -> list[tuple[int, int, Any]]:
        return [o for o in self.outcomes if o[1] != 200]


class ReadyProbe(threading.Thread):
    """Polls ``/readyz`` and keeps the statuses seen, in order."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stopping = threading.Event()
        self.seen: list[int] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.seen.append(self.server.http("GET", "/readyz", timeout=10)[0])
            except OSError:
                self.seen.append(0)
            time.sleep(0.05)


def _two_servers(cluster: RedisCluster, start_server, avoid: set[int]):
    """Two ``serve`` processes, each given the URL of another node outside ``avoid``."""
    prefix = f"dihya-failover-{uuid.uuid4().hex[:8]}"
    ports = [p for p in cluster.ports if p not in avoid][:2]
    servers = [start_server(start=False, REDIS_PREFIX=prefix,
                            REDIS_URL=f"redis://127.0.0.1:{port}/0") for port in ports]
    for server in servers:
        server.launch()
    return [server.wait_ready() for server in servers]


def _received(sub) -> list[tuple[int, int, str]]:
    return [(p["data"], p["offset"], p["epoch"]) for p in sub.events("publication")
            if p["channel"] == CHANNEL]


def test_service_resumes_after_a_primary_is_killed_and_no_acked_publication_is_lost(
        failover_cluster, start_server, sio_client, token) -> None:  # noqa: F811
    cluster: RedisCluster = failover_cluster
    primary = cluster.primary_of("{" + CHANNEL + "}")
    replica = cluster.replica_of(primary)
    a, b = _two_servers(cluster, start_server, avoid={primary, replica})
    sub = sio_client(b, token("bob"))
    reply = sub.call("subscribe", {"channel": CHANNEL})
    assert reply["ok"], reply
    publisher, probe = Publisher(a), ReadyProbe(b)
    publisher.start()
    wait_until(lambda: len(publisher.acked()) >= 25, 10, "25 publications acked")
    probe.start()

    cluster.kill(primary)
    killed_at = len(publisher.outcomes)
    wait_until(lambda: cluster.is_primary(replica), 30, "the replica promoted")
    # service resumes: 25 publications acked after the first failure
    wait_until(lambda: publisher.failures() and len(
        [o for o in publisher.outcomes[publisher.outcomes.index(publisher.failures()[0]):]
         if o[1] == 200]) >= 25, 30, "publishing again after the failover")
    publisher.stopping.set()
    publisher.join(15)
    wait_until(lambda: probe.seen and probe.seen[-1] == 200, 30, "/readyz 200 again")
    probe.stopping.set()
    probe.join(15)

    # every failure was a clean "unavailable", and only around the failover
    failures = publisher.failures()
    assert failures, "no publication failed: the failover was not exercised"
    assert all(status == 503 and "unavailable" in str(body) for _, status, body in failures), \
        failures
    assert failures[0][0] >= killed_at - 1
    # readiness: down while the fan-out was resubscribing, up once caught up
    assert 503 in probe.seen, probe.seen
    assert probe.seen[-1] == 200

    acked = publisher.acked()
    last = acked[-1][0]
    recover = [e for e in sub.events("unsubscribed") if e["channel"] == CHANNEL]
    if recover:  # told to recover: subscribe again from the last position received
        assert recover[0]["reason"] == "recover", recover
        _, offset, epoch = _received(sub)[-1]
        again = sub.call("subscribe", {"channel": CHANNEL,
                                       "since": {"offset": offset, "epoch": epoch}})
        assert again["ok"], again
        got = _received(sub) + [(p["data"], p["offset"], p["epoch"])
                                for p in again["data"]["publications"]]
    else:  # the server caught it up from history
        sub.wait_for("publication", lambda p: p["data"] == last, timeout=10)
        time.sleep(0.3)
        got = _received(sub)

    # every acked publication, in ack order, exactly once, at the position it was acked with
    assert [g for g in got if g[0] in {d for d, _, _ in acked}] == acked, (got, acked)
    datas = [d for d, _, _ in got]
    assert len(datas) == len(set(datas)), "a publication was delivered (or made) twice"
    offsets = [o for _, o, _ in got]
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), "a gap in offsets"


def _channel_on(cluster: RedisCluster, port: int) -> str:
    return next(f"live:room-{i}" for i in range(10_000)
                if cluster.primary_of(f"{{live:room-{i}}}") == port)


def test_publishing_and_presence_resume_when_the_killed_primary_was_the_clients_default_node(
        failover_cluster) -> None:  # noqa: F811
    """redis-py routes some commands through one "default node" of the cluster; a pipelined
    script used to ask it for the script's keys (COMMAND GETKEYS), so with that node dead
    every publish and presence call failed for good, failover or not."""
    cluster: RedisCluster = failover_cluster
    broker = RedisBroker(cluster.url, f"dihya-failover-{uuid.uuid4().hex[:8]}",
                         socket_timeout=2)
    try:
        default = int(broker._redis.get_default_node().port)
        channel = _channel_on(cluster, default)
        replica = cluster.replica_of(default)
        assert broker.publish(channel, "before", history=KEEP)[0].offset == 1

        cluster.kill(default)
        wait_until(lambda: cluster.is_primary(replica), 30, "the replica promoted")
        deadline = time.monotonic() + 15
        while True:
            try:
                pub, created = broker.publish(channel, "after", history=KEEP)
                break
            except BrokerUnavailable:
                assert time.monotonic() < deadline, "publishing never resumed"
                time.sleep(0.1)
        assert created and pub.offset == 2
        assert broker.presence_add(channel, "c1", {"user_id": "1"}, "node-a") is True
        assert [p.data for p in broker.history(channel, history=KEEP).publications] == [
            "before", "after"]
    finally:
        broker.close()


def test_a_publish_that_timed_out_is_not_sent_again(failover_cluster) -> None:  # noqa: F811
    """A timed-out script may have run, or may still run: sending it again could publish
    twice. The channel's primary is made to sleep longer than the socket timeout: the caller
    hears ``unavailable``, and the publication is made at most once (when the primary wakes,
    if the script had reached it)."""
    cluster: RedisCluster = failover_cluster
    broker = RedisBroker(cluster.url, f"dihya-failover-{uuid.uuid4().hex[:8]}",
                         socket_timeout=0.5)
    try:
        default = int(broker._redis.get_default_node().port)
        primary = next(p for p in cluster.ports if cluster.is_primary(p) and p != default)
        channel = _channel_on(cluster, primary)
        broker.publish(channel, "before", history=KEEP)
        sleeper = threading.Thread(target=lambda: cluster.node(primary).execute_command(
            "DEBUG", "SLEEP", 2))
        sleeper.start()
        time.sleep(0.2)
        try:
            broker.publish(channel, "late", history=KEEP)
        except BrokerUnavailable:
            pass
        else:
            raise AssertionError("acked by a primary that was asleep")
        sleeper.join()
        time.sleep(0.3)
        datas = [p.data for p in broker.history(channel, history=KEEP).publications]
        assert datas in (["before"], ["before", "late"]), datas
    finally:
        broker.close()
