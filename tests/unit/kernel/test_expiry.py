"""The token expiry watch, driven by hand: warn before ``exp``, disconnect after the grace,
forget refreshed and closed connections, and keep the heap from filling with retired
entries. A stand-in for the extension records what the watch does."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from dihya_realtime.kernel.expiry import ExpiryWatch

WARNING, GRACE = 60.0, 5.0


class FakeRealtime:
    """What :class:`ExpiryWatch` uses of ``Realtime``: settings, connections, emit, audit,
    disconnect and a background task starter (never started: tests call ``run_due``)."""

    def __init__(self) -> None:
        self.settings = SimpleNamespace(expiry_warning_seconds=WARNING,
                                        expiry_grace_seconds=GRACE)
        self.conns: dict[str, Any] = {}
        self.connections = self.conns
        self.sent: list[tuple[str, str, dict]] = []
        self.audited: list[str] = []
        self.disconnected: list[str] = []
        self.tasks: list[Any] = []
        self.socketio = SimpleNamespace(server=SimpleNamespace(
            start_background_task=self.tasks.append))
        self.audit = SimpleNamespace(record=lambda type_, **kw: self.audited.append(type_))

    def emit(self, event: str, data: dict, to: str) -> None:
        self.sent.append((to, event, data))

    def disconnect_sid(self, sid: str) -> None:
        self.disconnected.append(sid)
        self.conns.pop(sid, None)

    def connect(self, sid: str, exp: float | None) -> Any:
        conn = SimpleNamespace(sid=sid, principal=SimpleNamespace(expires_at=exp),
                               expiry_warned=False, audit_fields=lambda: {"sid": sid})
        self.conns[sid] = conn
        return conn


@pytest.fixture
def rt() -> FakeRealtime:
    return FakeRealtime()


@pytest.fixture
def watch(rt) -> ExpiryWatch:
    return ExpiryWatch(rt)


def events(rt: FakeRealtime) -> list[tuple[str, str]]:
    return [(to, event) for to, event, _ in rt.sent]


def test_a_token_is_warned_before_exp_then_disconnected_after_the_grace(rt, watch):
    conn = rt.connect("s1", exp=1000.0)
    watch.watch(conn)
    assert len(rt.tasks) == 1  # one background task for the process

    watch.run_due(1000.0 - WARNING - 1)
    assert rt.sent == []
    watch.run_due(1000.0 - WARNING)
    assert rt.sent == [("s1", "auth:expiring", {"expires_in": 60})] and conn.expiry_warned
    watch.run_due(1000.0 + GRACE - 0.1)
    assert rt.disconnected == []
    watch.run_due(1000.0 + GRACE)
    assert events(rt)[-1] == ("s1", "auth:expired") and rt.disconnected == ["s1"]
    assert rt.audited == ["auth_expired"]
    assert len(watch) == 0


def test_only_one_background_task_however_many_connections(rt, watch):
    for i in range(5):
        watch.watch(rt.connect(f"s{i}", exp=1000.0 + i))
    assert len(rt.tasks) == 1


def test_a_refreshed_token_replaces_the_old_deadlines(rt, watch):
    conn = rt.connect("s1", exp=1000.0)
    watch.watch(conn)
    conn.principal.expires_at = 5000.0  # auth:refresh
    watch.watch(conn)
    watch.run_due(1000.0 + GRACE)
    assert rt.sent == [] and rt.disconnected == []
    watch.run_due(5000.0 + GRACE)
    assert events(rt) == [("s1", "auth:expiring"), ("s1", "auth:expired")]


def test_a_token_without_exp_is_never_expired(rt, watch):
    watch.watch(rt.connect("s1", exp=None))
    watch.run_due(1e12)
    assert rt.sent == [] and len(watch) == 0 and rt.tasks == []


def test_refreshing_to_a_token_without_exp_retires_the_deadlines(rt, watch):
    conn = rt.connect("s1", exp=1000.0)
    watch.watch(conn)
    conn.principal.expires_at = None
    watch.watch(conn)
    watch.run_due(1e12)
    assert rt.sent == [] and rt.disconnected == []


def test_a_forgotten_connection_is_not_expired(rt, watch):
    watch.watch(rt.connect("s1", exp=1000.0))
    watch.forget("s1")
    watch.run_due(1e12)
    assert rt.sent == [] and rt.disconnected == []


def test_a_connection_already_gone_is_skipped(rt, watch):
    watch.watch(rt.connect("s1", exp=1000.0))
    del rt.conns["s1"]  # closed without forget (a race with disconnect)
    watch.run_due(1e12)
    assert rt.sent == [] and rt.disconnected == []


def test_retired_entries_never_make_up_more_than_half_the_heap(rt, watch):
    conn = rt.connect("s1", exp=1000.0)
    live = rt.connect("s2", exp=2000.0)
    watch.watch(live)
    for i in range(1000):  # a client refreshing again and again
        conn.principal.expires_at = 1000.0 + i
        watch.watch(conn)
        assert len(watch) <= 2 * 4  # two live schedules of two entries each
    for i in range(100):  # connections coming and going
        watch.watch(rt.connect(f"t{i}", exp=3000.0))
        watch.forget(f"t{i}")
    assert len(watch) <= 2 * 4
    watch.run_due(1e12)
    assert sorted(rt.disconnected) == ["s1", "s2"]
