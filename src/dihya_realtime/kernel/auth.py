"""Who is connecting: the connect-time authentication decision, as pure logic.

A Socket.IO connection proves who it is in one of three ways, tried in this order by
:func:`authenticate_connection`:

1. a JWT (HS256/RS256/ES256…) from the ``auth`` payload, an ``Authorization: Bearer`` header
   or, only when enabled, a ``token`` query parameter — verified by :class:`TokenVerifier`;
2. the host application's Flask session (``session_auth``), accepted only from a browser page
   whose ``Origin`` is allowed, because cookies ride cross-site requests and the Origin is
   what proves which page is talking;
3. an anonymous identity, when ``anonymous`` is enabled.

Every refusal is an :class:`AuthError` whose reason the client can act on and whose message
never contains the token. Nothing here imports Flask-SocketIO: the transport layer passes in
the WSGI ``environ``, the ``auth`` payload and the session mapping, which keeps this module
testable without a server. HTTP callers (publish, notify) use :class:`ApiKeyChecker`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dihya_realtime.kernel.jwks import ASYMMETRIC_ALGORITHMS, JwksError, JwksKeySet
from dihya_realtime.kernel.principal import Principal
from dihya_realtime.kernel.settings import ENV_PREFIX, Settings, SettingsError

AuthReason = Literal["missing_token", "invalid_token", "token_expired", "origin_not_allowed"]

# A JWT larger than this is not a token we issued; refusing early keeps decoding cheap.
MAX_TOKEN_LENGTH = 8192

_HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = frozenset({"ES256", "ES384", "ES512"})
_EC_ALG_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# stands in TokenVerifier._keys for "the JWKS key this token's kid names"
_FROM_JWKS: Any = object()


class AuthError(Exception):
    """A refused authentication, sent to the client as the Socket.IO ``connect_error`` data.

    ``reason`` is one of ``missing_token``, ``invalid_token``, ``token_expired``,
    ``origin_not_allowed``: a client refreshes its token on ``token_expired`` and gives up on
    the others. ``message`` says what was wrong and never repeats the token (it is logged and
    audited).
    """

    def __init__(self, reason: AuthReason, message: str) -> None:
        super().__init__(message)
        self.reason: AuthReason = reason
        self.message = message

    def to_connect_error(self) -> dict[str, str]:
        return {"code": "unauthenticated", "reason": self.reason, "message": self.message}


def _invalid(message: str) -> AuthError:
    return AuthError("invalid_token", message)


def _read_pem(path: Any, setting: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise SettingsError(f"{ENV_PREFIX}{setting}: cannot read {path}: {exc.strerror}") from None


class TokenVerifier:
    """Verifies JWTs against the configured keys; build it once at start-up.

    Each algorithm family is bound to its own key (HS* → ``jwt_secret``, RS*/PS* → an RSA
    public key, ES* → an EC public key) and a token is decoded with exactly the algorithm its
    header names, after checking that algorithm is allowed. So ``alg: none`` is never accepted
    and an HS256 token "signed" with the public key PEM can never be checked against that PEM
    (the classic key-confusion attack). With ``jwt_jwks_url`` the RS*/PS*/ES* keys are the
    provider's, chosen by the token's ``kid`` (:class:`~dihya_realtime.kernel.jwks.JwksKeySet`).
    """

    def __init__(self, settings: Settings) -> None:
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway
        public_key: Any = None
        if settings.jwt_public_key_file is not None:
            pem = _read_pem(settings.jwt_public_key_file, "JWT_PUBLIC_KEY_FILE")
            try:
                public_key = serialization.load_pem_public_key(pem)
            except ValueError:
                raise SettingsError(
                    f"{ENV_PREFIX}JWT_PUBLIC_KEY_FILE: not a PEM public key"
                ) from None
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None

        self._keys: dict[str, Any] = {}
        for alg in settings.jwt_algorithms:
            if alg in _HMAC_ALGORITHMS:
                if secret:
                    self._keys[alg] = secret
            elif alg in _RSA_ALGORITHMS:
                if isinstance(public_key, rsa.RSAPublicKey):
                    self._keys[alg] = public_key
            elif alg in _EC_ALGORITHMS:
                if isinstance(public_key, ec.EllipticCurvePublicKey):
                    self._keys[alg] = public_key
            else:
                raise SettingsError(
                    f"{ENV_PREFIX}JWT_ALGORITHMS: unsupported algorithm {alg!r} "
                    "(use HS256/384/512, RS*, PS* or ES256/384/512)"
                )
        # RS*/PS*/ES* come from the provider's JWKS when one is configured (never HS*: the
        # settings refuse a JWKS with a public key file, and HS* keys only ever use the secret)
        self._jwks: JwksKeySet | None = None
        if settings.jwt_jwks_url:
            jwks_algorithms = [a for a in settings.jwt_algorithms if a in ASYMMETRIC_ALGORITHMS]
            if jwks_algorithms:
                self._jwks = JwksKeySet(
                    settings.jwt_jwks_url,
                    algorithms=jwks_algorithms,
                    cache_seconds=settings.jwt_jwks_cache_seconds,
                    min_refetch_seconds=settings.jwt_jwks_min_refetch_seconds,
                    timeout=settings.jwt_jwks_timeout,
                    max_bytes=settings.jwt_jwks_max_bytes,
                )
                for alg in jwks_algorithms:
                    self._keys[alg] = _FROM_JWKS
                self._jwks.refresh()  # at start-up, so the first connect does not wait
        if settings.jwt_configured and not self._keys:
            raise SettingsError(
                f"{ENV_PREFIX}JWT_ALGORITHMS: none of {settings.jwt_algorithms} can use the "
                "configured secret or public key"
            )

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms this verifier will actually accept (allowed and with a key)."""
        return tuple(self._keys)

    def verify(self, token: str) -> Principal:
        """Return the :class:`Principal` a valid token names, or raise :class:`AuthError`."""
        if not isinstance(token, str) or not token:
            raise AuthError("missing_token", "no token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise _invalid("malformed token: too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._keys:
            shown = f" ({alg})" if isinstance(alg, str) and len(alg) <= 16 else ""
            raise _invalid(f"algorithm not allowed{shown}")
        key = self._keys[alg]
        if key is _FROM_JWKS and self._jwks is not None:
            try:
                key = self._jwks.key_for(header.get("kid"), alg)
            except JwksError as exc:
                raise _invalid(str(exc)) from None
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                # sub is checked below, where an integer id is accepted and coerced
                options={"require": ["exp"], "verify_sub": False},
            )
        except jwt.PyJWTError as exc:
            raise refusal_of(exc) from None
        return _principal_from_claims(claims)


