"""Unsubscribe tokens: the link in a digest turns that user's digest off without signing in.

Why a signed token and not a session: the reader is in their mail client, often on another
device. The token names the user and expires (``DIHYA_RT_DIGEST_UNSUBSCRIBE_TTL``); it is signed
with itsdangerous (HMAC-SHA256, Flask's own dependency) under a key of its own, derived from
``DIHYA_RT_DIGEST_SECRET`` (or ``SECRET_KEY``, then ``JWT_SECRET``) with a salt, so it can
never be replayed as a session cookie or a JWT, nor they as it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

if TYPE_CHECKING:
    from dihya_realtime.kernel.settings import Settings

SALT = "dihya-realtime/digest-unsubscribe/v1"


class NoSigningKey(RuntimeError):
    """No key to sign unsubscribe links with: the digest cannot be sent."""


class BadToken(ValueError):
    """The token is not ours, was altered, or has expired (``expired`` says which)."""

    def __init__(self, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def signing_key(settings: Settings) -> str:
    for secret in (settings.digest_secret, settings.secret_key, settings.jwt_secret):
        if secret is not None and secret.get_secret_value():
            return secret.get_secret_value()
    raise NoSigningKey("set DIHYA_RT_DIGEST_SECRET (or SECRET_KEY) to sign unsubscribe links")


class UnsubscribeTokens:
    """Make and check the tokens of unsubscribe links."""

    def __init__(self, key: str, ttl: float) -> None:
        self.serializer = URLSafeTimedSerializer(key, salt=SALT)
        self.ttl = ttl

    @classmethod
    def from_settings(cls, settings: Settings) -> UnsubscribeTokens:
        return cls(signing_key(settings), settings.digest_unsubscribe_ttl)

    def make(self, user_id: str) -> str:
        return self.serializer.dumps({"u": user_id})

    def user_of(self, token: str) -> str:
        """The user the token unsubscribes; :class:`BadToken` when it is not valid."""
        if not token or len(token) > 1024:
            raise BadToken("no token, or one too long")
        try:
            data = self.serializer.loads(token, max_age=int(self.ttl))
        except SignatureExpired:
            raise BadToken("this link has expired", expired=True) from None
        except BadSignature:
            raise BadToken("this link is not valid") from None
        user = data.get("u") if isinstance(data, dict) else None
        if not isinstance(user, str) or not user:
            raise BadToken("this link is not valid")
        return user


__all__ = ["BadToken", "NoSigningKey", "UnsubscribeTokens", "signing_key"]
