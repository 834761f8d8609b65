"""dihya_realtime.client.Client against real ``dihya-realtime serve`` processes: recovery
across a server restart on Redis, token refresh on ``auth:expiring``, error envelopes as
RealtimeError."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dihya_realtime.client import Client, RealtimeError, RecoveryFailed


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def publish(server: Any, channel: str, n: int) -> dict[str, Any]:
    status, reply = server.http("POST", "/api/v1/publish", {"channel": channel, "data": {"n": n}},
                                api_key=True)
    assert status == 200, reply
    return reply["data"]


@pytest.mark.redis
def test_publications_made_while_the_server_was_down_arrive_after_reconnect_in_order_once(
        start_server, token, redis_url, redis_prefix, clients):
    redis = {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix}
    server = start_server(**redis)
    client = Client(server.url, get_token=lambda: token("alice"), reconnect_delay=0.1,
                    reconnect_delay_max=0.3)
    clients.append(client)
    got: list[dict[str, Any]] = []
    failures: list[RecoveryFailed] = []
    reconnects: list[dict] = []
    client.on("connect", reconnects.append)
    client.connect()
    sub = client.subscribe("live:feed", got.append, on_recovery_failed=failures.append)
    sub.ready.result(timeout=5)
    for n in range(1, 4):
        publish(server, "live:feed", n)
    wait_until(lambda: len(got) == 3, what="3 live publications")

    server.stop()
    wait_until(lambda: not client.connected, what="the client sees the server go")
    publisher = start_server(**redis)  # another process on the same Redis: the client is away
    for n in range(4, 9):
        publish(publisher, "live:feed", n)
    publisher.stop()
    server.start()  # the same port: the client's reconnect loop finds it
    wait_until(lambda: len(got) >= 8, what="the 5 missed publications")
    for n in range(9, 11):
        publish(server, "live:feed", n)
    wait_until(lambda: len(got) >= 10, what="live publications after the reconnect")
    time.sleep(0.3)  # nothing more may come

    assert [p["data"]["n"] for p in got] == list(range(1, 11))
    assert [p["offset"] for p in got] == list(range(1, 11))
    assert len({p["id"] for p in got}) == 10
    assert failures == []
    assert {"reconnect": True} in reconnects
    assert sub.position is not None and sub.position.offset == 10


def test_a_restart_without_redis_calls_on_recovery_failed(start_server, token, clients):
    server = start_server()  # memory broker: a restart is a new epoch
    client = Client(server.url, token=token("alice"), reconnect_delay=0.1,
                    reconnect_delay_max=0.3)
    clients.append(client)
    failed = threading.Event()
    failures: list[RecoveryFailed] = []

    def on_failed(info: RecoveryFailed) -> None:
        failures.append(info)
        failed.set()

    got: list[dict] = []
    client.connect()
    sub = client.subscribe("live:feed", got.append, on_recovery_failed=on_failed)
    sub.ready.result(timeout=5)
    first = publish(server, "live:feed", 1)
    wait_until(lambda: len(got) == 1)
    server.restart()

    assert failed.wait(10), "on_recovery_failed was not called"
    info = failures[0]
    assert info.channel == "live:feed" and info.reason == "not_recovered"
    assert info.since is not None and info.since.epoch == first["epoch"]
    assert info.position is not None and info.position.epoch != first["epoch"]
    second = publish(server, "live:feed", 2)
    wait_until(lambda: len(got) == 2, what="live after the failed recovery")
    assert got[1]["epoch"] == second["epoch"]


def test_auth_expiring_asks_get_token_and_refreshes_without_reconnecting(
        start_server, token, clients):
    server = start_server(EXPIRY_WARNING_SECONDS="2", EXPIRY_GRACE_SECONDS="1")
    asked: list[float] = []

    def get_token() -> str:
        asked.append(time.time())
        return token("alice", ttl=3 if len(asked) == 1 else 3600)

    client = Client(server.url, get_token=get_token)
    clients.append(client)
    disconnects: list[Any] = []
    client.on("disconnect", disconnects.append)
    client.connect()
    sid = client.sid
    wait_until(lambda: len(asked) == 2, timeout=5, what="get_token on auth:expiring")
    wait_until(lambda: client.call("whoami")["expires_at"] > time.time() + 3000, timeout=5,
               what="the refreshed expiry")
    time.sleep(2.5)  # past the first token's exp + grace + an expiry tick

    assert client.connected and client.sid == sid
    assert disconnects == []
    assert len(asked) == 2
    assert client.call("whoami")["user_id"] == "alice"


def test_refusals_raise_realtime_error_with_the_server_code(start_server, token, clients):
    server = start_server()
    client = Client(server.url, token=token("alice"))
    clients.append(client)
    client.connect()

    with pytest.raises(RealtimeError) as not_found:
        client.call("subscribe", {"channel": "nowhere:x"})
    with pytest.raises(RealtimeError) as invalid:
        client.call("subscribe", {"channel": 42})
    with pytest.raises(RealtimeError) as timeout:
        client.call("whoami", timeout=0.000001)
    refused = Client(server.url, token=token("alice", secret="another-secret-" + "y" * 32))
    clients.append(refused)
    with pytest.raises(RealtimeError) as unauthenticated:
        refused.connect()
    sub = client.subscribe("nowhere:y", lambda pub: None)

    assert not_found.value.code == "not_found"
    assert invalid.value.code == "invalid_payload" and invalid.value.details
    assert timeout.value.code == "timeout"
    assert unauthenticated.value.code == "unauthenticated"
    with pytest.raises(RealtimeError) as sub_refused:
        sub.ready.result(timeout=5)
    assert sub_refused.value.code == "not_found"
    assert client.subscription("nowhere:y") is None
    client.close()
    with pytest.raises(RealtimeError) as gone:
        client.call("whoami")
    assert gone.value.code == "disconnected"


def test_rate_limited_carries_retry_after(start_server, token, clients):
    server = start_server()
    client = Client(server.url, token=token("alice"))
    clients.append(client)
    client.connect()
    fresh = token("alice")
    with pytest.raises(RealtimeError) as limited:
        for _ in range(10):  # auth:refresh: 1/s, burst 5
            client.call("auth:refresh", {"token": fresh})
    assert limited.value.code == "rate_limited"
    assert limited.value.retry_after is not None and limited.value.retry_after > 0
