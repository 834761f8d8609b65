"""The demo page's Web Push flow in Chromium: the permission button, the service worker, and
the subscription reaching the server.

Chromium's ``pushManager.subscribe`` fails in Playwright's browser contexts, which are
incognito-like: "Chrome currently does not support the Push API in incognito mode"
(crbug.com/41124656; it would also need Google's push service, FCM). The first test proves
the button, the service worker registration and that the failure is shown and sends nothing
(or, on a browser where subscribing works, that the subscription arrives); the second test
replaces ``PushManager.prototype.subscribe`` with one that returns a subscription made by the
test (a real P-256 key and auth secret): the page's own code still registers the worker,
asks the permission, fetches the VAPID key and sends what ``subscribe`` returned.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dihya_realtime.features.notifications.push_vapid import generate_key_pair
from tests.e2e.conftest import ServerProcess, expect
from tests.integration.test_push_delivery import Browser

ENDPOINT = "https://fcm.googleapis.com/fcm/send/e2e-device-1"


@pytest.fixture
def server(tmp_path: Path, redis_prefix: str) -> Iterator[ServerProcess]:
    """The e2e server with Web Push on (a VAPID key made for the test)."""
    proc = ServerProcess(tmp_path, redis_prefix)
    generate_key_pair(tmp_path / "vapid.pem")
    proc.env.update({"DIHYA_RT_VAPID_PRIVATE_KEY_FILE": str(tmp_path / "vapid.pem"),
                     "DIHYA_RT_VAPID_SUBJECT": "mailto:ops@example.com"})
    proc.start()
    yield proc
    proc.stop()


def audit(server: ServerProcess, type_: str, timeout: float = 10.0) -> dict[str, Any]:
    path = server.workdir / "audit.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record["type"] == type_:
                    return record
        time.sleep(0.05)
    raise AssertionError(f"no {type_!r} audit record")


def signed_in_with_permission(browsers: Any, server: ServerProcess, script: str | None = None
                              ) -> Any:
    ctx = browsers.context()
    ctx.grant_permissions(["notifications"], origin=server.url)
    if script:
        ctx.add_init_script(script)
    return browsers.sign_in("alice", ctx=ctx)


def test_the_button_registers_the_service_worker_and_subscribes(
        browsers: Any, server: ServerProcess) -> None:
    page = signed_in_with_permission(browsers, server)
    # Playwright's contexts are incognito-like, where Chrome has no Push API (crbug 41124656)
    browsers.tolerate(page, "does not support the Push API in incognito mode")
    button = page.locator("#push-enable")
    expect(button).to_be_visible()
    # nothing is registered before the click
    assert page.evaluate("navigator.serviceWorker.getRegistrations().then(r => r.length)") == 0

    button.click()

    status = page.locator("#push-status")
    expect(status).to_have_attribute("data-state", re.compile("^(on|error)$"))
    scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.scope)")
    assert scope == server.url + "/"
    if status.get_attribute("data-state") == "error":
        # Headless Chromium has no push service ("Registration failed - permission denied"):
        # the page says so and sends the server nothing; the next test injects a subscription.
        assert status.inner_text().startswith("Push failed: ")
        time.sleep(0.5)
        assert not (server.workdir / "audit.log").exists() or "push_subscribed" not in (
            server.workdir / "audit.log").read_text()
        return
    record = audit(server, "push_subscribed")
    assert record["user_id"] == "alice"


def test_the_subscription_reaches_the_server(browsers: Any, server: ServerProcess) -> None:
    made = Browser(ENDPOINT).subscription()
    inject = """
      PushManager.prototype.subscribe = async function (options) {
        window.__subscribeOptions = {
          userVisibleOnly: options.userVisibleOnly,
          key: options.applicationServerKey  // the base64url string the spec accepts
        };
        const json = SUBSCRIPTION;
        return { toJSON: () => json, endpoint: json.endpoint };
      };
    """.replace("SUBSCRIPTION", json.dumps(made))
    page = signed_in_with_permission(browsers, server, inject)

    page.click("#push-enable")

    expect(page.locator("#push-status")).to_have_attribute("data-state", "on")
    options = page.evaluate("window.__subscribeOptions")
    assert options["userVisibleOnly"] is True
    with urllib_get(server.url + "/api/v1/push/vapid-key") as reply:
        public_key = json.loads(reply.read())["data"]["public_key"]
    assert options["key"] == public_key
    record = audit(server, "push_subscribed")
    assert record["user_id"] == "alice" and record["outcome"] == "ok"
    import sqlite3

    with sqlite3.connect(server.workdir / "e2e.db") as db:
        rows = db.execute(
            "SELECT user_id, endpoint, p256dh, auth FROM push_subscriptions").fetchall()
    assert rows == [("alice", ENDPOINT, made["keys"]["p256dh"], made["keys"]["auth"])]


def urllib_get(url: str) -> Any:
    import urllib.request

    return urllib.request.urlopen(url, timeout=5)

