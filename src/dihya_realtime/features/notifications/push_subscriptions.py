"""Push subscriptions: the browsers (devices) of a user that accepted Web Push.

What a page sends is a ``PushSubscription.toJSON()``: an ``endpoint`` URL at the browser's push
service and two keys, ``p256dh`` (the browser's P-256 public key, 65 bytes uncompressed) and
``auth`` (a 16-byte secret). All three are hostile until checked, and the endpoint most of all:
the server will POST to it, so it must be ``https`` (``http`` only with
``DIHYA_RT_PUSH_ALLOW_HTTP``, for local push services in tests) on a host of
``DIHYA_RT_PUSH_ALLOWED_HOSTS`` (the browsers' push services by default), never a URL with
credentials. The keys must decode to a point on the curve and to 16 bytes.

Stored per user, at most ``DIHYA_RT_PUSH_MAX_SUBSCRIPTIONS`` each (the next is refused with
``conflict``, ``details.reason = "too_many_push_subscriptions"``). The endpoint is unique: a
browser re-subscribing, or another user signing in on the same browser, takes the row over.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field

from dihya_realtime.features.notifications.models import PUSH_QUEUE, PUSH_SUBSCRIPTIONS, chunks
from dihya_realtime.kernel.errors import conflict, invalid

if TYPE_CHECKING:
    from dihya_realtime.store import Database

MAX_ENDPOINT = 1024


class SubscriptionKeys(BaseModel):
    p256dh: str = Field(min_length=80, max_length=100, pattern=r"^[A-Za-z0-9_-]+={0,2}$",
                        description="the browser's P-256 public key, base64url")
    auth: str = Field(min_length=16, max_length=32, pattern=r"^[A-Za-z0-9_-]+={0,2}$",
                      description="16-byte authentication secret, base64url")


class SubscriptionIn(BaseModel):
    """A browser's ``PushSubscription.toJSON()`` (``expirationTime`` is accepted, unused)."""

    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(min_length=12, max_length=MAX_ENDPOINT)
    keys: SubscriptionKeys
    expirationTime: int | None = Field(default=None, ge=0)  # noqa: N815 - the browser's name


def b64url_bytes(value: str) -> bytes:
    return base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """``host`` is an entry of ``allowed``, or under an entry starting with ``.``; ``*``: any."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower()
        if entry == "*" or host == entry or (entry.startswith(".") and host.endswith(entry)):
            return True
    return False


def check_subscription(sub: SubscriptionIn, allowed_hosts: Sequence[str],
                       allow_http: bool) -> SubscriptionIn:
    """``invalid_payload`` naming the field unless the endpoint and the keys are usable."""
    def bad(field: str, message: str) -> Exception:
        return invalid(f"bad push subscription: {message}",
                       [{"field": field, "type": "value_error", "message": message}])

    endpoint = sub.endpoint
    if any(c.isspace() or ord(c) < 32 for c in endpoint):
        raise bad("endpoint", "must not contain spaces or control characters")
    parts = urlsplit(endpoint)
    if parts.scheme != "https" and not (allow_http and parts.scheme == "http"):
        raise bad("endpoint", "must be an https URL")
    if not parts.hostname or parts.username or parts.password or parts.fragment:
        raise bad("endpoint", "must be a URL with a host, no credentials and no fragment")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise bad("endpoint", "bad port") from None
    if not host_allowed(parts.hostname, allowed_hosts):
        raise bad("endpoint", f"{parts.hostname} is not an allowed push service")
    try:
        p256dh = b64url_bytes(sub.keys.p256dh)
        auth = b64url_bytes(sub.keys.auth)
    except (binascii.Error, ValueError):
        raise bad("keys", "keys must be base64url") from None
    if len(auth) != 16:
        raise bad("keys.auth", "must be 16 bytes")
    try:
        if len(p256dh) != 65:
            raise ValueError(len(p256dh))
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), p256dh)
    except ValueError:
        raise bad("keys.p256dh", "must be an uncompressed P-256 public key") from None
    return sub


class PushSubscriptions:
    """Store, list and remove the push subscriptions of users."""

    def __init__(self, db: Database, max_per_user: int) -> None:
        self.db = db
        self.table = PUSH_SUBSCRIPTIONS
        self.max_per_user = max_per_user

    def subscribe(self, user_id: str, sub: SubscriptionIn) -> dict[str, Any]:
        """Store (or take over) the subscription of ``sub.endpoint`` for ``user_id``.

        Returns ``{"id", "created"}``. Over the cap → ``conflict`` and nothing changes.
        """
        t = self.table
        with self.db.write_transaction() as conn:
            existing = conn.execute(sa.select(t.c.id, t.c.user_id).where(
                t.c.endpoint == sub.endpoint)).first()
            if existing is not None:
                conn.execute(t.update().where(t.c.id == existing.id).values(
                    user_id=user_id, p256dh=sub.keys.p256dh, auth=sub.keys.auth))
                if existing.user_id != user_id:  # another user's pushes must not follow
                    conn.execute(PUSH_QUEUE.delete().where(
                        PUSH_QUEUE.c.subscription_id == existing.id))
                return {"id": existing.id, "created": False}
            count = conn.scalar(sa.select(sa.func.count()).select_from(t).where(
                t.c.user_id == user_id)) or 0
            if count >= self.max_per_user:
                raise conflict("too many push subscriptions: unsubscribe another device first",
                               {"reason": "too_many_push_subscriptions",
                                "limit": self.max_per_user})
            id_ = uuid.uuid4().hex
            conn.execute(t.insert().values(id=id_, user_id=user_id, endpoint=sub.endpoint,
                                           p256dh=sub.keys.p256dh, auth=sub.keys.auth,
                                           created_at=datetime.now(UTC)))
        return {"id": id_, "created": True}

    def unsubscribe(self, user_id: str, endpoint: str) -> bool:
        """Forget the user's subscription of ``endpoint`` (and its queued pushes)."""
        t = self.table
        with self.db.write_transaction() as conn:
            ids = list(conn.scalars(sa.select(t.c.id).where(
                t.c.user_id == user_id, t.c.endpoint == endpoint)))
            self._delete(conn, ids)
        return bool(ids)

    def remove(self, subscription_id: str) -> None:
        """Forget a subscription the push service called gone (404/410)."""
        with self.db.write_transaction() as conn:
            self._delete(conn, [subscription_id])

    def of_users(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        """``{user_id: [subscription id, …]}`` for those of ``user_ids`` who have any."""
        t = self.table
        found: dict[str, list[str]] = {}
        with self.db.engine.connect() as conn:
            for chunk in chunks(list(user_ids)):
                for id_, user in conn.execute(sa.select(t.c.id, t.c.user_id).where(
                        t.c.user_id.in_(chunk)).order_by(t.c.created_at, t.c.id)):
                    found.setdefault(user, []).append(id_)
        return found

    def get(self, subscription_id: str) -> Any:
        with self.db.engine.connect() as conn:
            return conn.execute(sa.select(self.table).where(
                self.table.c.id == subscription_id)).first()

    def _delete(self, conn: Any, ids: list[str]) -> None:
        if ids:
            conn.execute(PUSH_QUEUE.delete().where(PUSH_QUEUE.c.subscription_id.in_(ids)))
            conn.execute(self.table.delete().where(self.table.c.id.in_(ids)))


__all__ = ["PushSubscriptions", "SubscriptionIn", "check_subscription", "host_allowed"]
