"""Notifications: creation (Python and HTTP), live and offline delivery, state changes pushed
to the other tabs, preferences, pagination, ownership, retention — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from dihya_realtime.features.notifications.service import (
    NOTIFICATIONS,
    decode_cursor,
    purge_notifications,
)
from dihya_realtime.kernel.auth import hash_api_key
from dihya_realtime.kernel.errors import RealtimeError

API_KEY = "notify-test-key-" + "k" * 24


# -- a client that keeps every event it received, by name


def _drain(client) -> dict[str, list[Any]]:
    seen = client.__dict__.setdefault("_seen", defaultdict(list))
    for message in client.get_received():
        seen[message["name"]].append(message["args"][0] if message["args"] else None)
    return seen


def take(client, name: str) -> list[Any]:
    """The ``name`` events received so far (and forget them)."""
    return _drain(client).pop(name, [])


def wait_for(client, name: str, count: int = 1, timeout: float = 3.0) -> list[Any]:
    """Wait until ``count`` ``name`` events arrived (connect pushes come from a thread)."""
    deadline = time.monotonic() + timeout
    while len(_drain(client)[name]) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    got = take(client, name)
    assert len(got) >= count, f"expected {count} {name!r}, got {got}"
    return got


@pytest.fixture
def nrt(make_rt, database_url):
    """A Realtime on SQLite and on PostgreSQL, with an API key for the HTTP API."""
    return make_rt(database_url=database_url, api_keys=hash_api_key(API_KEY))


@pytest.fixture
def tab(connect):
    """Connect a user and consume the counts pushed at connect."""

    def open_tab(rt, user: str, roles=("user",), **kw: Any):
        client = connect(rt, user, roles=roles, **kw)
        assert client.is_connected()
        wait_for(client, "notifications:counts")
        return client

    return open_tab


def ids_of(page: dict) -> list[str]:
    return [item["id"] for item in page["items"]]


# -- creating


def test_notify_stores_and_returns_the_notification(nrt):
    [n] = nrt.notify(user_ids=["bob"], category="builds", title="Build 42 finished",
                     body="all green", data={"build": 42}, action_url="/builds/42",
                     severity="success")
    assert n["user_id"] == "bob" and n["title"] == "Build 42 finished"
    assert n["data"] == {"build": 42} and n["severity"] == "success"
    assert n["read_at"] is None and n["seen_at"] is None and n["archived_at"] is None
    page = nrt.notifications.page("bob")
    assert ids_of(page) == [n["id"]]
    assert nrt.notifications.counts("bob") == {"unseen": 1, "unread": 1}


@pytest.mark.parametrize(("fields", "bad_field"), [
    ({"title": "x" * 201}, "title"),
    ({"title": ""}, "title"),
    ({"body": "b" * 2001}, "body"),
    ({"severity": "fatal"}, "severity"),
    ({"data": {"blob": "x" * 9000}}, "data"),
    ({"action_url": "javascript:alert(1)"}, "action_url"),
    ({"action_url": "//evil.example/phish"}, "action_url"),
    ({"action_url": "ftp://files.example/x"}, "action_url"),
    ({"category": "Bad Category!"}, "category"),
    ({"role": "moderator"}, "user_ids"),  # user_ids and role together
])
def test_notify_refuses_bad_fields_and_names_them(make_rt, fields, bad_field):
    rt = make_rt()
    request = {"user_ids": ["bob"], "title": "Hello", **fields}
    with pytest.raises(RealtimeError) as exc:
        rt.notify(**request)
    assert exc.value.code == "invalid_payload"
    assert bad_field in [d["field"] for d in exc.value.details]
    assert rt.notifications.counts("bob") == {"unseen": 0, "unread": 0}


def test_action_url_accepts_http_https_and_relative_paths(make_rt):
    rt = make_rt()
    for url in ("https://app.example/builds/1", "http://localhost:3000/x", "/builds/1?tab=log"):
        [n] = rt.notify(user_id="bob", title="ok", action_url=url)
        assert n["action_url"] == url


def test_idempotent_create_makes_one_notification_and_delivers_once(nrt, tab):
    bob = tab(nrt, "bob")
    first = nrt.notify(user_ids=["bob", "carol"], title="Invoice", idempotency_key="inv-7")
    again = nrt.notify(user_ids=["bob", "carol"], title="Invoice (retry)",
                       idempotency_key="inv-7")
    assert [n["id"] for n in again] == [n["id"] for n in first]
    assert again[0]["title"] == "Invoice"
    assert len(take(bob, "notifications:new")) == 1
    assert len(ids_of(nrt.notifications.page("bob"))) == 1
    # The key is per user: another user with the same key gets their own notification.
    [dave] = nrt.notify(user_ids=["dave"], title="Invoice", idempotency_key="inv-7")
    assert dave["id"] not in {n["id"] for n in first}


def test_http_create_needs_an_api_key(nrt):
    http = nrt.app.test_client()
    response = http.post("/api/v1/notifications", json={"user_ids": ["bob"], "title": "x"})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthenticated"
    assert nrt.notifications.counts("bob")["unread"] == 0


def test_http_create_validates_creates_and_is_idempotent(nrt, tab):
    bob = tab(nrt, "bob")
    http = nrt.app.test_client()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    bad = http.post("/api/v1/notifications", headers=headers,
                    json={"user_ids": ["bob"], "title": "t" * 300, "severity": "loud",
                          "unknown": 1})
    assert bad.status_code == 400
    assert bad.json["error"]["code"] == "invalid_payload"
    assert {"title", "severity", "unknown"} <= {d["field"] for d in bad.json["error"]["details"]}
    assert http.post("/api/v1/notifications", headers=headers, data="[1]",
                     content_type="application/json").status_code == 400
    assert take(bob, "notifications:new") == []

    body = {"user_ids": ["bob"], "category": "deploys", "title": "Deployed",
            "data": {"env": "prod"}, "idempotency_key": "deploy-9"}
    created = http.post("/api/v1/notifications", headers=headers, json=body)
    assert created.status_code == 201
    assert created.json["data"]["created"] == 1
    [n] = created.json["data"]["notifications"]
    assert take(bob, "notifications:new") == [n]
    repeat = http.post("/api/v1/notifications", headers=headers, json=body)
    assert repeat.status_code == 200
    assert repeat.json["data"]["created"] == 0
    assert repeat.json["data"]["notifications"][0]["id"] == n["id"]
    assert take(bob, "notifications:new") == []


def test_role_targeting_reaches_the_users_seen_with_that_role(nrt, tab):
    tab(nrt, "mod1", roles=("user", "moderator"))
    tab(nrt, "mod2", roles=("moderator",))
    carol = tab(nrt, "carol")
    made = nrt.notify(role="moderator", category="moderation", title="Report filed")
    assert sorted(n["user_id"] for n in made) == ["mod1", "mod2"]
    assert take(carol, "notifications:new") == []
    assert nrt.notify(role="nobody-has-this", title="x") == []


def test_role_resolver_is_pluggable(make_rt):
    rt = make_rt()
    rt.notifications.role_resolver = lambda role: ["u1", "u2"] if role == "ops" else []
    assert sorted(n["user_id"] for n in rt.notify(role="ops", title="Pager")) == ["u1", "u2"]


def test_connect_keeps_the_users_table_current(nrt, tab):
    tab(nrt, "erin", roles=("user", "moderator"), name="Erin")
    with nrt.db.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT name, roles FROM users WHERE id = 'erin'")).one()
    assert row.name == "Erin"
    roles = row.roles if isinstance(row.roles, list) else json.loads(row.roles)
    assert roles == ["user", "moderator"]


# -- delivery


def test_live_delivery_reaches_every_tab_of_the_user_and_no_one_else(nrt, tab):
    bob1, bob2, carol = tab(nrt, "bob"), tab(nrt, "bob"), tab(nrt, "carol")
    [n] = nrt.notify(user_id="bob", title="Hi Bob", data={"k": "v"})
    for client in (bob1, bob2):
        assert take(client, "notifications:new") == [n]
        assert take(client, "notifications:counts") == [{"unseen": 1, "unread": 1}]
    assert take(carol, "notifications:new") == []
    assert take(carol, "notifications:counts") == []


def test_offline_user_gets_counts_at_next_connect_and_finds_the_list(nrt, connect):
    made = [nrt.notify(user_id="bob", title=f"while away {i}")[0] for i in range(3)]
    bob = connect(nrt, "bob")
    assert wait_for(bob, "notifications:counts") == [{"unseen": 3, "unread": 3}]
    page = bob.call("notifications:list", {})
    assert page["ok"]
    assert ids_of(page["data"]) == [n["id"] for n in reversed(made)]


def test_notify_from_a_worker_without_socketio_stores_it(settings_overrides, database_url):
    from dihya_realtime.realtime import Realtime

    worker = Realtime(**{**settings_overrides, "database_url": database_url})
    try:
        worker.db.migrate()
        assert worker.socketio is None
        [n] = worker.notify(user_id="bob", title="From a cron job")
        assert worker.notifications.counts("bob") == {"unseen": 1, "unread": 1}
        assert ids_of(worker.notifications.page("bob")) == [n["id"]]
    finally:
        worker.close()


def test_notify_from_a_worker_sends_on_the_users_topic(
        settings_overrides, redis_url, redis_prefix):
    """A worker's ``Realtime()`` (no Socket.IO server) sends its pushes, redacted, on the
    user's topic, where a process holding a connection of the user receives them."""
    from dihya_realtime.broker import Message
    from dihya_realtime.broker.redis import RedisBroker
    from dihya_realtime.realtime import Realtime

    worker = Realtime(**{**settings_overrides, "redis_url": redis_url,
                         "redis_prefix": redis_prefix})
    listener = RedisBroker(redis_url, redis_prefix)
    messages: list[Message] = []
    listener.set_handler(lambda m: messages.append(m) if isinstance(m, Message) else None)
    try:
        worker.db.migrate()
        listener.start()
        listener.watch("__user:bob")
        [n] = worker.notify(user_id="bob", title="Queued", data={"password": "p", "x": 1})
        deadline = time.monotonic() + 3
        while len(messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert {m.topic for m in messages} == {"__user:bob"}
        assert [(m.data["action"], m.data["event"]) for m in messages] == [
            ("emit", "notifications:new"), ("emit", "notifications:counts")]
        delivered = messages[0].data["data"]
        assert delivered["id"] == n["id"]
        assert delivered["data"]["x"] == 1 and delivered["data"]["password"] != "p"  # redacted
        assert messages[1].data["data"] == {"unseen": 1, "unread": 1}
    finally:
        listener.close()
        worker.close()


# -- state changes, each pushed to the other tab


def test_every_state_change_is_replied_and_pushed_to_the_other_tab(nrt, tab):
    tab1, tab2 = tab(nrt, "bob"), tab(nrt, "bob")
    a, b, c = (nrt.notify(user_id="bob", category=cat, title=t)[0]
               for cat, t in (("mention", "a"), ("builds", "b"), ("mention", "c")))
    for client in (tab1, tab2):
        take(client, "notifications:new")
        take(client, "notifications:counts")

    def change(event: str, payload: Any, state: str, ids: list[str], counts: dict) -> None:
        reply = tab1.call(event, payload)
        assert reply["ok"], reply
        assert reply["data"] == {"ids": sorted(ids), "state": state, "counts": counts}
        if ids:
            assert take(tab2, "notifications:updated") == [{"ids": sorted(ids), "state": state}]
            assert take(tab2, "notifications:counts") == [counts]
        else:  # nothing changed: nothing to push
            assert take(tab2, "notifications:updated") == []
        assert take(tab1, "notifications:updated") == []  # the reply told tab1 already

    change("notifications:mark_seen", {"ids": [a["id"]]}, "seen", [a["id"]],
           {"unseen": 2, "unread": 3})
    change("notifications:mark_read", {"ids": [a["id"], b["id"]]}, "read", [a["id"], b["id"]],
           {"unseen": 1, "unread": 1})
    change("notifications:mark_read", {"ids": [a["id"]]}, "read", [], {"unseen": 1, "unread": 1})
    change("notifications:mark_unread", {"ids": [b["id"]]}, "unread", [b["id"]],
           {"unseen": 1, "unread": 2})
    change("notifications:mark_all_seen", None, "seen", [c["id"]], {"unseen": 0, "unread": 2})
    change("notifications:mark_all_read", {"category": "mention"}, "read", [c["id"]],
           {"unseen": 0, "unread": 1})
    change("notifications:archive", {"ids": [b["id"]]}, "archived", [b["id"]],
           {"unseen": 0, "unread": 0})
    archived = tab1.call("notifications:list", {"status": "archived"})["data"]
    assert ids_of(archived) == [b["id"]]
    assert b["id"] not in ids_of(tab1.call("notifications:list", {})["data"])
    change("notifications:unarchive", {"ids": [b["id"]]}, "unarchived", [b["id"]],
           {"unseen": 0, "unread": 1})
    change("notifications:mark_all_read", {}, "read", [b["id"]], {"unseen": 0, "unread": 0})
    assert tab2.call("notifications:counts")["data"] == {"unseen": 0, "unread": 0}


def test_list_filters_by_status_and_category(nrt, tab):
    bob = tab(nrt, "bob")
    a = nrt.notify(user_id="bob", category="mention", title="a")[0]
    b = nrt.notify(user_id="bob", category="builds", title="b")[0]
    bob.call("notifications:mark_read", {"ids": [a["id"]]})

    def listed(payload: dict) -> list[str]:
        reply = bob.call("notifications:list", payload)
        assert reply["ok"], reply
        return ids_of(reply["data"])

    assert listed({"status": "unread"}) == [b["id"]]
    assert listed({"status": "read"}) == [a["id"]]
    assert listed({"category": "builds"}) == [b["id"]]
    assert listed({"status": "all"}) == [b["id"], a["id"]]
    bad = bob.call("notifications:list", {"limit": 51, "status": "new"})
    assert bad["error"]["code"] == "invalid_payload"
    assert {"limit", "status"} == {d["field"] for d in bad["error"]["details"]}
    assert bob.call("notifications:list", {"before": "garbage"})["error"]["code"] == \
        "invalid_payload"


def test_another_users_ids_are_not_found_and_nothing_changes(nrt, tab):
    bob, carol = tab(nrt, "bob"), tab(nrt, "carol")
    mine = nrt.notify(user_id="bob", title="mine")[0]
    theirs = nrt.notify(user_id="carol", title="theirs")[0]
    take(bob, "notifications:counts")
    take(carol, "notifications:counts")
    for event in ("notifications:mark_read", "notifications:mark_seen",
                  "notifications:archive", "notifications:mark_unread",
                  "notifications:unarchive"):
        reply = bob.call(event, {"ids": [mine["id"], theirs["id"]]})
        assert reply["error"]["code"] == "not_found", event
        assert reply["error"]["details"] == {"ids": [theirs["id"]]}
    assert bob.call("notifications:mark_read", {"ids": ["0" * 32]})["error"]["code"] == \
        "not_found"
    assert nrt.notifications.counts("bob") == {"unseen": 1, "unread": 1}
    assert nrt.notifications.counts("carol") == {"unseen": 1, "unread": 1}
    assert take(carol, "notifications:updated") == [] and take(bob, "notifications:updated") == []
    assert theirs["id"] not in ids_of(bob.call("notifications:list", {"status": "all"})["data"])
    # mark_all_read touches only the caller's notifications
    bob.call("notifications:mark_all_read", {})
    assert nrt.notifications.counts("carol") == {"unseen": 1, "unread": 1}


# -- preferences


def test_preferences_mute_live_push_per_category_but_not_critical_ones(nrt, tab):
    bob1, bob2 = tab(nrt, "bob"), tab(nrt, "bob")
    initial = bob1.call("notifications:preferences")["data"]
    assert initial == {"critical": ["security"], "digest": "off", "preferences": [
        {"category": "security", "push": True, "critical": True}]}

    reply = bob1.call("notifications:set_preferences",
                      {"preferences": {"marketing": {"push": False}}})
    assert reply["ok"]
    assert {"category": "marketing", "push": False, "critical": False} in \
        reply["data"]["preferences"]

    nrt.notify(user_id="bob", category="marketing", title="Sale!")
    for client in (bob1, bob2):
        assert take(client, "notifications:new") == []  # muted: stored and counted only
        assert take(client, "notifications:counts") == [{"unseen": 1, "unread": 1}]
    assert len(ids_of(bob1.call("notifications:list", {})["data"])) == 1

    refused = bob1.call("notifications:set_preferences",
                        {"preferences": {"security": {"push": False},
                                         "builds": {"push": False}}})
    assert refused["error"]["code"] == "forbidden"
    assert refused["error"]["details"] == {"categories": ["security"]}
    prefs = {p["category"]: p["push"]
             for p in bob1.call("notifications:preferences")["data"]["preferences"]}
    assert "builds" not in prefs  # all or nothing
    [alert] = nrt.notify(user_id="bob", category="security", title="New sign-in")
    assert take(bob1, "notifications:new") == [alert]
    assert take(bob2, "notifications:new") == [alert]

    bob1.call("notifications:set_preferences", {"preferences": {"marketing": {"push": True}}})
    [sale] = nrt.notify(user_id="bob", category="marketing", title="Sale again")
    assert take(bob2, "notifications:new") == [sale]


def test_a_critical_category_is_configurable(make_rt, connect):
    rt = make_rt(notifications_critical_categories="billing, security")
    client = connect(rt, "bob")
    assert client.call("notifications:preferences")["data"]["critical"] == ["billing",
                                                                          "security"]
    reply = client.call("notifications:set_preferences",
                        {"preferences": {"billing": {"push": False}}})
    assert reply["error"]["code"] == "forbidden"


# -- pagination


def test_pagination_through_1000_notifications_has_no_gaps_or_repeats(nrt, connect):
    start = datetime(2026, 11, 1, tzinfo=UTC)
    # 1,000 rows, many sharing a timestamp, ids in no particular order.
    rows = [{"id": uuid.uuid4().hex, "user_id": "bob", "category": "bulk", "title": f"n{i}",
             "body": "", "data": {}, "action_url": None, "severity": "info",
             "created_at": start + timedelta(seconds=i // 7), "seen_at": None,
             "read_at": None, "archived_at": None, "idempotency_key": None}
            for i in range(1000)]
    with nrt.db.write_transaction() as conn:
        conn.execute(NOTIFICATIONS.insert(), rows)
    other = nrt.notify(user_id="carol", title="not bob's")[0]
    bob = connect(nrt, "bob")
    seen: list[str] = []
    before = None
    pages = 0
    while True:
        payload = {"limit": 50} if before is None else {"limit": 50, "before": before}
        reply = bob.call("notifications:list", payload)
        assert reply["ok"], reply
        page = reply["data"]
        seen += ids_of(page)
        pages += 1
        # a notification created meanwhile (newer than every page) does not shift the pages
        if pages == 3:
            nrt.notify(user_id="bob", category="bulk", title="late arrival")
        before = page["next_cursor"]
        if before is None:
            break
        decode_cursor(before)  # the cursor is ours
    assert pages == 20
    assert len(seen) == 1000 and set(seen) == {r["id"] for r in rows}
    expected = [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]),
                                        reverse=True)]
    assert seen == expected
    assert other["id"] not in seen


