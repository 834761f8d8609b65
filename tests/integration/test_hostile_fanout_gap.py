"""After the Redis fan-out is lost, ``/readyz`` stays 503 until the subscription is back and
caught up, and nothing acked meanwhile is silently missed by live subscribers: it is delivered
from history, in order, or the subscription is told to recover. Each test runs its own
``redis-server`` so that killing it disturbs nobody else."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from tests.conftest import free_port
from tests.integration.conftest import ServerProcess

CHANNEL = "live:gap"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
               interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class PrivateRedis:
    def __init__(self, workdir: Path, persistent: bool) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                    "--save", "", "--dir", str(workdir),
                    "--appendonly", "yes" if persistent else "no", "--appendfsync", "always"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        assert wait_until(self.pings, timeout=5)

    def pings(self) -> bool:
        try:
            return bool(self.admin().ping())
        except redis_lib.RedisError:
            return False

    def admin(self) -> redis_lib.Redis:
        return redis_lib.Redis(port=self.port, socket_timeout=2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)


@pytest.fixture
def private_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path, persistent=getattr(request, "param", True))
    redis.start()
    yield redis
    if redis.proc is not None and redis.proc.poll() is None:
        redis.proc.terminate()
        redis.proc.wait(5)


def _publish(server: ServerProcess, data: str) -> int:
    try:
        status, _ = server.http("POST", "/api/v1/publish", {"channel": CHANNEL, "data": data},
                                api_key=True, timeout=3)
    except OSError:
        return 0
    return status


def _ready(server: ServerProcess) -> int:
    return server.http("GET", "/readyz")[0]


def _delivered(sub) -> list[tuple[int, str]]:
    return [(p["offset"], p["data"]) for p in sub.events("publication")
            if p["channel"] == CHANNEL]


def _subscribed(start_server, private_redis, sio_client, token):
    server = start_server(REDIS_URL=private_redis.url)
    sub = sio_client(server, token("alice"))
    assert sub.call("subscribe", {"channel": CHANNEL})["ok"]
    assert _publish(server, "before") == 200
    sub.wait_for("publication", lambda p: p["data"] == "before")
    return server, sub


def test_readyz_waits_for_the_fanout_and_missed_publications_are_delivered(
        start_server, private_redis, sio_client, token) -> None:
    """The fan-out connection is cut and its SUBSCRIBE refused for a while (an ACL), while
    Redis itself answers: a publication is acked in that window."""
    server, sub = _subscribed(start_server, private_redis, sio_client, token)
    admin = private_redis.admin()
    admin.execute_command("ACL", "SETUSER", "default", "-subscribe", "-ssubscribe")
    admin.client_kill_filter(_type="pubsub")
    assert wait_until(lambda: _ready(server) == 503, timeout=5), "readyz ignored the fan-out"
    assert _publish(server, "gap") == 200  # in history, not fanned out to this process
    time.sleep(0.3)
    assert _ready(server) == 503
    admin.execute_command("ACL", "SETUSER", "default", "+subscribe", "+ssubscribe")
    assert wait_until(lambda: _ready(server) == 200, timeout=15)
    # readiness came after the catch-up: the missed publication is on its way already
    sub.wait_for("publication", lambda p: p["data"] == "gap", timeout=1)
    assert _publish(server, "after") == 200
    sub.wait_for("publication", lambda p: p["data"] == "after")
    time.sleep(0.2)
    delivered = _delivered(sub)
    assert [d for _, d in delivered] == ["before", "gap", "after"]  # in order, no duplicate
    assert [o for o, _ in delivered] == [1, 2, 3]


def test_a_publication_acked_just_after_a_redis_restart_reaches_live_subscribers(
        start_server, private_redis, sio_client, token) -> None:
    server, sub = _subscribed(start_server, private_redis, sio_client, token)
    private_redis.kill()
    assert wait_until(lambda: _ready(server) == 503, timeout=5)
    time.sleep(0.5)
    private_redis.start()  # its append-only file brings the channel back (same epoch)
    acked_ready = []
    assert wait_until(lambda: _publish(server, "gap") == 200, timeout=10, interval=0.02)
    acked_ready.append(_ready(server))
    assert wait_until(lambda: _ready(server) == 200, timeout=15)
    sub.wait_for("publication", lambda p: p["data"] == "gap", timeout=2)
    assert _publish(server, "after") == 200
    sub.wait_for("publication", lambda p: p["data"] == "after")
    time.sleep(0.2)
    assert [d for _, d in _delivered(sub)] == ["before", "gap", "after"], acked_ready


@pytest.mark.parametrize("private_redis", [False], indirect=True)
def test_subscribers_are_told_to_recover_when_history_cannot_cover_the_gap(
        start_server, private_redis, sio_client, token) -> None:
    """Redis restarted without persistence: a new epoch, the missed offsets are unknowable."""
    server, sub = _subscribed(start_server, private_redis, sio_client, token)
    private_redis.kill()
    assert wait_until(lambda: _ready(server) == 503, timeout=5)
    private_redis.start()
    assert wait_until(lambda: _publish(server, "gap") == 200, timeout=10, interval=0.02)
    assert wait_until(lambda: _ready(server) == 200, timeout=15)
    told = sub.wait_for("unsubscribed", lambda e: e["channel"] == CHANNEL, timeout=2)
    assert told["reason"] == "recover"
    # the client recovers the way the event says: subscribe again with its last position
    again = sub.call("subscribe", {"channel": CHANNEL,
                                   "since": {"offset": 1, "epoch": "stale"}})
    assert again["ok"] and again["data"]["recovered"] is False


def _say(client, room: str, text: str) -> dict:
    return client.call("chat:send", {"room_id": room, "text": text,
                                     "client_msg_id": uuid.uuid4().hex})


def test_connections_are_told_to_resync_and_what_they_missed_is_there_to_read(
        start_server, private_redis, sio_client, token) -> None:
    """A chat message and a notification sent while the fan-out is down never arrive live
    (they have no history on the broker): once the links are back, before ready, every local
    connection gets one ``resync``, and reading as it says finds both."""
    server = start_server(REDIS_URL=private_redis.url)
    alice, bob = sio_client(server, token("alice")), sio_client(server, token("bob"))
    room = alice.call("chat:create_room", {"name": "gap", "visibility": "public"})["data"]["id"]
    assert bob.call("chat:join", {"room_id": room})["ok"]
    first = _say(alice, room, "before")["data"]
    bob.wait_for("chat:message", lambda m: m["id"] == first["id"])
    bob_counts = bob.call("notifications:counts")["data"]
    admin = private_redis.admin()
    admin.execute_command("ACL", "SETUSER", "default", "-subscribe", "-ssubscribe")
    admin.client_kill_filter(_type="pubsub")
    assert wait_until(lambda: _ready(server) == 503, timeout=5)
    missed = _say(alice, room, "in the gap")
    assert missed["ok"], missed
    status, body = server.http("POST", "/api/v1/notifications",
                               {"user_id": "bob", "category": "builds", "title": "missed"},
                               api_key=True)
    assert status == 201, body
    time.sleep(0.3)
    assert bob.events("resync") == []
    admin.execute_command("ACL", "SETUSER", "default", "+subscribe", "+ssubscribe")
    assert wait_until(lambda: _ready(server) == 200, timeout=15)
    told = bob.wait_for("resync", timeout=2)  # sent before ready: on its way already
    assert told == {"reason": "fanout_restored"}
    alice.wait_for("resync", timeout=2)
    # the gap is real: the message never arrived live ...
    assert [m["text"] for m in bob.events("chat:message")] == ["before"]
    # ... and reading as resync says finds it, and the notification
    page = bob.call("chat:history", {"room_id": room, "after_seq": first["seq"]})["data"]
    assert [m["text"] for m in page["messages"]] == ["in the gap"]
    assert bob.call("notifications:counts")["data"]["unread"] == bob_counts["unread"] + 1
    # after it, live delivery is back, and resync came once per break
    after = _say(alice, room, "after")["data"]
    bob.wait_for("chat:message", lambda m: m["id"] == after["id"])
    time.sleep(0.2)
    assert len(bob.events("resync")) == 1 and len(alice.events("resync")) == 1


def test_a_member_connecting_while_the_links_are_down_keeps_its_rooms(
        start_server, private_redis, sio_client, token) -> None:
    """Connecting during the outage neither waits for the broker per room nor loses the
    rooms: once the links are back the connection is told to resync and gets live events of
    every room it is a member of."""
    server = start_server(REDIS_URL=private_redis.url)
    alice = sio_client(server, token("alice"))
    rooms = [alice.call("chat:create_room", {"name": f"r{i}", "visibility": "public"})
             ["data"]["id"] for i in range(4)]
    first_bob = sio_client(server, token("bob"))
    for room in rooms:
        assert first_bob.call("chat:join", {"room_id": room})["ok"]
    first_bob.disconnect()
    admin = private_redis.admin()
    admin.execute_command("ACL", "SETUSER", "default", "-subscribe", "-ssubscribe")
    admin.client_kill_filter(_type="pubsub")
    assert wait_until(lambda: _ready(server) == 503, timeout=5)
    bob = sio_client(server, token("bob"))  # the connect does not wait 5 s per room
    assert bob.call("whoami")["ok"]
    admin.execute_command("ACL", "SETUSER", "default", "+subscribe", "+ssubscribe")
    assert wait_until(lambda: _ready(server) == 200, timeout=15)
    bob.wait_for("resync", timeout=2)
    for room in rooms:
        sent = _say(alice, room, f"to {room}")["data"]
        bob.wait_for("chat:message", lambda m, i=sent["id"]: m["id"] == i, timeout=3)
