"""What ``@event`` declares beyond permission, the pipeline enforces: the anonymous rule, and
the audit row a success records (once, after the handler, never for a failure)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from dihya_realtime.kernel.errors import forbidden
from dihya_realtime.kernel.registry import Registry
from tests.unit.conftest import fresh_registry
from tests.unit.kernel.test_pipeline import audit_lines


class Item(BaseModel):
    name: str


def policy_registry() -> tuple[Registry, list[str]]:
    """Test events on a copy of the built-in registry, and the calls that reached a handler."""
    reg, ran = fresh_registry(), []

    @reg.event("test:create", payload=Item, audit="test_created",
               audit_details=lambda p, reply: {"name": p.name, "id": reply["id"]})
    def create(ctx, payload):
        """Create an item; the id is only known once it exists."""
        ran.append("test:create")
        return {"id": f"id-{payload.name}"}

    @reg.event("test:refuse", payload=Item, audit="test_created",
               audit_details=lambda p, reply: {"name": p.name})
    def refuse(ctx, payload):
        """Always refused by the handler."""
        ran.append("test:refuse")
        raise forbidden("no")

    @reg.event("test:crash", audit="test_created")
    def crash(ctx, payload):
        """Always crashes."""
        ran.append("test:crash")
        raise RuntimeError("boom")

    @reg.event("test:maybe", payload=Item, audit="test_changed",
               audit_details=lambda p, reply: {"name": p.name} if reply["changed"] else None)
    def maybe(ctx, payload):
        """Changes something only for the name ``new``."""
        ran.append("test:maybe")
        return {"changed": payload.name == "new"}

    @reg.event("test:quiet", audit="test_quiet")
    def quiet(ctx, payload):
        """Only the handler knows there is nothing to audit."""
        ran.append("test:quiet")
        ctx.skip_audit()
        return {}

    @reg.event("test:members_only", allow_anonymous=False)
    def members_only(ctx, payload):
        """Signed-in users only."""
        ran.append("test:members_only")
        return {"user_id": ctx.user_id}

    @reg.event("test:open")
    def open_(ctx, payload):
        """Anyone connected."""
        ran.append("test:open")
        return {"user_id": ctx.user_id}

    return reg, ran


@pytest.fixture
def world(make_rt):
    reg, ran = policy_registry()
    return make_rt(registry_=reg, anonymous=True), ran


def test_a_declared_audit_is_recorded_once_after_success_with_its_details(world, connect):
    rt, _ = world
    alice = connect(rt, "alice")
    assert alice.call("test:create", {"name": "x"}) == {"ok": True, "data": {"id": "id-x"}}
    rows = audit_lines(rt, "test_created")
    assert len(rows) == 1
    row = rows[0]
    assert (row["event"], row["outcome"], row["details"]) == (
        "test:create", "ok", {"name": "x", "id": "id-x"})
    assert row["user_id"] == "alice" and row["sid"]  # the connection's audit fields


def test_a_failed_handler_records_no_success_row(world, connect):
    rt, ran = world
    alice = connect(rt, "alice")
    assert alice.call("test:refuse", {"name": "x"})["error"]["code"] == "forbidden"
    assert alice.call("test:crash")["error"]["code"] == "internal"
    assert ran == ["test:refuse", "test:crash"]
    assert audit_lines(rt, "test_created") == []
    assert [r["event"] for r in audit_lines(rt, "permission_denied")] == ["test:refuse"]
    assert [r["event"] for r in audit_lines(rt, "handler_error")] == ["test:crash"]


def test_an_invalid_payload_never_reaches_the_handler_nor_the_success_row(world, connect):
    rt, ran = world
    assert connect(rt, "alice").call("test:create", {})["error"]["code"] == "invalid_payload"
    assert ran == [] and audit_lines(rt, "test_created") == []


def test_details_of_none_mean_the_reply_shows_nothing_to_audit(world, connect):
    rt, _ = world
    alice = connect(rt, "alice")
    assert alice.call("test:maybe", {"name": "same"})["data"] == {"changed": False}
    assert alice.call("test:maybe", {"name": "new"})["data"] == {"changed": True}
    assert [r["details"] for r in audit_lines(rt, "test_changed")] == [{"name": "new"}]


def test_a_handler_can_skip_the_declared_row(world, connect):
    rt, ran = world
    assert connect(rt, "alice").call("test:quiet")["ok"]
    assert ran == ["test:quiet"] and audit_lines(rt, "test_quiet") == []


def test_an_anonymous_caller_is_refused_where_anonymous_users_are_not_allowed(world, connect):
    rt, ran = world
    anonymous = connect(rt, user=None)
    assert anonymous.is_connected()
    reply = anonymous.call("test:members_only")
    assert reply["error"] == {"code": "forbidden", "message": "test need a signed-in user"}
    assert ran == []
    denied = audit_lines(rt, "permission_denied")
    assert [(r["event"], r["details"]) for r in denied] == [
        ("test:members_only", {"message": "test need a signed-in user"})]


def test_an_anonymous_caller_is_accepted_by_default(world, connect):
    rt, ran = world
    reply = connect(rt, user=None).call("test:open")
    assert reply["ok"] and reply["data"]["user_id"].startswith("anon-")
    assert ran == ["test:open"]


def test_a_signed_in_user_passes_the_anonymous_rule(world, connect):
    rt, ran = world
    assert connect(rt, "alice").call("test:members_only") == {
        "ok": True, "data": {"user_id": "alice"}}
    assert ran == ["test:members_only"]


def test_the_built_in_notification_events_refuse_anonymous_users():
    reg = fresh_registry()
    notifications = [s for s in reg.events.values() if s.feature == "notifications"]
    assert notifications and not any(s.allow_anonymous for s in notifications)


def test_audit_details_without_an_audit_type_are_refused():
    reg = Registry()

    def handler(ctx, payload):
        """An event."""

    with pytest.raises(ValueError, match="audit_details without audit"):
        reg.event("test:x", audit_details=lambda p, reply: {})(handler)
    assert "test:x" not in reg.events
