"""examples/flask_login: a browser session of the host app connects as its Flask-Login user."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.examples.conftest import ExampleProcess


def sign_in(example: ExampleProcess, username: str, password: str) -> tuple[int, str | None]:
    """POST /login as a browser would; the status and the session cookie it sets."""
    body = json.dumps({"username": username, "password": password}).encode()
    req = urllib.request.Request(f"{example.url}/login", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            cookie = resp.headers.get("Set-Cookie")
            return resp.status, cookie.split(";", 1)[0] if cookie else None
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_a_signed_in_browser_connects_as_its_flask_login_user(start_example, sio_connect):
    example = start_example("flask_login")
    status, cookie = sign_in(example, "amina", "amina-password")
    assert status == 200 and cookie and cookie.startswith("session=")

    client = sio_connect(example.url, cookie=cookie)
    assert client.connected, client.connect_error
    me = client.call("whoami")["data"]
    assert (me["user_id"], me["roles"], me["name"]) == ("amina", ["user", "moderator"], "Amina")

    other = sio_connect(example.url, cookie=sign_in(example, "bilal", "bilal-password")[1])
    assert other.call("whoami")["data"]["roles"] == ["user"]


def test_without_a_session_or_from_another_site_the_connection_is_refused(start_example,
                                                                          sio_connect):
    example = start_example("flask_login")
    assert sign_in(example, "amina", "wrong")[0] == 401

    anonymous = sio_connect(example.url)
    assert not anonymous.connected
    assert anonymous.connect_error["code"] == "unauthenticated"

    _, cookie = sign_in(example, "amina", "amina-password")
    cross_site = sio_connect(example.url, cookie=cookie, origin="https://evil.example")
    assert not cross_site.connected
    assert cross_site.connect_error["reason"] == "origin_not_allowed"
