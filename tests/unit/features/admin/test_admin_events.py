"""The admin console's events on one process: what an admin sees and does, and who may not."""

from __future__ import annotations

import sqlalchemy as sa

from dihya_realtime.store.models import AuditEvent


def audit_rows(rt, type_: str) -> list[AuditEvent]:
    assert rt.audit.flush(10)
    with rt.db.session() as session:
        return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.type == type_)
                                    .order_by(AuditEvent.id)))


def test_an_admin_sees_every_connection_by_user_and_process(rt, connect) -> None:
    admin = connect(rt, "root", roles=["admin"])
    connect(rt, "alice")
    connect(rt, "alice")
    connect(rt, "bob")

    reply = admin.call("admin:connections", {})

    assert reply["ok"], reply
    data = reply["data"]
    assert data["clustered"] is False
    [proc] = data["processes"]
    assert proc["connection_count"] == 4 and proc["node"] == rt.channels.node_id
    assert sorted(c["user_id"] for c in proc["connections"]) == ["alice", "alice", "bob",
                                                                 "root"]
    assert data["users"][0] == {"user_id": "alice", "name": None, "connections": 2,
                                "processes": 1}
    only_bob = admin.call("admin:connections", {"user_id": "bob"})["data"]
    assert [u["user_id"] for u in only_bob["users"]] == ["bob"]


def test_a_process_lists_at_most_its_cap_and_says_truncated(make_rt, connect) -> None:
    rt = make_rt(admin_max_connections=2)
    admin = connect(rt, "root", roles=["admin"])
    for user in ("alice", "bob", "carol"):
        connect(rt, user)

    [proc] = admin.call("admin:connections", {})["data"]["processes"]

    assert proc["connection_count"] == 4
    assert len(proc["connections"]) == 2 and proc["truncated"] is True


def test_a_user_without_the_admin_role_is_refused_and_audited(rt, connect) -> None:
    mallory = connect(rt, "mallory", roles=["user", "moderator"])

    for name in ("admin:connections", "admin:channels", "admin:audit", "admin:metrics",
                 "admin:audit_verify"):
        reply = mallory.call(name, {})
        assert reply["ok"] is False and reply["error"]["code"] == "forbidden", (name, reply)
    reply = mallory.call("admin:disconnect_user", {"user_id": "root"})
    assert reply["error"]["code"] == "forbidden"

    denied = audit_rows(rt, "permission_denied")
    assert {(r.user_id, r.event) for r in denied} >= {("mallory", "admin:connections"),
                                                      ("mallory", "admin:disconnect_user")}


def test_an_admin_disconnects_a_user_and_is_the_audited_actor(rt, connect) -> None:
    admin = connect(rt, "root", roles=["admin"])
    alice1, alice2, bob = connect(rt, "alice"), connect(rt, "alice"), connect(rt, "bob")

    reply = admin.call("admin:disconnect_user", {"user_id": "alice", "reason": "spam"})

    assert reply == {"ok": True, "data": {"user_id": "alice", "requested": True}}
    assert not alice1.is_connected() and not alice2.is_connected()
    assert bob.is_connected() and admin.is_connected()
    [row] = audit_rows(rt, "admin_disconnect_user")
    assert row.user_id == "root" and row.event == "admin:disconnect_user"
    assert row.details == {"target": "alice", "reason": "spam"}


def test_channels_show_subscriber_counts_and_presence(rt, connect) -> None:
    admin = connect(rt, "root", roles=["admin"])
    alice, bob = connect(rt, "alice", name="Alice"), connect(rt, "bob")
    for client, channel in ((alice, "chat:lobby"), (bob, "chat:lobby"), (bob, "live:ops")):
        assert client.call("subscribe", {"channel": channel})["ok"]

    data = admin.call("admin:channels", {})["data"]

    assert data["total"] == 2
    lobby, ops = data["channels"]
    assert (lobby["channel"], lobby["subscribers"], lobby["processes"]) == ("chat:lobby", 2, 1)
    assert lobby["presence_count"] == 2
    assert sorted(m["user_id"] for m in lobby["presence"]) == ["alice", "bob"]
    assert (ops["channel"], ops["subscribers"]) == ("live:ops", 1)
    assert ops["presence"] is None  # live: has no presence
    page = admin.call("admin:channels", {"offset": 1, "limit": 1})["data"]
    assert [c["channel"] for c in page["channels"]] == ["live:ops"]


