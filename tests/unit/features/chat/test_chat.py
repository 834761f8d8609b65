"""Chat: rooms, DMs, messages, history, receipts, typing, mentions and moderation.

Every test runs against SQLite and PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from dihya_realtime.features.chat.models import ChatMember
from dihya_realtime.features.chat.service import Actor, ChatService, parse_mentions
from dihya_realtime.kernel.auth import hash_api_key
from dihya_realtime.kernel.domain_events import DomainEvents
from dihya_realtime.store import Database
from tests.unit.kernel.test_pipeline import audit_lines

API_KEY = "chat-test-key"


@pytest.fixture
def crt(make_rt, database_url):
    return make_rt(database_url=database_url, api_keys=[hash_api_key(API_KEY)])


@pytest.fixture
def users(crt, connect):
    """alice (owner of everything she creates), bob, carol; mod holds ``chat:moderate``."""

    def make(*names: str, roles=("user",)):
        return [connect(crt, user=n, roles=roles, name=n.title()) for n in names]

    return make


def ok(envelope):
    assert envelope["ok"], envelope
    return envelope["data"]


def err(envelope, code: str):
    assert not envelope["ok"], envelope
    assert envelope["error"]["code"] == code, envelope
    return envelope["error"]


def cmid() -> str:
    return str(uuid.uuid4())


def send(client, room_id: str, text: str = "hello", **extra):
    return client.call("chat:send", {"room_id": room_id, "text": text,
                                     "client_msg_id": extra.pop("client_msg_id", cmid()),
                                     **extra})


def make_room(client, visibility: str = "public", name: str = "general") -> str:
    return ok(client.call("chat:create_room", {"name": name, "visibility": visibility}))["id"]


def drain(*clients) -> None:
    for c in clients:
        c.get_received()


# -- rooms


def test_creator_owns_the_new_room_and_bad_visibility_names_the_field(crt, users):
    (alice,) = users("alice")
    room = ok(alice.call("chat:create_room", {"name": "general", "topic": "all hands",
                                              "visibility": "public"}))
    assert room["role"] == "owner" and room["member_count"] == 1 and room["last_seq"] == 0
    error = err(alice.call("chat:create_room", {"name": "x", "visibility": "secret"}),
                "invalid_payload")
    assert error["details"][0]["field"] == "visibility"


def test_rooms_lists_public_rooms_and_mine_but_not_others_private_rooms(crt, users):
    alice, bob = users("alice", "bob")
    public = make_room(alice, "public", "general")
    private = make_room(alice, "private", "secret")
    bobs = {r["id"]: r for r in ok(bob.call("chat:rooms"))["rooms"]}
    assert public in bobs and private not in bobs
    assert bobs[public]["role"] is None
    alices = {r["id"] for r in ok(alice.call("chat:rooms"))["rooms"]}
    assert alices == {public, private}


def test_private_room_refuses_non_members_everything(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice, "private")
    ok(send(alice, room))
    drain(bob)
    assert err(bob.call("chat:join", {"room_id": room}), "forbidden")["details"]["reason"] \
        == "invite_only"
    err(bob.call("chat:history", {"room_id": room}), "forbidden")
    err(bob.call("chat:room", {"room_id": room}), "forbidden")
    err(send(bob, room), "forbidden")
    ok(send(alice, room, "still secret"))
    assert bob.events("chat:message") == []


def test_a_private_rooms_channel_is_for_its_members_only(crt, users):
    """The room's ``chat:<room id>`` channel (presence) follows the room's membership."""
    alice, bob = users("alice", "bob")
    private = make_room(alice, "private", name="secret")
    public = make_room(alice, "public", name="open")
    assert ok(alice.call("subscribe", {"channel": f"chat:{private}"}))["presence"]
    denied = err(bob.call("subscribe", {"channel": f"chat:{private}"}), "forbidden")
    assert denied["details"]["reason"] == "not_a_member"
    err(bob.call("presence", {"channel": f"chat:{private}"}), "forbidden")
    err(bob.call("publish", {"channel": f"chat:{private}", "data": "x"}), "forbidden")
    ok(bob.call("subscribe", {"channel": f"chat:{public}"}))
    ok(bob.call("subscribe", {"channel": "chat:general"}))  # not a room: namespace policy
    ok(alice.call("chat:invite", {"room_id": private, "user_id": "bob"}))
    ok(bob.call("subscribe", {"channel": f"chat:{private}"}))


def test_refresh_after_removal_unsubscribes_the_private_rooms_channel(crt, users, make_token):
    """The feature's own access check (room membership) runs again on ``auth:refresh``.

    The membership row is deleted behind the service's back (another application, a script):
    only the re-check at refresh can notice that.
    """
    alice, bob = users("alice", "bob")
    private = make_room(alice, "private", name="secret")
    ok(alice.call("chat:invite", {"room_id": private, "user_id": "bob"}))
    ok(bob.call("subscribe", {"channel": f"chat:{private}"}))
    ok(bob.call("subscribe", {"channel": "chat:general"}))
    with crt.db.write_transaction() as c:
        c.execute(sa.delete(ChatMember.__table__).where(ChatMember.room_id == private,
                                                         ChatMember.user_id == "bob"))
    drain(bob)

    ok(bob.call("auth:refresh", {"token": make_token("bob", ttl=600, name="Bob")}))

    assert bob.events("unsubscribed") == [{"channel": f"chat:{private}", "reason": "forbidden"}]
    crt.publish(f"chat:{private}", "secret")
    crt.publish("chat:general", "open")
    assert [p["data"] for p in bob.events("publication")] == ["open"]
    assert [m["user_id"] for m in crt.presence(f"chat:{private}")] == []


def test_leaving_or_being_removed_kicked_or_banned_unsubscribes_the_private_rooms_channel(
        crt, users, connect):
    """Membership is what lets a connection read a private room's channel: when it ends,
    every connection of that user is taken off the channel at once, not at the next refresh."""
    alice, bob, carol, dave, erin = users("alice", "bob", "carol", "dave", "erin")
    bob_tab2 = connect(crt, user="bob", name="Bob")
    private = make_room(alice, "private", name="secret")
    channel = f"chat:{private}"
    for user in ("bob", "carol", "dave", "erin"):
        ok(alice.call("chat:invite", {"room_id": private, "user_id": user}))
    for client in (alice, bob, bob_tab2, carol, dave, erin):
        ok(client.call("subscribe", {"channel": channel}))
        ok(client.call("subscribe", {"channel": "chat:general"}))
    drain(alice, bob, bob_tab2, carol, dave, erin)

    ok(bob.call("chat:leave", {"room_id": private}))
    ok(alice.call("chat:remove_member", {"room_id": private, "user_id": "carol"}))
    ok(alice.call("chat:kick", {"room_id": private, "user_id": "dave"}))
    ok(alice.call("chat:ban", {"room_id": private, "user_id": "erin"}))

    assert bob.events("unsubscribed") == [{"channel": channel, "reason": "left"}]
    assert bob_tab2.events("unsubscribed") == [{"channel": channel, "reason": "left"}]
    for gone in (carol, dave, erin):
        assert gone.events("unsubscribed") == [{"channel": channel, "reason": "forbidden"}]
    assert alice.events("unsubscribed") == []
    assert [m["user_id"] for m in crt.presence(channel)] == ["alice"]
    crt.publish(channel, "members only")
    crt.publish("chat:general", "open")
    assert [p["data"] for p in alice.events("publication")] == ["members only", "open"]
    for gone in (bob, bob_tab2, carol, dave, erin):
        assert [p["data"] for p in gone.events("publication")] == ["open"]


def test_leaving_a_public_room_keeps_its_channel_open_to_every_chat_user(crt, users):
    """A public room's channel is readable by non-members too (its access check says so):
    leaving or being kicked takes nothing back, so the subscription stays."""
    alice, bob, carol = users("alice", "bob", "carol")
    public = make_room(alice, "public", name="open")
    channel = f"chat:{public}"
    for member in (bob, carol):
        ok(member.call("chat:join", {"room_id": public}))
        ok(member.call("subscribe", {"channel": channel}))
    drain(bob, carol)
    ok(bob.call("chat:leave", {"room_id": public}))
    ok(alice.call("chat:kick", {"room_id": public, "user_id": "carol"}))
    crt.publish(channel, "still public")
    for client in (bob, carol):
        received = client.get_received()
        assert [m for m in received if m["name"] == "unsubscribed"] == []
        assert [m["args"][0]["data"] for m in received if m["name"] == "publication"] == \
            ["still public"]


def test_join_public_room_announces_member_and_unknown_room_is_not_found(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    drain(alice)
    joined = ok(bob.call("chat:join", {"room_id": room}))
    assert joined["role"] == "member"
    assert alice.events("chat:member_joined") == [
        {"room_id": room, "user_id": "bob", "role": "member", "name": "Bob", "by": None}]
    details = ok(alice.call("chat:room", {"room_id": room}))
    assert [(m["user_id"], m["role"]) for m in details["members"]] == [
        ("alice", "owner"), ("bob", "member")]
    err(bob.call("chat:join", {"room_id": "nope"}), "not_found")


def test_invite_needs_owner_or_moderator_and_lets_the_invitee_read(crt, users):
    alice, bob, carol = users("alice", "bob", "carol")
    room = make_room(alice, "private")
    ok(send(alice, room, "before"))
    invited = ok(alice.call("chat:invite", {"room_id": room, "user_id": "bob"}))
    assert invited["added"] is True
    assert err(bob.call("chat:invite", {"room_id": room, "user_id": "carol"}),
               "forbidden")["details"]["reason"] == "not_a_moderator"
    ok(alice.call("chat:set_role", {"room_id": room, "user_id": "bob", "role": "moderator"}))
    ok(bob.call("chat:invite", {"room_id": room, "user_id": "carol"}))
    history = ok(carol.call("chat:history", {"room_id": room}))
    assert [m["text"] for m in history["messages"]] == ["before"]
    assert err(bob.call("chat:set_role", {"room_id": room, "user_id": "carol",
                                          "role": "moderator"}), "forbidden")
    assert [r["details"]["target"] for r in audit_lines(crt, "chat_invite")] == ["bob", "carol"]


def test_remove_member_moderator_cannot_remove_a_moderator_or_the_owner(crt, users):
    alice, bob, carol = users("alice", "bob", "carol")
    room = make_room(alice, "private")
    for u in ("bob", "carol"):
        ok(alice.call("chat:invite", {"room_id": room, "user_id": u}))
    ok(alice.call("chat:set_role", {"room_id": room, "user_id": "bob", "role": "moderator"}))
    ok(alice.call("chat:set_role", {"room_id": room, "user_id": "carol", "role": "moderator"}))
    assert err(bob.call("chat:remove_member", {"room_id": room, "user_id": "carol"}),
               "forbidden")["details"]["reason"] == "target_is_moderator"
    assert err(bob.call("chat:remove_member", {"room_id": room, "user_id": "alice"}),
               "forbidden")["details"]["reason"] == "target_is_owner"
    drain(carol)
    ok(alice.call("chat:remove_member", {"room_id": room, "user_id": "carol"}))
    assert carol.events("chat:member_left")[0]["reason"] == "removed"
    err(carol.call("chat:history", {"room_id": room}), "forbidden")


def test_owner_who_leaves_hands_the_room_to_a_moderator(crt, users):
    alice, bob, carol = users("alice", "bob", "carol")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    ok(carol.call("chat:join", {"room_id": room}))
    ok(alice.call("chat:set_role", {"room_id": room, "user_id": "carol", "role": "moderator"}))
    ok(alice.call("chat:leave", {"room_id": room}))
    members = {m["user_id"]: m["role"] for m in ok(bob.call("chat:room", {"room_id": room}))
               ["members"]}
    assert members == {"bob": "member", "carol": "owner"}
    err(alice.call("chat:leave", {"room_id": room}), "forbidden")


def test_dm_is_one_room_per_pair_and_private_to_it(crt, users):
    alice, bob, carol = users("alice", "bob", "carol")
    first = ok(alice.call("chat:dm", {"user_id": "bob"}))
    again = ok(bob.call("chat:dm", {"user_id": "alice"}))
    assert first["id"] == again["id"] and first["kind"] == "dm" and again["peer"] == "alice"
    ok(send(bob, first["id"], "psst"))
    assert alice.events("chat:message")[0]["text"] == "psst"
    err(carol.call("chat:history", {"room_id": first["id"]}), "forbidden")
    err(alice.call("chat:dm", {"user_id": "alice"}), "invalid_payload")
    err(alice.call("chat:leave", {"room_id": first["id"]}), "conflict")
    rooms = [r for r in ok(alice.call("chat:rooms"))["rooms"] if r["kind"] == "dm"]
    assert [(r["peer"], r["unread_count"]) for r in rooms] == [("bob", 1)]


# -- messages


def test_send_acks_the_stored_message_and_pushes_it_to_members_only(crt, users):
    alice, bob, carol = users("alice", "bob", "carol")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    drain(alice, bob, carol)
    message = ok(send(alice, room, "first"))
    assert message["seq"] == 1 and message["author"] == {"user_id": "alice", "name": "Alice"}
    assert message["id"] and message["created_at"].endswith("Z")
    assert message["duplicate"] is False and message["deleted"] is False
    pushed = bob.events("chat:message")
    assert len(pushed) == 1
    assert {k: pushed[0][k] for k in ("id", "seq", "text", "room_id")} == {
        "id": message["id"], "seq": 1, "text": "first", "room_id": room}
    assert alice.events("chat:message")[0]["id"] == message["id"]
    assert carol.events("chat:message") == []  # a public room, but carol never joined
    err(send(carol, room), "forbidden")
    reply = ok(send(bob, room, "second", reply_to=message["id"]))
    assert reply["seq"] == 2 and reply["reply_to"] == message["id"]


def test_send_refuses_invalid_payloads_naming_the_field(crt, users):
    (alice,) = users("alice")
    room = make_room(alice)
    cases = [({"text": ""}, "text"), ({"text": "x" * 4001}, "text"), ({"text": "   "}, "text"),
             ({"client_msg_id": "not-a-uuid"}, "client_msg_id"), ({"room_id": ""}, "room_id"),
             ({"mentions": ["x"] * 51}, "mentions")]
    for payload, field in cases:
        body = {"room_id": room, "text": "hi", "client_msg_id": cmid(), **payload}
        error = err(alice.call("chat:send", body), "invalid_payload")
        assert [d["field"] for d in error["details"]] == [field], payload
    assert ok(alice.call("chat:history", {"room_id": room}))["messages"] == []


def test_send_needs_chat_write_and_reply_to_must_be_in_the_room(crt, users, connect):
    alice, = users("alice")
    guest = connect(crt, user="guest", roles=("guest",))
    room = make_room(alice)
    other = make_room(alice, name="other")
    err(send(guest, room), "forbidden")
    foreign = ok(send(alice, other))
    error = err(send(alice, room, reply_to=foreign["id"]), "invalid_payload")
    assert error["details"][0]["field"] == "reply_to"


def test_resending_a_client_msg_id_returns_the_original_and_creates_nothing(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    key = cmid()
    first = ok(send(alice, room, "once", client_msg_id=key))
    drain(bob)
    again = ok(send(alice, room, "twice?", client_msg_id=key.upper()))
    assert again["id"] == first["id"] and again["text"] == "once" and again["duplicate"]
    assert bob.events("chat:message") == []
    assert ok(alice.call("chat:history", {"room_id": room}))["last_seq"] == 1
    # the key is per author: bob's message with the same key is his own
    assert ok(send(bob, room, "mine", client_msg_id=key))["seq"] == 2


def test_a_refused_send_takes_no_seq_and_the_sender_has_read_their_own_message(crt, users):
    """Every way ``chat:send`` stores nothing rolls its ``seq`` back; a stored one moves the
    sender's read marker to it (the send path bumps ``last_seq`` before it knows)."""
    alice, bob, carol = users("alice", "bob", "carol")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    first = ok(send(bob, room, "one"))
    other = make_room(alice, name="other")
    foreign = ok(send(alice, other, "elsewhere"))
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    ok(alice.call("chat:mute", {"room_id": room, "user_id": "bob", "until": until}))
    err(send(bob, room, "muted"), "forbidden")
    ok(alice.call("chat:mute", {"room_id": room, "user_id": "bob", "until": None}))
    err(send(carol, room, "not a member"), "forbidden")
    err(send(bob, room, "bad reply", reply_to=foreign["id"]), "invalid_payload")
    err(send(bob, "0" * 32, "no room"), "not_found")
    assert ok(send(bob, room, "again", client_msg_id=first["client_msg_id"]))["duplicate"]
    second = ok(send(bob, room, "two", reply_to=first["id"], mentions=["alice", "carol"]))
    assert second["seq"] == first["seq"] + 1 and second["mentions"] == ["alice"]
    assert second["author"] == {"user_id": "bob", "name": "Bob"}
    page = ok(bob.call("chat:history", {"room_id": room}))
    assert [m["seq"] for m in page["messages"]] == [1, 2] and page["last_seq"] == 2
    # the history adds the reader's own reactions (a per-viewer field) to the stored message
    assert page["messages"][1] == {**{k: v for k, v in second.items() if k != "duplicate"},
                                   "my_reactions": []}
    mine = next(r for r in ok(bob.call("chat:rooms", {}))["rooms"] if r["id"] == room)
    assert mine["last_read_seq"] == 2 and mine["unread_count"] == 0


