"""A real ``dihya-realtime serve`` verifying tokens of an OIDC provider through its JWKS URL.

The provider is a local HTTP server (tests/oidc_provider.py) that rotates its keys, is flooded
with invented kids, and goes down; the server follows it without a restart.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from tests.oidc_provider import OidcProvider, ProviderKey, start_provider

REFETCH = 1.0


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    served = start_provider(OidcProvider(keys=[ProviderKey.rsa("rsa-1"), ProviderKey.ec("ec-1")]))
    yield served
    served.stop()


@pytest.fixture
def jwks_server(start_server, provider):
    return start_server(JWT_SECRET=None, JWT_JWKS_URL=provider.jwks_url,
                        JWT_ISSUER=provider.issuer, JWT_AUDIENCE=provider.audience,
                        JWT_JWKS_MIN_REFETCH_SECONDS=str(REFETCH))


def test_serve_accepts_provider_tokens_follows_rotation_and_survives_the_provider_down(
        jwks_server, provider, sio_client, connect_error):
    rsa_1, ec_1 = provider.keys
    assert provider.count() == 1  # fetched at start-up
    alice = sio_client(jwks_server, token=provider.sign(rsa_1, sub="alice"))
    bob = sio_client(jwks_server, token=provider.sign(ec_1, sub="bob"))
    jwks_server.wait_audit("connect", lambda e: e["user_id"] == "alice")
    jwks_server.wait_audit("connect", lambda e: e["user_id"] == "bob")
    reply = alice.call("subscribe", {"channel": "chat:general"})
    assert reply["ok"], reply
    assert provider.count() == 1

    rsa_2 = ProviderKey.rsa("rsa-2")
    provider.keys = [rsa_1, rsa_2, ec_1]  # the provider rotates: a new key is published
    time.sleep(REFETCH)
    carol = sio_client(jwks_server, token=provider.sign(rsa_2, sub="carol"))
    assert carol.connected and provider.count() == 2
    sio_client(jwks_server, token=provider.sign(rsa_1, sub="alice"))  # old key still listed
    assert provider.count() == 2

    # a flood of invented kids: refused, and at most one fetch per interval
    started, before = time.monotonic(), provider.count()
    for _ in range(15):
        refused = connect_error(jwks_server, token=provider.sign(rsa_2, kid=uuid.uuid4().hex))
        assert refused["code"] == "unauthenticated"
        assert refused["reason"] == "invalid_token"
        assert refused["message"] == "unknown signing key (kid not in the provider's JWKS)"
    elapsed = time.monotonic() - started
    assert provider.count() - before <= 1 + int(elapsed / REFETCH), (provider.count(), elapsed)
    assert bob.connected and alice.connected

    provider.stop()  # the provider goes down: the last good keys keep verifying
    time.sleep(REFETCH)
    dave = sio_client(jwks_server, token=provider.sign(rsa_2, sub="dave"))
    assert dave.connected
    refused = connect_error(jwks_server, token=provider.sign(ProviderKey.ec("ec-2")))
    assert refused["message"] == "unknown signing key (kid not in the provider's JWKS)"
    assert "JWKS fetch from" in jwks_server.stdout() + jwks_server.stderr()


def test_serve_refuses_to_start_with_a_plain_http_jwks_url(start_server):
    server = start_server(JWT_SECRET=None, JWT_JWKS_URL="http://idp.example/jwks.json",
                          start=False)
    server.launch()
    assert server.proc is not None and server.proc.wait(20) != 0
    assert "DIHYA_RT_JWT_JWKS_URL" in server.stderr()
    assert "https://" in server.stderr()
