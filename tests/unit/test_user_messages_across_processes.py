"""Messages addressed to a user cross processes on the user's topic, and only to the processes
where the user has a connection.

Two Realtime objects on one database and one Redis broker stand in for two processes (their
Socket.IO servers have no message queue: what crosses, crosses on the broker). What a process
receives is counted where it arrives: its broker's pub/sub listener.
"""

from __future__ import annotations

import time

from dihya_realtime.kernel.rooms import user_topic
from tests.unit.conftest import Inbox, wait_until


def test_a_process_without_the_users_connection_receives_none_of_their_messages(
        process, connect) -> None:
    a, b = process("a"), process("b")
    connect(a, "bob")  # a has connections, none of alice's
    alice = Inbox(connect(b, "alice"))
    received_a, received_b = a.broker.fanout_received, b.broker.fanout_received

    for i in range(10):
        a.emit_to_user("alice", "ping", {"i": i})
    a.disconnect_user("nobody-here")
    wait_until(lambda: len(alice.events("ping")) == 10)
    time.sleep(0.2)

    assert [p["i"] for p in alice.events("ping")] == list(range(10))
    assert b.broker.fanout_received - received_b == 10
    assert a.broker.fanout_received - received_a == 0


def test_a_notification_created_on_one_process_reaches_the_user_on_the_other(
        process, connect) -> None:
    a, b = process("a"), process("b")
    alice = Inbox(connect(b, "alice"))
    alice.wait_for("notifications:counts")  # the connect-time counts

    [n] = a.notify(user_id="alice", title="Deployed", data={"password": "p", "x": 1})

    [new] = alice.wait_for("notifications:new")
    assert new["id"] == n["id"] and new["data"]["x"] == 1
    assert new["data"]["password"] != "p"  # redacted before it left process a
    wait_until(lambda: {"unseen": 1, "unread": 1} in alice.events("notifications:counts"))


def test_a_notification_from_a_worker_reaches_the_user_live(process, connect) -> None:
    b = process("b")
    worker = process("worker", app=False)
    assert worker.socketio is None
    alice = Inbox(connect(b, "alice"))

    [n] = worker.notify(user_id="alice", title="Nightly build failed")

    assert alice.wait_for("notifications:new")[0]["id"] == n["id"]


def test_disconnect_user_on_one_process_disconnects_the_user_on_the_other(
        process, connect) -> None:
    a, b = process("a"), process("b")
    alice = connect(b, "alice")
    bob = connect(b, "bob")

    a.disconnect_user("alice", "banned")

    wait_until(lambda: not alice.is_connected())
    assert b.connections.of_user("alice") == []
    assert bob.is_connected()


def test_unsubscribe_on_one_process_removes_the_users_subscription_on_the_other(
        process, connect) -> None:
    a, b = process("a"), process("b")
    alice = Inbox(connect(b, "alice"))
    assert alice.client.call("subscribe", {"channel": "chat:lobby"})["ok"]

    a.unsubscribe("alice", "chat:lobby", reason="kicked")

    assert alice.wait_for("unsubscribed") == [{"channel": "chat:lobby", "reason": "kicked"}]


def test_skip_sid_is_honoured_on_the_receiving_process(process, connect) -> None:
    a, b = process("a"), process("b")
    first, second = Inbox(connect(b, "alice")), Inbox(connect(b, "alice"))
    skipped = b.socketio.server.manager.sid_from_eio_sid(first.client.eio_sid, "/")

    a.emit_to_user("alice", "changed", {"n": 1}, skip_sid=skipped)
    a.emit_to_user("alice", "changed", {"n": 2})

    wait_until(lambda: len(second.events("changed")) == 2)
    wait_until(lambda: len(first.events("changed")) == 1)
    time.sleep(0.1)
    assert first.events("changed") == [{"n": 2}]
    assert second.events("changed") == [{"n": 1}, {"n": 2}]


def test_after_the_last_disconnect_and_the_linger_the_topic_is_no_longer_received(
        process, connect) -> None:
    a, b = process("a"), process("b", interest_linger=0.2)
    alice = connect(b, "alice")
    assert user_topic("alice") in b.broker.watched()
    alice.disconnect()
    assert user_topic("alice") in b.broker.watched()  # lingering

    wait_until(lambda: user_topic("alice") not in b.broker.watched())
    time.sleep(0.2)  # the SUNSUBSCRIBE is on its way
    before = b.broker.fanout_received
    for i in range(5):
        a.emit_to_user("alice", "ping", {"i": i})
    time.sleep(0.3)

    assert b.broker.fanout_received == before
