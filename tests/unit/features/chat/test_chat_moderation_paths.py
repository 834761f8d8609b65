"""Moderation holds on every path a user can speak through, not only ``chat:send``.

Issue 12, finding 8: a muted member could still ``chat:edit`` (and the edit's new
``@mention`` notified), ``chat:react`` and ``publish`` on the room's ``chat:<room id>``
channel; a banned user could still ``publish`` into a public room's channel. One rule
(``ChatService.require_speaker``) now decides, and every path asks it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.unit.features.chat.test_chat import drain, err, make_room, ok, send
from tests.unit.kernel.test_pipeline import audit_lines


@pytest.fixture
def crt(make_rt, database_url):
    return make_rt(database_url=database_url)


@pytest.fixture
def users(crt, connect):
    return lambda *names: [connect(crt, user=n, name=n.title()) for n in names]


def _mute(moderator, room: str, user_id: str) -> str:
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return ok(moderator.call("chat:mute", {"room_id": room, "user_id": user_id,
                                           "until": until}))["muted_until"]


def test_a_muted_member_cannot_edit_and_their_edits_mention_notifies_nobody(crt, users):
    alice, bob, carol = users("alice", "bob", "carol")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    ok(carol.call("chat:join", {"room_id": room}))
    message = ok(send(bob, room, "before the mute"))
    until = _mute(alice, room, "bob")
    notified: list[dict] = []
    crt.notify = lambda **kw: notified.append(kw)
    drain(alice, carol)
    error = err(bob.call("chat:edit", {"message_id": message["id"], "text": "@carol spam"}),
                "forbidden")
    assert error["details"] == {"reason": "muted", "until": until, "room_id": room}
    assert err(send(bob, room, "@carol"), "forbidden")["details"] == error["details"]  # one rule
    assert notified == []
    assert carol.events("chat:message_edited") == []
    stored = ok(carol.call("chat:history", {"room_id": room}))["messages"][0]
    assert stored["text"] == "before the mute" and stored["mentions"] == []
    assert any(r["event"] == "chat:edit" for r in audit_lines(crt, "permission_denied"))


def test_a_muted_member_cannot_react_but_may_take_back_reactions_and_delete_own(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    message = ok(send(alice, room))
    mine = ok(send(bob, room, "oops"))
    ok(bob.call("chat:react", {"message_id": message["id"], "emoji": "🎉"}))
    _mute(alice, room, "bob")
    drain(alice)
    error = err(bob.call("chat:react", {"message_id": message["id"], "emoji": "👎"}),
                "forbidden")
    assert error["details"]["reason"] == "muted" and error["details"]["until"]
    assert alice.events("chat:reaction") == []
    # withdrawing is not speaking: a muted member may remove a reaction or their own message
    assert ok(bob.call("chat:unreact", {"message_id": message["id"], "emoji": "🎉"}))[
        "reactions"] == {}
    assert ok(bob.call("chat:delete", {"message_id": mine["id"]}))["deleted"]
    err(bob.call("chat:typing", {"room_id": room, "typing": True}), "forbidden")
    ok(bob.call("chat:typing", {"room_id": room, "typing": False}))


def test_a_muted_member_cannot_publish_on_the_rooms_channel(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    channel = f"chat:{room}"
    ok(bob.call("subscribe", {"channel": channel}))
    ok(bob.call("publish", {"channel": channel, "data": {"text": "allowed"}}))
    until = _mute(alice, room, "bob")
    error = err(bob.call("publish", {"channel": channel, "data": {"text": "side door"}}),
                "forbidden")
    assert error["details"] == {"reason": "muted", "until": until, "room_id": room}
    history = ok(alice.call("history", {"channel": channel}))["publications"]
    assert [p["data"]["text"] for p in history] == ["allowed"]
    ok(bob.call("subscribe", {"channel": channel}))  # reading stays allowed
    assert any(r["event"] == "publish" for r in audit_lines(crt, "permission_denied"))


def test_banned_users_and_non_members_cannot_publish_on_a_public_rooms_channel(crt, users):
    alice, bob, carol = users("alice", "bob", "carol")
    room = make_room(alice, "public")
    channel = f"chat:{room}"
    ok(bob.call("chat:join", {"room_id": room}))
    ok(alice.call("chat:ban", {"room_id": room, "user_id": "bob"}))
    error = err(bob.call("publish", {"channel": channel, "data": "x"}), "forbidden")
    assert error["details"]["reason"] == "banned"
    error = err(carol.call("publish", {"channel": channel, "data": "x"}), "forbidden")
    assert error["details"]["reason"] == "not_a_member"
    ok(carol.call("subscribe", {"channel": channel}))  # a public room: readable by all
    ok(alice.call("publish", {"channel": channel, "data": "owner speaks"}))
    ok(carol.call("publish", {"channel": "chat:general", "data": "not a room"}))
