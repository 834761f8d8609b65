"""One storage path for a member's message and the server's (``message_store``).

Every test runs against SQLite and PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import uuid

import pytest

from dihya_realtime.features.chat.message_store import Refused, store_message
from dihya_realtime.features.chat.service import Actor, ChatService
from dihya_realtime.kernel.errors import RealtimeError

ALICE, BOB = Actor("alice", "Alice"), Actor("bob", "Bob")


@pytest.fixture
def chat(make_rt, database_url) -> ChatService:
    return make_rt(database_url=database_url).chat


def room_with_bob(chat: ChatService) -> str:
    room = chat.create_room(ALICE, "general", None, "public")["id"]
    chat.join(BOB, room)
    return room


def user_row(room_id: str, author: str) -> dict:
    from dihya_realtime.features.chat.common import utcnow

    return {"id": uuid.uuid4().hex, "room_id": room_id, "kind": "user", "author_id": author,
            "author_name": None, "client_msg_id": str(uuid.uuid4()), "text": "hi",
            "reply_to": None, "created_at": utcnow()}


def test_system_and_member_messages_share_one_gap_free_sequence(chat):
    room = room_with_bob(chat)
    first, _ = chat.send(ALICE, room, "one", str(uuid.uuid4()))
    system = chat.send_system_message(room, "Deploy @bob @nobody", {"build": 42})
    third, _ = chat.send(BOB, room, "three", str(uuid.uuid4()))
    assert [first["seq"], system["seq"], third["seq"]] == [1, 2, 3]
    assert (system["kind"], system["author"], system["data"]) == ("system", None, {"build": 42})
    assert system["mentions"] == []  # the reply lists none; the members mentioned are stored
    stored = chat.history(None, room)["messages"]
    assert [(m["seq"], m["kind"], m["mentions"]) for m in stored] == [
        (1, "user", []), (2, "system", ["bob"]), (3, "user", [])]
    assert stored[1]["data"] == {"build": 42}


def test_a_system_message_to_no_room_is_not_found(chat):
    with pytest.raises(RealtimeError) as refused:
        chat.send_system_message("no-such-room", "hello")
    assert refused.value.code == "not_found"


def test_a_refused_message_stores_nothing_and_takes_no_seq(chat):
    room = room_with_bob(chat)
    with pytest.raises(Refused):
        store_message(chat.db, user_row(room, "mallory"), [])  # not a member
    stored = store_message(chat.db, user_row(room, "bob"), ["alice", "mallory"])
    assert (stored.seq, stored.mentioned) == (1, ["alice"])
    assert (stored.room_kind, stored.dm_peers) == ("room", [])  # a room's members: not read


def test_a_dm_message_gives_its_peers_but_the_author(chat):
    dm = chat.dm(ALICE, "bob")["id"]
    stored = store_message(chat.db, user_row(dm, "alice"), [])
    assert (stored.room_kind, stored.dm_peers) == ("dm", ["bob"])
