"""The channels service tells the broker which channels this process needs: it watches a
channel before the first local subscriber's reply is built, and unwatches it only a linger
after the last local subscriber left (and not if one came back meanwhile)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dihya_realtime.kernel.rooms import USER_TOPIC_PREFIX


@pytest.fixture
def calls(rt) -> list[tuple[str, Any]]:
    """What the service asked of the broker, in order (the memory broker routes nothing);
    the users' topics, watched by the connection lifecycle, are left out."""
    made: list[tuple[str, Any]] = []
    broker = rt.broker
    position = broker.position

    def spy(kind: str) -> Any:
        return lambda channel: None if channel.startswith(USER_TOPIC_PREFIX) else made.append(
            (kind, channel))

    broker.watch = spy("watch")
    broker.unwatch = spy("unwatch")

    def spy_position(channel: str, history: Any) -> Any:
        made.append(("position", channel))
        return position(channel, history)

    broker.position = spy_position
    return made


def later(rt) -> float:
    return time.monotonic() + rt.settings.interest_linger + 1


def test_the_channel_is_watched_before_the_reply_reads_its_position(rt, connect, calls) -> None:
    alice = connect(rt, "alice")
    assert alice.call("subscribe", {"channel": "chat:a"})["ok"]

    assert calls[:2] == [("watch", "chat:a"), ("position", "chat:a")]


def test_unwatched_only_a_linger_after_the_last_subscriber_left(rt, connect, calls) -> None:
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    assert alice.call("subscribe", {"channel": "chat:a"})["ok"]
    assert bob.call("subscribe", {"channel": "chat:a"})["ok"]

    assert alice.call("unsubscribe", {"channel": "chat:a"})["ok"]
    rt.channels.interest.tick(later(rt))
    assert ("unwatch", "chat:a") not in calls  # bob is still here

    assert bob.call("unsubscribe", {"channel": "chat:a"})["ok"]
    rt.channels.interest.tick(time.monotonic())
    assert ("unwatch", "chat:a") not in calls  # lingering

    rt.channels.interest.tick(later(rt))
    assert calls[-1] == ("unwatch", "chat:a")


def test_a_subscriber_back_within_the_linger_keeps_the_channel(rt, connect, calls) -> None:
    alice = connect(rt, "alice")
    assert alice.call("subscribe", {"channel": "chat:a"})["ok"]
    assert alice.call("unsubscribe", {"channel": "chat:a"})["ok"]
    assert alice.call("subscribe", {"channel": "chat:a"})["ok"]

    rt.channels.interest.tick(later(rt))

    assert ("unwatch", "chat:a") not in calls


def test_a_disconnect_releases_the_channel_too(rt, connect, calls) -> None:
    alice = connect(rt, "alice")
    assert alice.call("subscribe", {"channel": "chat:a"})["ok"]
    alice.disconnect()

    rt.channels.interest.tick(later(rt))

    assert calls[-1] == ("unwatch", "chat:a")


def test_no_linger_unwatches_at_once(make_rt, connect) -> None:
    rt = make_rt(interest_linger=0)
    made: list[str] = []
    rt.broker.unwatch = made.append
    alice = connect(rt, "alice")
    assert alice.call("subscribe", {"channel": "chat:a"})["ok"]
    assert alice.call("unsubscribe", {"channel": "chat:a"})["ok"]

    assert made == ["chat:a"]