def test_the_audit_trail_is_filtered_and_paged_newest_first(rt, connect) -> None:
    admin = connect(rt, "root", roles=["admin"])
    mallory = connect(rt, "mallory")
    for _ in range(3):
        mallory.call("admin:metrics", {})
    assert rt.audit.flush(10)

    first = admin.call("admin:audit", {"type": "permission_denied", "limit": 2})["data"]
    assert [r["user_id"] for r in first["rows"]] == ["mallory", "mallory"]
    assert first["rows"][0]["id"] > first["rows"][1]["id"]
    assert first["next_before_id"] == first["rows"][1]["id"]
    rest = admin.call("admin:audit", {"type": "permission_denied",
                                      "before_id": first["next_before_id"]})["data"]
    assert len(rest["rows"]) == 1 and rest["next_before_id"] is None
    nobody = admin.call("admin:audit", {"user_id": "nobody"})["data"]
    assert nobody["rows"] == []


def test_audit_verify_reports_an_intact_trail_then_a_changed_row(rt, connect) -> None:
    admin = connect(rt, "root", roles=["admin"])
    connect(rt, "alice")

    ok = admin.call("admin:audit_verify", {})["data"]
    assert ok["ok"] is True and ok["rows"] > 0 and ok["reason"] is None

    assert rt.audit.flush(10)  # the writer is idle: the row can be changed under it
    with rt.db.session() as session:
        row = session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)).first()
        row.user_id = "someone-else"
    bad = admin.call("admin:audit_verify", {})["data"]
    assert bad["ok"] is False and bad["intact"] is False and "hash mismatch" in bad["reason"]


def test_audit_reads_are_refused_without_the_database_trail(make_rt, connect) -> None:
    rt = make_rt(audit_db=False)
    admin = connect(rt, "root", roles=["admin"])

    reply = admin.call("admin:audit", {})

    assert reply["error"]["code"] == "not_found"
    assert "DIHYA_RT_AUDIT_DB" in reply["error"]["message"]


def test_metrics_are_this_processs_last_hour(rt, connect) -> None:
    admin = connect(rt, "root", roles=["admin"])
    for _ in range(4):
        admin.call("whoami", {})
    rt.admin.minutes.sample()
    admin.call("whoami", {})

    data = admin.call("admin:metrics", {})["data"]

    assert data["node"] == rt.channels.node_id and data["interval"] == 60
    [sample] = data["samples"]
    assert sample["events"] >= 4 and sample["connections"] == 1
    assert data["current"]["events"] >= 1


def test_admin_payloads_are_bounded(rt, connect) -> None:
    admin = connect(rt, "root", roles=["admin"])
    for name, payload in (("admin:audit", {"limit": 1000}),
                          ("admin:channels", {"limit": 0}),
                          ("admin:disconnect_user", {"user_id": "x" * 200}),
                          ("admin:connections", {"user_id": "x" * 200})):
        reply = admin.call(name, payload)
        assert reply["error"]["code"] == "invalid_payload", (name, reply)


def test_the_admin_page_is_served_to_anyone_and_absent_with_the_feature_off(make_rt) -> None:
    from dihya_realtime.demo.web import create_web_blueprint

    on, off = make_rt(), make_rt(features="chat")
    for rt in (on, off):
        rt.app.register_blueprint(create_web_blueprint(rt))

    page = on.app.test_client().get("/admin")
    assert page.status_code == 200 and b'id="signin-form"' in page.data
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert off.app.test_client().get("/admin").status_code == 404


def test_a_page_marker_beyond_a_database_integer_is_invalid_not_internal(rt, connect) -> None:
    """Found by the fuzzer: 2**64 reached SQLite and failed as an internal error."""
    admin = connect(rt, "root", roles=["admin"])

    reply = admin.call("admin:audit", {"before_id": 2**64})

    assert reply["error"]["code"] == "invalid_payload"
    assert reply["error"]["details"][0]["field"] == "before_id"
    assert admin.call("admin:audit", {"before_id": 2**63 - 1})["ok"]
