"""What dev mode may do, and only there: the dev JWT secret and the loopback-only guard.

Why: ``/dev/token`` mints a token for any user and roles. It must never sign with a
production secret (a dev-mode server started with ``DIHYA_RT_JWT_SECRET`` set would hand out
tokens every production server accepts), and a page on another site must not reach it by DNS
rebinding (a name of the attacker's that resolves to 127.0.0.1 sends its own ``Host``). So the
dev secret is recognisable (:data:`DEV_SECRET_PREFIX`) and the dev endpoints answer only a
request whose ``Host`` is a loopback name or address (:func:`is_loopback_host`).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from pathlib import Path

from pydantic import SecretStr

DEV_SECRET_FILE = ".dihya-dev-secret"
DEV_SECRET_PREFIX = "dihya-dev-only:"
"""Every secret :func:`dev_secret` makes starts with this; ``/dev/token`` signs with no other."""

_HOST = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>\d{1,5}))?\Z")


def dev_secret(path: str | Path = DEV_SECRET_FILE) -> SecretStr:
    """A per-checkout random dev secret, kept in ``path`` so ``token`` and ``serve`` agree.

    A file from an older version (no :data:`DEV_SECRET_PREFIX`) is replaced: its tokens stop
    verifying, which only a local demo notices.
    """
    file = Path(path)
    text = file.read_text().strip() if file.exists() else ""
    if not is_dev_secret(text):
        text = DEV_SECRET_PREFIX + secrets.token_hex(32)
        file.write_text(text)
        file.chmod(0o600)
    return SecretStr(text)


def is_dev_secret(secret: str | SecretStr | None) -> bool:
    """Was ``secret`` made by :func:`dev_secret` (never a secret an operator configured)?"""
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if not secret:
        return False
    return secret.startswith(DEV_SECRET_PREFIX) and len(secret) >= len(DEV_SECRET_PREFIX) + 32


def is_loopback_host(host: str | None) -> bool:
    """Is a ``Host`` header ``localhost``, a 127/8 address or ``[::1]``, with any port?"""
    match = _HOST.match(host or "")
    if not match:
        return False
    name = match["v6"] or match["name"]
    if match["name"] is not None and name.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if match["name"] is not None and address.version == 6:
        return False  # an IPv6 address is only valid in brackets
    return address.is_loopback
