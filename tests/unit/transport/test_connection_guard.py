"""The connection guard's parts: client address through trusted proxies, counted refusal
audit rows, the start-up check of the library internals it relies on, namespace auth."""

from __future__ import annotations

import types

import pytest
from flask import Flask
from flask_socketio import SocketIO

from dihya_realtime.kernel.client_address import client_address, parse_networks
from dihya_realtime.kernel.refusals import RefusalAudit
from dihya_realtime.kernel.settings import SettingsError, load_settings
from dihya_realtime.realtime import Realtime
from dihya_realtime.transport.sessions import GuardAdaptationError, check_internals

PROXIES = parse_networks(["10.0.0.0/8", "2001:db8::/32"])


def _env(remote: str, forwarded: str | None = None) -> dict:
    env = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        env["HTTP_X_FORWARDED_FOR"] = forwarded
    return env


@pytest.mark.parametrize(("remote", "forwarded", "expected"), [
    ("198.51.100.1", "203.0.113.5", "198.51.100.1"),  # peer not a proxy: header ignored
    ("10.0.0.2", "203.0.113.5", "203.0.113.5"),
    ("10.0.0.2", "1.1.1.1, 203.0.113.5, 10.9.9.9", "203.0.113.5"),  # right-most untrusted
    ("10.0.0.2", "10.1.1.1, 10.2.2.2", "10.1.1.1"),  # all trusted: the left-most
    ("10.0.0.2", "203.0.113.5, garbage", "10.0.0.2"),  # malformed: the proxy's own peer
    ("10.0.0.2", "203.0.113.5:4711", "203.0.113.5"),
    ("2001:db8::1", "[2001:db8:ffff::9]:443, 2a00::1", "2a00::1"),
    ("::ffff:10.0.0.2", "203.0.113.5", "203.0.113.5"),  # IPv4-mapped peer
    ("10.0.0.2", None, "10.0.0.2"),
])
def test_client_address_honours_forwarded_for_only_from_trusted_proxies(remote, forwarded,
                                                                         expected):
    assert client_address(_env(remote, forwarded), PROXIES) == expected


def test_client_address_without_trusted_proxies_is_the_peer():
    assert client_address(_env("10.0.0.2", "203.0.113.5"), ()) == "10.0.0.2"


def test_trusted_proxies_setting_refuses_what_is_not_a_network():
    assert load_settings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == ["10.0.0.0/8",
                                                                               "::1"]
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
        load_settings(trusted_proxies="10.0.0.0/8,nginx")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_refusal_storm_is_one_row_and_one_counted_summary_per_address_and_reason():
    rows: list[tuple[str, dict]] = []
    clock = _Clock()
    audit = RefusalAudit(lambda type_, **f: rows.append((type_, f)), window=10, clock=clock)
    for i in range(4095):
        clock.now = 1000 + i * 0.002
        audit.refused("unauthenticated", remote_addr="192.0.2.1", details={"reason": "x"})
    audit.refused("unauthenticated", remote_addr="192.0.2.2")
    audit.refused("rate_limited", remote_addr="192.0.2.1")
    assert [t for t, _ in rows] == ["connect_refused"] * 3
    clock.now += 10
    assert audit.flush() == 1  # single refusals need no summary
    summary = rows[-1]
    assert summary[0] == "connect_refused_summary"
    assert summary[1]["details"]["count"] == 4095
    assert summary[1]["remote_addr"] == "192.0.2.1" and summary[1]["outcome"] == "unauthenticated"
    assert summary[1]["details"]["reason"] == "unauthenticated"
    assert len(audit) == 0
    audit.refused("unauthenticated", remote_addr="192.0.2.1")  # a new window: a new row
    assert rows[-1][0] == "connect_refused"


def test_refusals_from_many_addresses_fold_into_one_key_past_the_cap():
    rows: list[tuple[str, dict]] = []
    clock = _Clock()
    audit = RefusalAudit(lambda type_, **f: rows.append((type_, f)), window=10, max_keys=3,
                         clock=clock)
    for i in range(100):
        audit.refused("unauthenticated", remote_addr=f"192.0.2.{i}")
    assert len(audit) == 4 and len(rows) == 4
    audit.flush(everything=True)
    assert rows[-1][1]["details"]["count"] == 97 and rows[-1][1]["remote_addr"] is None


