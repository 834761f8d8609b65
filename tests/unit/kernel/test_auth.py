"""Connect-time authentication: tokens, origins, sessions, anonymous users and API keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dihya_realtime.kernel.auth import (
    ApiKeyChecker,
    AuthError,
    TokenVerifier,
    authenticate_connection,
    extract_token,
    hash_api_key,
    mint_token,
    origin_allowed,
)
from dihya_realtime.kernel.principal import Principal
from dihya_realtime.kernel.settings import Settings, SettingsError, load_settings

SITE = "https://app.example"


# -- fixtures: keys, settings, a token factory ------------------------------------------


def _write_keys(tmp_path: Path, name: str, private_key: Any) -> tuple[Path, Path, Any]:
    private_path = tmp_path / f"{name}.pem"
    public_path = tmp_path / f"{name}.pub.pem"
    private_path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public_path.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path, private_key


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def rsa_files(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> tuple[Path, Path, Any]:
    return _write_keys(tmp_path, "rsa", rsa_key)


@pytest.fixture
def ec_files(tmp_path: Path) -> tuple[Path, Path, Any]:
    return _write_keys(tmp_path, "ec", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def hs_settings(jwt_secret: str) -> Settings:
    return load_settings(jwt_secret=jwt_secret, dev=True)


@pytest.fixture
def verifier(hs_settings: Settings) -> TokenVerifier:
    return TokenVerifier(hs_settings)


@pytest.fixture
def make_token(jwt_secret: str):
    """HS256 token with sane defaults; pass claim=None to drop a claim."""

    def make(key: Any = None, algorithm: str = "HS256", **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"sub": "17", "exp": now + 600, "iat": now}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, jwt_secret if key is None else key, algorithm=algorithm)

    return make


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned_token(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), ""])


def _refused(verifier: TokenVerifier, token: str, reason: str = "invalid_token") -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert info.value.reason == reason
    assert token not in info.value.message
    assert token not in str(info.value.to_connect_error())
    return info.value


# -- TokenVerifier -----------------------------------------------------------------------


def test_valid_hs256_token_gives_principal(verifier: TokenVerifier, make_token) -> None:
    exp = int(time.time()) + 600
    principal = verifier.verify(make_token(roles=["user", "moderator"], name="Amina", exp=exp))
    assert principal.user_id == "17"
    assert principal.roles == ("user", "moderator")
    assert principal.name == "Amina"
    assert principal.expires_at == float(exp)
    assert principal.method == "jwt"
    assert principal.claims["sub"] == "17"


def test_integer_sub_is_coerced_to_string(verifier: TokenVerifier, jwt_secret: str) -> None:
    token = jwt.encode({"sub": 42, "exp": int(time.time()) + 60}, jwt_secret, algorithm="HS256")
    assert verifier.verify(token).user_id == "42"


def test_wrong_signature_is_refused(verifier: TokenVerifier, make_token) -> None:
    error = _refused(verifier, make_token(key="another-secret-" + "y" * 32))
    assert "signature" in error.message


def test_expired_token_is_refused(verifier: TokenVerifier, make_token) -> None:
    error = _refused(verifier, make_token(exp=int(time.time()) - 10), "token_expired")
    assert error.to_connect_error() == {
        "code": "unauthenticated",
        "reason": "token_expired",
        "message": error.message,
    }


def test_leeway_accepts_recently_expired_token(jwt_secret: str, make_token) -> None:
    verifier = TokenVerifier(load_settings(jwt_secret=jwt_secret, jwt_leeway=30))
    assert verifier.verify(make_token(exp=int(time.time()) - 10)).user_id == "17"


def test_alg_none_is_refused(verifier: TokenVerifier) -> None:
    token = _unsigned_token(
        {"alg": "none", "typ": "JWT"}, {"sub": "17", "exp": int(time.time()) + 600}
    )
    error = _refused(verifier, token)
    assert "algorithm" in error.message


def test_algorithm_outside_the_allowed_list_is_refused(make_token) -> None:
    secret = "s" * 64  # HS512 wants a 64-byte key
    verifier = TokenVerifier(load_settings(jwt_secret=secret, jwt_algorithms="HS512"))
    error = _refused(verifier, make_token(key=secret, algorithm="HS256"))
    assert "algorithm not allowed" in error.message
    assert verifier.verify(make_token(key=secret, algorithm="HS512")).user_id == "17"


def _hs256_with_pem(pem: bytes) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps({"sub": "admin", "exp": int(time.time()) + 600}).encode())
    signature = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def test_hs256_signed_with_public_key_is_refused_by_rs256_verifier(rsa_files) -> None:
    _, public_path, _ = rsa_files
    verifier = TokenVerifier(load_settings(jwt_public_key_file=public_path))
    _refused(verifier, _hs256_with_pem(public_path.read_bytes()))


def test_each_algorithm_family_uses_only_its_own_key(
    rsa_files, jwt_secret: str, make_token
) -> None:
    private_path, public_path, private_key = rsa_files
    verifier = TokenVerifier(
        load_settings(
            jwt_secret=jwt_secret,
            jwt_public_key_file=public_path,
            jwt_algorithms="HS256,RS256",
        )
    )
    error = _refused(verifier, _hs256_with_pem(public_path.read_bytes()))
    assert "signature" in error.message
    assert verifier.verify(make_token()).user_id == "17"
    assert verifier.verify(make_token(key=private_key, algorithm="RS256")).user_id == "17"


def test_rs256_token_is_accepted(rsa_files, make_token) -> None:
    _, public_path, private_key = rsa_files
    verifier = TokenVerifier(load_settings(jwt_public_key_file=public_path))
    principal = verifier.verify(make_token(key=private_key, algorithm="RS256", roles=["user"]))
    assert (principal.user_id, principal.roles) == ("17", ("user",))


def test_rs256_token_from_another_key_is_refused(rsa_files, make_token) -> None:
    _, public_path, _ = rsa_files
    verifier = TokenVerifier(load_settings(jwt_public_key_file=public_path))
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _refused(verifier, make_token(key=stranger, algorithm="RS256"))


def test_es256_token_is_accepted(ec_files, make_token) -> None:
    _, public_path, private_key = ec_files
    verifier = TokenVerifier(load_settings(jwt_public_key_file=public_path))
    assert verifier.verify(make_token(key=private_key, algorithm="ES256")).user_id == "17"


def test_wrong_issuer_is_refused(jwt_secret: str, make_token) -> None:
    verifier = TokenVerifier(load_settings(jwt_secret=jwt_secret, jwt_issuer="https://idp"))
    assert verifier.verify(make_token(iss="https://idp")).user_id == "17"
    assert "issuer" in _refused(verifier, make_token(iss="https://evil")).message


def test_wrong_audience_is_refused(jwt_secret: str, make_token) -> None:
    verifier = TokenVerifier(load_settings(jwt_secret=jwt_secret, jwt_audience="dihya-rt"))
    assert verifier.verify(make_token(aud="dihya-rt")).user_id == "17"
    assert "audience" in _refused(verifier, make_token(aud="billing")).message
    assert "aud" in _refused(verifier, make_token()).message


def test_token_not_yet_valid_is_refused(verifier: TokenVerifier, make_token) -> None:
    error = _refused(verifier, make_token(nbf=int(time.time()) + 300))
    assert "not yet valid" in error.message


def test_token_without_sub_is_refused(verifier: TokenVerifier, make_token) -> None:
    assert "missing claim sub" in _refused(verifier, make_token(sub=None)).message


def test_token_with_empty_sub_is_refused(verifier: TokenVerifier, make_token) -> None:
    assert "sub" in _refused(verifier, make_token(sub="")).message


def test_token_without_exp_is_refused(verifier: TokenVerifier, make_token) -> None:
    assert "missing claim exp" in _refused(verifier, make_token(exp=None)).message


@pytest.mark.parametrize("roles", ["admin", [1, 2], {"admin": True}])
def test_roles_that_are_not_a_list_of_strings_are_refused(
    verifier: TokenVerifier, make_token, roles: Any
) -> None:
    assert "roles" in _refused(verifier, make_token(roles=roles)).message


@pytest.mark.parametrize("garbage", ["not-a-jwt", "a.b.c", "x" * 10_000])
def test_malformed_token_is_refused(verifier: TokenVerifier, garbage: str) -> None:
    _refused(verifier, garbage)


def test_unsupported_algorithm_in_settings_is_refused(jwt_secret: str) -> None:
    with pytest.raises(SettingsError, match="JWT_ALGORITHMS"):
        TokenVerifier(load_settings(jwt_secret=jwt_secret, jwt_algorithms="HS257"))


def test_unreadable_public_key_file_names_the_setting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(SettingsError, match="JWT_PUBLIC_KEY_FILE"):
        TokenVerifier(load_settings(jwt_public_key_file=bad))


# -- mint_token --------------------------------------------------------------------------


def test_minted_hs_token_round_trips(jwt_secret: str) -> None:
    settings = load_settings(jwt_secret=jwt_secret, jwt_issuer="dihya", jwt_audience="rt")
    token = mint_token(settings, "17", roles=["user"], name="Amina", ttl=120)
    principal = TokenVerifier(settings).verify(token)
    assert principal == Principal(
        user_id="17", roles=("user",), name="Amina", expires_at=principal.expires_at
    )
    assert principal.claims["iss"] == "dihya" and principal.claims["aud"] == "rt"
    assert 100 <= principal.expires_at - time.time() <= 121


def test_minted_rs_token_round_trips(rsa_files) -> None:
    private_path, public_path, _ = rsa_files
    token = mint_token(load_settings(jwt_private_key_file=private_path), "9", roles=("admin",))
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    principal = TokenVerifier(load_settings(jwt_public_key_file=public_path)).verify(token)
    assert (principal.user_id, principal.roles) == ("9", ("admin",))


def test_minted_ec_token_uses_es256(ec_files) -> None:
    private_path, public_path, _ = ec_files
    token = mint_token(load_settings(jwt_private_key_file=private_path), "9")
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert TokenVerifier(load_settings(jwt_public_key_file=public_path)).verify(token)


def test_minted_token_with_past_now_is_expired(jwt_secret: str) -> None:
    settings = load_settings(jwt_secret=jwt_secret)
    token = mint_token(settings, "17", ttl=60, now=time.time() - 3600)
    _refused(TokenVerifier(settings), token, "token_expired")


def test_mint_without_a_key_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        mint_token(load_settings(dev=True), "17")


# -- origins -----------------------------------------------------------------------------


def _environ(origin: str | None = None, host: str = "rt.example", **extra: Any) -> dict:
    environ: dict[str, Any] = {"HTTP_HOST": host, "wsgi.url_scheme": "https", "QUERY_STRING": ""}
    if origin is not None:
        environ["HTTP_ORIGIN"] = origin
    environ.update(extra)
    return environ


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        (SITE, True),
        (SITE + "/", True),
        ("https://APP.example:443", True),
        ("http://app.example", False),
        ("https://app.example:8443", False),
        ("https://app.example.evil.com", False),
        ("https://rt.example", True),  # same origin as the request
        ("http://rt.example", False),  # same host, downgraded scheme
        ("null", False),
    ],
)
def test_origin_allowlist(origin: str | None, allowed: bool) -> None:
    settings = load_settings(allowed_origins=SITE)
    assert origin_allowed(settings, _environ(origin)) is allowed


def test_same_origin_uses_forwarded_proto() -> None:
    settings = load_settings()
    environ = _environ("https://rt.example", **{"wsgi.url_scheme": "http"})
    assert origin_allowed(settings, environ) is False
    environ["HTTP_X_FORWARDED_PROTO"] = "https"
    assert origin_allowed(settings, environ) is True


def test_wildcard_allows_any_origin() -> None:
    assert origin_allowed(load_settings(allowed_origins="*"), _environ("https://x.test"))


# -- extract_token -----------------------------------------------------------------------


def test_auth_payload_token_comes_first(hs_settings: Settings) -> None:
    environ = _environ(HTTP_AUTHORIZATION="Bearer from-header")
    assert extract_token(hs_settings, environ, {"token": "from-payload"}) == "from-payload"
    assert extract_token(hs_settings, environ, None) == "from-header"
    assert extract_token(hs_settings, environ, {"token": ""}) == "from-header"


def test_non_bearer_authorization_is_ignored(hs_settings: Settings) -> None:
    assert extract_token(hs_settings, _environ(HTTP_AUTHORIZATION="Basic dXNlcg=="), None) is None


@pytest.mark.parametrize("payload", ["a-token", ["a-token"], {"token": 123}])
def test_malformed_auth_payload_is_refused(hs_settings: Settings, payload: Any) -> None:
    with pytest.raises(AuthError) as info:
        extract_token(hs_settings, _environ(), payload)
    assert info.value.reason == "invalid_token"


def test_query_token_ignored_unless_enabled(jwt_secret: str, make_token) -> None:
    token = make_token()
    environ = _environ(QUERY_STRING=f"EIO=4&transport=websocket&token={token}")
    off = load_settings(jwt_secret=jwt_secret)
    assert extract_token(off, environ, None) is None
    with pytest.raises(AuthError) as info:
        authenticate_connection(off, TokenVerifier(off), environ, None, None)
    assert info.value.reason == "missing_token"

    on = load_settings(jwt_secret=jwt_secret, allow_query_token=True)
    assert extract_token(on, environ, None) == token
    assert authenticate_connection(on, TokenVerifier(on), environ, None, None).user_id == "17"


# -- authenticate_connection -------------------------------------------------------------


def _connect(settings: Settings, environ: dict, auth: Any = None, session: Any = None):
    return authenticate_connection(settings, TokenVerifier(settings), environ, auth, session)


def _connect_refused(settings: Settings, environ: dict, auth: Any = None, session: Any = None):
    with pytest.raises(AuthError) as info:
        _connect(settings, environ, auth, session)
    return info.value


def test_missing_token_is_refused(hs_settings: Settings) -> None:
    error = _connect_refused(hs_settings, _environ())
    assert error.to_connect_error()["reason"] == "missing_token"


def test_token_in_auth_payload_is_accepted(hs_settings: Settings, make_token) -> None:
    principal = _connect(hs_settings, _environ(), {"token": make_token(sub="5")})
    assert (principal.user_id, principal.method) == ("5", "jwt")


def test_bearer_header_is_accepted(hs_settings: Settings, make_token) -> None:
    environ = _environ(HTTP_AUTHORIZATION=f"Bearer {make_token(sub='6')}")
    assert _connect(hs_settings, environ).user_id == "6"


def test_invalid_token_is_not_rescued_by_anonymous(jwt_secret: str) -> None:
    settings = load_settings(jwt_secret=jwt_secret, anonymous=True)
    error = _connect_refused(settings, _environ(), {"token": "garbage.token.here"})
    assert error.reason == "invalid_token"
    assert "garbage.token.here" not in error.message


def test_disallowed_origin_is_refused_even_with_valid_token(jwt_secret: str, make_token) -> None:
    settings = load_settings(jwt_secret=jwt_secret, allowed_origins=SITE)
    error = _connect_refused(settings, _environ("https://evil.test"), {"token": make_token()})
    assert error.reason == "origin_not_allowed"


@pytest.fixture
def session_settings(jwt_secret: str) -> Settings:
    return load_settings(jwt_secret=jwt_secret, session_auth=True, allowed_origins=SITE)


SESSION = {"user_id": 17, "roles": ["user"], "name": "Amina"}


def test_session_with_allowed_origin_is_accepted(session_settings: Settings) -> None:
    principal = _connect(session_settings, _environ(SITE), session=SESSION)
    assert principal == Principal(user_id="17", roles=("user",), name="Amina", method="session")


def test_session_without_origin_is_refused(session_settings: Settings) -> None:
    error = _connect_refused(session_settings, _environ(), session=SESSION)
    assert error.reason == "origin_not_allowed"


def test_session_with_bad_origin_is_refused(session_settings: Settings) -> None:
    error = _connect_refused(session_settings, _environ("https://evil.test"), session=SESSION)
    assert error.reason == "origin_not_allowed"


def test_session_is_not_trusted_through_wildcard_origin(jwt_secret: str) -> None:
    settings = load_settings(jwt_secret=jwt_secret, session_auth=True, allowed_origins="*")
    error = _connect_refused(settings, _environ("https://evil.test"), session=SESSION)
    assert error.reason == "origin_not_allowed"


def test_session_is_ignored_when_session_auth_is_off(hs_settings: Settings) -> None:
    error = _connect_refused(hs_settings, _environ(SITE, host="app.example"), session=SESSION)
    assert error.reason == "missing_token"


def test_anonymous_only_when_enabled(jwt_secret: str, hs_settings: Settings) -> None:
    assert _connect_refused(hs_settings, _environ()).reason == "missing_token"
    settings = load_settings(jwt_secret=jwt_secret, anonymous=True)
    first, second = _connect(settings, _environ()), _connect(settings, _environ())
    assert first.anonymous and first.user_id.startswith("anon-")
    assert first.user_id != second.user_id


# -- API keys ----------------------------------------------------------------------------


def test_api_key_hash_accepts_the_key_and_nothing_else() -> None:
    checker = ApiKeyChecker(load_settings(api_keys=[hash_api_key("k-1"), hash_api_key("k-2")]))
    assert checker.check("k-1") and checker.check("k-2")
    assert not checker.check("k-3")
    assert not checker.check("")
    assert not checker.check(None)


def test_hash_api_key_format() -> None:
    assert hash_api_key("k") == "sha256:" + hashlib.sha256(b"k").hexdigest()


@pytest.mark.parametrize("entry", ["plain-key", "sha256:abc", "md5:" + "0" * 64])
def test_malformed_api_key_config_is_refused(entry: str) -> None:
    with pytest.raises(SettingsError, match="DIHYA_RT_API_KEYS") as info:
        ApiKeyChecker(load_settings(api_keys=[entry]))
    assert entry not in str(info.value)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer k-1"}, "k-1"),
        ({"authorization": "bearer k-1"}, "k-1"),
        ({"X-API-Key": "k-2"}, "k-2"),
        ({"Authorization": "Basic abc"}, None),
        ({}, None),
    ],
)
def test_api_key_from_headers(headers: dict, expected: str | None) -> None:
    assert ApiKeyChecker.from_headers(headers) == expected
