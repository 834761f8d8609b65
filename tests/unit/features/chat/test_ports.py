"""Chat tells mentioned users through the ``Notifier`` it was given, and only through it."""

from __future__ import annotations

import uuid
from typing import Any

from dihya_realtime.features.chat.service import Actor, ChatService

ALICE, BOB = Actor("alice", "Alice"), Actor("bob", "Bob")


class Spy:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def notify(self, **fields: Any) -> list[dict[str, Any]]:
        self.calls.append(fields)
        return []


def mention_bob(chat: ChatService) -> dict:
    room = chat.create_room(ALICE, "general", None, "public")["id"]
    chat.join(BOB, room)
    message, _ = chat.send(ALICE, room, "ship it @bob", str(uuid.uuid4()))
    return message


def test_mentions_are_notified_through_the_notifier_chat_was_given(rt):
    spy = Spy()
    message = mention_bob(ChatService(rt, notifier=spy))
    assert spy.calls == [{
        "user_ids": ["bob"], "category": "chat.mention",
        "title": "Alice mentioned you in general", "body": "ship it @bob",
        "data": {"room_id": message["room_id"], "message_id": message["id"], "seq": 1},
        "idempotency_key": f"chat.mention:{message['id']}", "silent_user_ids": [],
    }]


def test_without_a_notifier_mentions_are_stored_and_nobody_is_notified(rt):
    spy = Spy()
    rt.notify = spy.notify  # type: ignore[method-assign]  # chat must not reach for it
    chat = ChatService(rt)
    message = mention_bob(chat)
    assert message["mentions"] == ["bob"] and spy.calls == []
    assert chat.counts("bob", message["room_id"])["mention_count"] == 1