# -- retention


def test_purge_removes_old_read_or_archived_notifications_only(nrt):
    service = nrt.notifications
    old_read, old_archived, old_unread, new_read = (
        service.notify(user_id="bob", title=t)[0] for t in ("or", "oa", "ou", "nr"))
    service.mark("bob", [old_read["id"], new_read["id"]], "read")
    service.mark("bob", [old_archived["id"]], "archived")
    long_ago = datetime.now(UTC) - timedelta(days=40)
    with nrt.db.write_transaction() as conn:
        conn.execute(NOTIFICATIONS.update().where(NOTIFICATIONS.c.id.in_(
            [old_read["id"], old_archived["id"], old_unread["id"]])).values(created_at=long_ago))
    assert service.purge() == 2  # default retention: 30 days
    remaining = {n["id"] for s in ("all", "archived")
                 for n in service.page("bob", status=s)["items"]}
    assert remaining == {old_unread["id"], new_read["id"]}
    assert purge_notifications(nrt.db, 0) == 1  # the recent read one, with no age limit


def test_purge_cli_uses_the_configured_retention(make_rt, tmp_path, monkeypatch, capsys):
    from dihya_realtime.cli import main

    rt = make_rt()
    [n] = rt.notify(user_id="bob", title="old news")
    rt.notifications.mark("bob", [n["id"]], "read")
    with rt.db.write_transaction() as conn:
        conn.execute(NOTIFICATIONS.update().values(
            created_at=datetime.now(UTC) - timedelta(hours=5)))
    monkeypatch.setenv("DIHYA_RT_DATABASE_URL", rt.settings.database_url)
    monkeypatch.setenv("DIHYA_RT_AUDIT_LOG", str(tmp_path / "cli-audit.log"))
    monkeypatch.setenv("DIHYA_RT_NOTIFICATIONS_RETENTION", "6h")
    assert main(["purge"]) == 0
    assert "purged 0" in capsys.readouterr().out
    assert main(["purge", "--older-than", "4h"]) == 0
    assert "purged 1" in capsys.readouterr().out
    assert rt.notifications.page("bob", status="all")["items"] == []


def test_anonymous_connections_have_no_inbox(make_rt, connect):
    rt = make_rt(anonymous=True)
    client = connect(rt, user=None)
    assert client.is_connected()
    assert client.call("notifications:counts")["error"]["code"] == "forbidden"
    assert client.call("notifications:list", {})["error"]["code"] == "forbidden"


def test_a_burst_of_connects_records_every_user_and_pushes_each_its_counts(nrt, connect):
    """The connect hook batches its database work (group commit): still one users row per
    user, current, and the counts pushed to every connection, each with its own counts."""
    nrt.notify(user_ids=["u3"], category="builds", title="t")
    clients = {f"u{i}": connect(nrt, f"u{i}", name=f"User {i}") for i in range(8)}
    clients["u3-tab2"] = connect(nrt, "u3")
    for user, client in clients.items():
        expected = 1 if user.startswith("u3") else 0
        assert wait_for(client, "notifications:counts") == [
            {"unseen": expected, "unread": expected}]
    with nrt.db.engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT id, name FROM users")).all())
    assert {f"u{i}": f"User {i}" for i in range(8)}.items() <= rows.items(), rows
