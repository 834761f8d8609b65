"""Connections authenticated by the host app's Flask-Login session (DIHYA_RT_FLASK_LOGIN)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask_login import LoginManager, UserMixin, login_user, logout_user

from dihya_realtime.kernel.settings import SettingsError
from dihya_realtime.realtime import Realtime
from tests.unit.conftest import Client, fresh_registry

SITE = "https://app.example"


class Role:
    def __init__(self, name: str) -> None:
        self.name = name


class User(UserMixin):
    def __init__(self, user_id: str, roles: Any = ("user",), name: str | None = None,
                 **extra: Any) -> None:
        self.id = user_id
        self.roles = roles
        self.name = name
        self.__dict__.update(extra)


class HostApp:
    """A host Flask app with its own users, LoginManager and login/logout views."""

    def __init__(self, users: dict[str, User]) -> None:
        self.users = users
        self.loader_fails = False
        self.app = Flask("host")
        self.app.config["SECRET_KEY"] = "host-session-key"
        self.login_manager = LoginManager(self.app)

        @self.login_manager.user_loader
        def load(user_id: str) -> User | None:
            if self.loader_fails:
                raise RuntimeError("user database unavailable")
            return self.users.get(user_id)

        @self.app.post("/login/<user_id>")
        def login(user_id: str) -> str:
            login_user(self.users[user_id])
            return "ok"

        @self.app.post("/logout")
        def logout() -> str:
            logout_user()
            return "ok"

    def browser(self, user_id: str | None):  # noqa: ANN201
        """A Flask test client (its cookie jar), signed in as ``user_id`` unless None."""
        client = self.app.test_client()
        if user_id is not None:
            assert client.post(f"/login/{user_id}").status_code == 200
        return client


USERS = {
    "7": User("7", roles=["user", "moderator"], name="Amina"),
    "8": User("8", roles=[Role("admin"), Role("user")], name="Bilal"),
    "9": User("9", roles="user", groups=["editor"], display_name="Chafia"),
}


@pytest.fixture
def host(settings_overrides: dict[str, Any]) -> Iterator[Callable[..., tuple[HostApp, Realtime]]]:
    made: list[Realtime] = []

    def make(**overrides: Any) -> tuple[HostApp, Realtime]:
        host_app = HostApp(dict(USERS))
        rt = Realtime(registry_=fresh_registry(), **{
            **settings_overrides, "flask_login": True, "allowed_origins": SITE, **overrides})
        rt.db.migrate()
        rt.init_app(host_app.app)
        made.append(rt)
        return host_app, rt

    yield make
    for rt in made:
        rt.close()


def _connect(host_app: HostApp, rt: Realtime, browser: Any, origin: str | None = SITE,
             auth: Any = None) -> Client:
    headers = {"Origin": origin} if origin else None
    return Client(host_app.app, rt.socketio, auth=auth, headers=headers,
                  flask_test_client=browser)


def test_signed_in_user_connects_as_their_flask_login_user(host) -> None:
    host_app, rt = host()
    client = _connect(host_app, rt, host_app.browser("7"))
    assert client.is_connected()
    me = client.call("whoami")["data"]
    assert (me["user_id"], me["roles"], me["name"]) == ("7", ["user", "moderator"], "Amina")
    assert me["expires_at"] is None
    assert [c.principal.method for c in rt.connections] == ["flask_login"]


def test_role_objects_are_read_by_their_name(host) -> None:
    host_app, rt = host()
    client = _connect(host_app, rt, host_app.browser("8"))
    assert client.call("whoami")["data"]["roles"] == ["admin", "user"]


def test_roles_and_name_attributes_are_settings(host) -> None:
    host_app, rt = host(flask_login_roles_attr="groups", flask_login_name_attr="display_name")
    me = _connect(host_app, rt, host_app.browser("9")).call("whoami")["data"]
    assert (me["user_id"], me["roles"], me["name"]) == ("9", ["editor"], "Chafia")


def test_a_browser_that_is_not_signed_in_is_refused(host) -> None:
    host_app, rt = host()
    client = _connect(host_app, rt, host_app.browser(None))
    assert not client.is_connected()
    assert client.connect_error["code"] == "unauthenticated"
    assert client.connect_error["reason"] == "missing_token"


def test_after_logout_the_session_no_longer_connects(host) -> None:
    host_app, rt = host()
    browser = host_app.browser("7")
    assert _connect(host_app, rt, browser).is_connected()
    assert browser.post("/logout").status_code == 200
    assert not _connect(host_app, rt, browser).is_connected()


def test_a_user_the_loader_no_longer_knows_is_refused(host) -> None:
    host_app, rt = host()
    browser = host_app.browser("7")
    del host_app.users["7"]
    client = _connect(host_app, rt, browser)
    assert not client.is_connected()
    assert client.connect_error["reason"] == "missing_token"


def test_a_failing_user_loader_refuses_rather_than_lets_in(host) -> None:
    host_app, rt = host(anonymous=False)
    browser = host_app.browser("7")
    host_app.loader_fails = True
    client = _connect(host_app, rt, browser)
    assert not client.is_connected()
    assert client.connect_error["reason"] == "missing_token"


def test_not_signed_in_is_anonymous_when_anonymous_is_allowed(host) -> None:
    host_app, rt = host(anonymous=True)
    me = _connect(host_app, rt, host_app.browser(None)).call("whoami")["data"]
    assert me["user_id"].startswith("anon-")


@pytest.mark.parametrize("origin", [None, "https://evil.example", "null"])
def test_the_session_cookie_needs_an_allowed_origin(host, origin: str | None) -> None:
    host_app, rt = host()
    client = _connect(host_app, rt, host_app.browser("7"), origin=origin)
    assert not client.is_connected()
    assert client.connect_error["reason"] == "origin_not_allowed"


def test_a_wildcard_origin_does_not_count_for_the_session(host) -> None:
    host_app, rt = host(allowed_origins="*")
    client = _connect(host_app, rt, host_app.browser("7"), origin="https://evil.example")
    assert not client.is_connected()
    assert client.connect_error["reason"] == "origin_not_allowed"


def test_the_same_origin_as_the_request_is_allowed(host) -> None:
    host_app, rt = host(allowed_origins="")
    client = _connect(host_app, rt, host_app.browser("7"), origin="http://localhost")
    assert client.is_connected()


def test_a_token_wins_over_the_signed_in_session(host, make_token) -> None:
    host_app, rt = host()
    client = _connect(host_app, rt, host_app.browser("7"),
                      auth={"token": make_token("zineb", ["admin"])})
    assert client.call("whoami")["data"]["user_id"] == "zineb"


def test_start_up_needs_a_login_manager_on_the_app(settings_overrides) -> None:
    app = Flask("no-login-manager")
    rt = Realtime(registry_=fresh_registry(), **settings_overrides, flask_login=True)
    try:
        with pytest.raises(SettingsError, match="FLASK_LOGIN .* no LoginManager"):
            rt.init_app(app)
    finally:
        rt.close()


def test_start_up_names_the_extra_when_flask_login_is_missing(settings_overrides,
                                                              monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "flask_login", None)  # import flask_login → ImportError
    app = Flask("no-flask-login")
    rt = Realtime(registry_=fresh_registry(), **settings_overrides, flask_login=True)
    try:
        with pytest.raises(SettingsError, match=r"dihya-realtime\[flask-login\]"):
            rt.init_app(app)
    finally:
        rt.close()


@pytest.mark.parametrize("value", ["a.b", "roles()", "", "1x"])
def test_attribute_settings_must_be_plain_names(value: str) -> None:
    from dihya_realtime.kernel.settings import load_settings

    with pytest.raises(SettingsError, match="FLASK_LOGIN_ROLES_ATTR"):
        load_settings(flask_login_roles_attr=value)


def test_importing_the_package_imports_neither_identity_library() -> None:
    code = ("import sys, dihya_realtime, dihya_realtime.realtime, dihya_realtime.app; "
            "print(sorted(m for m in ('flask_login', 'flask_jwt_extended') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
