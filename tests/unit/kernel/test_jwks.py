"""Keys from a JWKS URL: chosen by kid, rotated, refetched at a bounded rate, kept when the
provider is down, never read whole when huge, never an HMAC secret.

Every test talks HTTP to a real local provider (tests/oidc_provider.py) and counts its hits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from dihya_realtime.kernel.auth import AuthError, TokenVerifier
from dihya_realtime.kernel.jwks import (
    JwksFetchError,
    JwksKeySet,
    KeysUnavailableError,
    UnknownKeyError,
    fetch_jwks,
)
from dihya_realtime.kernel.settings import SettingsError, load_settings
from tests.oidc_provider import OidcProvider, ProviderKey, start_provider

RSA_1 = ProviderKey.rsa("rsa-1")
RSA_2 = ProviderKey.rsa("rsa-2")
EC_1 = ProviderKey.ec("ec-1")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    served = start_provider(OidcProvider(keys=[RSA_1, EC_1]))
    yield served
    served.stop()


def key_set(provider: OidcProvider, clock: FakeClock, **options: Any) -> JwksKeySet:
    options.setdefault("algorithms", ["RS256", "ES256"])
    options.setdefault("min_refetch_seconds", 10)
    options.setdefault("cache_seconds", 300)
    return JwksKeySet(provider.jwks_url, clock=clock, **options)


def verifier(provider: OidcProvider, **settings: Any) -> TokenVerifier:
    settings.setdefault("jwt_jwks_url", provider.jwks_url)
    settings.setdefault("jwt_issuer", provider.issuer)
    settings.setdefault("jwt_audience", provider.audience)
    return TokenVerifier(load_settings(**settings))


def refusal(verifier_: TokenVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier_.verify(token)
    assert info.value.to_connect_error()["code"] == "unauthenticated"
    return info.value


# -- verification by kid -------------------------------------------------------------------


def test_rs256_and_es256_tokens_are_verified_with_the_key_their_kid_names(provider):
    check = verifier(provider)
    assert provider.count() == 1  # fetched once at start-up
    assert check.verify(provider.sign(RSA_1, sub="alice")).user_id == "alice"
    assert check.verify(provider.sign(EC_1, sub="bob")).user_id == "bob"
    assert provider.count() == 1  # served from the cache


def test_a_token_signed_by_another_key_under_a_known_kid_is_a_bad_signature(provider):
    impostor = ProviderKey.rsa("rsa-1")
    error = refusal(verifier(provider), provider.sign(impostor))
    assert (error.reason, error.message) == ("invalid_token", "bad signature")


def test_issuer_and_audience_are_still_checked_with_jwks_keys(provider):
    check = verifier(provider)
    assert refusal(check, provider.sign(RSA_1, iss="https://evil.example/")).message == \
        "wrong issuer"
    assert refusal(check, provider.sign(RSA_1, aud="another-api")).message == "wrong audience"


def test_a_token_without_kid_is_refused_with_a_clear_reason(provider):
    token = jwt.encode({"sub": "a", "exp": int(time.time()) + 60, "iss": provider.issuer,
                        "aud": provider.audience}, RSA_1.private, algorithm="RS256")
    error = refusal(verifier(provider), token)
    assert error.reason == "invalid_token"
    assert "kid" in error.message


def test_a_kid_of_one_family_cannot_verify_another_algorithm(provider):
    # header says ES256 and names the RSA key: refused before any signature check
    token = provider.sign(EC_1, kid="rsa-1")
    error = refusal(verifier(provider), token)
    assert error.message == "signing key 'rsa-1' is not for ES256"


# -- rotation and refetch --------------------------------------------------------------------


def test_rotation_new_kid_triggers_one_refetch_and_old_kid_works_while_in_the_set(provider):
    clock = FakeClock()
    keys = key_set(provider, clock)
    assert keys.refresh() and provider.count() == 1
    provider.keys = [RSA_1, RSA_2, EC_1]  # the provider publishes its next key
    clock.now += 10
    assert keys.key_for("rsa-2", "RS256") is not None
    assert provider.count() == 2
    assert keys.key_for("rsa-1", "RS256") is not None  # old key still in the set
    assert keys.key_for("rsa-2", "RS256") is not None
    assert provider.count() == 2  # no fetch for keys already known

    provider.keys = [RSA_2, EC_1]  # the old key retires; noticed when the cache expires
    clock.now += 300
    assert keys.key_for("rsa-2", "RS256") is not None  # served now, refreshed behind
    deadline = time.monotonic() + 5
    while "rsa-1" in keys.kids and time.monotonic() < deadline:
        time.sleep(0.01)
    assert keys.kids == ("rsa-2", "ec-1")
    assert provider.count() == 3
    clock.now += 10
    with pytest.raises(UnknownKeyError, match="unknown signing key"):
        keys.key_for("rsa-1", "RS256")


def test_unknown_kid_is_refused_after_one_refetch_as_unauthenticated(provider):
    check = verifier(provider, jwt_jwks_min_refetch_seconds=0.1)
    time.sleep(0.15)
    error = refusal(check, provider.sign(RSA_1, kid="never-published"))
    assert (error.reason, error.message) == (
        "invalid_token", "unknown signing key (kid not in the provider's JWKS)")
    assert provider.count() == 2  # start-up, then the one refetch the unknown kid asked for


def test_a_flood_of_random_kids_fetches_at_most_once_per_interval(provider):
    clock = FakeClock()
    keys = key_set(provider, clock)
    keys.refresh()
    clock.now += 10
    for _ in range(200):
        with pytest.raises(UnknownKeyError):
            keys.key_for(uuid.uuid4().hex, "RS256")
    assert provider.count() == 2
    clock.now += 9.9
    with pytest.raises(UnknownKeyError):
        keys.key_for(uuid.uuid4().hex, "RS256")
    assert provider.count() == 2
    clock.now += 0.1
    for _ in range(50):
        with pytest.raises(UnknownKeyError):
            keys.key_for(uuid.uuid4().hex, "RS256")
    assert provider.count() == 3


def test_concurrent_random_kids_during_a_slow_fetch_never_slow_the_bystander(provider):
    keys = JwksKeySet(provider.jwks_url, algorithms=["RS256"], min_refetch_seconds=60,
                      timeout=5)
    keys.refresh()
    keys._attempted_at = time.monotonic() - 60  # the next unknown kid may fetch
    provider.delay = 0.5
    errors: list[Exception] = []

    def attacker() -> None:
        try:
            keys.key_for(uuid.uuid4().hex, "RS256")
        except UnknownKeyError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attacker) for _ in range(20)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)  # the first attacker's fetch is now in flight
    started = time.monotonic()
    for _ in range(100):
        assert keys.key_for("rsa-1", "RS256") is not None
    bystander = time.monotonic() - started
    for thread in threads:
        thread.join(5)
    assert bystander < 0.1, f"a known kid waited {bystander:.3f} s for the attackers' fetch"
    assert len(errors) == 20
    assert provider.count() == 2  # start-up and one fetch for twenty unknown kids


# -- the provider failing --------------------------------------------------------------------


def test_url_down_keeps_the_last_good_set_and_logs_a_warning(provider, caplog):
    clock = FakeClock()
    keys = key_set(provider, clock, timeout=1)
    keys.refresh()
    provider.stop()
    clock.now += 300
    caplog.set_level(logging.WARNING, "dihya_realtime.jwks")
    assert keys.refresh() is False
    assert keys.key_for("rsa-1", "RS256") is not None
    assert keys.key_for("ec-1", "ES256") is not None
    assert "keeping the last good set (2 keys)" in caplog.text


@pytest.mark.parametrize("status, body", [(500, b"{}"), (200, b"<html>oops</html>"),
                                          (200, b'{"keys": "nope"}'), (200, b'{"keys": []}')])
def test_a_failing_or_garbled_answer_keeps_the_last_good_set(provider, status, body):
    clock = FakeClock()
    keys = key_set(provider, clock)
    keys.refresh()
    provider.status, provider.body = status, body
    assert keys.refresh() is False
    assert keys.kids == ("rsa-1", "ec-1")


def test_no_keys_ever_fetched_refuses_with_keys_unavailable(provider):
    provider.status = 503
    check = verifier(provider)
    error = refusal(check, provider.sign(RSA_1))
    assert error.message == "signing keys unavailable (JWKS not fetched yet)"
    with pytest.raises(KeysUnavailableError):
        JwksKeySet(provider.jwks_url, algorithms=["RS256"]).key_for("rsa-1", "RS256")


@pytest.mark.parametrize("send_length", [True, False])
def test_an_oversized_jwks_is_refused_without_reading_it_whole(provider, send_length):
    provider.body = b'{"keys": [' + b" " * (8 * 1024 * 1024) + b"]}"
    provider.send_length = send_length
    with pytest.raises(JwksFetchError, match="over 4096"):
        fetch_jwks(provider.jwks_url, timeout=5, max_bytes=4096)


def test_a_slow_provider_is_cut_off_by_the_timeout(provider):
    provider.delay = 3
    started = time.monotonic()
    with pytest.raises(JwksFetchError):
        fetch_jwks(provider.jwks_url, timeout=0.3, max_bytes=4096)
    assert time.monotonic() - started < 1.5


def test_a_redirect_is_not_followed(provider):
    with pytest.raises(JwksFetchError, match="HTTP 302"):
        fetch_jwks(provider.url + "/redirect", timeout=2, max_bytes=4096)


# -- only asymmetric keys --------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_an_hmac_key_in_the_jwks_is_ignored_and_hs256_tokens_refused(provider):
    secret = b"published-in-a-jwks-" + b"x" * 32
    provider.extra_jwks = [{"kty": "oct", "kid": "hmac", "k": _b64(secret), "alg": "HS256"},
                           {"kty": "RSA", "kid": "claims-hs", "alg": "HS256",
                            **{k: v for k, v in RSA_1.jwk().items() if k in ("n", "e")}}]
    check = verifier(provider)
    assert check.algorithms == ("RS256", "ES256")
    body = {"sub": "mallory", "exp": int(time.time()) + 60, "iss": provider.issuer,
            "aud": provider.audience}
    forged = jwt.encode(body, secret, algorithm="HS256", headers={"kid": "hmac"})
    assert refusal(check, forged).message == "algorithm not allowed (HS256)"
    # and the RSA public key, used as an HMAC secret (key confusion), gets nowhere either
    pem = RSA_1.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header, payload = b'{"alg":"HS256","kid":"rsa-1"}', b'{"sub":"mallory"}'
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{_b64(signature)}"
    assert refusal(check, confused).message == "algorithm not allowed (HS256)"
    # the HMAC key was not taken into the set, and neither was an RSA key claiming HS256
    assert set(check._jwks.kids) == {"rsa-1", "ec-1"}  # type: ignore[union-attr]


def test_with_a_secret_too_hs256_uses_the_secret_never_a_jwks_key(provider):
    secret = "our-own-secret-" + "y" * 32
    provider.extra_jwks = [{"kty": "oct", "kid": "hmac", "k": _b64(b"z" * 40), "alg": "HS256"}]
    check = verifier(provider, jwt_secret=secret)
    assert set(check.algorithms) == {"RS256", "ES256", "HS256"}
    body = {"sub": "svc", "exp": int(time.time()) + 60, "iss": provider.issuer,
            "aud": provider.audience}
    assert check.verify(jwt.encode(body, secret, algorithm="HS256")).user_id == "svc"
    forged = jwt.encode(body, b"z" * 40, algorithm="HS256", headers={"kid": "hmac"})
    assert refusal(check, forged).message == "bad signature"
    assert check.verify(provider.sign(RSA_1, sub="carol")).user_id == "carol"


def test_alg_none_is_never_accepted_with_a_jwks(provider):
    body = {"sub": "mallory", "exp": int(time.time()) + 60}
    token = jwt.encode(body, None, algorithm="none", headers={"kid": "rsa-1"})  # type: ignore
    assert refusal(verifier(provider), token).message == "algorithm not allowed (none)"


def test_a_key_whose_alg_is_not_allowed_is_left_out(provider):
    provider.keys = [RSA_1, ProviderKey.rsa("rsa-512", alg="RS512")]
    check = verifier(provider, jwt_algorithms="RS256")
    assert check._jwks is not None and check._jwks.kids == ("rsa-1",)
    assert refusal(check, provider.sign(provider.keys[1])).message == \
        "algorithm not allowed (RS512)"


def test_a_duplicated_kid_is_ambiguous_and_dropped(provider):
    twin = ProviderKey.rsa("rsa-1")
    provider.extra_jwks = [twin.jwk()]
    check = verifier(provider)
    assert check._jwks is not None and set(check._jwks.kids) == {"ec-1"}


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["https://idp.example/.well-known/jwks.json",
                                 "http://localhost:8080/jwks", "http://127.0.0.1/jwks",
                                 "http://[::1]:9000/jwks"])
def test_jwks_url_accepts_https_and_loopback_http(url):
    settings = load_settings(jwt_jwks_url=url)
    assert settings.jwt_jwks_url == url
    assert settings.jwt_configured
    assert settings.jwt_algorithms == ["RS256", "ES256"]


@pytest.mark.parametrize("url", ["http://idp.example/jwks", "ftp://127.0.0.1/jwks",
                                 "file:///etc/jwks.json", "https:///nohost"])
def test_jwks_url_refuses_plain_http_and_other_schemes(url):
    with pytest.raises(SettingsError, match="DIHYA_RT_JWT_JWKS_URL: .*https://"):
        load_settings(jwt_jwks_url=url)


def test_jwks_url_and_a_public_key_file_are_exclusive(tmp_path):
    with pytest.raises(SettingsError, match="exclusive"):
        load_settings(jwt_jwks_url="https://idp.example/jwks",
                      jwt_public_key_file=tmp_path / "key.pem")


def test_jwks_with_only_hmac_algorithms_stops_start_up():
    with pytest.raises(SettingsError, match="JWT_ALGORITHMS"):
        TokenVerifier(load_settings(jwt_jwks_url="https://127.0.0.1:1/jwks",
                                    jwt_algorithms="HS256", jwt_jwks_timeout=0.2))


def test_jwks_limits_are_bounded_settings():
    with pytest.raises(SettingsError, match="JWT_JWKS_MAX_BYTES"):
        load_settings(jwt_jwks_url="https://idp.example/jwks", jwt_jwks_max_bytes=10**9)
    with pytest.raises(SettingsError, match="JWT_JWKS_MIN_REFETCH_SECONDS"):
        load_settings(jwt_jwks_url="https://idp.example/jwks", jwt_jwks_min_refetch_seconds=0)
