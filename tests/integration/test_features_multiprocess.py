"""Chat, notifications and collab against real server processes sharing Redis and PostgreSQL.

The unit tests run each feature in one process with the Flask-SocketIO test client; what only
shows with several real processes is here: one ``seq`` order under concurrent senders on two
processes, membership changes made on one process taking effect on the other, idempotent
resends through another process, pushes from HTTP, from another process and from a worker
with no Socket.IO server, per-process state (typing, awareness, the Yjs cache) that must still
look like one server to the clients, and documents surviving a restart of every process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Text, handle_sync_message

from dihya_realtime.kernel.auth import hash_api_key
from tests.conftest import POSTGRES_ADMIN_URL, REDIS_URL, free_port, redis_key_prefix
from tests.integration.conftest import (
    TEST_API_KEY,
    ServerProcess,
    SioClient,
    clean_environ,
    reset_postgres,
)

Pair = tuple[ServerProcess, ServerProcess]
TYPING_TTL = 2.0
SHARED_SETTINGS = {
    "DIHYA_RT_CHAT_TYPING_TTL": str(TYPING_TTL),  # short, to see typing lapse
    "DIHYA_RT_DOCS_COMPACT_EVERY": "7",  # snapshots written by both processes while editing
}


@pytest.fixture(scope="module")
def jwt_secret() -> str:
    """One secret for the module: the shared servers outlive any one test's fixtures."""
    return "xproc-secret-" + "x" * 32


@pytest.fixture(scope="module")
def shared_db() -> Iterator[str]:
    """A PostgreSQL database of this module's own (tests with their own servers reset the
    session's database, which must not pull the tables from under the shared servers)."""
    import sqlalchemy as sa

    name = f"dihya_xproc_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def shared_prefix() -> Iterator[str]:
    with redis_key_prefix() as prefix:
        yield prefix


@pytest.fixture(scope="module")
def shared_pair(tmp_path_factory: pytest.TempPathFactory, jwt_secret: str, shared_db: str,
                shared_prefix: str) -> Iterator[Pair]:
    """Two processes on one Redis and one PostgreSQL, started once for the module.

    Starting a pair costs seconds (more on a loaded machine); tests sharing it stay apart by
    using their own user ids (the ``u`` fixture), rooms and documents.
    """
    root = tmp_path_factory.mktemp("shared-pair")
    servers: list[ServerProcess] = []
    for n in (1, 2):
        workdir = root / f"server{n}"
        workdir.mkdir()
        env = clean_environ()
        env.update({"DIHYA_RT_JWT_SECRET": jwt_secret,
                    "DIHYA_RT_API_KEYS": hash_api_key(TEST_API_KEY),
                    "DIHYA_RT_DATABASE_URL": shared_db, "DIHYA_RT_REDIS_URL": REDIS_URL,
                    "DIHYA_RT_REDIS_PREFIX": shared_prefix,
                    "DIHYA_RT_AUDIT_LOG": str(workdir / "audit.log"), **SHARED_SETTINGS})
        servers.append(ServerProcess(Path(workdir), env, free_port()))
    migrated = servers[0].cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    try:
        for server in servers:
            server.launch()
        yield servers[0].wait_ready(), servers[1].wait_ready()
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def u() -> Callable[[str], str]:
    """``u("alice")``: a user id of this test's own (the shared servers keep users' state)."""
    tag = uuid.uuid4().hex[:6]
    return lambda name: f"{name}-{tag}"


@pytest.fixture
def make_pair(start_server, redis_url: str, redis_prefix: str,
              postgres_url: str) -> Callable[..., Pair]:
    """``make_pair(**env)``: like ``two_servers``, with extra settings for both processes."""

    def make(**env: Any) -> Pair:
        reset_postgres(postgres_url)
        shared = {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix,
                  "DATABASE_URL": postgres_url, **env}
        first = start_server(start=False, **shared)  # migrates the shared database once
        second = start_server(start=False, migrate=False, **shared)
        first.launch()
        second.launch()
        return first.wait_ready(), second.wait_ready()

    return make


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0,
               interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def ok(client: SioClient, event: str, data: Any = None) -> Any:
    """The ``data`` of a successful call; fails the test with the envelope otherwise."""
    reply = client.call(event, data, timeout=10)
    assert reply["ok"], (event, reply)
    return reply["data"]


