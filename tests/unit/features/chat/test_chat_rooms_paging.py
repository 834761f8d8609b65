"""``chat:rooms`` pages: a user in thousands of rooms gets bounded replies and a cursor.

Issue 12 (low): ``chat:rooms`` had no paging; one call listed every public room and every
room of the user, whatever their number.
"""

from __future__ import annotations

import pytest

from tests.unit.features.chat.test_chat import err, make_room, ok


@pytest.fixture
def crt(make_rt, database_url):
    return make_rt(database_url=database_url, chat_rooms_page_limit=3)


def test_rooms_pages_follow_the_cursor_to_every_room_once_in_order(crt, connect):
    alice, bob = connect(crt, user="alice"), connect(crt, user="bob")
    made = {make_room(alice, "public", name=f"room-{i}") for i in range(5)}
    made.add(make_room(bob, "private", name="bobs"))
    made.add(ok(bob.call("chat:dm", {"user_id": "alice"}))["id"])
    hidden = make_room(alice, "private", name="alices")  # not bob's to see
    everything: list[dict] = []
    page = ok(bob.call("chat:rooms"))
    assert len(page["rooms"]) == 3 and page["more"] and page["next_cursor"]
    everything += page["rooms"]
    while page["more"]:
        page = ok(bob.call("chat:rooms", {"cursor": page["next_cursor"], "limit": 2}))
        assert len(page["rooms"]) <= 2
        everything += page["rooms"]
    assert page["next_cursor"] is None
    ids = [r["id"] for r in everything]
    assert len(ids) == len(set(ids)) and set(ids) == made and hidden not in ids
    keys = [(r["kind"], r["name"], r["id"]) for r in everything]
    assert keys == sorted(keys)
    assert all("unread_count" in r and "member_count" in r for r in everything)


def test_rooms_limit_is_capped_by_the_setting_and_a_bad_cursor_is_refused(crt, connect):
    alice = connect(crt, user="alice")
    for i in range(4):
        make_room(alice, "public", name=f"r{i}")
    assert len(ok(alice.call("chat:rooms", {"limit": 1000}))["rooms"]) == 3
    last = ok(alice.call("chat:rooms", {"limit": 1}))
    assert len(last["rooms"]) == 1 and last["more"]
    error = err(alice.call("chat:rooms", {"cursor": "not-a-cursor"}), "invalid_payload")
    assert error["details"][0]["field"] == "cursor"
    err(alice.call("chat:rooms", {"limit": 0}), "invalid_payload")
    assert ok(alice.call("chat:rooms", None))["rooms"]  # no payload, as before