def refusal_of(exc: jwt.PyJWTError) -> AuthError:
    """The refusal a client sees for PyJWT's ``exc``: ``token_expired``, or ``invalid_token``
    with a fixed message (PyJWT's own are safe but vague; ours stay fixed so nothing leaks).
    One table for every verifier (ours, Flask-JWT-Extended's)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return AuthError("token_expired", "token has expired")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return _invalid(f"missing claim {exc.claim}")
    for kind, message in _REFUSALS:
        if isinstance(exc, kind):
            return _invalid(message)
    return _invalid("malformed token or claims")


_REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.ImmatureSignatureError, "token not yet valid (nbf/iat in the future)"),
)


def _principal_from_claims(claims: dict[str, Any]) -> Principal:
    sub = claims.get("sub")
    if isinstance(sub, int) and not isinstance(sub, bool):
        sub = str(sub)
    if sub is None:
        raise _invalid("missing claim sub")
    if not isinstance(sub, str) or not sub:
        raise _invalid("claim sub must be a non-empty string")
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise _invalid("claim roles must be a list of strings")
    name = claims.get("name")
    if name is not None and not isinstance(name, str):
        raise _invalid("claim name must be a string")
    return Principal(
        user_id=sub,
        roles=tuple(roles),
        name=name,
        expires_at=float(claims["exp"]),
        method="jwt",
        claims=claims,
    )


def _pick(settings: Settings, family: frozenset[str], default: str) -> str:
    """The first allowed algorithm of a family, so minted tokens pass our own verifier."""
    return next((a for a in settings.jwt_algorithms if a in family), default)


def mint_token(
    settings: Settings,
    user_id: str,
    roles: list[str] | tuple[str, ...] = (),
    name: str | None = None,
    ttl: float = 3600,
    now: float | None = None,
) -> str:
    """Sign a token for ``user_id`` (the CLI's ``token`` command, tests, the demo).

    Uses the HMAC secret when configured, else ``jwt_private_key_file`` with the algorithm its
    key type calls for (RSA → RS256, EC P-256 → ES256…). Raises :class:`SettingsError` when
    there is nothing to sign with.
    """
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "iat": int(issued),
        "exp": int(issued + ttl),
    }
    if roles:
        claims["roles"] = list(roles)
    if name is not None:
        claims["name"] = name
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience

    if settings.jwt_secret is not None:
        alg = _pick(settings, _HMAC_ALGORITHMS, "HS256")
        return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=alg)
    if settings.jwt_private_key_file is None:
        raise SettingsError(
            f"{ENV_PREFIX}JWT_SECRET or {ENV_PREFIX}JWT_PRIVATE_KEY_FILE is needed to mint tokens"
        )
    pem = _read_pem(settings.jwt_private_key_file, "JWT_PRIVATE_KEY_FILE")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise SettingsError(
            f"{ENV_PREFIX}JWT_PRIVATE_KEY_FILE: not an unencrypted PEM private key"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        alg = _pick(settings, frozenset({"RS256", "RS384", "RS512"}), "RS256")
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALG_BY_CURVE:
        alg = _EC_ALG_BY_CURVE[key.curve.name]
    else:
        raise SettingsError(
            f"{ENV_PREFIX}JWT_PRIVATE_KEY_FILE: unsupported key type (use RSA or EC P-256/384/521)"
        )
    return jwt.encode(claims, key, algorithm=alg)


def _normalize_origin(value: str) -> tuple[str, str, int] | None:
    """``https://A.example:443/`` → ``("https", "a.example", 443)``; ``None`` if unparsable."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        return None
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, 0)
    return scheme, parts.hostname.lower(), port


