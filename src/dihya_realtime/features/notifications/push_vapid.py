"""VAPID (RFC 8292): the server's key pair that push services check our pushes against.

The private key lives in a PEM file (``DIHYA_RT_VAPID_PRIVATE_KEY_FILE``), made once by
``dihya-realtime vapid-keys``; the browser subscribes with the public key in its
``applicationServerKey`` form (the uncompressed P-256 point, base64url without padding),
served by ``GET /api/v1/push/vapid-key``. A key that changes invalidates every subscription
(the browser's subscription is bound to the key), so the file is never regenerated silently:
a missing or unreadable file is a start-up error, not a fresh key (py-vapid's ``from_file``
would make one).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid
from py_vapid.utils import b64urlencode

from dihya_realtime.kernel.settings import SettingsError


class VapidKeys:
    """The loaded key pair: ``signer`` for pywebpush, ``public_key`` for the page."""

    def __init__(self, signer: Vapid, subject: str) -> None:
        self.signer = signer
        self.subject = subject
        self.public_key = application_server_key(signer.public_key)

    @classmethod
    def from_file(cls, path: Path, subject: str | None) -> VapidKeys:
        """Load ``path`` (PEM, P-256); ``SettingsError`` naming the setting when it is not."""
        name = "DIHYA_RT_VAPID_PRIVATE_KEY_FILE"
        if not subject or not subject.startswith(("mailto:", "https://")):
            raise SettingsError("DIHYA_RT_VAPID_SUBJECT must be a mailto: or https:// URL "
                                f"when {name} is set (RFC 8292: how a push service reaches you)")
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise SettingsError(f"{name}: cannot read {path}: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise SettingsError(f"{name}: {path} is not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise SettingsError(f"{name}: {path} must hold a P-256 (prime256v1) EC key")
        return cls(Vapid(key), subject)


def application_server_key(public_key: ec.EllipticCurvePublicKey) -> str:
    """The public key as ``PushManager.subscribe({applicationServerKey})`` takes it."""
    raw = public_key.public_bytes(serialization.Encoding.X962,
                                  serialization.PublicFormat.UncompressedPoint)
    return str(b64urlencode(raw))


def generate_key_pair(path: Path) -> str:
    """Write a new P-256 private key to ``path`` (PEM, mode 0600; an existing file is never
    overwritten) and return the public key in ``applicationServerKey`` form."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return application_server_key(key.public_key())


__all__ = ["VapidKeys", "application_server_key", "generate_key_pair"]
