"""Sending one push: the payload a service worker shows, encrypted and signed by pywebpush,
and what the push service's answer means for the job.

The payload is ``{"title", "body", "url", "notification_id", "category"}``, through the
redaction filter (``rt.redact``) before it is queued, and at most :data:`MAX_PAYLOAD_BYTES`
(the body is cut to fit: a push message carries at most 4096 encrypted bytes, RFC 8291).
pywebpush encrypts it with ``aes128gcm`` for the subscription's keys and signs a VAPID JWT
(``aud`` = the endpoint's origin, ``exp`` 12 h, ``sub`` = ``DIHYA_RT_VAPID_SUBJECT``).

The answer: 2xx sent; 404/410 the subscription is gone (removed); 429 and 5xx, or no answer
(timeout, refused), try again later: after ``Retry-After`` when the service says, else an
exponential backoff, never past ``DIHYA_RT_PUSH_RETRY_MAX``; any other status (400, 403,
413…) will not get better and the job is dropped. Redirects are refused: the endpoint was
checked against the allowed push services, a redirect would leave them.
"""

from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
import requests
from pywebpush import WebPushException, webpush

from dihya_realtime.features.notifications.push_queue import Job
from dihya_realtime.features.notifications.push_vapid import VapidKeys

log = logging.getLogger("dihya_realtime.notifications.push")

MAX_PAYLOAD_BYTES = 3000
"""Plaintext bound: 4096 encrypted bytes minus the aes128gcm header (86), tag and padding."""

Outcome = Literal["sent", "gone", "retry", "rejected"]


def push_payload(notification: dict[str, Any], url: str) -> dict[str, Any]:
    """What the service worker shows for ``notification`` and opens on click, cut to size."""
    payload = {"title": notification["title"], "body": notification.get("body") or "",
               "url": url, "notification_id": notification["id"],
               "category": notification["category"]}
    while len(orjson.dumps(payload)) > MAX_PAYLOAD_BYTES and payload["body"]:
        payload["body"] = payload["body"][:len(payload["body"]) // 2].rstrip() + "…"
        if len(payload["body"]) <= 1:
            payload["body"] = ""
    if len(orjson.dumps(payload)) > MAX_PAYLOAD_BYTES:
        payload["title"] = payload["title"][:100]
    return payload


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` if
    absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    status: int | None  # HTTP status; None when no answer came
    delay: float = 0.0  # for "retry": seconds to wait


class PushSender:
    """Send a claimed :class:`~.push_queue.Job`; classify the answer."""

    def __init__(self, keys: VapidKeys, *, ttl: int, timeout: float, retry_base: float,
                 retry_max: float) -> None:
        self.keys = keys
        self.ttl = ttl
        self.timeout = timeout
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.session = requests.Session()
        self.session.max_redirects = 0  # a redirect raises TooManyRedirects: rejected

    def backoff(self, attempts: int, hinted: float | None) -> float:
        own = self.retry_base * 2 ** max(0, attempts - 1)
        return min(self.retry_max, max(own if hinted is None else hinted, 0.0))

    def send(self, job: Job) -> Result:
        info = {"endpoint": job.endpoint, "keys": {"p256dh": job.p256dh, "auth": job.auth}}
        try:
            response = webpush(info, data=job.payload, vapid_private_key=self.keys.signer,
                               vapid_claims={"sub": self.keys.subject}, ttl=self.ttl,
                               timeout=self.timeout, headers={"Urgency": "normal"},
                               requests_session=self.session)
            return Result("sent", int(getattr(response, "status_code", 201)))
        except WebPushException as exc:
            status: int | None = exc.response.status_code if exc.response is not None else None
            hinted = retry_after(exc.response.headers.get("Retry-After")
                                 if exc.response is not None else None)
        except requests.TooManyRedirects:
            return Result("rejected", None)
        except requests.RequestException as exc:
            log.info("push to %s got no answer: %s", endpoint_origin(job.endpoint),
                     type(exc).__name__)
            return Result("retry", None, self.backoff(job.attempts, None))
        if status in (404, 410):
            return Result("gone", status)
        if status is None or status == 429 or status >= 500:
            return Result("retry", status, self.backoff(job.attempts, hinted))
        return Result("rejected", status)


def endpoint_origin(endpoint: str) -> str:
    """What logs and the audit record of an endpoint: its origin (the path identifies one
    browser, and anyone holding it can push to the browser's service worker)."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


__all__ = ["MAX_PAYLOAD_BYTES", "PushSender", "Result", "endpoint_origin", "push_payload",
           "retry_after"]