def test_history_pages_latest_before_after_and_around(crt, users):
    (alice,) = users("alice")
    room = make_room(alice)
    for i in range(1, 26):  # through the service: chat:send is rate limited to a burst of 20
        crt.chat.send(Actor("alice"), room, f"m{i}", cmid())

    def page(**q):
        data = ok(alice.call("chat:history", {"room_id": room, **q}))
        return [m["seq"] for m in data["messages"]], data

    seqs, data = page(limit=10)
    assert seqs == list(range(16, 26)) and data["has_more"] and not data["has_more_after"]
    seqs, data = page(before_seq=16, limit=10)
    assert seqs == list(range(6, 16)) and data["has_more"]
    seqs, data = page(before_seq=6, limit=10)
    assert seqs == [1, 2, 3, 4, 5] and not data["has_more"]
    seqs, data = page(after_seq=20, limit=10)
    assert seqs == [21, 22, 23, 24, 25] and not data["has_more"]
    seqs, data = page(after_seq=0, limit=10)
    assert seqs == list(range(1, 11)) and data["has_more"]
    seqs, data = page(around_seq=13, limit=5)
    assert seqs == [11, 12, 13, 14, 15]
    assert data["has_more_before"] and data["has_more_after"] and data["has_more"]
    seqs, data = page(around_seq=2, limit=6)
    assert seqs == [1, 2, 3, 4, 5, 6] and not data["has_more_before"]
    err(alice.call("chat:history", {"room_id": room, "before_seq": 3, "after_seq": 1}),
        "invalid_payload")
    err(alice.call("chat:history", {"room_id": room, "limit": 101}), "invalid_payload")
    err(alice.call("chat:history", {"room_id": room, "limit": 0}), "invalid_payload")


