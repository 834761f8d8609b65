"""A chat room's pushes are relayed to the room by interest: they reach the members'
connections on every process, and only the processes that hold one.

Two or three Realtime objects on one database and one Redis broker stand in for processes
(their Socket.IO servers have no message queue: what crosses, crosses on the broker). What a
process receives is counted where it arrives: its broker's pub/sub listener.
"""

from __future__ import annotations

import time
import uuid

from dihya_realtime.features.chat.delivery import relay_room
from dihya_realtime.kernel.relay import topic_of
from tests.unit.conftest import Inbox, wait_until


def ok(envelope):
    assert envelope["ok"], envelope
    return envelope["data"]


def send(client, room_id: str, text: str):
    return ok(client.call("chat:send", {"room_id": room_id, "text": text,
                                        "client_msg_id": str(uuid.uuid4())}))


def texts(inbox: Inbox, room_id: str) -> list[str]:
    return [m["text"] for m in inbox.events("chat:message") if m["room_id"] == room_id]


def test_a_message_reaches_a_member_on_the_other_process_and_no_process_without_one(
        process, connect) -> None:
    a, b, c = process("a"), process("b"), process("c")
    alice = connect(a, "alice")
    room = ok(alice.call("chat:create_room", {"name": "general", "visibility": "public"}))["id"]
    bob = Inbox(connect(b, "bob"))
    ok(bob.client.call("chat:join", {"room_id": room}))
    connect(c, "carol")  # c holds a connection, no member of the room
    time.sleep(0.3)  # the join's own messages have landed
    received_c = c.broker.fanout_received

    for i in range(5):
        send(alice, room, f"m{i}")

    wait_until(lambda: len(texts(bob, room)) == 5)
    assert texts(bob, room) == [f"m{i}" for i in range(5)]
    time.sleep(0.2)
    assert c.broker.fanout_received == received_c
    assert topic_of(relay_room(room)) not in c.broker.watched()


def test_a_member_connecting_later_is_in_the_room_from_the_connect(process, connect) -> None:
    a, b = process("a"), process("b")
    alice = connect(a, "alice")
    room = ok(alice.call("chat:create_room", {"name": "general", "visibility": "public"}))["id"]
    ok(connect(a, "bob").call("chat:join", {"room_id": room}))

    bob_on_b = Inbox(connect(b, "bob"))  # one query at connect: bob's rooms
    send(alice, room, "hello")

    assert [m["text"] for m in bob_on_b.wait_for("chat:message")] == ["hello"]


def test_who_joins_on_one_process_gets_the_next_message_sent_from_the_other(
        process, connect) -> None:
    a, b = process("a"), process("b")
    alice = connect(a, "alice")
    room = ok(alice.call("chat:create_room", {"name": "general", "visibility": "public"}))["id"]
    bob = Inbox(connect(b, "bob"))
    bob_other_tab = Inbox(connect(a, "bob"))

    ok(bob.client.call("chat:join", {"room_id": room}))  # in the room before this reply
    [bob_sid] = [conn.sid for conn in b.connections.of_user("bob")]
    assert room in b.chat.store.relayed.rooms_of(bob_sid)  # not waiting for the control action
    send(alice, room, "right after")

    assert [m["text"] for m in bob.wait_for("chat:message")] == ["right after"]
    # his connection on the other process was moved in by the control action, and the
    # joiner gets their own member_joined once, on each connection
    assert [m["text"] for m in bob_other_tab.wait_for("chat:message")] == ["right after"]
    time.sleep(0.2)
    assert len(bob.events("chat:member_joined")) == 1
    assert len(bob_other_tab.events("chat:member_joined")) == 1


def test_an_invited_users_connection_on_the_other_process_gets_the_rooms_messages(
        process, connect) -> None:
    a, b = process("a"), process("b")
    alice = connect(a, "alice")
    room = ok(alice.call("chat:create_room", {"name": "ops", "visibility": "private"}))["id"]
    bob = Inbox(connect(b, "bob"))

    ok(alice.call("chat:invite", {"room_id": room, "user_id": "bob"}))
    [joined] = bob.wait_for("chat:member_joined")
    assert joined["user_id"] == "bob" and joined["by"] == "alice"
    wait_until(lambda: room in b.chat.store.relayed.rooms_of(
        b.connections.of_user("bob")[0].sid))
    time.sleep(0.1)  # the SSUBSCRIBE the listener sent is confirmed
    send(alice, room, "welcome")

    assert [m["text"] for m in bob.wait_for("chat:message")] == ["welcome"]


