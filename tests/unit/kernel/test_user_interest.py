"""The connection lifecycle tells the broker which users' topics this process needs: a user's
topic is watched when their first connection is accepted, before the CONNECT is acknowledged,
and unwatched only a linger after their last connection closed (and not if one came back)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dihya_realtime.kernel.rooms import USER_TOPIC_PREFIX, user_topic


@pytest.fixture
def calls(rt) -> list[tuple[str, Any]]:
    """What was asked of the broker for users' topics, and the CONNECT acks sent, in order."""
    made: list[tuple[str, Any]] = []
    rt.broker.watch = lambda topic: made.append(("watch", topic)) if topic.startswith(
        USER_TOPIC_PREFIX) else None
    rt.broker.unwatch = lambda topic: made.append(("unwatch", topic)) if topic.startswith(
        USER_TOPIC_PREFIX) else None
    manager = rt.socketio.server.manager
    connected = manager.connect

    def spy_connect(sid: str, namespace: str) -> Any:
        # python-socketio calls it right after sending the CONNECT acknowledgement
        made.append(("connect ack", None))
        return connected(sid, namespace)

    manager.connect = spy_connect
    return made


def later(rt) -> float:
    return time.monotonic() + rt.settings.interest_linger + 1


def test_the_users_topic_is_watched_before_the_connect_is_acknowledged(rt, connect,
                                                                       calls) -> None:
    connect(rt, "alice")

    assert calls == [("watch", user_topic("alice")), ("connect ack", None)]


def test_unwatched_only_a_linger_after_the_users_last_connection(rt, connect, calls) -> None:
    first, second = connect(rt, "alice"), connect(rt, "alice")
    first.disconnect()
    rt.lifecycle.users.tick(later(rt))
    assert ("unwatch", user_topic("alice")) not in calls  # the second tab is still here

    second.disconnect()
    rt.lifecycle.users.tick(time.monotonic())
    assert ("unwatch", user_topic("alice")) not in calls  # lingering

    rt.lifecycle.users.tick(later(rt))
    assert calls[-1] == ("unwatch", user_topic("alice"))


def test_a_user_back_within_the_linger_keeps_the_topic(rt, connect, calls) -> None:
    connect(rt, "alice").disconnect()
    connect(rt, "alice")

    rt.lifecycle.users.tick(later(rt))

    assert ("unwatch", user_topic("alice")) not in calls


def test_a_refused_connection_holds_no_interest(rt, connect, calls) -> None:
    bad = connect(rt, token="not-a-token")

    assert bad.connect_error is not None
    assert calls == []


def test_no_linger_unwatches_at_once(make_rt, connect) -> None:
    rt = make_rt(interest_linger=0)
    made: list[str] = []
    rt.broker.unwatch = lambda topic: made.append(topic) if topic.startswith(
        USER_TOPIC_PREFIX) else None  # chat's rooms are relayed topics of their own
    connect(rt, "alice").disconnect()

    assert made == [user_topic("alice")]


def test_the_sweeper_unwatches_by_itself(make_rt, connect) -> None:
    rt = make_rt(interest_linger=0.2)
    made: list[str] = []
    rt.broker.unwatch = lambda topic: made.append(topic) if topic.startswith(
        USER_TOPIC_PREFIX) else None
    connect(rt, "alice").disconnect()
    assert made == []

    deadline = time.monotonic() + 5
    while not made and time.monotonic() < deadline:
        time.sleep(0.05)
    assert made == [user_topic("alice")]


def test_a_host_namespace_connection_holds_the_users_topic_too(rt, make_token, calls) -> None:
    """``disconnect_user`` ends the host app's namespace connections: they must receive it."""
    from tests.unit.conftest import Client

    rt.socketio.on("connect", namespace="/admin")(lambda auth=None: None)  # the host's
    admin = Client(rt.app, rt.socketio, namespace="/admin",
                   auth={"token": make_token("alice")})
    assert admin.is_connected("/admin")
    assert calls[0] == ("watch", user_topic("alice"))

    admin.disconnect(namespace="/admin")
    rt.lifecycle.users.tick(later(rt))
    assert calls[-1] == ("unwatch", user_topic("alice"))
