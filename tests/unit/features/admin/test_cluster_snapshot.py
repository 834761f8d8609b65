"""With Redis, the console sees every process: each answers a snapshot over the control bus.

Two Realtime objects on one database and one Redis stand in for two processes.
"""

from __future__ import annotations

from tests.unit.conftest import wait_until


def test_an_admin_on_one_process_sees_and_disconnects_users_of_the_other(
        process, connect) -> None:
    a, b = process("a", admin_gather_timeout=0.3), process("b", admin_gather_timeout=0.3)
    admin = connect(a, "root", roles=["admin"])
    alice, bob = connect(b, "alice"), connect(b, "bob")
    assert alice.call("subscribe", {"channel": "chat:lobby"})["ok"]
    assert admin.call("subscribe", {"channel": "chat:lobby"})["ok"]

    data = admin.call("admin:connections", {})["data"]

    assert data["clustered"] is True
    here, there = data["processes"]
    assert here["node"] == a.channels.node_id and there["node"] == b.channels.node_id
    assert sorted(c["user_id"] for c in there["connections"]) == ["alice", "bob"]
    assert {u["user_id"] for u in data["users"]} == {"root", "alice", "bob"}
    [lobby] = admin.call("admin:channels", {})["data"]["channels"]
    assert (lobby["subscribers"], lobby["processes"], lobby["presence_count"]) == (2, 2, 2)

    assert admin.call("admin:disconnect_user", {"user_id": "alice"})["ok"]

    wait_until(lambda: not alice.is_connected())
    assert bob.is_connected()


def test_a_process_that_does_not_answer_in_time_is_left_out(process, connect) -> None:
    a = process("a", admin_gather_timeout=0.2)
    b = process("b")
    admin = connect(a, "root", roles=["admin"])
    connect(b, "alice")
    b.control._handlers["admin.snapshot"] = lambda data: None  # b hears but never answers

    data = admin.call("admin:connections", {})["data"]

    assert [p["node"] for p in data["processes"]] == [a.channels.node_id]