def _request_origin(environ: Mapping[str, Any]) -> tuple[str, str, int] | None:
    host = environ.get("HTTP_HOST")
    if not host:
        return None
    forwarded = str(environ.get("HTTP_X_FORWARDED_PROTO", "")).split(",")[0].strip()
    scheme = forwarded or str(environ.get("wsgi.url_scheme", "http"))
    return _normalize_origin(f"{scheme}://{host}")


def _origin_matches(
    settings: Settings, environ: Mapping[str, Any], origin: str, *, wildcard: bool
) -> bool:
    if wildcard and "*" in settings.allowed_origins:
        return True
    presented = _normalize_origin(origin)
    if presented is None:  # includes the opaque "null" origin of sandboxed pages and files
        return False
    allowed = {_normalize_origin(o) for o in settings.allowed_origins if o != "*"}
    return presented in allowed or presented == _request_origin(environ)


def origin_listed(settings: Settings, environ: Mapping[str, Any], origin: str) -> bool:
    """Is ``origin`` listed in ``allowed_origins`` (or the request's own)? ``*`` does not count."""
    return _origin_matches(settings, environ, origin, wildcard=False)


def origin_allowed(settings: Settings, environ: Mapping[str, Any]) -> bool:
    """May the page (or program) behind this handshake connect at all?

    No ``Origin`` header → allowed: non-browser clients send none, and a browser always does,
    so a cross-site page cannot hide behind its absence. Otherwise the origin must be in
    ``allowed_origins`` (exact scheme, host and port; a trailing slash and default ports are
    ignored), the list must contain ``"*"``, or it must be the request's own origin.

    Same origin compares scheme too: the request's scheme is ``X-Forwarded-Proto`` when a
    proxy sets it, else ``wsgi.url_scheme``. An ``http://`` page therefore cannot ride an
    ``https://`` site's session; behind a TLS proxy that does not forward the scheme, list the
    public origin in ``allowed_origins`` (the check fails closed, never open).
    """
    origin = environ.get("HTTP_ORIGIN")
    if not origin:
        return True
    return _origin_matches(settings, environ, str(origin), wildcard=True)


def extract_token(settings: Settings, environ: Mapping[str, Any], auth_payload: Any) -> str | None:
    """Find the bearer token of a handshake, or ``None`` when there is none.

    Looks in the Socket.IO ``auth`` payload (``{"token": "…"}``), then the ``Authorization:
    Bearer`` header, then — only with ``allow_query_token``, since URLs end up in proxy logs —
    the ``token`` query parameter. An empty token counts as none (logged-out clients send
    ``""``); a payload that is not an object, or a token that is not a string, is refused.
    """
    if auth_payload is not None:
        if not isinstance(auth_payload, dict):
            raise _invalid('auth payload must be an object like {"token": "..."}')
        token = auth_payload.get("token")
        if token is not None and not isinstance(token, str):
            raise _invalid("auth token must be a string")
        if token and token.strip():
            return token.strip()

    header = str(environ.get("HTTP_AUTHORIZATION", ""))
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()

    if settings.allow_query_token:
        values = parse_qs(str(environ.get("QUERY_STRING", ""))).get("token")
        if values and values[0].strip():
            return values[0].strip()
    return None


