"""Web Push end to end, against a local push service started by the test.

The push service is an HTTP server that does what a browser's push service does with our
request: it checks the VAPID JWT (ES256 with the key in ``Authorization: vapid t=…,k=…``,
``aud`` its own origin, ``exp`` within 24 h, a ``sub``) and decrypts the ``aes128gcm`` body with
the subscription's private key and auth secret (made here with ``cryptography``, as a browser
makes them), then answers what the test scripted (201 by default).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dihya_realtime.features.notifications.push_vapid import generate_key_pair

pytestmark = pytest.mark.timeout(60)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Browser:
    """One browser's push subscription: its key pair and auth secret, as PushManager makes."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)

    def subscription(self) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)}}


class PushService:
    """A local push service: verifies VAPID, decrypts, records, answers as scripted."""

    def __init__(self, vapid_public_key: str) -> None:
        self.vapid_public_key = vapid_public_key
        self.browsers: dict[str, Browser] = {}
        self.script: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers = service.answer(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def browser(self, name: str) -> Browser:
        browser = Browser(f"{self.origin}/push/{name}")
        self.browsers[f"/push/{name}"] = browser
        return browser

    def answer(self, path: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, dict[str, str]]:
        record: dict[str, Any] = {"path": path, "headers": headers}
        try:
            record["claims"] = self.verify_vapid(headers)
            browser = self.browsers[path]
            assert headers.get("content-encoding") == "aes128gcm"
            assert int(headers["ttl"]) > 0
            plain = http_ece.decrypt(body, private_key=browser.key, auth_secret=browser.auth,
                                     version="aes128gcm")
            record["payload"] = json.loads(plain)
        except Exception as exc:  # a request a real push service would refuse
            record["error"] = repr(exc)
            with self.lock:
                record["status"] = 400
                self.received.append(record)
            return 400, {}
        with self.lock:
            scripted = self.script.get(path) or []
            status, extra = scripted.pop(0) if scripted else (201, {})
            record["status"] = status
            self.received.append(record)
        return status, extra

    def verify_vapid(self, headers: dict[str, str]) -> dict[str, Any]:
        scheme, _, params = headers["authorization"].partition(" ")
        assert scheme == "vapid"
        parts = dict(p.split("=", 1) for p in params.split(","))
        assert parts["k"] == self.vapid_public_key  # the key the page subscribed with
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(parts["k"]))
        claims = jwt.decode(parts["t"], key, algorithms=["ES256"], audience=self.origin)
        assert claims["exp"] <= time.time() + 24 * 3600
        assert claims["sub"] == "mailto:ops@example.com"
        return claims

    def wait(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = list(self.received)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} pushes expected within {timeout} s, got {got}")
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def vapid_key(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "vapid.pem"
    return path, generate_key_pair(path)


@pytest.fixture
def push_service(vapid_key: tuple[Path, str]) -> Any:
    service = PushService(vapid_key[1])
    yield service
    service.close()


@pytest.fixture
def push_server(start_server: Any, vapid_key: tuple[Path, str]) -> Any:
    def start() -> Any:
        return start_server(VAPID_PRIVATE_KEY_FILE=str(vapid_key[0]),
                            VAPID_SUBJECT="mailto:ops@example.com", PUSH_ALLOW_HTTP="true",
                            PUSH_ALLOWED_HOSTS="127.0.0.1", PUSH_POLL_INTERVAL="0.1",
                            PUSH_RETRY_BASE="0.2")
    return start


def subscribe(server: Any, sio_client: Any, token: Any, user: str, browser: Browser) -> None:
    client = sio_client(server, token=token(user))
    reply = client.call("push:subscribe", {"subscription": browser.subscription()})
    assert reply["ok"], reply
    client.disconnect()


def notify(server: Any, users: list[str], **fields: Any) -> list[dict[str, Any]]:
    body = {"user_ids": users, "category": "builds", "title": "Build 42 finished",
            "body": "all green", **fields}
    status, reply = server.http("POST", "/api/v1/notifications", body, api_key=True)
    assert status == 201, reply
    return reply["data"]["notifications"]


def test_a_user_with_no_connection_gets_the_push_decrypted(
        push_server: Any, push_service: PushService, sio_client: Any, token: Any,
        vapid_key: tuple[Path, str]) -> None:
    server = push_server()
    status, reply = server.http("GET", "/api/v1/push/vapid-key")
    assert status == 200 and reply["data"]["public_key"] == vapid_key[1]
    subscribe(server, sio_client, token, "alice", push_service.browser("alice-laptop"))

    [created] = notify(server, ["alice"], action_url="/builds/42")

    [push] = push_service.wait(1)
    assert push.get("error") is None and push["status"] == 201
    assert push["payload"] == {"title": "Build 42 finished", "body": "all green",
                               "url": "/builds/42", "notification_id": created["id"],
                               "category": "builds"}
    sent = server.wait_audit("push_sent")
    assert sent["user_id"] == "alice"
    assert sent["details"]["notification_id"] == created["id"]
    assert sent["details"]["push_service"] == push_service.origin
    assert sent["details"]["status"] == 201
    assert "all green" not in json.dumps(sent) and "/push/alice" not in json.dumps(sent)


def test_a_user_with_a_live_tab_gets_no_push(
        push_server: Any, push_service: PushService, sio_client: Any, token: Any) -> None:
    server = push_server()
    subscribe(server, sio_client, token, "alice", push_service.browser("alice"))
    subscribe(server, sio_client, token, "bob", push_service.browser("bob"))
    tab = sio_client(server, token=token("alice"))

    notify(server, ["alice", "bob"])

    tab.wait_for("notifications:new")
    [push] = push_service.wait(1)  # bob, who has no tab open
    assert push["path"] == "/push/bob"
    time.sleep(1.0)  # several worker passes: nothing for alice
    assert [p["path"] for p in push_service.received] == ["/push/bob"]


def test_a_410_removes_the_subscription(
        push_server: Any, push_service: PushService, sio_client: Any, token: Any) -> None:
    server = push_server()
    subscribe(server, sio_client, token, "alice", push_service.browser("gone"))
    push_service.script["/push/gone"] = [(410, {})]

    notify(server, ["alice"])
    push_service.wait(1)
    gone = server.wait_audit("push_gone")
    assert gone["details"]["status"] == 410

    notify(server, ["alice"], title="Build 43 finished")
    time.sleep(1.0)
    assert len(push_service.received) == 1  # no subscription left to push to
    assert not [a for a in server.audit_lines() if a["type"] == "push_sent"]


def test_a_503_then_201_delivers_once_across_a_restart(
        push_server: Any, push_service: PushService, sio_client: Any, token: Any) -> None:
    server = push_server()
    subscribe(server, sio_client, token, "alice", push_service.browser("flaky"))
    push_service.script["/push/flaky"] = [(503, {"Retry-After": "2"})]

    [created] = notify(server, ["alice"])
    push_service.wait(1)
    retry = server.wait_audit("push_retry")
    assert retry["details"]["status"] == 503 and retry["details"]["retry_in"] == 2.0
    server.restart()  # the job is in the queue table, not in the process

    pushes = push_service.wait(2)
    time.sleep(1.0)  # and no third
    assert [p["status"] for p in push_service.received] == [503, 201]
    assert pushes[1]["payload"]["notification_id"] == created["id"]
    sent = server.wait_audit("push_sent")
    assert sent["details"]["attempt"] == 2
