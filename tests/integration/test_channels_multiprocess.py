"""Channels across two real server processes on one Redis (and one PostgreSQL).

Each scenario is the issue's: delivery across processes, one presence view, one order under
concurrent publishers, loss-free recovery after a process is killed, and a Redis restart.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from tests.conftest import free_port
from tests.integration.conftest import TEST_API_KEY

CHANNEL = "chat:multi"


def offsets(client, channel=CHANNEL):
    return [p["offset"] for p in client.events("publication") if p["channel"] == channel]


def wait_until(predicate, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def api_publish(server, channel, data):
    return server.http("POST", "/api/v1/publish", {"channel": channel, "data": data},
                       headers={"X-API-Key": TEST_API_KEY})


def test_publication_on_one_process_reaches_subscribers_on_the_other(two_servers, sio_client,
                                                                     token):
    a, b = two_servers
    on_a = sio_client(a, token("alice"))
    on_b = sio_client(b, token("bob"))
    assert on_a.call("subscribe", {"channel": CHANNEL})["ok"]
    assert on_b.call("subscribe", {"channel": "live:deploys"})["ok"]
    reply = on_b.call("publish", {"channel": CHANNEL, "data": {"text": "from b"}})
    assert reply["ok"], reply
    got = on_a.wait_for("publication")
    assert got["data"] == {"text": "from b"} and got["from"]["user_id"] == "bob"
    status, body = api_publish(a, "live:deploys", {"status": "deployed"})
    assert status == 200, body
    assert on_b.wait_for("publication", lambda p: p["channel"] == "live:deploys")["data"] == {
        "status": "deployed"}


def test_presence_is_the_same_seen_from_both_processes(two_servers, sio_client, token):
    a, b = two_servers
    alice_a = sio_client(a, token("alice"))
    alice_b = sio_client(b, token("alice"))
    bob_b = sio_client(b, token("bob"))
    for client in (alice_a, alice_b, bob_b):
        assert client.call("subscribe", {"channel": CHANNEL})["ok"]
    view_a = alice_a.call("presence", {"channel": CHANNEL})["data"]["members"]
    view_b = bob_b.call("presence", {"channel": CHANNEL})["data"]["members"]
    assert view_a == view_b
    assert {m["user_id"]: m["connections"] for m in view_a} == {"alice": 2, "bob": 1}
    status, body = a.http("GET", f"/api/v1/channels/{CHANNEL}/presence",
                          headers={"X-API-Key": TEST_API_KEY})
    assert status == 200 and len(body["data"]["members"]) == 2


def test_concurrent_publishers_on_both_processes_give_one_order_without_gaps(
        two_servers, sio_client, token):
    a, b = two_servers
    watchers = [sio_client(a, token("w1")), sio_client(b, token("w2"))]
    for w in watchers:
        assert w.call("subscribe", {"channel": CHANNEL})["ok"]
    publishers = [sio_client(a, token("p1")), sio_client(b, token("p2"))]
    per_publisher = 60
    errors: list = []

    def run(client, tag):
        for i in range(per_publisher):
            reply = client.call("publish", {"channel": CHANNEL, "data": {"p": tag, "i": i}})
            if not reply["ok"]:
                errors.append(reply)

    threads = [threading.Thread(target=run, args=(p, n)) for n, p in enumerate(publishers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    total = 2 * per_publisher
    for w in watchers:
        assert wait_until(lambda w=w: len(offsets(w)) >= total), len(offsets(w))
    seen = [[(p["offset"], p["id"]) for p in w.events("publication")] for w in watchers]
    assert [o for o, _ in seen[0]] == list(range(1, total + 1))
    assert seen[0] == seen[1]  # the same publications, in the same order, on both processes


@pytest.fixture
def doomed_pair(start_server, redis_url, redis_prefix, sio_client, token):
    """Process ``a`` (to be killed), process ``b``, and a watcher on ``b`` in the channel.

    Both on one Redis with a 3 s presence TTL, so a dead process's entries go quickly.
    """
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix, "PRESENCE_TTL": "3"}
    a = start_server(**shared)
    b = start_server(**shared)
    watcher = sio_client(b, token("watcher"))
    assert watcher.call("subscribe", {"channel": CHANNEL})["ok"]
    return a, b, watcher


def test_killed_process_clients_recover_everything_on_the_other(doomed_pair, sio_client, token):
    a, b, watcher = doomed_pair
    victim = sio_client(a, token("alice"))
    first = victim.call("subscribe", {"channel": CHANNEL})["data"]
    for i in range(5):
        api_publish(b, CHANNEL, {"i": i})
    assert wait_until(lambda: len(offsets(victim)) == 5)
    last = offsets(victim)[-1]
    a.kill()  # kill -9: no goodbye, no presence cleanup
    for i in range(5, 12):
        status, _ = api_publish(b, CHANNEL, {"i": i})
        assert status == 200
    again = sio_client(b, token("alice"))
    reply = again.call("subscribe", {"channel": CHANNEL,
                                     "since": {"offset": last, "epoch": first["epoch"]}})["data"]
    assert reply["recovered"] is True
    recovered = [p["offset"] for p in reply["publications"]]
    assert recovered == list(range(last + 1, 13))
    assert [p["data"]["i"] for p in reply["publications"]] == list(range(5, 12))
    api_publish(b, CHANNEL, {"i": 12})
    assert again.wait_for("publication")["offset"] == 13  # live continues with no repeat
    # alice's second connection (on b) keeps her present; the dead one's entry is reaped
    started = time.monotonic()
    assert wait_until(lambda: {m["user_id"]: m["connections"] for m in watcher.call(
        "presence", {"channel": CHANNEL})["data"]["members"]}.get("alice") == 1, timeout=15)
    assert time.monotonic() - started < 15


def test_presence_leave_of_a_killed_process_arrives_within_the_bound(doomed_pair, sio_client,
                                                                     token):
    a, _, watcher = doomed_pair
    doomed = sio_client(a, token("carol"))
    assert doomed.call("subscribe", {"channel": CHANNEL})["ok"]
    watcher.wait_for("presence:join", lambda e: e["user"]["user_id"] == "carol")
    killed_at = time.monotonic()
    a.kill()
    leave = watcher.wait_for("presence:leave", lambda e: e["user"]["user_id"] == "carol",
                             timeout=15)
    assert leave["channel"] == CHANNEL
    assert time.monotonic() - killed_at <= 3 * 2 + 2  # ttl, one maintenance interval, slack


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[dict]:
    """A Redis of this test's own, so restarting it disturbs nobody else."""
    port = free_port()
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
           "--appendonly", "no", "--dir", str(tmp_path)]
    state = {"port": port, "url": f"redis://127.0.0.1:{port}/0"}

    def start():
        state["proc"] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
        client = redis_lib.Redis(port=port)
        assert wait_until(lambda: _pings(client), timeout=5)

    def stop():
        state["proc"].terminate()
        state["proc"].wait(5)

    state["start"], state["stop"] = start, stop
    start()
    yield state
    stop()


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


