"""Accepting the access tokens a host app mints with Flask-JWT-Extended.

With ``DIHYA_RT_FLASK_JWT_EXTENDED`` on, a token (from the ``auth`` payload or the
``Authorization`` header, found as any other) is checked by Flask-JWT-Extended itself, inside
the host app's context, so its own rules hold without a copy of them here: the app's
``JWT_SECRET_KEY`` or keys and ``decode_key_loader``, ``JWT_ALGORITHM`` /
``JWT_DECODE_ALGORITHMS``, ``JWT_DECODE_AUDIENCE`` / ``JWT_DECODE_ISSUER`` /
``JWT_DECODE_LEEWAY``, ``JWT_IDENTITY_CLAIM``. On top of its ``decode_token``, what its
``@jwt_required()`` checks: the token type (``access`` only, so a refresh token never opens a
connection), the ``token_in_blocklist_loader`` and the ``token_verification_loader``. The
same verifier answers ``auth:refresh``, so a revoked token cannot extend a connection either.

Those two callbacks are reached through ``flask_jwt_extended.internal_utils`` (what
``verify_jwt_in_request`` calls): pyproject bounds the version below 5 and
:func:`require_flask_jwt_extended` checks they are there at start-up.

A token Flask-JWT-Extended cannot verify the signature of (another key, another algorithm)
is handed to the service's own :class:`~dihya_realtime.kernel.auth.TokenVerifier` when one is
configured (``DIHYA_RT_JWT_SECRET`` …), so both kinds of token keep working side by side.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import jwt

from dihya_realtime.kernel.auth import MAX_TOKEN_LENGTH, AuthError, refusal_of
from dihya_realtime.kernel.principal import Principal
from dihya_realtime.kernel.settings import ENV_PREFIX, Settings, SettingsError

if TYPE_CHECKING:
    from flask import Flask

    from dihya_realtime.kernel.auth import TokenVerifier

log = logging.getLogger("dihya_realtime")

METHOD = "flask_jwt_extended"
"""``Principal.method`` (and the audit's ``connect`` details) of such a token's user."""

_INTERNALS = ("verify_token_not_blocklisted", "custom_verification_for_token")


def require_flask_jwt_extended(app: Flask) -> None:
    """Start-up check: the library, the internals we call, and a ``JWTManager`` on ``app``."""
    setting = f"{ENV_PREFIX}FLASK_JWT_EXTENDED"
    try:
        from flask_jwt_extended import internal_utils
    except ImportError:
        raise SettingsError(
            f"{setting} is on but Flask-JWT-Extended is not installed "
            "(pip install 'dihya-realtime[flask-jwt-extended]')"
        ) from None
    missing = [name for name in _INTERNALS if not callable(getattr(internal_utils, name, None))]
    if missing:
        raise SettingsError(
            f"{setting}: this Flask-JWT-Extended has no internal_utils.{', '.join(missing)}; "
            "install a version the dihya-realtime extra allows (>=4.6,<5)"
        )
    if "flask-jwt-extended" not in app.extensions:
        raise SettingsError(
            f"{setting} is on but the Flask app has no JWTManager: call "
            "jwt.init_app(app) (or JWTManager(app)) before Realtime(app) / rt.init_app(app)"
        )


def _invalid(message: str) -> AuthError:
    return AuthError("invalid_token", message)


# Refusals about which key or algorithm signed the token: another verifier may know it.
_NOT_OURS = (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError)


class FlaskJwtExtendedVerifier:
    """Verifies a token as the host app's ``@jwt_required()`` would, else asks ``fallback``.

    Build it in ``init_app`` (it needs the app); it has the ``verify`` of
    :class:`~dihya_realtime.kernel.auth.TokenVerifier` and takes its place.
    """

    def __init__(self, app: Flask, settings: Settings, fallback: TokenVerifier) -> None:
        require_flask_jwt_extended(app)
        self._app = app
        self._roles_claim = settings.flask_jwt_extended_roles_claim
        self._name_claim = settings.flask_jwt_extended_name_claim
        self._fallback = fallback

    def verify(self, token: str) -> Principal:
        """Return the :class:`Principal` of a valid access token, or raise :class:`AuthError`."""
        if not isinstance(token, str) or not token:
            raise AuthError("missing_token", "no token")
        if len(token) > MAX_TOKEN_LENGTH:
            raise _invalid("malformed token: too long")
        try:
            with self._app.app_context():
                return self._verify_in_app(token)
        except _NOT_OURS as exc:
            if self._fallback.algorithms:
                return self._fallback.verify(token)
            if isinstance(exc, jwt.InvalidAlgorithmError):
                raise _invalid("algorithm not allowed") from None
            raise _invalid("bad signature") from None
        except AuthError:
            raise
        except jwt.PyJWTError as exc:
            raise refusal_of(exc) from None
        except Exception as exc:
            return self._refuse_library_error(exc)

    def _verify_in_app(self, token: str) -> Principal:
        from flask import current_app
        from flask_jwt_extended import decode_token
        from flask_jwt_extended.internal_utils import (
            custom_verification_for_token,
            verify_token_not_blocklisted,
        )

        claims = decode_token(token)
        if claims.get("type") != "access":
            raise _invalid("not an access token (refresh tokens cannot connect)")
        header = jwt.get_unverified_header(token)
        verify_token_not_blocklisted(header, claims)
        custom_verification_for_token(header, claims)
        identity_claim = current_app.config.get("JWT_IDENTITY_CLAIM", "sub")
        return self._principal(claims, identity_claim)

    def _principal(self, claims: dict[str, Any], identity_claim: str) -> Principal:
        identity = claims.get(identity_claim)
        if isinstance(identity, int) and not isinstance(identity, bool):
            identity = str(identity)
        if not isinstance(identity, str) or not identity:
            raise _invalid(f"claim {identity_claim} must be a non-empty string")
        roles = claims.get(self._roles_claim, [])
        if isinstance(roles, str):
            roles = [roles]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise _invalid(f"claim {self._roles_claim} must be a list of strings")
        name = claims.get(self._name_claim)
        if name is not None and not isinstance(name, str):
            raise _invalid(f"claim {self._name_claim} must be a string")
        exp = claims.get("exp")
        return Principal(
            user_id=identity,
            roles=tuple(roles),
            name=name,
            expires_at=float(exp) if isinstance(exp, int | float) else None,
            method=METHOD,
            claims=claims,
        )

    @staticmethod
    def _refuse_library_error(exc: Exception) -> Principal:
        """Flask-JWT-Extended's own refusals by name; anything else (a blocklist callback whose
        store is down…) is logged and refused: a token that cannot be checked is not let in."""
        from flask_jwt_extended.exceptions import (
            JWTDecodeError,
            RevokedTokenError,
            UserClaimsVerificationError,
        )

        if isinstance(exc, RevokedTokenError):
            raise _invalid("token has been revoked") from None
        if isinstance(exc, UserClaimsVerificationError):
            raise _invalid("token refused by the application's claims check") from None
        if isinstance(exc, JWTDecodeError):
            raise _invalid("malformed token or claims") from None
        log.exception("Flask-JWT-Extended could not check a Socket.IO token")
        raise _invalid("token could not be checked") from None
