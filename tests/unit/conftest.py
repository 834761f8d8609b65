"""Unit-test world: a Realtime app in threading mode, the Flask-SocketIO test client, tokens."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from flask import Flask
from flask_socketio import SocketIO, SocketIOTestClient
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


# -- several processes on one Redis (interest routing, issue 14)


@pytest.fixture
def process(settings_overrides, redis_url, redis_prefix, tmp_path
            ) -> Iterator[Callable[..., Realtime]]:
    """``process(name, app=True)``: a Realtime on the shared database and Redis; without
    ``app``, a worker's (no Socket.IO server)."""
    made: list[Realtime] = []

    def make(name: str, app: bool = True, **overrides: Any) -> Realtime:
        rt = Realtime(registry_=fresh_registry(), **{
            **settings_overrides, "redis_url": redis_url, "redis_prefix": redis_prefix,
            "audit_log": str(tmp_path / f"{name}.log"), **overrides})
        rt.db.migrate()
        if app:
            flask_app = Flask(name)
            flask_app.config["SECRET_KEY"] = "test-session-key"
            rt.init_app(flask_app, socketio=SocketIO(flask_app, async_mode="threading"))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()


class Inbox:
    """What a test client received, kept across ``get_received`` calls."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[tuple[str, Any]] = []

    def events(self, name: str) -> list[Any]:
        if self.client.is_connected():
            self.seen += [(m["name"], m["args"][0] if m["args"] else None)
                          for m in self.client.get_received()]
        return [data for event, data in self.seen if event == name]

    def wait_for(self, name: str, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while not (found := self.events(name)):
            assert time.monotonic() < deadline, f"no {name!r} in {self.seen}"
            time.sleep(0.02)
        return found


def wait_until(check: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
