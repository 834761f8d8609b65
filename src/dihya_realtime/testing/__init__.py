"""``dihya_realtime.testing``: a pytest plugin for apps built on dihya-realtime.

Installed with the package (entry point ``pytest11``), it only adds fixtures, all named
``rt_*``; nothing heavy is imported or started unless a test asks for one. See
docs/testing.md.

- ``rt_settings`` — keyword overrides for ``Realtime`` (override it in a conftest);
- ``rt_app_factory`` — ``None`` (a bare app) or the host's ``create_app(**overrides)``;
- ``rt_app`` — that app in this process (threading mode, a migrated temp SQLite);
- ``rt_token(user, roles)`` — a token the app and the server accept;
- ``rt_connect(user, roles)`` / ``rt_test_client`` — Flask-SocketIO test clients;
- ``rt_server`` — a real server process (``dihya-realtime serve``, or the factory served the
  same way) on a free port, with ``publish`` through the HTTP API;
- ``rt_client(user, roles)`` — a connected :class:`dihya_realtime.client.Client` to it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flask import Flask

    from dihya_realtime.client import Client
    from dihya_realtime.testing.inprocess import RealtimeTestClient
    from dihya_realtime.testing.server import RealtimeServer

__all__ = ["rt_app", "rt_app_factory", "rt_client", "rt_connect", "rt_server", "rt_settings",
           "rt_test_client", "rt_token"]


@pytest.fixture
def rt_settings(tmp_path: Path) -> dict[str, Any]:
    """Settings for ``rt_app`` and ``rt_server`` (the server gets them as ``DIHYA_RT_*``; its
    own database and audit log unless set here). Override to add yours::

        @pytest.fixture
        def rt_settings(rt_settings):
            return {**rt_settings, "expiry_warning_seconds": 2}
    """
    return {
        "jwt_secret": "rt-test-" + secrets.token_hex(24),
        "async_mode": "threading",
        "database_url": f"sqlite:///{tmp_path / 'rt-app.db'}",
        "audit_log": str(tmp_path / "rt-audit.log"),
        "redis_url": None,
    }


@pytest.fixture
def rt_app_factory() -> Callable[..., Flask] | str | None:
    """The host app's factory, ``create_app(**overrides) -> Flask`` (with Realtime attached),
    or ``"package.module:create_app"``. ``None``: a bare app with the built-in features.

    ``rt_server`` imports it by name in the server process and calls it with no argument
    (settings come from ``DIHYA_RT_*`` there): define it at module level.
    """
    return None


@pytest.fixture
def rt_app(rt_app_factory: Callable[..., Flask] | str | None,
           rt_settings: dict[str, Any]) -> Iterator[Flask]:
    """The app in this process (threading mode); ``rt_app.extensions["dihya_realtime"]`` is
    its Realtime. Events its factory declares are forgotten at teardown."""
    from dihya_realtime.testing.inprocess import build_app, forgetting_new_events, realtime_of
    from dihya_realtime.testing.serve_app import load_factory

    factory = load_factory(rt_app_factory) if isinstance(rt_app_factory, str) else rt_app_factory
    with forgetting_new_events():
        app = build_app(factory, rt_settings)
        try:
            yield app
        finally:
            realtime_of(app).close()


@pytest.fixture
def rt_token(rt_settings: dict[str, Any]) -> Callable[..., str]:
    """``rt_token("alice", roles=("user",), ttl=3600, name=None)`` → a signed token."""
    from dihya_realtime.kernel.auth import mint_token
    from dihya_realtime.kernel.settings import load_settings

    settings = load_settings(**rt_settings)

    def make(user: str = "alice", roles: tuple[str, ...] | list[str] = ("user",),
             ttl: float = 3600, name: str | None = None) -> str:
        return mint_token(settings, user, list(roles), name=name, ttl=ttl)

    return make


@pytest.fixture
def rt_connect(rt_app: Flask, rt_token: Callable[..., str]
               ) -> Iterator[Callable[..., RealtimeTestClient]]:
    """``rt_connect("alice", roles=("user",), token=None)`` → a connected test client of
    ``rt_app`` (``user=None`` and no token: no credentials at all)."""
    from dihya_realtime.testing.inprocess import RealtimeTestClient, realtime_of

    clients: list[RealtimeTestClient] = []

    def connect(user: str | None = "alice", roles: tuple[str, ...] | list[str] = ("user",),
                token: str | None = None) -> RealtimeTestClient:
        if token is None and user is not None:
            token = rt_token(user, roles)
        auth = {"token": token} if token is not None else None
        client = RealtimeTestClient(rt_app, realtime_of(rt_app).socketio, auth=auth)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        if client.is_connected():
            client.disconnect()


@pytest.fixture
def rt_test_client(rt_connect: Callable[..., RealtimeTestClient]) -> RealtimeTestClient:
    """A test client of ``rt_app`` connected as ``alice`` (role ``user``)."""
    return rt_connect()


@pytest.fixture
def rt_server(rt_app_factory: Callable[..., Flask] | str | None, rt_settings: dict[str, Any],
              tmp_path: Path) -> Iterator[RealtimeServer]:
    """A real server process on a free loopback port, stopped at teardown.

    ``rt_server.url``, ``.publish(channel, data)`` (HTTP API, with its own API key),
    ``.http(method, path, body, api_key=True)``, ``.restart()`` (same port).
    """
    from dihya_realtime.kernel.auth import hash_api_key
    from dihya_realtime.testing.server import (
        RealtimeServer,
        factory_path,
        server_environ,
    )

    workdir = tmp_path / "rt-server"
    workdir.mkdir(exist_ok=True)
    api_key = "rt-test-key-" + secrets.token_hex(16)
    settings = {k: v for k, v in rt_settings.items() if k not in ("database_url", "audit_log")}
    settings.setdefault("api_keys", hash_api_key(api_key))
    env = server_environ(workdir, settings)
    factory = None if rt_app_factory is None else factory_path(rt_app_factory)
    server = RealtimeServer(workdir, env, factory=factory, api_key=api_key)
    if factory is None:
        server.migrate()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def rt_client(rt_server: RealtimeServer, rt_token: Callable[..., str]
              ) -> Iterator[Callable[..., Client]]:
    """``rt_client("alice", roles=("user",), **options)`` → a :class:`Client` connected to
    ``rt_server`` (``options`` go to ``Client``, e.g. ``get_token=``); closed at teardown."""
    from dihya_realtime.client import Client

    clients: list[Client] = []

    def connect(user: str = "alice", roles: tuple[str, ...] | list[str] = ("user",),
                **options: Any) -> Client:
        if "get_token" not in options and "token" not in options:
            options["token"] = rt_token(user, roles)
        client = Client(rt_server.url, **options)
        clients.append(client)
        return client.connect()

    yield connect
    for client in clients:
        client.close()
