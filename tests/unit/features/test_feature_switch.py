"""``DIHYA_RT_FEATURES``: a feature left off registers no event, route, table or page element."""

from __future__ import annotations

import json
import re
import uuid

import pytest
import sqlalchemy as sa

from dihya_realtime.features import enabled_features, migration_branches
from dihya_realtime.kernel.settings import SettingsError
from dihya_realtime.realtime import Realtime
from dihya_realtime.store import Database


def test_all_is_the_default_and_session_always_runs():
    assert enabled_features(["all"]) == ["session", "admin", "channels", "chat", "collab",
                                         "notifications", "webhooks"]
    assert enabled_features(["chat"]) == ["session", "chat"]


def test_an_unknown_feature_name_stops_start_up(settings_overrides):
    with pytest.raises(SettingsError, match="unknown feature.*chta"):
        Realtime(features="chta", **settings_overrides)


def test_a_disabled_features_events_are_unknown_and_the_enabled_ones_work(make_rt, connect):
    rt = make_rt(features="chat")
    client = connect(rt)
    created = client.call("chat:create_room", {"name": "general", "visibility": "public"})
    assert created["ok"], created
    for name, payload in (("doc:join", {"doc_id": "d1"}), ("notifications:list", {}),
                          ("subscribe", {"channel": "chat:general"})):
        reply = client.call(name, payload)
        assert reply["ok"] is False and reply["error"]["code"] == "not_found", (name, reply)
    assert client.call("whoami")["ok"]  # the kernel's own events stay


def test_a_disabled_feature_has_no_http_route_and_no_document_entry(make_rt):
    rt = make_rt(features="chat")
    http = rt.app.test_client()
    rules = {rule.rule for rule in rt.app.url_map.iter_rules()}
    assert "/api/v1/chat/rooms/<room_id>/messages" in rules
    assert not any(r.startswith(("/api/v1/docs", "/api/v1/notifications", "/api/v1/publish"))
                   for r in rules)
    asyncapi = json.dumps(http.get("/asyncapi.json").json)
    assert "chat:send" in asyncapi
    assert "doc:join" not in asyncapi and "notifications:list" not in asyncapi
    assert "doc:update" not in asyncapi  # a server event of collab, hidden with it
    openapi = http.get("/openapi.json").json
    assert not any(p.startswith("/api/v1/docs") for p in openapi["paths"])


def test_the_demo_page_hides_what_the_server_does_not_run(make_rt):
    from dihya_realtime.demo.web import create_web_blueprint

    def page_features(rt: Realtime) -> dict:
        rt.app.register_blueprint(create_web_blueprint(rt))
        html = rt.app.test_client().get("/").get_data(as_text=True)
        match = re.search(r'"features":\s*(\{[^}]*\})', html)
        assert match, "the page config names its features"
        return json.loads(match.group(1))

    assert page_features(make_rt(features="chat")) == {
        "chat": True, "notifications": False, "docs": False}
    assert page_features(make_rt()) == {"chat": True, "notifications": True, "docs": True}


def test_migrate_creates_only_the_enabled_features_tables(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'only-chat.db'}")
    db.migrate(migration_branches(["chat"]))
    tables = set(sa.inspect(db.engine).get_table_names())
    db.dispose()
    assert {"users", "audit_events"} <= tables
    assert any(t.startswith("chat_") for t in tables)
    assert not any(t.startswith(("doc", "notification")) for t in tables), tables

    everything = Database(f"sqlite:///{tmp_path / 'all.db'}")
    everything.migrate(migration_branches(["all"]))
    all_tables = set(sa.inspect(everything.engine).get_table_names())
    everything.dispose()
    assert any(t.startswith("notification") for t in all_tables)
    assert any(t.startswith("doc") for t in all_tables)


def test_chat_without_notifications_sends_mentions_without_notifying(make_rt, connect):
    """The seam: chat's Notifier is absent when notifications is off (its tables are not
    even migrated on such a server), so a mention is stored and pushed, never notified."""
    rt = make_rt(features="chat")
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    room = alice.call("chat:create_room", {"name": "general", "visibility": "public"})["data"]
    assert bob.call("chat:join", {"room_id": room["id"]})["ok"]
    sent = alice.call("chat:send", {"room_id": room["id"], "text": "hi @bob",
                                    "client_msg_id": str(uuid.uuid4())})
    assert sent["ok"], sent
    assert sent["data"]["mentions"] == ["bob"]
    assert not hasattr(rt, "notifications")
    assert rt.chat.messages.notifier is None


def test_notify_says_so_when_notifications_is_off(make_rt):
    rt = make_rt(features="chat")
    with pytest.raises(RuntimeError, match="leaves notifications off"):
        rt.notify(user_id="bob", title="hello")
