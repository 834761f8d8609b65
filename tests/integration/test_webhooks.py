"""Webhooks from real ``serve`` processes to a real local receiver.

Two processes share one Redis and one PostgreSQL database: channel.occupied / vacated come
once per transition whichever process holds the subscribers; a receiver that is down while
events happen (and while one of our processes is killed and started again) gets every event
once it is up, none twice by id.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from dihya_realtime.webhooks import verify_signature
from tests.integration.conftest import ServerProcess, reset_postgres
from tests.integration.test_features_multiprocess import ok
from tests.unit.features.webhooks.receiver import Receiver

SECRET = "whsec-integration-0123456789"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.down()


@pytest.fixture
def pair(start_server: Callable[..., ServerProcess], redis_url: str, redis_prefix: str,
         postgres_url: str, receiver: Receiver) -> tuple[ServerProcess, ServerProcess]:
    """Two processes on one Redis and one PostgreSQL, sending webhooks to ``receiver``."""
    reset_postgres(postgres_url)
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix,
              "DATABASE_URL": postgres_url,
              "WEBHOOKS": {"host": {"url": receiver.url, "secret": SECRET}},
              "WEBHOOK_POLL_INTERVAL": "0.1", "WEBHOOK_BACKOFF_BASE": "0.1",
              "WEBHOOK_BACKOFF_MAX": "0.5", "WEBHOOK_TIMEOUT": "1"}
    first = start_server(start=False, **shared)  # migrates the shared database once
    second = start_server(start=False, migrate=False, **shared)
    first.launch()
    second.launch()
    return first.wait_ready(), second.wait_ready()


def of_channel(events: list[dict], channel: str, *types: str) -> list[str]:
    return [e["type"] for e in events if e["data"].get("channel") == channel
            and (not types or e["type"] in types)]


def test_occupied_and_vacated_once_per_transition_with_subscribers_on_two_processes(
        pair, receiver: Receiver, sio_client, token) -> None:
    a, b = pair
    channel = f"chat:w-{uuid.uuid4().hex[:8]}"
    on_a = [sio_client(a, token(f"a{i}")) for i in range(3)]
    on_b = [sio_client(b, token(f"b{i}")) for i in range(3)]
    everyone = on_a + on_b
    threads = [threading.Thread(target=ok, args=(c, "subscribe", {"channel": channel}))
               for c in everyone]
    for t in threads:  # concurrently: both processes race for the first subscriber
        t.start()
    for t in threads:
        t.join()
    receiver.wait(lambda evs: len(of_channel(evs, channel, "presence.joined")) == 6)
    for client in everyone[:-1]:
        ok(client, "unsubscribe", {"channel": channel})
    receiver.wait(lambda evs: len(of_channel(evs, channel, "presence.left")) == 5)
    assert of_channel(receiver.events(), channel, "channel.occupied", "channel.vacated") == [
        "channel.occupied"]
    everyone[-1].disconnect()  # the last one, on b, goes by disconnecting
    receiver.wait(lambda evs: "channel.vacated" in of_channel(evs, channel))
    ok(on_a[0], "subscribe", {"channel": channel})
    receiver.wait(lambda evs: of_channel(evs, channel, "channel.occupied").count(
        "channel.occupied") == 2)
    time.sleep(0.5)  # nothing more arrives late
    assert of_channel(receiver.events(), channel, "channel.occupied", "channel.vacated") == [
        "channel.occupied", "channel.vacated", "channel.occupied"]
    for item in receiver.received:
        assert verify_signature(SECRET, item.headers["X-Dihya-Signature"], item.body)


def test_chat_events_come_once_each_from_either_process(pair, receiver: Receiver, sio_client,
                                                        token) -> None:
    a, b = pair
    alice, bob = sio_client(a, token("alice")), sio_client(b, token("bob"))
    room = ok(alice, "chat:create_room", {"name": "hooks", "visibility": "public"})["id"]
    ok(bob, "chat:join", {"room_id": room})
    sent = ok(bob, "chat:send", {"room_id": room, "text": "hello",
                                 "client_msg_id": str(uuid.uuid4())})
    ok(bob, "chat:edit", {"message_id": sent["id"], "text": "hello again"})
    ok(alice, "chat:delete", {"message_id": sent["id"]})  # the owner deletes it, on a
    receiver.wait(lambda evs: any(e["type"] == "chat.message_deleted" for e in evs))
    time.sleep(0.5)
    mine = [e for e in receiver.events() if e["type"].startswith("chat.")
            and e["data"].get("id") == sent["id"]]
    assert [e["type"] for e in mine] == ["chat.message_sent", "chat.message_edited",
                                         "chat.message_deleted"]
    assert mine[0]["data"]["text"] == "hello" and mine[1]["data"]["text"] == "hello again"
    assert mine[2]["data"]["deleted_by"] == "alice"


def test_a_receiver_down_while_we_restart_still_gets_every_event_once(
        pair, receiver: Receiver, sio_client, token) -> None:
    a, b = pair
    receiver.down()
    channels = [f"chat:d-{uuid.uuid4().hex[:8]}" for _ in range(4)]
    for i, channel in enumerate(channels):
        client = sio_client(a if i % 2 else b, token(f"user{i}"))
        ok(client, "subscribe", {"channel": channel})
        ok(client, "unsubscribe", {"channel": channel})
    time.sleep(0.5)  # attempts fail meanwhile
    assert any(line["type"] == "webhook_failing" for line in a.audit_lines() + b.audit_lines())
    a.kill()  # a crash of ours, and the other one gone too, while deliveries are owed
    b.stop()
    a.start()  # a alone sends what both queued
    receiver.up()
    expected = {(t, ch) for ch in channels
                for t in ("channel.occupied", "presence.joined", "presence.left",
                          "channel.vacated")}
    receiver.wait(lambda evs: {(e["type"], e["data"].get("channel")) for e in evs} >= expected,
                  timeout=20)
    time.sleep(1.0)  # a duplicate would arrive by now
    events = [e for e in receiver.events() if e["data"].get("channel") in channels]
    assert len(events) == len(expected)
    ids = Counter(e["id"] for e in events)
    assert max(ids.values()) == 1
    status, metrics = a.http("GET", "/metrics", api_key=True)
    assert status == 200 and 'endpoint="host",outcome="sent"' in metrics


def test_a_killed_process_vacates_the_channels_only_it_held_once(
        start_server: Callable[..., ServerProcess], redis_url: str, redis_prefix: str,
        postgres_url: str, receiver: Receiver, sio_client, token) -> None:
    """``kill -9`` of the process holding a channel's only subscribers: the process that
    reaps it (presence maintenance, exactly one) sends that channel's ``channel.vacated``; a
    channel still held on the live process stays occupied until its own last one leaves."""
    reset_postgres(postgres_url)
    shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix,
              "DATABASE_URL": postgres_url, "PRESENCE_TTL": "3",
              "WEBHOOKS": {"host": {"url": receiver.url, "secret": SECRET,
                                    "events": ["channel.occupied", "channel.vacated"]}},
              "WEBHOOK_POLL_INTERVAL": "0.1", "WEBHOOK_BACKOFF_BASE": "0.1"}
    a = start_server(start=False, **shared)
    b = start_server(start=False, migrate=False, **shared)
    a.launch()
    b.launch()
    a.wait_ready()
    b.wait_ready()
    only_b, shared_channel = (f"chat:w-{uuid.uuid4().hex[:8]}" for _ in range(2))
    on_b = [sio_client(b, token(f"b{i}")) for i in range(2)]
    on_a = sio_client(a, token("a0"))
    for client in on_b:
        ok(client, "subscribe", {"channel": only_b})
        ok(client, "subscribe", {"channel": shared_channel})
    ok(on_a, "subscribe", {"channel": shared_channel})
    receiver.wait(lambda evs: len(of_channel(evs, only_b, "channel.occupied")) == 1
                  and len(of_channel(evs, shared_channel, "channel.occupied")) == 1)
    b.kill()
    receiver.wait(lambda evs: "channel.vacated" in of_channel(evs, only_b), timeout=20)
    time.sleep(1.0)
    assert of_channel(receiver.events(), only_b) == ["channel.occupied", "channel.vacated"]
    assert of_channel(receiver.events(), shared_channel) == ["channel.occupied"]
    ok(on_a, "unsubscribe", {"channel": shared_channel})
    receiver.wait(lambda evs: "channel.vacated" in of_channel(evs, shared_channel))
    time.sleep(0.3)
    assert of_channel(receiver.events(), shared_channel) == [
        "channel.occupied", "channel.vacated"]
