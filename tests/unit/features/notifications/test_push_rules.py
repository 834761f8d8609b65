"""Web Push rules that need no server: what a subscription may be, when quiet hours hold,
how long a Retry-After asks to wait, what a push may carry."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dihya_realtime.features.notifications.push_quiet_hours import in_window
from dihya_realtime.features.notifications.push_sender import (
    MAX_PAYLOAD_BYTES,
    push_payload,
    retry_after,
)
from dihya_realtime.features.notifications.push_service import open_url
from dihya_realtime.features.notifications.push_subscriptions import (
    SubscriptionIn,
    check_subscription,
)
from dihya_realtime.kernel.errors import RealtimeError

HOSTS = ["fcm.googleapis.com", ".push.services.mozilla.com"]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def sub(endpoint: str = "https://fcm.googleapis.com/fcm/send/abc", p256dh: str | None = None,
        auth: str | None = None) -> SubscriptionIn:
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return SubscriptionIn.model_validate({"endpoint": endpoint, "keys": {
        "p256dh": p256dh or b64(point), "auth": auth or b64(os.urandom(16))}})


def refused_field(s: SubscriptionIn, allow_http: bool = False) -> str:
    with pytest.raises(RealtimeError) as caught:
        check_subscription(s, HOSTS, allow_http)
    assert caught.value.code == "invalid_payload"
    return caught.value.details[0]["field"]


def test_a_browser_subscription_on_a_known_push_service_is_accepted() -> None:
    assert check_subscription(sub(), HOSTS, False).endpoint.startswith("https://fcm.")
    assert check_subscription(sub("https://updates.push.services.mozilla.com/wpush/v2/x"),
                              HOSTS, False)


@pytest.mark.parametrize("endpoint", [
    "http://fcm.googleapis.com/fcm/send/abc",  # not https
    "https://169.254.169.254/latest/meta-data",  # not a push service (SSRF)
    "https://fcm.googleapis.com.evil.example/x",  # a suffix trick
    "https://user:pw@fcm.googleapis.com/x",  # credentials
    "https://fcm.googleapis.com/x y",  # a space
    "file:///etc/passwd",
])
def test_an_endpoint_the_server_should_not_post_to_is_refused(endpoint: str) -> None:
    assert refused_field(sub(endpoint)) == "endpoint"


def test_http_is_accepted_only_when_the_setting_allows_it() -> None:
    local = sub("http://127.0.0.1:9999/push/1")
    assert check_subscription(local, ["127.0.0.1"], True)
    assert refused_field(local) == "endpoint"


def test_keys_must_be_a_curve_point_and_16_bytes() -> None:
    not_on_curve = b64(b"\x04" + b"\x01" * 64)
    assert refused_field(sub(p256dh=not_on_curve)) == "keys.p256dh"
    assert refused_field(sub(auth=b64(os.urandom(12)))) == "keys.auth"


@pytest.mark.parametrize(("start", "end", "now", "quiet"), [
    (22 * 60, 7 * 60, 23 * 60, True), (22 * 60, 7 * 60, 6 * 60 + 59, True),
    (22 * 60, 7 * 60, 7 * 60, False), (22 * 60, 7 * 60, 12 * 60, False),
    (13 * 60, 14 * 60, 13 * 60 + 30, True), (13 * 60, 14 * 60, 14 * 60, False),
])
def test_quiet_hours_may_wrap_midnight(start: int, end: int, now: int, quiet: bool) -> None:
    assert in_window(start, end, now) is quiet


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("120") == 120.0
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp()
    assert retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_a_push_payload_fits_a_push_message_and_says_what_to_open() -> None:
    n = {"id": "n1", "title": "T" * 200, "body": "é" * 2000, "category": "chat.mention",
         "data": {"room_id": "r 1"}, "action_url": None}
    payload = push_payload(n, open_url(n))
    assert len(orjson.dumps(payload)) <= MAX_PAYLOAD_BYTES
    assert payload["url"] == "/#room=r%201" and payload["notification_id"] == "n1"
    assert open_url({**n, "action_url": "/builds/42"}) == "/builds/42"
