"""``/dev/token`` (and ``/dev/publish``) only for a loopback Host (no DNS rebinding), and
``/dev/token`` only with the dev secret, never signing with a configured production secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from dihya_realtime.app import create_app
from dihya_realtime.kernel.devmode import DEV_SECRET_PREFIX, dev_secret, is_dev_secret

DEV_SECRET = DEV_SECRET_PREFIX + "a" * 64


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator:
    apps: list[Flask] = []

    def make(**overrides) -> Flask:
        settings = {"jwt_secret": DEV_SECRET, "async_mode": "threading", "audit_log": "off",
                    "dev": True, "database_url": f"sqlite:///{tmp_path / 'web.db'}",
                    **overrides}
        app = create_app(**settings)
        app.extensions["dihya_realtime"].db.migrate()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["dihya_realtime"].close()


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "localhost.evil",
                                  "10.0.0.5:5000", "[::2]:80", "localhost:80@evil", ""])
def test_dev_endpoints_refuse_a_non_loopback_host(make_app, host: str) -> None:
    client = make_app().test_client()
    token = client.post("/dev/token", json={"user_id": "eve"}, headers={"Host": host})
    assert token.status_code == 403
    assert token.get_json()["error"]["code"] == "forbidden"
    publish = client.post("/dev/publish", json={}, headers={"Host": host})
    assert publish.status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:5000", "localhost", "LOCALHOST:8000",
                                  "[::1]", "[::1]:5000"])
def test_dev_token_answers_a_loopback_host(make_app, host: str) -> None:
    reply = make_app().test_client().post("/dev/token", json={"user_id": "alice"},
                                          headers={"Host": host})
    assert reply.status_code == 200, reply.get_json()


def test_dev_token_never_signs_with_a_configured_secret(make_app) -> None:
    client = make_app(jwt_secret="production-secret-" + "x" * 40).test_client()
    assert client.post("/dev/token", json={"user_id": "eve"}).status_code == 404


def test_dev_secret_file_holds_a_recognisable_dev_secret(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dihya-dev-secret").write_text("f" * 64)  # made by an older version
    secret = dev_secret().get_secret_value()
    assert is_dev_secret(secret) and secret != "f" * 64
    assert dev_secret().get_secret_value() == secret  # kept, so `token` and `serve` agree
    assert not is_dev_secret("f" * 64)


def test_deep_json_before_login_is_a_clean_400_without_a_traceback(make_app, caplog) -> None:
    client = make_app().test_client()
    deep = "[" * 100_000 + "]" * 100_000
    for path, headers, status in (("/dev/token", {}, 400),
                                  ("/dev/publish", {}, 200),  # no JSON body: the demo note
                                  ("/api/v1/publish", {"Authorization": "Bearer wrong"}, 401)):
        reply = client.post(path, data=deep, content_type="application/json", headers=headers)
        assert reply.status_code == status, (path, reply.status_code)
        assert reply.is_json
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