def settle() -> None:
    """Time for an emit that should NOT arrive to arrive anyway, once a later one did.

    Every assertion of absence first waits for a later event on the same process (the queue
    delivers in order); this covers the remaining thread hand-over in the client.
    """
    time.sleep(0.3)


def counts_after_new(client: SioClient, notification_id: str, timeout: float = 5.0) -> dict:
    """The ``notifications:counts`` that follows ``notifications:new`` of ``notification_id``."""
    client.wait_for("notifications:new", lambda n: n["id"] == notification_id, timeout)

    def later_counts() -> dict | None:
        seen_new = False
        for name, data in list(client.received):
            if name == "notifications:new" and data["id"] == notification_id:
                seen_new = True
            elif seen_new and name == "notifications:counts":
                return data
        return None

    assert wait_until(later_counts, timeout), [name for name, _ in client.received]
    return later_counts()  # type: ignore[return-value]


def connected(client: SioClient) -> SioClient:
    """Wait for the connect-time counts, so that later counts are told apart from them."""
    client.wait_for("notifications:counts")
    return client


# -- chat ---------------------------------------------------------------------------------


def room_messages(client: SioClient, room_id: str) -> list[dict]:
    return [m for m in client.events("chat:message") if m["room_id"] == room_id]


def texts(client: SioClient, room_id: str) -> list[str]:
    return [m["text"] for m in room_messages(client, room_id)]


def send(client: SioClient, room_id: str, text: str, cid: str | None = None) -> dict:
    return ok(client, "chat:send", {"room_id": room_id, "text": text,
                                    "client_msg_id": cid or str(uuid.uuid4())})


def wait_text(client: SioClient, room_id: str, text: str, timeout: float = 5.0) -> dict:
    return client.wait_for("chat:message",
                           lambda m: m["room_id"] == room_id and m["text"] == text, timeout)