def _session_roles(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(str(role) for role in value)
    return ()


class Verifier(Protocol):
    """What checks a token: :class:`TokenVerifier`, or one that stands in front of it
    (:class:`~dihya_realtime.kernel.identity_flask_jwt.FlaskJwtExtendedVerifier`)."""

    def verify(self, token: str) -> Principal: ...


def _require_session_origin(settings: Settings, environ: Mapping[str, Any], origin: Any) -> None:
    if not origin or not _origin_matches(settings, environ, str(origin), wildcard=False):
        raise AuthError(
            "origin_not_allowed",
            "session authentication needs a browser Origin from an allowed origin",
        )


def authenticate_connection(
    settings: Settings,
    verifier: Verifier,
    environ: Mapping[str, Any],
    auth_payload: Any,
    session: Mapping[str, Any] | None,
    login_user: Principal | None = None,
) -> Principal:
    """The whole connect-time decision: who this is, or :class:`AuthError`.

    A disallowed Origin is refused before anything else, so a cross-site page can ride neither
    a token nor a cookie. A token wins over the session. The session is trusted only with an
    allowed Origin, and a ``"*"`` in ``allowed_origins`` does not count for it: cookies are
    sent cross-site, so only an explicitly listed or same origin proves the page is ours.
    ``login_user`` (the host app's Flask-Login ``current_user``, see
    :mod:`~dihya_realtime.kernel.identity_flask_login`) is a session too, under the same rule,
    and comes before the plain session keys.
    """
    origin = environ.get("HTTP_ORIGIN")
    if origin and not origin_allowed(settings, environ):
        raise AuthError("origin_not_allowed", "origin not allowed")

    token = extract_token(settings, environ, auth_payload)
    if token is not None:
        return verifier.verify(token)

    if login_user is not None:
        _require_session_origin(settings, environ, origin)
        return login_user

    if settings.session_auth and session and session.get(settings.session_user_key) is not None:
        _require_session_origin(settings, environ, origin)
        name = session.get(settings.session_name_key)
        return Principal(
            user_id=str(session[settings.session_user_key]),
            roles=_session_roles(session.get(settings.session_roles_key)),
            name=name if isinstance(name, str) else None,
            method="session",
        )

    if settings.anonymous:
        return Principal(user_id=f"anon-{secrets.token_hex(8)}", method="anonymous")
    raise AuthError("missing_token", "authentication required: send a token")


_API_KEY_HASH = re.compile(r"sha256:[0-9a-f]{64}")


def hash_api_key(key: str) -> str:
    """``sha256:<hex>`` — the only form in which an API key is written into configuration."""
    if not key:
        raise ValueError("an API key cannot be empty")
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


class ApiKeyChecker:
    """Checks the API keys of HTTP callers (workers publishing, admin tools).

    Configuration holds only hashes, so a leaked config file or environment dump does not leak
    a usable key; a plain key in ``api_keys`` is refused at start-up.
    """

    def __init__(self, source: Settings | Sequence[str]) -> None:
        hashes = source.api_keys if isinstance(source, Settings) else list(source)
        digests = []
        for index, entry in enumerate(hashes):
            normalized = entry.strip().lower()
            if not _API_KEY_HASH.fullmatch(normalized):
                raise SettingsError(
                    f"{ENV_PREFIX}API_KEYS: entry {index + 1} is not sha256:<64 hex> "
                    "(store hashes, not keys: see auth.hash_api_key)"
                )
            digests.append(normalized.removeprefix("sha256:"))
        self._digests = tuple(digests)

    def check(self, presented: str | None) -> bool:
        """Is ``presented`` one of the configured keys? Constant time per configured key."""
        if not presented:
            return False
        digest = hashlib.sha256(presented.encode()).hexdigest()
        matched = False
        for expected in self._digests:
            matched |= hmac.compare_digest(digest, expected)
        return matched

    @staticmethod
    def from_headers(headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> str | None:
        """The key an HTTP request presents: ``Authorization: Bearer <key>`` or ``X-API-Key``."""
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        lowered = {str(k).lower(): str(v) for k, v in pairs}
        scheme, _, credentials = lowered.get("authorization", "").strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        key = lowered.get("x-api-key", "").strip()
        return key or None
