"""What one viewer needs that a broadcast cannot carry: their own reactions in the history,
the announcement of new public rooms, and their own read marker in their other tabs."""

from __future__ import annotations

import pytest

from dihya_realtime.features.chat.service import Actor
from dihya_realtime.kernel.auth import hash_api_key
from tests.unit.features.chat.test_chat import cmid, drain, err, make_room, ok

API_KEY = "chat-viewer-key"


@pytest.fixture
def crt(make_rt, database_url):
    return make_rt(database_url=database_url, api_keys=[hash_api_key(API_KEY)])


def test_history_says_which_reactions_are_mine_and_the_push_does_not(crt, connect):
    alice, bob = connect(crt, user="alice"), connect(crt, user="bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    first = ok(alice.call("chat:send", {"room_id": room, "text": "one", "client_msg_id": cmid()}))
    ok(alice.call("chat:send", {"room_id": room, "text": "two", "client_msg_id": cmid()}))
    drain(alice, bob)
    ok(alice.call("chat:react", {"message_id": first["id"], "emoji": "👍"}))
    ok(bob.call("chat:react", {"message_id": first["id"], "emoji": "👍"}))
    ok(bob.call("chat:react", {"message_id": first["id"], "emoji": "🎉"}))

    pushed = alice.events("chat:reaction")
    assert [(p["user_id"], p["emoji"]) for p in pushed] == [
        ("alice", "👍"), ("bob", "👍"), ("bob", "🎉")]
    assert all("my_reactions" not in p for p in pushed)

    alices = ok(alice.call("chat:history", {"room_id": room}))["messages"]
    bobs = ok(bob.call("chat:history", {"room_id": room}))["messages"]
    assert [m["my_reactions"] for m in alices] == [["👍"], []]
    assert [sorted(m["my_reactions"]) for m in bobs] == [sorted(["👍", "🎉"]), []]
    assert alices[0]["reactions"] == bobs[0]["reactions"] == {"👍": 2, "🎉": 1}

    ok(bob.call("chat:unreact", {"message_id": first["id"], "emoji": "👍"}))
    after = ok(bob.call("chat:history", {"room_id": room, "after_seq": 0}))["messages"]
    assert after[0]["my_reactions"] == ["🎉"]


def test_a_new_public_room_is_announced_to_everyone_who_may_chat_but_a_private_one_is_not(
        crt, connect):
    alice, bob = connect(crt, user="alice"), connect(crt, user="bob")
    reader = connect(crt, user="rita", roles=())  # may not chat: hears nothing of rooms
    drain(alice, bob, reader)
    public = make_room(alice, "public", "town-square")
    make_room(alice, "private", "backroom")
    announced = bob.events("chat:room_created")
    assert [(r["id"], r["name"], r["visibility"], r["role"]) for r in announced] == [
        (public, "town-square", "public", None)]
    assert [r["id"] for r in alice.events("chat:room_created")] == [public]
    assert reader.events("chat:room_created") == []
    err(reader.call("chat:rooms"), "forbidden")


def test_reading_in_one_tab_tells_my_other_tab(crt, connect):
    alice, bob = connect(crt, user="alice"), connect(crt, user="bob")
    bob_other_tab = connect(crt, user="bob")
    dm = ok(alice.call("chat:dm", {"user_id": "bob"}))["id"]
    message = ok(alice.call("chat:send", {"room_id": dm, "text": "hi", "client_msg_id": cmid()}))
    drain(alice, bob, bob_other_tab)
    reply = ok(bob.call("chat:read", {"room_id": dm, "seq": message["seq"]}))
    assert reply["unread_count"] == 0
    assert bob_other_tab.events("chat:read") == [
        {"room_id": dm, "user_id": "bob", "seq": message["seq"]}]


def test_a_dm_opens_only_with_a_user_who_connected_once(crt, connect):
    alice = connect(crt, user="alice")
    error = err(alice.call("chat:dm", {"user_id": "nobody-by-that-name"}), "not_found")
    assert error["details"] == {"user_id": "nobody-by-that-name", "reason": "unknown_user"}
    assert ok(alice.call("chat:rooms"))["rooms"] == []  # nothing was created
    bob = connect(crt, user="bob")
    bob.disconnect()  # seen once is enough: bob reads the DM when he is back
    room = ok(alice.call("chat:dm", {"user_id": "bob"}))
    assert room["kind"] == "dm" and room["peer"] == "bob"
    # the host's Python API knows its users: not bound by the rule
    assert crt.chat.dm(Actor("alice", "Alice"), "carol")["peer"] == "carol"


def test_reactors_lists_who_reacted_by_name_a_page_at_a_time(make_rt, database_url, connect):
    crt = make_rt(database_url=database_url, chat_reactors_page_limit=2)
    alice = connect(crt, user="alice", name="Alice")
    room = make_room(alice)
    others = [connect(crt, user=u, name=u.upper()) for u in ("bob", "carol", "dave")]
    for member in others:
        ok(member.call("chat:join", {"room_id": room}))
    message = ok(alice.call("chat:send", {"room_id": room, "text": "vote",
                                          "client_msg_id": cmid()}))
    ref = {"message_id": message["id"], "emoji": "👍"}
    for client in (alice, *others):
        ok(client.call("chat:react", ref))
    ok(others[0].call("chat:react", {**ref, "emoji": "🎉"}))

    first = ok(alice.call("chat:reactors", ref))
    assert (first["count"], first["more"]) == (4, True)
    assert first["users"] == [{"user_id": "alice", "name": "Alice"},
                              {"user_id": "bob", "name": "BOB"}]
    second = ok(alice.call("chat:reactors", {**ref, "after_user_id": "bob"}))
    assert [u["user_id"] for u in second["users"]] == ["carol", "dave"]
    assert second["more"] is False
    # a larger limit is capped by the setting, not refused
    assert len(ok(alice.call("chat:reactors", {**ref, "limit": 500}))["users"]) == 2
    party = ok(alice.call("chat:reactors", {**ref, "emoji": "🎉"}))
    assert (party["count"], party["users"]) == (1, [{"user_id": "bob", "name": "BOB"}])
    nobody = ok(alice.call("chat:reactors", {**ref, "emoji": "🙃"}))
    assert (nobody["count"], nobody["users"], nobody["more"]) == (0, [], False)

    ok(others[1].call("chat:unreact", ref))
    assert [u["user_id"] for u in ok(alice.call("chat:reactors", {**ref, "limit": 2,
                                                                  "after_user_id": "bob"}))
            ["users"]] == ["dave"]


def test_reactors_of_a_private_room_are_for_its_members_only(crt, connect):
    alice, mallory = connect(crt, user="alice"), connect(crt, user="mallory")
    room = make_room(alice, "private", "backroom")
    message = ok(alice.call("chat:send", {"room_id": room, "text": "secret",
                                          "client_msg_id": cmid()}))
    ok(alice.call("chat:react", {"message_id": message["id"], "emoji": "👍"}))
    err(mallory.call("chat:reactors", {"message_id": message["id"], "emoji": "👍"}),
        "forbidden")
    err(alice.call("chat:reactors", {"message_id": "nope", "emoji": "👍"}), "not_found")
    err(alice.call("chat:reactors", {"message_id": message["id"], "emoji": "a b"}),
        "invalid_payload")


def test_a_message_holds_a_bounded_number_of_different_emoji(make_rt, database_url, connect):
    crt = make_rt(database_url=database_url, chat_max_reaction_kinds=3)
    alice, bob = connect(crt, user="alice"), connect(crt, user="bob")
    room = make_room(alice)
    ok(bob.call("chat:join", {"room_id": room}))
    message = ok(alice.call("chat:send", {"room_id": room, "text": "hi",
                                          "client_msg_id": cmid()}))
    for emoji in ("👍", "🎉", "❤️"):
        ok(alice.call("chat:react", {"message_id": message["id"], "emoji": emoji}))
    drain(alice, bob)
    error = err(bob.call("chat:react", {"message_id": message["id"], "emoji": ":shortcode:"}),
                "conflict")
    assert error["details"] == {"reason": "too_many_reactions", "limit": 3,
                                "message_id": message["id"]}
    assert bob.events("chat:reaction") == []  # nothing was stored, nothing pushed
    # an emoji already on the message still counts one more, and what was there is kept
    assert ok(bob.call("chat:react", {"message_id": message["id"], "emoji": "🎉"}))[
        "reactions"] == {"👍": 1, "🎉": 2, "❤️": 1}
    ok(alice.call("chat:unreact", {"message_id": message["id"], "emoji": "👍"}))
    ok(bob.call("chat:react", {"message_id": message["id"], "emoji": ":shortcode:"}))
