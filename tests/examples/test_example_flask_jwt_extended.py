"""examples/flask_jwt_extended: the host app's own access tokens open connections."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import jwt

from tests.examples.conftest import ExampleProcess

HOST_SECRET = "the-example-apps-own-secret-key-for-its-tokens"


def post(example: ExampleProcess, path: str, body: Any = None,
         token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(f"{example.url}{path}", data=json.dumps(body or {}).encode(),
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def start(start_example) -> ExampleProcess:
    # no DIHYA_RT_JWT_SECRET: only the host app's tokens are accepted
    return start_example("flask_jwt_extended", EXAMPLE_JWT_SECRET_KEY=HOST_SECRET)


def test_an_access_token_from_the_host_app_connects_as_its_user(start_example, sio_connect):
    example = start(start_example)
    status, tokens = post(example, "/login", {"username": "amina", "password": "amina-password"})
    assert status == 200

    client = sio_connect(example.url, auth={"token": tokens["access_token"]})
    assert client.connected, client.connect_error
    me = client.call("whoami")["data"]
    assert (me["user_id"], me["roles"], me["name"]) == ("amina", ["user", "moderator"], "Amina")
    assert me["expires_at"] > 0

    # refreshing the live connection with a new access token from the app's /refresh
    status, renewed = post(example, "/refresh", token=tokens["refresh_token"])
    assert status == 200
    assert client.call("auth:refresh", {"token": renewed["access_token"]})["ok"] is True


def test_refresh_forged_and_revoked_tokens_are_refused(start_example, sio_connect):
    example = start(start_example)
    _, tokens = post(example, "/login", {"username": "bilal", "password": "bilal-password"})

    refresh = sio_connect(example.url, auth={"token": tokens["refresh_token"]})
    assert not refresh.connected
    assert refresh.connect_error["reason"] == "invalid_token"

    claims = {"sub": "bilal", "type": "access", "jti": "x", "roles": ["admin"],
              "exp": int(time.time()) + 600}
    forged = jwt.encode(claims, "not-the-apps-secret-but-long-enough-for-hs256")
    assert sio_connect(example.url, auth={"token": forged}).connect_error["message"] == (
        "bad signature")
    # the same claims signed with the app's secret connect: the secret is the app's
    minted = sio_connect(example.url, auth={"token": jwt.encode(claims, HOST_SECRET)})
    assert minted.call("whoami")["data"]["roles"] == ["admin"]

    live = sio_connect(example.url, auth={"token": tokens["access_token"]})
    assert live.connected
    assert post(example, "/logout", token=tokens["access_token"])[0] == 200
    revoked = sio_connect(example.url, auth={"token": tokens["access_token"]})
    assert not revoked.connected
    assert revoked.connect_error["message"] == "token has been revoked"
    reply = live.call("auth:refresh", {"token": tokens["access_token"]})
    assert reply["ok"] is False and reply["error"]["code"] == "unauthenticated"