def test_redis_restart_is_survived_and_outage_is_reported(start_server, private_redis,
                                                          sio_client, token):
    shared = {"REDIS_URL": private_redis["url"]}
    a = start_server(**shared)
    b = start_server(**shared)
    sub = sio_client(a, token("alice"))
    pub = sio_client(b, token("bob"))
    assert sub.call("subscribe", {"channel": CHANNEL})["ok"]
    assert pub.call("publish", {"channel": CHANNEL, "data": "before"})["ok"]
    assert sub.wait_for("publication")["data"] == "before"

    private_redis["stop"]()
    status, body = a.http("GET", "/readyz")
    assert status == 503 and "broker" in body["down"]
    during = pub.call("publish", {"channel": CHANNEL, "data": "during"}, timeout=15)
    assert during["ok"] is False and during["error"]["code"] == "unavailable"
    status, _ = api_publish(b, CHANNEL, "during-http")
    assert status == 503

    private_redis["start"]()
    assert wait_until(lambda: a.http("GET", "/readyz")[0] == 200, timeout=20)
    assert wait_until(lambda: b.http("GET", "/readyz")[0] == 200, timeout=20)
    # Redis lost everything (no persistence): a new epoch, so resubscribe and go on
    def delivered() -> bool:
        sub.call("subscribe", {"channel": CHANNEL})
        pub.call("publish", {"channel": CHANNEL, "data": "after"})
        return any(p["data"] == "after" for p in sub.events("publication"))

    assert wait_until(delivered, timeout=20, interval=0.5)
    assert a.running and b.running