def test_a_kicked_or_leaving_members_other_process_connection_stops_getting_the_room(
        process, connect) -> None:
    a, b = process("a"), process("b", interest_linger=0)
    alice = connect(a, "alice")
    room = ok(alice.call("chat:create_room", {"name": "general", "visibility": "public"}))["id"]
    bob_a, carol_a = connect(a, "bob"), connect(a, "carol")
    bob_b, carol_b = Inbox(connect(b, "bob")), Inbox(connect(b, "carol"))
    ok(bob_a.call("chat:join", {"room_id": room}))
    ok(carol_a.call("chat:join", {"room_id": room}))
    send(alice, room, "before")
    wait_until(lambda: texts(bob_b, room) == ["before"] and texts(carol_b, room) == ["before"])

    ok(alice.call("chat:kick", {"room_id": room, "user_id": "bob"}))
    ok(carol_a.call("chat:leave", {"room_id": room}))
    for inbox, user, reason in ((bob_b, "bob", "kicked"), (carol_b, "carol", "left")):
        def own(inbox=inbox, user=user):
            return [m["reason"] for m in inbox.events("chat:member_left")
                    if m["user_id"] == user]
        wait_until(own)
        time.sleep(0.1)
        assert own() == [reason]  # the one who left gets it, once
    wait_until(lambda: topic_of(relay_room(room)) not in b.broker.watched())
    time.sleep(0.2)  # the SUNSUBSCRIBE is on its way
    received_b = b.broker.fanout_received
    send(alice, room, "after")
    time.sleep(0.3)

    assert texts(bob_b, room) == ["before"] and texts(carol_b, room) == ["before"]
    assert b.broker.fanout_received == received_b


def test_typing_reaches_the_others_and_not_the_typers_own_other_connections(
        process, connect) -> None:
    a, b = process("a"), process("b")
    alice = connect(a, "alice")
    room = ok(alice.call("chat:create_room", {"name": "general", "visibility": "public"}))["id"]
    bob_a = connect(a, "bob")
    ok(bob_a.call("chat:join", {"room_id": room}))
    bob_b, carol_b = Inbox(connect(b, "bob")), Inbox(connect(b, "carol"))
    ok(carol_b.client.call("chat:join", {"room_id": room}))
    alice_b = Inbox(connect(b, "alice"))

    ok(bob_a.call("chat:typing", {"room_id": room, "typing": True}))

    [typing] = carol_b.wait_for("chat:typing")
    assert typing["user_id"] == "bob" and typing["typing"] is True
    alice_b.wait_for("chat:typing")
    time.sleep(0.3)
    assert bob_b.events("chat:typing") == []
    assert [m["name"] for m in bob_a.get_received() if m["name"] == "chat:typing"] == []


def test_the_joining_connection_is_in_the_room_before_the_reply_without_the_control_action(
        process, connect, monkeypatch) -> None:
    a, b = process("a"), process("b")
    alice = connect(a, "alice")
    room = ok(alice.call("chat:create_room", {"name": "general", "visibility": "public"}))["id"]
    bob = Inbox(connect(b, "bob"))
    sent: list[tuple] = []
    monkeypatch.setattr(b.control, "send_to_users", lambda *args, **kw: sent.append(args))

    ok(bob.client.call("chat:join", {"room_id": room}))
    send(alice, room, "right after")

    assert sent  # the other processes were to be told; this one did not wait for it
    assert [m["text"] for m in bob.wait_for("chat:message")] == ["right after"]


def test_a_connection_gets_live_events_of_its_most_recent_rooms_up_to_the_cap(
        process, connect) -> None:
    """``DIHYA_RT_CHAT_MAX_RELAYED_ROOMS``: the connect-time query stops at the cap (the most
    recently joined rooms); ``chat:join`` on an older room brings its live events."""
    a, b = process("a", chat_max_relayed_rooms=2), process("b", chat_max_relayed_rooms=2)
    alice = connect(a, "alice")
    bob_first = connect(a, "bob")
    rooms = []
    for name in ("oldest", "middle", "newest"):
        room = ok(alice.call("chat:create_room", {"name": name, "visibility": "public"}))["id"]
        ok(bob_first.call("chat:join", {"room_id": room}))
        rooms.append(room)
        time.sleep(0.01)  # joined_at orders them
    bob = Inbox(connect(b, "bob"))
    [sid] = [conn.sid for conn in b.connections.of_user("bob")]
    assert b.chat.store.relayed.rooms_of(sid) == set(rooms[1:])
    assert topic_of(relay_room(rooms[0])) not in b.broker.watched()
    for room in rooms:
        send(alice, room, f"to {room}")
    wait_until(lambda: len(bob.events("chat:message")) == 2)
    time.sleep(0.2)
    assert sorted(m["room_id"] for m in bob.events("chat:message")) == sorted(rooms[1:])

    ok(bob.client.call("chat:join", {"room_id": rooms[0]}))  # already a member: live again
    send(alice, rooms[0], "now live")
    wait_until(lambda: "now live" in texts(bob, rooms[0]))


def test_a_new_public_room_is_announced_on_every_process_a_private_one_nowhere(
        process, connect) -> None:
    a, b = process("a"), process("b")
    alice = connect(a, "alice")
    bob = Inbox(connect(b, "bob"))
    time.sleep(0.2)
    ok(alice.call("chat:create_room", {"name": "hidden", "visibility": "private"}))
    public = ok(alice.call("chat:create_room", {"name": "open", "visibility": "public"}))["id"]
    wait_until(lambda: len(bob.events("chat:room_created")) == 1)
    time.sleep(0.2)
    assert [(r["id"], r["role"]) for r in bob.events("chat:room_created")] == [(public, None)]
