"""Redaction by shape: secret key names however they are spelled, secret values under any key.

Issue 12, finding 9: redaction was a list of exact key names, so ``pass_word``,
``clientSecret``, ``x-api-key``, a JWT under an innocent key or ``[["token", "..."]]``
reached subscribers. Two corpora: secrets that must never come out, ordinary data that must
come out unchanged.
"""

from __future__ import annotations

import json
import time

import pytest

from dihya_realtime.kernel.redaction import KEY_CACHE_SIZE, REDACTED, Redactor, is_secret_key
from dihya_realtime.kernel.settings import DEFAULT_REDACT_KEYS, Settings

SECRET = "s3cr3t-Value-0042"

SECRET_KEYS = [
    "password", "Password", "PASSWORD", "pass_word", "passwd", "passphrase", "userPassword",
    "db_password", "new-password", "secret", "secrets", "clientSecret", "client-secret",
    "client_secret", "appSecret", "jwt_secret", "secret_key", "aws_secret_access_key",
    "secretAccessKey", "token", "accessToken", "access_token", "auth_token", "authToken",
    "refresh_token", "id_token", "csrfToken", "X-CSRF-Token", "api_key", "apiKey", "APIKey",
    "api-key", "apikey", "x-api-key", "X-API-KEY", "privateKey", "private_key", "PRIVATE-KEY",
    "credentials", "credential", "sessionid", "session_id", "sessionId", "session",
    "Authorization", "proxy-authorization", "cookie", "Cookie", "set-cookie", "Set-Cookie",
    "bearer",
]

# 40 characters, mixed case, digits and "/": the shape of an AWS secret access key
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MTc2NDIzNzAwMH0."
       "Nn3f0Xq1l2mZ5J4wq9rL0b8yGxS3t7vQ1cKd2eF6hIo")
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n" * 3

SECRET_VALUES = [
    JWT,
    f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}-----END PRIVATE KEY-----\n",
    f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}-----END RSA PRIVATE KEY-----",
    f"-----BEGIN EC PRIVATE KEY-----\n{PEM_BODY}-----END EC PRIVATE KEY-----",
    f"-----BEGIN OPENSSH PRIVATE KEY-----\n{PEM_BODY}-----END OPENSSH PRIVATE KEY-----",
    f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{PEM_BODY}",  # truncated: still a key
    f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n{PEM_BODY}-----END PGP PRIVATE KEY BLOCK-----",
    "AKIAIOSFODNN7EXAMPLE",
    "ASIAY34FZKBOKMUTVV7A",
    AWS_SECRET,
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "gho_16C7e42F292c6912E7710c838347Ae178B4a",
    "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
    "github_pat_11ABCDEFG0123456789abc_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN",
    "glpat-xxxxxxxxxxxxxxxxxxxx",
    "glpat-Ab3dEfGh1jKlMn0pQrSt",
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    "xoxp-123456789012-123456789012-1234567890123-0123456789abcdef0123456789abcdef",
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
    "rk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
    "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",
    "ya29.a0AfH6SMBx3kq9Zp0Lr7Qm2Vn5Tb8Wc1Xd4Ye6Zf",
    "sk-proj-Ab3dEfGh1jKlMn0pQrStUvWxYz0123456789",
    "sk-ant-api03-Ab3dEfGh1jKlMn0pQrStUvWxYz0123456789",
    "npm_Ab3dEfGh1jKlMn0pQrStUvWxYz0123456789",
    "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",
    "Bearer abc123.def456-ghi789_jkl",
    "bearer 0123456789abcdef0123456789abcdef",
    "Basic dXNlcjpodW50ZXIy",
    "https://alice:hunter2@example.com/path",
    "postgresql://app:S3cret!@db.internal:5432/prod",
    "redis://:p4ssw0rd@cache:6379/0",
    "https://example.com/callback?code=1&access_token=abcdef123456&state=x",
    "please use AKIAIOSFODNN7EXAMPLE for the deploy",
    f"here is my token {JWT} thanks",
]


def _leaks(redactor: Redactor, payload: object, secret: str) -> tuple[str, list[str]]:
    clean, paths = redactor.redact(payload)
    return json.dumps(clean), paths


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(DEFAULT_REDACT_KEYS)


def test_the_corpus_holds_at_least_fifty_secret_shapes():
    assert len(SECRET_KEYS) + len(SECRET_VALUES) + len(PAIRS) >= 50


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_a_secret_key_is_redacted_however_it_is_spelled(redactor, key):
    payload = {"note": "hello", "nested": [{key: SECRET}]}
    text, paths = _leaks(redactor, payload, SECRET)
    assert SECRET not in text and paths == [f"nested[0].{key}"]


@pytest.mark.parametrize("value", SECRET_VALUES)
def test_a_secret_value_is_redacted_under_an_innocent_key(redactor, value):
    payload = {"data": {"comment": value}, "n": 1}
    clean, paths = redactor.redact(payload)
    assert paths == ["data.comment"]
    out = clean["data"]["comment"]
    assert REDACTED in out
    for part in (JWT, "hunter2", "S3cret!", "p4ssw0rd", "abcdef123456", "AKIAIOSFODNN7EXAMPLE",
                 PEM_BODY.split("\n")[0], value):
        assert part not in out


def test_only_the_secret_part_of_a_text_is_replaced(redactor):
    clean, _ = redactor.redact({"text": "please use AKIAIOSFODNN7EXAMPLE for the deploy"})
    assert clean == {"text": f"please use {REDACTED} for the deploy"}
    clean, _ = redactor.redact({"url": "https://alice:hunter2@example.com/path"})
    assert clean == {"url": f"https://{REDACTED}@example.com/path"}


