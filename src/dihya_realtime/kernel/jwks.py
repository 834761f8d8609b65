"""Signing keys from an identity provider's JWKS URL (Auth0, Keycloak, Cognito, Entra, any OIDC).

An OIDC provider publishes its public keys as a JSON Web Key Set and rotates them: a new key
appears in the set (with a new ``kid``) before tokens are signed with it, and the old one stays
a while so tokens already issued keep verifying. :class:`JwksKeySet` follows that rotation
without making the connect path wait on the provider:

- keys are cached and chosen by the token's ``kid``; a token naming a cached key never waits
  for the network (a stale cache is refreshed in the background, the cached keys still serve);
- an unknown ``kid`` fetches the set again, but at most once per ``min_refetch`` seconds: a
  flood of tokens with invented ``kid`` values costs one fetch per interval, never one each;
- when the URL fails (down, timeout, bad JSON, too large) the last good set is kept and a
  warning is logged;
- the response is hostile until bounded: at most ``max_bytes`` are read, within ``timeout``
  seconds in total, redirects are not followed;
- only asymmetric keys are taken (RSA, EC): an ``oct`` (HMAC) key or a key whose ``alg`` is
  not allowed is ignored, so a JWKS can never turn a public value into an HMAC secret.

Under ``serve`` the process is gevent monkey-patched, so the blocking urllib fetch and the lock
yield to other greenlets.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

log = logging.getLogger("dihya_realtime.jwks")

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512"})
ASYMMETRIC_ALGORITHMS = RSA_ALGORITHMS | EC_ALGORITHMS
_EC_ALG_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_READ_CHUNK = 16 * 1024


class JwksError(Exception):
    """Why no key could be found for a token; the message is safe to show the client."""


class UnknownKeyError(JwksError):
    """The token's ``kid`` is not in the provider's set, even after fetching it again."""


class KeysUnavailableError(JwksError):
    """The set has never been fetched successfully, so nothing can be verified yet."""


class JwksFetchError(Exception):
    """One failed fetch (network, HTTP status, size, JSON); the last good set is kept."""


@dataclass(frozen=True)
class SigningKey:
    """One usable public key of the set and the algorithms it may verify."""

    kid: str
    key: Any  # an RSAPublicKey or an EllipticCurvePublicKey
    algorithms: frozenset[str]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A JWKS URL that redirects is answered as an error: the configured URL is the trust."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def fetch_jwks(url: str, timeout: float, max_bytes: int) -> dict[str, Any]:
    """GET ``url`` and parse it as a JWKS, reading at most ``max_bytes``.

    ``timeout`` bounds the connection and every read, and no read starts after ``timeout``
    seconds in total: a server dribbling bytes is cut off after at most twice ``timeout``.
    """
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise JwksFetchError(f"response of {length} bytes is over {max_bytes}")
            body = bytearray()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JwksFetchError(f"response not read within {timeout} s")
                # each read waits at most `timeout`, so the whole body takes at most twice it
                chunk = response.read1(_READ_CHUNK)
                if not chunk:
                    break
                body += chunk
                if len(body) > max_bytes:
                    raise JwksFetchError(f"response is over {max_bytes} bytes")
    except urllib.error.HTTPError as exc:
        raise JwksFetchError(f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise JwksFetchError(f"cannot reach it: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed responses
        raise JwksFetchError(f"{type(exc).__name__}: {exc}") from None
    try:
        document = json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError):
        raise JwksFetchError("response is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksFetchError('response is not a JWKS (an object with a "keys" list)')
    return document


def _key_algorithms(key: Any, declared: str | None, allowed: frozenset[str]) -> frozenset[str]:
    """The allowed algorithms a public key may verify: its family, narrowed by its ``alg``."""
    if isinstance(key, rsa.RSAPublicKey):
        family = RSA_ALGORITHMS
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve_alg = _EC_ALG_BY_CURVE.get(key.curve.name)
        family = frozenset({curve_alg}) if curve_alg else frozenset()
    else:
        family = frozenset()
    usable = family & allowed
    if declared is not None:
        usable &= {declared}
    return usable


def parse_key_set(document: dict[str, Any], allowed: frozenset[str]) -> dict[str, SigningKey]:
    """The usable signing keys of a JWKS by ``kid``; every other key is skipped (and logged).

    Skipped: keys without a string ``kid``, keys not for signatures (``use`` other than
    ``sig``), symmetric (``oct``) keys, keys whose ``alg`` is not allowed, keys that do not
    parse. A ``kid`` that appears twice is ambiguous, so neither is kept.
    """
    keys: dict[str, SigningKey] = {}
    duplicated: set[str] = set()
    for entry in document.get("keys", []):
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        kty = entry.get("kty")
        declared = entry.get("alg")
        if not isinstance(kid, str) or not kid or len(kid) > 256:
            log.warning("JWKS: a key without a usable kid is ignored")
            continue
        if entry.get("use", "sig") != "sig":
            continue
        if kty not in ("RSA", "EC") or (declared is not None and declared not in allowed):
            log.warning("JWKS: key %.64r (kty %.16r, alg %.16r) is not an allowed asymmetric "
                        "signing key; ignored", kid, kty, declared)
            continue
        try:
            key = jwt.PyJWK(entry).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            log.warning("JWKS: key %.64r does not parse; ignored", kid)
            continue
        algorithms = _key_algorithms(key, declared, allowed)
        if not algorithms:
            log.warning("JWKS: key %.64r fits none of the allowed algorithms; ignored", kid)
            continue
        if kid in keys:
            duplicated.add(kid)
        keys[kid] = SigningKey(kid=kid, key=key, algorithms=algorithms)
    for kid in duplicated:
        log.warning("JWKS: kid %.64r appears more than once; ignored", kid)
        del keys[kid]
    return keys


class JwksKeySet:
    """The provider's signing keys, cached, rotated and fetched at a bounded rate.

    ``fetch`` and ``clock`` are seams for tests; by default the set is fetched over HTTP(S)
    with :func:`fetch_jwks` and time is ``time.monotonic``.
    """

    def __init__(
        self,
        url: str,
        *,
        algorithms: Iterable[str],
        cache_seconds: float = 300,
        min_refetch_seconds: float = 10,
        timeout: float = 5,
        max_bytes: int = 128 * 1024,
        fetch: Callable[[str, float, int], dict[str, Any]] = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.algorithms = frozenset(algorithms) & ASYMMETRIC_ALGORITHMS
        self._cache_seconds = cache_seconds
        self._min_refetch = min_refetch_seconds
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._lock = threading.Lock()
        self._background: threading.Thread | None = None
        self.fetches = 0  # attempts, for metrics and tests

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refetch

    def refresh(self) -> bool:
        """Fetch the set now (whatever the rate limit); ``False`` if it failed (keys kept)."""
        with self._lock:
            return self._refresh_locked()

    def _refresh_locked(self) -> bool:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            document = self._fetch(self.url, self._timeout, self._max_bytes)
        except JwksFetchError as exc:
            kept = f"keeping the last good set ({len(self._keys)} keys)" if self._keys else \
                "no keys yet: tokens are refused until it answers"
            log.warning("JWKS fetch from %s failed: %s; %s", self.url, exc, kept)
            return False
        keys = parse_key_set(document, self.algorithms)
        if not keys:
            log.warning("JWKS at %s holds no usable signing key; keeping the last good set",
                        self.url)
            return False
        added = sorted(set(keys) - set(self._keys))
        removed = sorted(set(self._keys) - set(keys))
        if added or removed:
            log.info("JWKS keys from %s: %d (added %s, removed %s)", self.url, len(keys),
                     added or "none", removed or "none")
        self._keys = keys
        self._fetched_at = self._attempted_at
        return True

    def _refresh_if_allowed(self) -> None:
        """Fetch unless another fetch is running or one was attempted too recently."""
        if not self._lock.acquire(timeout=self._timeout + 1):
            return
        try:
            if self._may_fetch(self._clock()):
                self._refresh_locked()
        finally:
            self._lock.release()

    def _refresh_in_background(self) -> None:
        running = self._background
        if running is not None and running.is_alive():
            return
        self._background = threading.Thread(target=self._refresh_if_allowed,
                                             name="jwks-refresh", daemon=True)
        self._background.start()

    def key_for(self, kid: Any, alg: str) -> Any:
        """The public key to verify a token with ``kid`` and ``alg``, or :class:`JwksError`."""
        if not isinstance(kid, str) or not kid:
            raise UnknownKeyError("token has no kid (key id) header")
        if len(kid) > 256:
            raise UnknownKeyError("token kid is too long")
        now = self._clock()
        found = self._keys.get(kid)
        if found is not None:
            stale = self._fetched_at is None or now - self._fetched_at >= self._cache_seconds
            if stale and self._may_fetch(now):
                self._refresh_in_background()
        else:
            if self._may_fetch(now):
                self._refresh_if_allowed()  # waits for a running fetch, then fetches if due
            elif self._lock.locked():
                # a fetch is under way (maybe for this very kid): wait for it, then look again
                with self._lock:
                    pass
            found = self._keys.get(kid)
        if found is None:
            if self._fetched_at is None:
                raise KeysUnavailableError("signing keys unavailable (JWKS not fetched yet)")
            raise UnknownKeyError("unknown signing key (kid not in the provider's JWKS)")
        if alg not in found.algorithms:
            raise UnknownKeyError(f"signing key {kid[:32]!r} is not for {alg}")
        return found.key
