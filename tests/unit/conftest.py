"""Unit-test world: a Realtime app in threading mode, the Flask-SocketIO test client, tokens."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from flask import Flask
from flask_socketio import SocketIOTestClient
from socketio import packet

from dihya_realtime.kernel.registry import Registry, registry
from dihya_realtime.realtime import Realtime


class Client(SocketIOTestClient):
    """The Flask-SocketIO test client, plus the ``connect_error`` data it normally drops."""

    connect_error: Any = None

    def connect(self, namespace=None, query_string=None, headers=None, auth=None):  # noqa: ANN001
        server = self.socketio.server
        send = server._send_packet

        def capture(eio_sid: str, pkt: packet.Packet) -> None:
            if pkt.packet_type == packet.CONNECT_ERROR and eio_sid == self.eio_sid:
                self.connect_error = pkt.data
            send(eio_sid, pkt)

        server._send_packet = capture
        try:
            return super().connect(namespace, query_string, headers, auth)
        finally:
            server._send_packet = send

    def call(self, event: str, *args: Any) -> Any:
        """Emit with an ack and return the reply envelope."""
        return self.emit(event, *args, callback=True)

    def events(self, name: str) -> list[Any]:
        return [m["args"][0] if m["args"] else None for m in self.get_received() if
                m["name"] == name]


def fresh_registry() -> Registry:
    """A copy of the built-in registry that tests can add events to without leaking them."""
    import dihya_realtime.app  # noqa: F401

    return Registry(events=dict(registry.events), server_events=dict(registry.server_events))


@pytest.fixture
def make_token(jwt_secret: str) -> Callable[..., str]:
    def make(user: str = "alice", roles: tuple[str, ...] | list[str] = ("user",),
             ttl: float = 3600, secret: str | None = None, **claims: Any) -> str:
        now = time.time()
        body = {"sub": user, "roles": list(roles), "iat": int(now), "exp": now + ttl, **claims}
        return jwt.encode(body, secret or jwt_secret, algorithm="HS256")

    return make


@pytest.fixture
def settings_overrides(jwt_secret: str, tmp_path) -> dict[str, Any]:
    return {
        "jwt_secret": jwt_secret,
        "async_mode": "threading",
        "database_url": f"sqlite:///{tmp_path / 'unit.db'}",
        "audit_log": str(tmp_path / "audit.log"),
        "redis_url": None,
    }


@pytest.fixture
def make_rt(settings_overrides: dict[str, Any]) -> Iterator[Callable[..., Realtime]]:
    made: list[Realtime] = []

    def make(registry_: Registry | None = None, **overrides: Any) -> Realtime:
        app = Flask("test")
        app.config["SECRET_KEY"] = "test-session-key"
        rt = Realtime(registry_=registry_ or fresh_registry(),
                      **{**settings_overrides, **overrides})
        rt.db.migrate()
        rt.init_app(app)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


@pytest.fixture
def rt(make_rt: Callable[..., Realtime]) -> Realtime:
    return make_rt()


@pytest.fixture
def connect(make_token: Callable[..., str]) -> Callable[..., Client]:
    def connect_(rt: Realtime, user: str | None = "alice", roles=("user",), token: str | None
                 = None, headers: dict | None = None, flask_client=None, **kw: Any) -> Client:
        auth = None
        if token is not None:
            auth = {"token": token}
        elif user is not None:
            auth = {"token": make_token(user, roles, **kw)}
        assert rt.app is not None
        return Client(rt.app, rt.socketio, auth=auth, headers=headers,
                      flask_test_client=flask_client)

    return connect_