PAIRS = [
    [["token", SECRET]],
    [["Authorization", SECRET]],
    [["X-Api-Key", SECRET]],
    [["accept", "json"], ["Cookie", SECRET]],
    {"headers": [("set-cookie", SECRET)]},
    {"a": [[["bearer", SECRET]]]},
]


@pytest.mark.parametrize("payload", PAIRS)
def test_a_name_value_pair_with_a_secret_name_is_redacted(redactor, payload):
    text, paths = _leaks(redactor, payload, SECRET)
    assert SECRET not in text and len(paths) == 1 and paths[0].endswith("[1]")


ORDINARY_KEYS = {
    "token_count": 17, "tokens_used": 1200, "max_tokens": 4096, "prompt_tokens": 12,
    "tokens": 99, "session_count": 3, "author": "alice", "secretary": "Bob",
    "tokenizer": "cl100k", "token_type": "Bearer", "password_min_length": 8,
    "token_expires_in": 3600, "secret_name": "db-creds", "public_key": "ssh-ed25519 AAAAC3Nz",
    "password_set": False, "cookie_consent": "accepted", "key": "value",
    "api_version": "v1", "authority": "ca", "passwordless": "enabled", "keyboard": "qwerty",
    "token_url": "https://auth.example.com/oauth/token", "session_ids_count": 0,
}

ORDINARY_VALUES = [
    "ship it on Friday after the release train, @bob can you check the migration?",
    "Bearer of bad news: the build is red",
    "basic instructions for the token ring network",
    "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    "b181406b7d54bba7393ecc1b7505ed80",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",  # SHA-1, 40 hex
    "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",  # SHA-256
    "data:image/png;base64," + "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==" * 40,
    "https://example.com/a/b?c=d&page=2#frag",
    "sort by key=lastname then id=42, see https://example.com:8080/@alice?tab=posts",
    "https://example.com/@alice/posts",
    "mailto:alice@example.com",
    "alice@example.com wrote: see you at 10:30",
    "🎉🚀 congrats team! 🥳",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n"
    "-----END PUBLIC KEY-----",
    "skip-to-content-and-keep-going-right-now",
    "see sk-learn-is-a-great-library-for-you and xoxo-hugs-and-kisses-to-all",
    "The quick brown fox jumps over the lazy dog " * 20,
    "A" * 40,
    "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCd",  # 40 characters of URL-safe base64: a cursor
    "WyJyb29tIiwgImdlbmVyYWwiLCAiOWYyYzFlMGQi",
    "2026-11-27T09:23:17.123Z",
]


def test_ordinary_data_comes_out_unchanged(redactor):
    payload = {
        **ORDINARY_KEYS,
        "has_password": True, "password": None, "token": False,  # nothing to hide
        "values": ORDINARY_VALUES,
        "numbers": [0, -1, 3.14, 10**18, True, None],
        "pairs": [["name", "alice"], ["token_count", 3], ["a", "b"], ["token", None]],
        "paths": ["clientSecret", "link"],  # a lone two-item list is not a pair
        "nested": {"emoji": "🙂", "list": [[1, 2], ["x", "y"]]},
    }
    clean, paths = redactor.redact(payload)
    assert paths == []
    assert clean == payload


@pytest.mark.parametrize("key", list(ORDINARY_KEYS))
def test_ordinary_key_names_are_not_secret(key):
    assert not is_secret_key(key)


def test_extra_words_from_the_setting_are_matched_by_shape(monkeypatch):
    monkeypatch.setenv("DIHYA_RT_REDACT_KEYS", "ssn,card_number")
    redactor = Redactor(Settings().redact_keys)
    clean, paths = redactor.redact({"SSN": "123-45-6789", "creditCardNumber": "4111",
                                    "password": SECRET, "card": "visa"})
    assert clean == {"SSN": REDACTED, "creditCardNumber": REDACTED, "password": REDACTED,
                     "card": "visa"}  # the built-in words always apply
    assert sorted(paths) == ["SSN", "creditCardNumber", "password"]


def test_key_verdicts_are_cached_in_a_bounded_cache(redactor):
    for i in range(20_000):
        redactor.redact({f"field_{i}": 1})
    assert 0 < redactor.key_cache_size() <= KEY_CACHE_SIZE < 20_000
    assert redactor.redact({"field_1": 1, "apiKey": "x"})[1] == ["apiKey"]


def test_a_redaction_reaching_a_client_is_audited(make_rt, connect):
    from tests.unit.kernel.test_pipeline import audit_lines

    rt = make_rt()
    client = connect(rt)
    client.get_received()
    rt.emit_to_user("alice", "note", {"text": "hi", "clientSecret": SECRET,
                                      "link": "https://u:hunter2@example.com/"})
    received = client.events("note")[0]
    assert SECRET not in json.dumps(received) and "hunter2" not in json.dumps(received)
    assert set(audit_lines(rt, "redaction")[-1]["details"]["paths"]) == {"clientSecret", "link"}


@pytest.mark.parametrize("unit", ["n=", "AKIA", "ghp_", "xoxb-", "Bearer 1", "://",
                                  "a" * 31 + "n="])
def test_a_string_built_to_be_costly_to_search_is_replaced_whole_and_quickly(redactor, unit):
    """Every place a secret could start costs a little: 64 KB of them took 33 ms uncapped."""
    text = unit * (64_000 // len(unit))
    started = time.perf_counter()
    clean, paths = redactor.redact({"note": text})
    assert time.perf_counter() - started < 0.02
    assert clean == {"note": REDACTED} and paths == ["note"]