def test_start_up_fails_naming_the_missing_library_internal():
    server = types.SimpleNamespace(eio=types.SimpleNamespace(handlers={}, sockets={}),
                                   manager=None, _send_packet=lambda *a: None)
    with pytest.raises(GuardAdaptationError, match="_handle_connect.*eio_sid_from_sid"):
        check_internals(server)


def test_realtime_refuses_to_start_on_a_socketio_without_the_guard_internals(monkeypatch):
    app = Flask("x")
    socketio = SocketIO(app, async_mode="threading")
    monkeypatch.setattr(socketio.server, "_handle_connect", None)
    with pytest.raises(GuardAdaptationError, match="_handle_connect"):
        Realtime(app, socketio=socketio, async_mode="threading",
                 database_url="sqlite://", audit_log="off", jwt_secret="s" * 32)


def test_other_namespaces_are_authenticated_before_host_handlers(make_rt, make_token):
    from tests.unit.conftest import Client

    rt = make_rt()
    calls: list[str] = []

    @rt.socketio.on("call", namespace="/admin")
    def call() -> str:
        calls.append("called")
        return "secret"

    anonymous = Client(rt.app, rt.socketio, namespace="/admin")
    assert not anonymous.is_connected("/admin")
    assert anonymous.connect_error["code"] == "unauthenticated"
    alice = Client(rt.app, rt.socketio, namespace="/admin", auth={"token": make_token("alice")})
    assert alice.is_connected("/admin")
    assert alice.emit("call", namespace="/admin", callback=True) == "secret"
    conn = next(iter(rt.namespace_connections))
    assert (conn.user_id, conn.namespace) == ("alice", "/admin")
    unknown = Client(rt.app, rt.socketio, namespace="/nope", auth={"token": make_token("bob")})
    assert not unknown.is_connected("/nope")


def _host_admin_namespace(rt: Realtime) -> list[str]:
    calls: list[str] = []

    @rt.socketio.on("call", namespace="/admin")
    def call() -> str:
        calls.append("called")
        return "secret"

    return calls


def test_a_host_namespace_connection_ends_when_its_token_expires(make_rt, make_token):
    import time

    from tests.unit.conftest import Client

    rt = make_rt(expiry_grace_seconds=0)
    calls = _host_admin_namespace(rt)
    alice = Client(rt.app, rt.socketio, namespace="/admin",
                   auth={"token": make_token("alice", ttl=1.5)})
    assert alice.connect_error is None, alice.connect_error
    assert alice.emit("call", namespace="/admin", callback=True) == "secret"
    time.sleep(1.7)
    assert not alice.emit("call", namespace="/admin", callback=True)
    assert calls == ["called"] and not alice.is_connected("/admin")
    assert len(rt.namespace_connections) == 0


def test_disconnect_user_also_ends_the_users_host_namespace_connections(make_rt, make_token):
    from tests.unit.conftest import Client

    rt = make_rt()
    _host_admin_namespace(rt)
    alice = Client(rt.app, rt.socketio, namespace="/admin", auth={"token": make_token("alice")})
    assert alice.is_connected("/admin")
    assert rt.disconnect_user_here("alice") == 1
    assert not alice.is_connected("/admin") and len(rt.namespace_connections) == 0


def test_class_based_host_namespaces_are_authenticated_too(make_rt, make_token):
    from flask_socketio import Namespace

    from tests.unit.conftest import Client

    rt = make_rt()

    class Admin(Namespace):
        def on_connect(self, auth=None) -> None:  # noqa: ANN001 - the host's own hook
            pass

        def on_call(self) -> str:
            return "secret"

    rt.socketio.on_namespace(Admin("/ops"))
    anonymous = Client(rt.app, rt.socketio, namespace="/ops")
    assert not anonymous.is_connected("/ops")
    assert anonymous.connect_error["reason"] == "missing_token"
    bob = Client(rt.app, rt.socketio, namespace="/ops", auth={"token": make_token("bob")})
    assert bob.emit("call", namespace="/ops", callback=True) == "secret"
