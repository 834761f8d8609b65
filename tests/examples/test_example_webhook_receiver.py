"""examples/webhook_receiver: a Flask route that verifies the signature of real deliveries."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from dihya_realtime.webhooks import sign
from tests.examples.conftest import ExampleProcess
from tests.integration.conftest import (  # noqa: F401 - fixtures: a real server to send
    migrated_sqlite,
    server_env,
    start_server,
)

SECRET = "example-receiver-secret-0123456789"


def post(example: ExampleProcess, body: bytes, signature: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Dihya-Signature"] = signature
    req = urllib.request.Request(f"{example.url}/webhooks/dihya", data=body, headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def seen(example: ExampleProcess) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{example.url}/seen", timeout=5) as resp:
        return json.loads(resp.read())


def test_the_receiver_accepts_a_real_server_delivery_and_refuses_forgeries(
        start_example, start_server) -> None:  # noqa: F811 - the imported fixture
    example = start_example("webhook_receiver", WEBHOOK_SECRET=SECRET)
    server = start_server(WEBHOOKS={"app": {"url": f"{example.url}/webhooks/dihya",
                                            "secret": SECRET}})
    status, reply = server.http("POST", "/api/v1/webhooks/test", {}, api_key=True)
    assert status == 200 and reply["data"]["results"][0]["status"] == 200, reply
    [event] = seen(example)
    assert event["type"] == "webhook.test" and event["id"] == reply["data"]["results"][0]["id"]

    body = json.dumps({"id": "forged", "type": "chat.message_sent", "created_at": "x",
                       "data": {}}).encode()
    assert post(example, body, None) == 400
    assert post(example, body, sign("another-secret-0123456789", body)) == 400
    assert post(example, body, sign(SECRET, body, int(time.time()) - 3600)) == 400
    assert post(example, body + b" ", sign(SECRET, body)) == 400
    assert post(example, body, sign(SECRET, body)) == 200
    assert post(example, body, sign(SECRET, body)) == 200  # a repeat: handled once
    assert [e["id"] for e in seen(example)] == [event["id"], "forged"]