def test_only_the_author_edits_and_the_edit_is_pushed(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    message = ok(send(bob, room, "typo"))
    drain(alice)
    assert err(alice.call("chat:edit", {"message_id": message["id"], "text": "x"}),
               "forbidden")["details"]["reason"] == "not_the_author"
    edited = ok(bob.call("chat:edit", {"message_id": message["id"], "text": "fixed"}))
    assert edited["text"] == "fixed" and edited["edited_at"] and edited["seq"] == message["seq"]
    assert alice.events("chat:message_edited")[0]["text"] == "fixed"
    err(bob.call("chat:edit", {"message_id": "missing", "text": "x"}), "not_found")
    err(bob.call("chat:edit", {"message_id": message["id"], "text": ""}), "invalid_payload")


def test_delete_leaves_a_tombstone_that_keeps_its_seq(crt, users):
    alice, bob, carol = users("alice", "bob", "carol")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    ok(carol.call("chat:join", {"room_id": room}))
    own = ok(send(bob, room, "mine"))
    other = ok(send(carol, room, "carol's"))
    ok(send(bob, room, "after"))
    assert err(bob.call("chat:delete", {"message_id": other["id"]}), "forbidden")
    drain(carol)
    tomb = ok(bob.call("chat:delete", {"message_id": own["id"]}))
    assert tomb["deleted"] and tomb["text"] is None and tomb["seq"] == own["seq"]
    pushed = carol.events("chat:message_deleted")[0]
    assert pushed["deleted_by"] == "bob" and pushed["seq"] == own["seq"]
    ok(alice.call("chat:delete", {"message_id": other["id"]}))  # the owner moderates
    history = ok(carol.call("chat:history", {"room_id": room}))["messages"]
    assert [(m["seq"], m["deleted"], m["text"]) for m in history] == [
        (1, True, None), (2, True, None), (3, False, "after")]
    assert [r["details"]["target"] for r in audit_lines(crt, "chat_moderate_delete")] == ["carol"]
    err(bob.call("chat:edit", {"message_id": own["id"], "text": "back"}), "conflict")


def test_reactions_are_counted_per_emoji_and_pushed(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    message = ok(send(alice, room))
    ok(alice.call("chat:react", {"message_id": message["id"], "emoji": "🎉"}))
    drain(alice)
    reply = ok(bob.call("chat:react", {"message_id": message["id"], "emoji": "🎉"}))
    assert reply["reactions"] == {"🎉": 2} and reply["changed"]
    assert alice.events("chat:reaction")[0]["reactions"] == {"🎉": 2}
    assert not ok(bob.call("chat:react", {"message_id": message["id"], "emoji": "🎉"}))[
        "changed"]
    ok(bob.call("chat:react", {"message_id": message["id"], "emoji": ":+1:"}))
    reply = ok(alice.call("chat:unreact", {"message_id": message["id"], "emoji": "🎉"}))
    assert reply["reactions"] == {":+1:": 1, "🎉": 1}
    stored = ok(alice.call("chat:history", {"room_id": room}))["messages"][0]
    assert stored["reactions"] == {":+1:": 1, "🎉": 1}
    err(bob.call("chat:react", {"message_id": message["id"], "emoji": "a b"}),
        "invalid_payload")


def test_typing_goes_to_the_others_is_throttled_and_expires(make_rt, database_url, connect):
    crt = make_rt(database_url=database_url, chat_typing_ttl=60, chat_typing_throttle=60)
    alice, bob = (connect(crt, user=u) for u in ("alice", "bob"))
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    drain(alice, bob)
    assert ok(alice.call("chat:typing", {"room_id": room, "typing": True}))["sent"]
    assert not ok(alice.call("chat:typing", {"room_id": room, "typing": True}))["sent"]
    typing = bob.events("chat:typing")
    assert [(t["user_id"], t["typing"]) for t in typing] == [("alice", True)]
    assert alice.events("chat:typing") == []  # never to the typist
    assert crt.chat.expire_typing(now=time.monotonic() + 61) == 1
    assert [t["typing"] for t in bob.events("chat:typing")] == [False]
    ok(alice.call("chat:typing", {"room_id": room, "typing": True}))
    ok(send(alice, room))  # sending stops typing
    assert [t["typing"] for t in bob.events("chat:typing")] == [True, False]
    outsider = connect(crt, user="carol")
    err(outsider.call("chat:typing", {"room_id": room, "typing": True}), "forbidden")


def test_leaving_kicked_or_banned_typists_stop_typing_for_the_others_at_once(make_rt, connect):
    crt = make_rt(chat_typing_ttl=60, chat_typing_throttle=0)
    alice, bob, carol, dave = (connect(crt, user=u) for u in ("alice", "bob", "carol", "dave"))
    room = make_room(alice)
    for member in (bob, carol, dave):
        ok(member.call("chat:join", {"room_id": room}))

    def typing_seen_by_alice() -> list[tuple[str, bool]]:
        return [(t["user_id"], t["typing"]) for t in alice.events("chat:typing")]

    drain(alice)
    ok(bob.call("chat:typing", {"room_id": room, "typing": True}))
    ok(bob.call("chat:leave", {"room_id": room}))
    assert typing_seen_by_alice() == [("bob", True), ("bob", False)]
    ok(carol.call("chat:typing", {"room_id": room, "typing": True}))
    ok(alice.call("chat:kick", {"room_id": room, "user_id": "carol"}))
    assert typing_seen_by_alice() == [("carol", True), ("carol", False)]
    ok(dave.call("chat:typing", {"room_id": room, "typing": True}))
    ok(alice.call("chat:ban", {"room_id": room, "user_id": "dave"}))
    assert typing_seen_by_alice() == [("dave", True), ("dave", False)]
    assert len(crt.chat.typing_state) == 0  # nothing left to lapse later
    # one process knows who types: leaving without typing pushes no stop
    ok(carol.call("chat:join", {"room_id": room}))
    ok(carol.call("chat:leave", {"room_id": room}))
    assert typing_seen_by_alice() == []


def test_read_marker_never_moves_backwards_and_drives_unread_counts(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    for i in range(5):
        ok(send(alice, room, f"m{i}"))
    summary = next(r for r in ok(bob.call("chat:rooms"))["rooms"] if r["id"] == room)
    assert summary["unread_count"] == 5 and summary["last_read_seq"] == 0
    drain(alice)
    marker = ok(bob.call("chat:read", {"room_id": room, "seq": 3}))
    assert marker["seq"] == 3 and marker["moved"] and marker["unread_count"] == 2
    assert alice.events("chat:read") == [{"room_id": room, "user_id": "bob", "seq": 3}]
    back = ok(bob.call("chat:read", {"room_id": room, "seq": 1}))
    assert back["seq"] == 3 and not back["moved"] and back["unread_count"] == 2
    assert alice.events("chat:read") == []
    assert ok(bob.call("chat:read", {"room_id": room, "seq": 999}))["seq"] == 5  # clamped
    summary = next(r for r in ok(bob.call("chat:rooms"))["rooms"] if r["id"] == room)
    assert summary["unread_count"] == 0
    # my own messages are never unread
    assert next(r for r in ok(alice.call("chat:rooms"))["rooms"]
                if r["id"] == room)["unread_count"] == 0
    err(bob.call("chat:read", {"room_id": room, "seq": -1}), "invalid_payload")


def test_mentions_are_stored_counted_and_notified(crt, users):
    alice, bob, carol = users("alice", "bob", "carol")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    notified = []
    crt.notify = lambda **kw: notified.append(kw)
    message = ok(send(alice, room, "hey @bob and @nobody, thanks @alice.", mentions=["carol"]))
    assert message["mentions"] == ["bob"]  # members only, never the author
    assert notified[0]["user_ids"] == ["bob"] and notified[0]["category"] == "chat.mention"
    assert notified[0]["data"] == {"room_id": room, "message_id": message["id"], "seq": 1}
    ok(send(alice, room, "no mention"))
    summary = next(r for r in ok(bob.call("chat:rooms"))["rooms"] if r["id"] == room)
    assert (summary["unread_count"], summary["mention_count"]) == (2, 1)
    ok(bob.call("chat:read", {"room_id": room, "seq": 1}))
    summary = next(r for r in ok(bob.call("chat:rooms"))["rooms"] if r["id"] == room)
    assert (summary["unread_count"], summary["mention_count"]) == (1, 0)
    second = ok(send(alice, room, "plain"))
    edited = ok(alice.call("chat:edit", {"message_id": second["id"], "text": "now @bob"}))
    assert edited["mentions"] == ["bob"] and notified[-1]["user_ids"] == ["bob"]


def test_a_failing_notification_hook_never_fails_the_send(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))

    def broken(**kw):
        raise RuntimeError("notifications down")

    crt.notify = broken
    assert ok(send(alice, room, "@bob hi"))["mentions"] == ["bob"]


def test_parse_mentions_reads_user_ids_and_skips_emails():
    assert parse_mentions("@bob, @carol. mail a@b.c @bob @x-1") == ["bob", "carol", "x-1"]


# -- moderation


def test_muted_member_cannot_send_until_the_mute_ends(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert err(bob.call("chat:mute", {"room_id": room, "user_id": "alice", "until": until}),
               "forbidden")
    drain(bob)
    muted = ok(alice.call("chat:mute", {"room_id": room, "user_id": "bob", "until": until}))
    assert muted["muted_until"]
    assert bob.events("chat:member_updated")[0]["muted_until"] == muted["muted_until"]
    error = err(send(bob, room), "forbidden")
    assert error["details"]["reason"] == "muted"
    err(alice.call("chat:mute", {"room_id": room, "user_id": "bob",
                                 "until": "2030-01-01T00:00:00"}), "invalid_payload")  # naive
    ok(alice.call("chat:mute", {"room_id": room, "user_id": "bob", "until": None}))
    ok(send(bob, room))
    assert [r["details"]["target"] for r in audit_lines(crt, "chat_mute")] == ["bob", "bob"]


def test_banned_user_cannot_join_until_unbanned_and_kick_allows_rejoin(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    drain(bob)
    ok(alice.call("chat:kick", {"room_id": room, "user_id": "bob"}))
    assert bob.events("chat:member_left")[0]["reason"] == "kicked"
    err(send(bob, room), "forbidden")
    ok(bob.call("chat:join", {"room_id": room}))
    ban = ok(alice.call("chat:ban", {"room_id": room, "user_id": "bob", "reason": "spam"}))
    assert ban["was_member"]
    error = err(bob.call("chat:join", {"room_id": room}), "forbidden")
    assert error["details"]["reason"] == "banned"
    err(alice.call("chat:invite", {"room_id": room, "user_id": "bob"}), "conflict")
    err(bob.call("chat:unban", {"room_id": room, "user_id": "bob"}), "forbidden")
    ok(alice.call("chat:unban", {"room_id": room, "user_id": "bob"}))
    err(alice.call("chat:unban", {"room_id": room, "user_id": "bob"}), "not_found")
    ok(bob.call("chat:join", {"room_id": room}))
    types = [r["type"] for r in audit_lines(crt) if r["type"].startswith("chat_")
             and r["type"] not in ("chat_room_created",)]
    assert types == ["chat_kick", "chat_ban", "chat_unban"]


def test_global_chat_moderate_permission_moderates_any_room(crt, users, connect):
    alice, bob = users("alice", "bob")
    mod = connect(crt, user="mod", roles=("moderator",))
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    message = ok(send(bob, room, "spam"))
    ok(mod.call("chat:delete", {"message_id": message["id"]}))
    ok(mod.call("chat:ban", {"room_id": room, "user_id": "bob"}))
    err(bob.call("chat:join", {"room_id": room}), "forbidden")
    err(bob.call("chat:ban", {"room_id": room, "user_id": "alice"}), "forbidden")


# -- server side


def test_system_message_and_http_api(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(send(alice, room, "user message"))
    drain(alice)
    system = crt.chat.send_system_message(room, "Deploy started", {"build": 42})
    assert system["seq"] == 2 and system["kind"] == "system" and system["author"] is None
    assert alice.events("chat:message")[0]["data"] == {"build": 42}
    http = crt.app.test_client()
    headers = {"X-API-Key": API_KEY}
    response = http.post(f"/api/v1/chat/rooms/{room}/messages", json={"text": "Deploy done"},
                         headers=headers)
    assert response.status_code == 201 and response.json["data"]["seq"] == 3
    assert http.post(f"/api/v1/chat/rooms/{room}/messages", json={"text": ""},
                     headers=headers).status_code == 400
    assert http.post("/api/v1/chat/rooms/nope/messages", json={"text": "x"},
                     headers=headers).status_code == 404
    assert http.post(f"/api/v1/chat/rooms/{room}/messages", json={"text": "x"}).status_code \
        == 401
    page = http.get(f"/api/v1/chat/rooms/{room}/messages?before_seq=3&limit=1",
                    headers=headers).json["data"]
    assert [m["text"] for m in page["messages"]] == ["Deploy started"] and page["has_more"]
    assert http.get(f"/api/v1/chat/rooms/{room}/messages?limit=abc",
                    headers=headers).status_code == 400


# -- ordering


def test_concurrent_sends_from_two_processes_give_one_gap_free_order(crt, users, database_url):
    """Two ``Database`` objects on one URL stand in for two server processes."""
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    drain(alice, bob)

    class Process:
        def __init__(self) -> None:
            self.db = Database(database_url)
            self.settings = crt.settings
            self.emitted: list[dict] = []
            self.relay = self  # a room's pushes are relayed: rt.relay.emit(room, event, data)
            self.domain_events = DomainEvents()  # what the chat service tells (webhooks)

        def emit(self, room, event, data, skip_sid=None, skip_user=None):
            self.emitted.append(data)

    processes = [Process(), Process()]
    services = [ChatService(p) for p in processes]  # type: ignore[arg-type]
    per_thread, threads_per_process = 15, 3
    errors: list[BaseException] = []

    def hammer(service: ChatService, author: str) -> None:
        try:
            for _ in range(per_thread):
                service.send(Actor(author), room, "x", cmid())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(services[i % 2], ("alice", "bob")[i % 2]))
               for i in range(2 * threads_per_process)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in processes:
        p.db.dispose()
    assert not errors, errors
    total = per_thread * 2 * threads_per_process
    pushed = sorted(m["seq"] for p in processes for m in p.emitted)
    assert pushed == list(range(1, total + 1))
    seen = []
    for client in (alice, bob):
        page = ok(client.call("chat:history", {"room_id": room, "after_seq": 0, "limit": 100}))
        seen.append([(m["seq"], m["id"]) for m in page["messages"]])
    assert [s for s, _ in seen[0]] == list(range(1, total + 1))
    assert seen[0] == seen[1]


def test_members_see_the_same_sequence_from_interleaved_senders(crt, users):
    alice, bob = users("alice", "bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    drain(alice, bob)
    for i in range(6):
        ok(send((alice, bob)[i % 2], room, f"m{i}"))
    a = [(m["seq"], m["text"]) for m in alice.events("chat:message")]
    b = [(m["seq"], m["text"]) for m in bob.events("chat:message")]
    assert a == b == [(i + 1, f"m{i}") for i in range(6)]


def wait_for(predicate, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


def test_typing_lapses_by_itself_and_stops_when_the_typist_disconnects(make_rt, connect):
    crt = make_rt(chat_typing_ttl=0.2, chat_typing_throttle=0)
    alice, bob = (connect(crt, user=u) for u in ("alice", "bob"))
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    drain(bob)
    ok(alice.call("chat:typing", {"room_id": room, "typing": True}))
    seen: list[bool] = []

    def lapsed() -> bool:
        seen.extend(t["typing"] for t in bob.events("chat:typing"))
        return seen == [True, False]

    assert wait_for(lapsed), seen
    crt.chat.typing_state.ttl = 60  # only the disconnect can stop it now
    ok(alice.call("chat:typing", {"room_id": room, "typing": True}))
    alice.disconnect()
    assert [t["typing"] for t in bob.events("chat:typing")][-1] is False


def test_chat_migration_matches_the_models(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from dihya_realtime.store import Base

    db = Database(database_url)
    db.migrate()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    db.dispose()
    assert [d for d in diff if "chat_" in repr(d)] == []


def test_a_dm_message_notifies_the_peer_once_and_a_room_message_notifies_nobody(crt, users):
    alice, bob = users("alice", "bob")
    notified = []
    crt.notify = lambda **kw: notified.append(kw)
    dm = ok(alice.call("chat:dm", {"user_id": "bob"}))["id"]
    cid = cmid()
    message = ok(send(alice, dm, "are you there?", client_msg_id=cid))
    assert [(n["user_ids"], n["category"], n["silent_user_ids"]) for n in notified] == [
        (["bob"], "chat.dm", [])]
    assert notified[0]["title"] == "Alice sent you a message"
    assert notified[0]["data"] == {"room_id": dm, "message_id": message["id"], "seq": 1}
    assert notified[0]["idempotency_key"] == f"chat.dm:{message['id']}"
    ok(send(alice, dm, "are you there?", client_msg_id=cid))  # a resend: nothing new
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    ok(send(alice, room, "to the room, no mention"))
    assert len(notified) == 1


def test_a_room_muted_for_notifications_notifies_in_app_but_never_pushes(crt, users):
    alice, bob, carol = users("alice", "bob", "carol")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    err(carol.call("chat:set_notifications", {"room_id": room, "muted": True}), "forbidden")
    assert ok(bob.call("chat:set_notifications", {"room_id": room, "muted": True})) == {
        "room_id": room, "muted": True}
    mine = next(r for r in ok(bob.call("chat:rooms"))["rooms"] if r["id"] == room)
    assert mine["notifications_muted"] is True
    pushed_to: list[set[str]] = []  # what the device-push step is told to skip
    crt.notifications.delivery.after = lambda ns, skip: pushed_to.append(
        {n["user_id"] for n in ns} - skip)
    drain(bob)
    ok(send(alice, room, "@bob look"))
    assert [n["category"] for n in bob.events("notifications:new")] == ["chat.mention"]
    assert pushed_to == [set()]  # in-app, not pushed
    ok(bob.call("chat:set_notifications", {"room_id": room, "muted": False}))
    ok(send(alice, room, "@bob again"))
    assert pushed_to[-1] == {"bob"}
