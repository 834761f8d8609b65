"""Tokens minted by the host app's Flask-JWT-Extended (DIHYA_RT_FLASK_JWT_EXTENDED)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    decode_token,
)

from dihya_realtime.kernel.settings import SettingsError
from dihya_realtime.realtime import Realtime
from tests.unit.conftest import Client, fresh_registry

HOST_SECRET = "the-host-apps-flask-jwt-extended-secret-key-long-enough-for-hs512-tokens"


class HostApp:
    """A host Flask app with a JWTManager and a blocklist of revoked ``jti``s."""

    def __init__(self, **config: Any) -> None:
        self.app = Flask("host")
        self.app.config.update({"JWT_SECRET_KEY": HOST_SECRET, **config})
        self.jwt = JWTManager(self.app)
        self.revoked: set[str] = set()
        self.blocklist_fails = False

        @self.jwt.token_in_blocklist_loader
        def revoked(header: dict, payload: dict) -> bool:
            if self.blocklist_fails:
                raise ConnectionError("blocklist store unavailable")
            return payload["jti"] in self.revoked

    def access(self, identity: str = "alice", roles: Any = ("user",), **kw: Any) -> str:
        claims = kw.pop("additional_claims", {})
        if roles is not None:
            claims = {"roles": list(roles) if not isinstance(roles, str) else roles, **claims}
        with self.app.app_context():
            return create_access_token(identity=identity, additional_claims=claims, **kw)

    def refresh(self, identity: str = "alice") -> str:
        with self.app.app_context():
            return create_refresh_token(identity=identity)

    def revoke(self, token: str) -> None:
        with self.app.app_context():
            self.revoked.add(decode_token(token)["jti"])


@pytest.fixture
def host(settings_overrides: dict[str, Any]) -> Iterator[Callable[..., tuple[HostApp, Realtime]]]:
    made: list[Realtime] = []

    def make(config: dict[str, Any] | None = None, **overrides: Any) -> tuple[HostApp, Realtime]:
        host_app = HostApp(**(config or {}))
        rt = Realtime(registry_=fresh_registry(),
                      **{**settings_overrides, "flask_jwt_extended": True, **overrides})
        rt.db.migrate()
        rt.init_app(host_app.app)
        made.append(rt)
        return host_app, rt

    yield make
    for rt in made:
        rt.close()


def _connect(host_app: HostApp, rt: Realtime, token: str) -> Client:
    return Client(host_app.app, rt.socketio, auth={"token": token})


def _refused(host_app: HostApp, rt: Realtime, token: str) -> dict[str, Any]:
    client = _connect(host_app, rt, token)
    assert not client.is_connected()
    assert client.connect_error["code"] == "unauthenticated"
    return client.connect_error


def test_an_access_token_of_the_host_app_connects(host) -> None:
    host_app, rt = host()
    token = host_app.access("alice", ["user", "moderator"], additional_claims={"name": "Alice"})
    client = _connect(host_app, rt, token)
    assert client.is_connected()
    me = client.call("whoami")["data"]
    assert (me["user_id"], me["roles"], me["name"]) == ("alice", ["user", "moderator"], "Alice")
    assert me["expires_at"] is not None
    assert [c.principal.method for c in rt.connections] == ["flask_jwt_extended"]


def test_a_refresh_token_is_refused(host) -> None:
    host_app, rt = host()
    error = _refused(host_app, rt, host_app.refresh("alice"))
    assert error["reason"] == "invalid_token"
    assert "refresh" in error["message"]


def test_a_token_signed_with_another_secret_is_refused(host) -> None:
    host_app, rt = host()
    other = HostApp(JWT_SECRET_KEY="someone-elses-secret-key-of-enough-length")
    assert _refused(host_app, rt, other.access("alice"))["message"] == "bad signature"


def test_without_a_service_secret_another_secret_is_still_a_bad_signature(host) -> None:
    host_app, rt = host(jwt_secret=None)
    other = HostApp(JWT_SECRET_KEY="someone-elses-secret-key-of-enough-length")
    assert _refused(host_app, rt, other.access("alice"))["message"] == "bad signature"


def test_a_blocklisted_token_is_refused(host) -> None:
    host_app, rt = host()
    token = host_app.access("alice")
    host_app.revoke(token)
    error = _refused(host_app, rt, token)
    assert (error["reason"], error["message"]) == ("invalid_token", "token has been revoked")


def test_a_blocklist_that_fails_refuses_the_token(host) -> None:
    host_app, rt = host()
    host_app.blocklist_fails = True
    assert _refused(host_app, rt, host_app.access("alice"))["message"] == (
        "token could not be checked")


def test_an_expired_token_is_refused_as_token_expired(host) -> None:
    host_app, rt = host()
    token = host_app.access("alice", expires_delta=timedelta(seconds=-30))
    assert _refused(host_app, rt, token)["reason"] == "token_expired"


def test_auth_refresh_checks_the_blocklist_again(host) -> None:
    host_app, rt = host()
    client = _connect(host_app, rt, host_app.access("alice", ["user"]))
    assert client.is_connected()
    revoked = host_app.access("alice", ["admin"])
    host_app.revoke(revoked)
    reply = client.call("auth:refresh", {"token": revoked})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "unauthenticated"
    assert reply["error"]["details"] == {"reason": "invalid_token"}
    assert client.call("whoami")["data"]["roles"] == ["user"]

    fresh = host_app.access("alice", ["admin"])
    assert client.call("auth:refresh", {"token": fresh})["ok"] is True
    assert client.call("whoami")["data"]["roles"] == ["admin"]


def test_auth_refresh_refuses_a_refresh_token(host) -> None:
    host_app, rt = host()
    client = _connect(host_app, rt, host_app.access("alice"))
    reply = client.call("auth:refresh", {"token": host_app.refresh("alice")})
    assert reply["ok"] is False and reply["error"]["code"] == "unauthenticated"


def test_the_services_own_tokens_still_connect(host, make_token) -> None:
    host_app, rt = host()
    client = _connect(host_app, rt, make_token("zineb", ["admin"]))
    assert client.call("whoami")["data"]["user_id"] == "zineb"


def test_identity_claim_audience_and_issuer_come_from_the_host_config(host) -> None:
    host_app, rt = host(config={"JWT_IDENTITY_CLAIM": "uid", "JWT_DECODE_AUDIENCE": "rt",
                                "JWT_ENCODE_AUDIENCE": "rt", "JWT_DECODE_ISSUER": "host",
                                "JWT_ENCODE_ISSUER": "host"})
    me = _connect(host_app, rt, host_app.access("42")).call("whoami")["data"]
    assert me["user_id"] == "42"

    wrong_audience = HostApp(JWT_IDENTITY_CLAIM="uid", JWT_ENCODE_AUDIENCE="elsewhere",
                             JWT_ENCODE_ISSUER="host")
    assert _refused(host_app, rt, wrong_audience.access("42"))["message"] == "wrong audience"
    wrong_issuer = HostApp(JWT_IDENTITY_CLAIM="uid", JWT_ENCODE_AUDIENCE="rt",
                           JWT_ENCODE_ISSUER="mallory")
    assert _refused(host_app, rt, wrong_issuer.access("42"))["message"] == "wrong issuer"


def test_the_algorithm_is_the_host_apps(host) -> None:
    host_app, rt = host(config={"JWT_ALGORITHM": "HS512"}, jwt_secret=None)
    assert _connect(host_app, rt, host_app.access("alice")).is_connected()
    hs256 = HostApp()  # same secret, HS256: not what the host app decodes
    assert _refused(host_app, rt, hs256.access("alice"))["message"] == "algorithm not allowed"


def test_roles_and_name_claims_are_settings(host) -> None:
    host_app, rt = host(flask_jwt_extended_roles_claim="groups",
                        flask_jwt_extended_name_claim="display")
    token = host_app.access("alice", roles=None,
                            additional_claims={"groups": ["editor"], "display": "Alice"})
    me = _connect(host_app, rt, token).call("whoami")["data"]
    assert (me["roles"], me["name"]) == (["editor"], "Alice")


@pytest.mark.parametrize("roles", [[1, 2], {"admin": True}])
def test_roles_that_are_not_strings_are_refused(host, roles: Any) -> None:
    host_app, rt = host()
    token = host_app.access("alice", roles=None, additional_claims={"roles": roles})
    assert _refused(host_app, rt, token)["message"] == "claim roles must be a list of strings"


def test_a_token_longer_than_the_cap_is_refused_before_decoding(host) -> None:
    host_app, rt = host()
    token = host_app.access("alice", additional_claims={"pad": "x" * 9000})
    assert _refused(host_app, rt, token)["message"] == "malformed token: too long"


def test_start_up_needs_a_jwt_manager_on_the_app(settings_overrides) -> None:
    rt = Realtime(registry_=fresh_registry(), **settings_overrides, flask_jwt_extended=True)
    try:
        with pytest.raises(SettingsError, match="no JWTManager"):
            rt.init_app(Flask("no-jwt-manager"))
    finally:
        rt.close()


def test_start_up_checks_the_library_internals_it_calls(settings_overrides, monkeypatch) -> None:
    from flask_jwt_extended import internal_utils

    monkeypatch.delattr(internal_utils, "verify_token_not_blocklisted")
    rt = Realtime(registry_=fresh_registry(), **settings_overrides, flask_jwt_extended=True)
    try:
        with pytest.raises(SettingsError, match="verify_token_not_blocklisted"):
            rt.init_app(HostApp().app)
    finally:
        rt.close()


def test_start_up_names_the_extra_when_the_library_is_missing(settings_overrides,
                                                               monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "flask_jwt_extended", None)
    rt = Realtime(registry_=fresh_registry(), **settings_overrides, flask_jwt_extended=True)
    try:
        with pytest.raises(SettingsError, match=r"dihya-realtime\[flask-jwt-extended\]"):
            rt.init_app(Flask("no-library"))
    finally:
        rt.close()