def send_concurrently(senders: list[SioClient], room_id: str, per_sender: int) -> list[dict]:
    """Every sender sends ``per_sender`` messages (``"<sender index>-<i>"``) at once, each in
    its own thread; returns the stored messages (asserting that none was refused)."""
    acks: list[dict] = []
    errors: list[Any] = []
    start = threading.Barrier(len(senders))

    def run(client: SioClient, tag: int) -> None:
        start.wait()
        for i in range(per_sender):
            reply = client.call("chat:send", {"room_id": room_id, "text": f"{tag}-{i}",
                                              "client_msg_id": str(uuid.uuid4())}, timeout=15)
            (acks if reply["ok"] else errors).append(reply.get("data") or reply)

    threads = [threading.Thread(target=run, args=(s, n)) for n, s in enumerate(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    return acks


def test_chat_concurrent_senders_on_two_processes_give_one_gap_free_order(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    alice = sio_client(a, token(u("alice")))  # a member connected only to a
    bob = sio_client(b, token(u("bob")))  # a member connected only to b
    room = ok(alice, "chat:create_room", {"name": "busy", "visibility": "public"})["id"]
    ok(bob, "chat:join", {"room_id": room})
    # chat:send allows a burst of 20 per connection: 2 senders per process x 20 = 80
    senders = [sio_client(server, token(u(f"s{i}"))) for i, server in enumerate((a, a, b, b))]
    for s in senders:
        ok(s, "chat:join", {"room_id": room})
    per_sender = 20
    total = per_sender * len(senders)
    acks = send_concurrently(senders, room, per_sender)
    assert sorted(m["seq"] for m in acks) == list(range(1, total + 1))
    for member in (alice, bob):
        assert wait_until(lambda m=member: len(room_messages(m, room)) >= total), \
            len(room_messages(member, room))
    settle()
    by_seq = {m["seq"]: m["id"] for m in acks}
    for member in (alice, bob):
        got = room_messages(member, room)
        assert len(got) == total  # nothing twice
        assert sorted(m["seq"] for m in got) == list(range(1, total + 1))
        assert {m["seq"]: m["id"] for m in got} == by_seq
    # history is the same order, whichever process answers
    pages = [ok(c, "chat:history", {"room_id": room, "limit": 100}) for c in (alice, bob)]
    for page in pages:
        assert [m["seq"] for m in page["messages"]] == list(range(1, total + 1))
        assert [m["id"] for m in page["messages"]] == [by_seq[s] for s in range(1, total + 1)]
        assert page["last_seq"] == total and page["has_more"] is False
    # every sender's own messages are in its sending order
    for tag in range(len(senders)):
        mine = [m["text"] for m in pages[0]["messages"] if m["text"].startswith(f"{tag}-")]
        assert mine == [f"{tag}-{i}" for i in range(per_sender)]


def test_chat_membership_changes_on_one_process_apply_on_the_other(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    alice = sio_client(a, token(u("alice")))  # the owner, acting through process a
    bob, eve, dave, frank = (sio_client(b, token(u(who)))
                             for who in ("bob", "eve", "dave", "frank"))
    room = ok(alice, "chat:create_room", {"name": "ops", "visibility": "private"})["id"]
    for user in (u("bob"), u("eve"), u("dave")):
        ok(alice, "chat:invite", {"room_id": room, "user_id": user})
    send(alice, room, "m1")
    for member in (bob, eve, dave):
        wait_text(member, room, "m1")

    kicked = ok(alice, "chat:kick", {"room_id": room, "user_id": u("bob")})
    assert kicked["removed"] is True
    left = bob.wait_for("chat:member_left", lambda e: e["user_id"] == u("bob"))
    assert left["reason"] == "kicked"
    banned = ok(alice, "chat:ban", {"room_id": room, "user_id": u("eve"), "reason": "spam"})
    assert banned["was_member"] is True
    left = eve.wait_for("chat:member_left", lambda e: e["user_id"] == u("eve"))
    assert left["reason"] == "banned"

    send(alice, room, "m2")
    wait_text(dave, room, "m2")  # dave is on b too: b has delivered m2
    settle()
    assert texts(bob, room) == ["m1"]
    assert texts(eve, room) == ["m1"]
    assert texts(frank, room) == []
    refused = eve.call("chat:join", {"room_id": room})
    assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
    refused = bob.call("chat:send", {"room_id": room, "text": "still here?",
                                     "client_msg_id": str(uuid.uuid4())})
    assert refused["ok"] is False and refused["error"]["details"]["reason"] == "not_a_member"

    invited = ok(alice, "chat:invite", {"room_id": room, "user_id": u("frank")})
    assert invited["added"] is True
    assert frank.wait_for("chat:member_joined", lambda e: e["user_id"] == u("frank"))["by"] == \
        u("alice")
    send(alice, room, "m3")
    assert wait_text(frank, room, "m3")["seq"] == 3
    wait_text(dave, room, "m3")
    settle()
    assert texts(frank, room) == ["m3"]
    assert texts(bob, room) == ["m1"] and texts(eve, room) == ["m1"]
    assert texts(dave, room) == ["m1", "m2", "m3"]


def test_chat_resend_through_the_other_process_returns_the_original(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    alice_a = sio_client(a, token(u("alice")))
    alice_b = sio_client(b, token(u("alice")))  # the same user, reconnected to the other process
    bob = sio_client(b, token(u("bob")))
    room = ok(alice_a, "chat:create_room", {"name": "retry", "visibility": "public"})["id"]
    ok(bob, "chat:join", {"room_id": room})
    cid = str(uuid.uuid4())
    first = send(alice_a, room, "once", cid)
    assert first["duplicate"] is False and first["seq"] == 1
    again = send(alice_b, room, "once (resent)", cid)
    assert again["duplicate"] is True
    assert {k: again[k] for k in ("id", "seq", "text", "created_at")} == \
        {k: first[k] for k in ("id", "seq", "text", "created_at")}
    marker = send(alice_b, room, "marker")
    assert marker["seq"] == 2  # the resend took no seq
    for client in (alice_a, alice_b, bob):
        wait_text(client, room, "marker")
    settle()
    for client in (alice_a, alice_b, bob):
        assert [m["id"] for m in room_messages(client, room)] == [first["id"], marker["id"]]
    page = ok(bob, "chat:history", {"room_id": room})
    assert [m["text"] for m in page["messages"]] == ["once", "marker"]


def test_chat_http_message_on_one_process_reaches_members_on_the_other(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    alice = sio_client(a, token(u("alice")))
    bob = sio_client(b, token(u("bob")))
    outsider = sio_client(b, token(u("olga")))
    room = ok(alice, "chat:create_room", {"name": "deploys", "visibility": "public"})["id"]
    ok(bob, "chat:join", {"room_id": room})
    status, body = a.http("POST", f"/api/v1/chat/rooms/{room}/messages",
                          {"text": "Deploy finished", "data": {"build": 42}}, api_key=True)
    assert status == 201, body
    posted = body["data"]
    got = wait_text(bob, room, "Deploy finished")
    assert got["id"] == posted["id"] and got["seq"] == 1
    assert got["kind"] == "system" and got["author"] is None and got["data"] == {"build": 42}
    assert wait_text(alice, room, "Deploy finished")["id"] == posted["id"]
    settle()
    assert outsider.events("chat:message") == []
    status, page = b.http("GET", f"/api/v1/chat/rooms/{room}/messages", api_key=True)
    assert status == 200 and [m["id"] for m in page["data"]["messages"]] == [posted["id"]]
    status, _ = b.http("POST", "/api/v1/chat/rooms/nope/messages", {"text": "x"}, api_key=True)
    assert status == 404


def test_chat_dm_opened_at_once_on_both_processes_is_one_room_and_mentions_notify(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    alice = connected(sio_client(a, token(u("alice"))))
    bob = connected(sio_client(b, token(u("bob"))))
    start = threading.Barrier(2)
    replies: list[Any] = [None, None]

    def open_dm(n: int, client: SioClient, peer: str) -> None:
        start.wait()
        replies[n] = client.call("chat:dm", {"user_id": peer}, timeout=10)

    threads = [threading.Thread(target=open_dm, args=(0, alice, u("bob"))),
               threading.Thread(target=open_dm, args=(1, bob, u("alice")))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert all(r and r["ok"] for r in replies), replies
    room = replies[0]["data"]["id"]
    assert replies[1]["data"]["id"] == room  # one room, whoever created it
    assert replies[0]["data"]["peer"] == u("bob") and replies[1]["data"]["peer"] == u("alice")
    text = f"can you look, @{u('bob')}?"
    sent = send(alice, room, text)
    assert sent["mentions"] == [u("bob")]
    assert wait_text(bob, room, text)["id"] == sent["id"]
    mention = bob.wait_for("notifications:new", lambda n: n["category"] == "chat.mention")
    assert mention["data"] == {"room_id": room, "message_id": sent["id"], "seq": 1}
    listed = [r for r in ok(bob, "chat:rooms")["rooms"] if r["kind"] == "dm"]
    assert [(r["id"], r["unread_count"], r["mention_count"]) for r in listed] == [(room, 1, 1)]
    settle()
    assert alice.events("notifications:new") == []


def test_chat_typing_reaches_the_others_expires_and_stops_on_disconnect(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    ttl = TYPING_TTL
    a, b = shared_pair
    alice = sio_client(a, token(u("alice")))  # the typist, on a
    carol = sio_client(a, token(u("carol")))  # another member on the typist's process
    bob = sio_client(b, token(u("bob")))  # a member on the other process
    room = ok(alice, "chat:create_room", {"name": "typing", "visibility": "public"})["id"]
    ok(bob, "chat:join", {"room_id": room})
    ok(carol, "chat:join", {"room_id": room})

    def typing_events(client: SioClient) -> list[tuple[str, bool]]:
        return [(e["user_id"], e["typing"]) for e in client.events("chat:typing")
                if e["room_id"] == room]

    started = time.monotonic()
    assert ok(alice, "chat:typing", {"room_id": room, "typing": True})["sent"] is True
    for other in (bob, carol):
        event = other.wait_for("chat:typing", lambda e: e["typing"] is True)
        assert event["user_id"] == u("alice") and event["expires_in"] == ttl
    stopped = bob.wait_for("chat:typing", lambda e: e["typing"] is False, timeout=ttl + 3)
    lapsed = time.monotonic() - started
    assert stopped["user_id"] == u("alice")
    assert ttl - 0.2 <= lapsed <= ttl + 2.5, lapsed  # the expiry, not an immediate stop
    carol.wait_for("chat:typing", lambda e: e["typing"] is False)
    assert typing_events(alice) == []  # never to the typist

    assert ok(alice, "chat:typing", {"room_id": room, "typing": True})["sent"] is True
    assert wait_until(lambda: typing_events(bob).count((u("alice"), True)) == 2)
    gone = time.monotonic()
    alice.disconnect()
    assert wait_until(lambda: typing_events(bob).count((u("alice"), False)) == 2, timeout=ttl)
    assert time.monotonic() - gone < ttl - 0.5  # the disconnect stopped it, not the expiry
    assert wait_until(lambda: typing_events(carol).count((u("alice"), False)) == 2, timeout=ttl)
    assert typing_events(bob) == [(u("alice"), True), (u("alice"), False)] * 2


def test_chat_typing_stops_at_once_when_the_typist_is_kicked_on_another_process(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    alice = sio_client(a, token(u("alice")))  # the owner: the kick is handled on a
    carol = sio_client(a, token(u("carol")))  # a member on a
    bob = sio_client(b, token(u("bob")))  # the typist, on b: only b saw him type
    room = ok(alice, "chat:create_room", {"name": "kick-typing", "visibility": "public"})["id"]
    ok(bob, "chat:join", {"room_id": room})
    ok(carol, "chat:join", {"room_id": room})
    assert ok(bob, "chat:typing", {"room_id": room, "typing": True})["sent"] is True
    carol.wait_for("chat:typing", lambda e: e["typing"] is True)

    kicked = time.monotonic()
    ok(alice, "chat:kick", {"room_id": room, "user_id": u("bob")})

    stopped = carol.wait_for("chat:typing", lambda e: e["typing"] is False, timeout=TYPING_TTL)
    assert stopped["user_id"] == u("bob") and stopped["room_id"] == room
    assert time.monotonic() - kicked < TYPING_TTL - 0.5  # the kick stopped it, not the expiry


def test_chat_kick_on_one_process_unsubscribes_the_room_channel_on_the_other(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    alice = sio_client(a, token(u("alice")))  # the owner: the kick is handled on a
    bob = sio_client(b, token(u("bob")))  # the kicked member, on b ...
    bob_tab = sio_client(a, token(u("bob")))  # ... and in a second tab on a
    dave = sio_client(b, token(u("dave")))  # a member who stays, on b
    room = ok(alice, "chat:create_room", {"name": "ops", "visibility": "private"})["id"]
    channel = f"chat:{room}"
    for user in (u("bob"), u("dave")):
        ok(alice, "chat:invite", {"room_id": room, "user_id": user})
    for client in (alice, bob, bob_tab, dave):
        ok(client, "subscribe", {"channel": channel})

    ok(alice, "chat:kick", {"room_id": room, "user_id": u("bob")})

    for tab in (bob, bob_tab):
        gone = tab.wait_for("unsubscribed", lambda e: e["channel"] == channel)
        assert gone["reason"] == "forbidden"
    assert wait_until(lambda: u("bob") not in
                      [m["user_id"] for m in ok(alice, "presence", {"channel": channel})
                       ["members"]])
    ok(alice, "publish", {"channel": channel, "data": "after the kick"})
    dave.wait_for("publication", lambda p: p["data"] == "after the kick")  # b delivered it
    settle()
    for tab in (bob, bob_tab):
        assert [p["data"] for p in tab.events("publication")] == []
    refused = bob.call("subscribe", {"channel": channel})
    assert refused["ok"] is False and refused["error"]["code"] == "forbidden"


# -- notifications ------------------------------------------------------------------------


def test_notification_over_http_reaches_every_tab_on_both_processes_and_nobody_else(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    tab_a = connected(sio_client(a, token(u("alice"))))
    tab_b = connected(sio_client(b, token(u("alice"))))
    others = [connected(sio_client(server, token(u("bob")))) for server in (a, b)]
    status, body = a.http("POST", "/api/v1/notifications",
                          {"user_id": u("alice"), "category": "builds",
                           "title": "Build 42 finished", "data": {"build": 42},
                           "action_url": "/builds/42", "severity": "success"}, api_key=True)
    assert status == 201, body
    created = body["data"]["notifications"][0]
    for tab in (tab_a, tab_b):
        new = tab.wait_for("notifications:new")
        assert new["id"] == created["id"] and new["data"] == {"build": 42}
        assert new["title"] == "Build 42 finished" and new["user_id"] == u("alice")
        assert counts_after_new(tab, created["id"]) == {"unseen": 1, "unread": 1}
    settle()
    for tab in (tab_a, tab_b):
        assert len(tab.events("notifications:new")) == 1
    for other in others:
        assert other.events("notifications:new") == []
        assert other.events("notifications:counts") == [{"unseen": 0, "unread": 0}]


def test_mark_read_in_a_tab_on_one_process_updates_the_tab_on_the_other(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    tab_a = connected(sio_client(a, token(u("alice"))))
    tab_b = connected(sio_client(b, token(u("alice"))))
    status, body = b.http("POST", "/api/v1/notifications",
                          {"user_ids": [u("alice")], "title": "Review requested"}, api_key=True)
    assert status == 201, body
    nid = body["data"]["notifications"][0]["id"]
    for tab in (tab_a, tab_b):
        assert counts_after_new(tab, nid) == {"unseen": 1, "unread": 1}
    reply = ok(tab_a, "notifications:mark_read", {"ids": [nid]})
    assert reply == {"ids": [nid], "state": "read", "counts": {"unseen": 0, "unread": 0}}
    updated = tab_b.wait_for("notifications:updated")
    assert updated == {"ids": [nid], "state": "read"}
    assert wait_until(lambda: tab_b.events("notifications:counts")[-1] == {"unseen": 0,
                                                                           "unread": 0})
    names = [name for name, _ in tab_b.received]
    assert names.index("notifications:updated") < len(names) - 1 - names[::-1].index(
        "notifications:counts")  # counts follow the update
    settle()
    assert tab_a.events("notifications:updated") == []  # the tab that acted has its reply
    page = ok(tab_b, "notifications:list", {"status": "unread"})
    assert page["items"] == []


def test_idempotent_notification_posted_to_both_processes_at_once_is_created_once(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    tab = connected(sio_client(b, token(u("alice"))))
    body = {"user_ids": [u("alice"), u("bob")], "title": "Invoice 7 paid", "category": "billing",
            "idempotency_key": "invoice-7-paid"}
    start = threading.Barrier(2)
    results: list[Any] = [None, None]

    def post(n: int, server: ServerProcess) -> None:
        start.wait()
        results[n] = server.http("POST", "/api/v1/notifications", body, api_key=True,
                                 timeout=10)

    threads = [threading.Thread(target=post, args=(n, s)) for n, s in enumerate((a, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert sorted(status for status, _ in results) == [200, 201], results
    ids = [[n["id"] for n in reply["data"]["notifications"]] for _, reply in results]
    assert ids[0] == ids[1] and len(set(ids[0])) == 2  # the same two, whichever answered
    assert sorted(reply["data"]["created"] for _, reply in results) == [0, 2]
    new = tab.wait_for("notifications:new")
    assert new["id"] == ids[0][0]
    assert counts_after_new(tab, new["id"]) == {"unseen": 1, "unread": 1}
    settle()
    assert len(tab.events("notifications:new")) == 1
    assert ok(tab, "notifications:counts") == {"unseen": 1, "unread": 1}


WORKER = """
import json
import sys

from dihya_realtime.realtime import Realtime

rt = Realtime()
assert rt.socketio is None and rt.app is None
made = rt.notify(user_id=sys.argv[1], category="builds", title="Nightly build failed",
                 data={"build": 7}, severity="error")
print(json.dumps([n["id"] for n in made]))
"""


def test_notify_from_a_worker_process_without_socketio_reaches_a_connected_client(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    alice = connected(sio_client(b, token(u("alice"))))
    bob = connected(sio_client(a, token(u("bob"))))
    env = clean_environ()
    env.update({"DIHYA_RT_REDIS_URL": a.env["DIHYA_RT_REDIS_URL"],
                "DIHYA_RT_DATABASE_URL": a.env["DIHYA_RT_DATABASE_URL"],
                # the prefix names the message-queue channel: the servers' own, not a default
                "DIHYA_RT_REDIS_PREFIX": a.env["DIHYA_RT_REDIS_PREFIX"],
                "DIHYA_RT_AUDIT_LOG": "off"})
    result = subprocess.run([sys.executable, "-c", WORKER, u("alice")], env=env,
                            capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    (nid,) = json.loads(result.stdout.strip().splitlines()[-1])
    new = alice.wait_for("notifications:new")
    assert new["id"] == nid and new["severity"] == "error" and new["data"] == {"build": 7}
    assert counts_after_new(alice, nid) == {"unseen": 1, "unread": 1}
    settle()
    assert bob.events("notifications:new") == []


def test_connect_time_counts_reflect_stored_notifications(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    for title in ("one", "two", "three"):
        status, body = a.http("POST", "/api/v1/notifications",
                              {"user_id": u("zoe"), "title": title}, api_key=True)
        assert status == 201, body
    first = sio_client(b, token(u("zoe")))
    assert first.wait_for("notifications:counts") == {"unseen": 3, "unread": 3}
    page = ok(first, "notifications:list", {})
    assert [n["title"] for n in page["items"]] == ["three", "two", "one"]
    ok(first, "notifications:mark_read", {"ids": [page["items"][0]["id"]]})
    ok(first, "notifications:mark_seen", {"ids": [page["items"][1]["id"]]})
    later = sio_client(a, token(u("zoe")))
    assert later.wait_for("notifications:counts") == {"unseen": 1, "unread": 2}
    stranger = sio_client(a, token(u("yann")))
    assert stranger.wait_for("notifications:counts") == {"unseen": 0, "unread": 0}


# -- collab -------------------------------------------------------------------------------


class RemoteEditor:
    """A client-side Yjs document over a real Socket.IO connection (what a JS provider does)."""

    def __init__(self, client: SioClient, doc_id: str) -> None:
        self.client = client
        self.doc_id = doc_id
        self.doc: Doc = Doc()
        self.text = self.doc.get("text", type=Text)
        self.applied = 0  # doc:update events applied so far
        self.acked: list[int] = []

    def join(self) -> dict:
        data = ok(self.client, "doc:join", {"doc_id": self.doc_id})
        handle_sync_message(data["sync_step2"][1:], self.doc)
        step2 = handle_sync_message(data["sync_step1"][1:], self.doc)
        assert step2 is not None
        ok(self.client, "doc:sync", {"doc_id": self.doc_id, "message": step2})
        return data

    def edit(self, index: int, chunk: str) -> int:
        before = self.doc.get_state()
        self.text.insert(index, chunk)
        seq = ok(self.client, "doc:update", {"doc_id": self.doc_id,
                                             "update": self.doc.get_update(before)})["seq"]
        self.acked.append(seq)
        return seq

    def receive(self) -> int:
        """Apply the relayed updates not applied yet; returns how many have arrived in all."""
        updates = [e for e in self.client.events("doc:update") if e["doc_id"] == self.doc_id]
        for e in updates[self.applied:]:
            self.doc.apply_update(e["update"])
        self.applied = len(updates)
        return self.applied

    @property
    def content(self) -> str:
        return str(self.text)


def share(creator: RemoteEditor, doc_id: str) -> None:
    """The creator lets every ``user`` edit the document (access is explicit)."""
    ok(creator.client, "doc:grant", {"doc_id": doc_id, "role": "user", "mode": "edit"})


def concurrent_edits(editors: list[RemoteEditor], per_editor: int) -> list[str]:
    """Each editor appends its tokens to its own copy at once; returns every token."""
    start = threading.Barrier(len(editors))
    errors: list[BaseException] = []

    def run(editor: RemoteEditor, tag: str) -> None:
        start.wait()
        try:
            for i in range(per_editor):
                editor.edit(len(editor.content), f"<{tag}{i}>")
        except BaseException as exc:  # surfaced below, with the thread's cause
            errors.append(exc)

    tags = [chr(ord("a") + n) for n in range(len(editors))]
    threads = [threading.Thread(target=run, args=(e, t)) for e, t in zip(editors, tags,
                                                                        strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    return [f"<{t}{i}>" for t in tags for i in range(per_editor)]


def converge(editors: list[RemoteEditor], tokens: list[str], base: str = "") -> str:
    """Apply relayed updates until every editor holds every token; the common content.

    ``base`` is the text the document held before the edits.
    """

    def done() -> bool:
        for e in editors:
            e.receive()
        return all(all(t in e.content for t in tokens) for e in editors)

    assert wait_until(done, timeout=15), [e.content for e in editors]
    contents = {e.content for e in editors}
    assert len(contents) == 1, contents
    content = contents.pop()
    assert len(content) == len(base) + sum(len(t) for t in tokens)  # nothing twice
    return content


def test_collab_concurrent_edits_on_two_processes_converge_and_late_joiners_catch_up(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    doc_id = "spec-x"
    alice = RemoteEditor(sio_client(a, token(u("alice"))), doc_id)
    bob = RemoteEditor(sio_client(b, token(u("bob"))), doc_id)
    alice.join()
    share(alice, doc_id)
    bob.join()
    tokens = concurrent_edits([alice, bob], per_editor=25)
    content = converge([alice, bob], tokens)
    acked = alice.acked + bob.acked
    assert sorted(acked) == list(range(1, len(acked) + 1))  # one seq order for both processes
    for server in (a, b):
        for editor_server in (a, b):  # a late joiner on either process gets the full state
            late = RemoteEditor(sio_client(editor_server, token(u("carol"))), doc_id)
            joined = late.join()
            assert late.content == content
            assert joined["seq"] == len(acked)
        status, body = server.http("GET", f"/api/v1/docs/{doc_id}", api_key=True)
        assert status == 200 and body["text"] == content and body["seq"] == len(acked)


def test_collab_state_survives_a_restart_of_both_processes(
        make_pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = make_pair(**SHARED_SETTINGS)  # a pair of its own: restarting it disturbs nobody
    doc_id = "durable"
    status, body = a.http("POST", "/api/v1/docs", {"doc_id": doc_id, "text": "# Title\n"},
                          api_key=True)
    assert status == 201, body
    status, body = a.http("PUT", f"/api/v1/docs/{doc_id}/access",
                          {"grants": [{"role": "user", "mode": "edit"}]}, api_key=True)
    assert status == 200, body
    alice = RemoteEditor(sio_client(a, token(u("alice"))), doc_id)
    bob = RemoteEditor(sio_client(b, token(u("bob"))), doc_id)
    assert alice.join()["seq"] == 1
    bob.join()
    assert alice.content == bob.content == "# Title\n"
    tokens = concurrent_edits([alice, bob], per_editor=15)
    content = converge([alice, bob], tokens, base="# Title\n")
    assert content.startswith("# Title\n")
    last = max(alice.acked + bob.acked)
    assert wait_until(lambda: any(line["type"] == "doc_compact"
                                  for server in (a, b) for line in server.audit_lines()))
    alice.client.disconnect()
    bob.client.disconnect()
    a.stop()
    b.stop()
    a.start()
    b.start()
    for server in (a, b):
        status, body = server.http("GET", f"/api/v1/docs/{doc_id}", api_key=True)
        assert status == 200, body
        assert body["text"] == content and body["seq"] == last
    again = RemoteEditor(sio_client(b, token(u("carol"))), doc_id)
    again.join()
    assert again.content == content
    assert again.edit(len(content), "!") == last + 1


def test_collab_revoking_access_on_one_process_closes_the_copy_open_on_the_other(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    doc_id = f"shared-{u('doc')}"
    alice = RemoteEditor(sio_client(a, token(u("alice"))), doc_id)
    alice.join()
    ok(alice.client, "doc:grant", {"doc_id": doc_id, "user_id": u("bob"), "mode": "edit"})
    bob = RemoteEditor(sio_client(b, token(u("bob"))), doc_id)
    bob.join()
    ok(alice.client, "doc:revoke", {"doc_id": doc_id, "user_id": u("bob")})
    assert bob.client.wait_for("doc:closed") == {"doc_id": doc_id, "reason": "forbidden"}
    refused = bob.client.call("doc:join", {"doc_id": doc_id})
    assert refused["error"]["code"] == "forbidden"


def test_collab_awareness_crosses_processes_and_clears_on_disconnect(
        shared_pair: Pair, u: Callable[[str], str], sio_client, token) -> None:
    a, b = shared_pair
    doc_id = "aware"
    alice = RemoteEditor(sio_client(a, token(u("alice"), name="Alice")), doc_id)
    alice.join()
    cursor = {"cursor": {"anchor": 3, "head": 7}, "color": "#f783ac"}
    mine = ok(alice.client, "doc:awareness", {"doc_id": doc_id, "state": cursor})["client_id"]
    share(alice, doc_id)
    bob = RemoteEditor(sio_client(b, token(u("bob"))), doc_id)
    bob.join()
    seen = bob.client.wait_for("doc:awareness", lambda e: e["client_id"] == mine)
    assert seen["state"] == cursor and seen["user"]["user_id"] == u("alice")
    assert seen["doc_id"] == doc_id
    # a change made on a is relayed to b live as well
    moved = {"cursor": {"anchor": 9, "head": 9}}
    ok(alice.client, "doc:awareness", {"doc_id": doc_id, "state": moved})
    bob.client.wait_for("doc:awareness", lambda e: e["state"] == moved)
    alice.client.disconnect()
    cleared = bob.client.wait_for("doc:awareness",
                                  lambda e: e["client_id"] == mine and e["state"] is None)
    assert cleared["user"]["user_id"] == u("alice")
    # and a later joiner on b does not see the gone participant
    carol = RemoteEditor(sio_client(b, token(u("carol"))), doc_id)
    joined = carol.join()
    assert all(s["client_id"] != mine for s in joined["awareness"])
    settle()
    assert [e for e in carol.client.events("doc:awareness")
            if e["client_id"] == mine] == []
