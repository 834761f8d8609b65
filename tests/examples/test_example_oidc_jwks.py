"""examples/oidc_jwks: a host app trusting an OIDC provider's tokens through its JWKS URL.

The provider is a real local HTTP server (tests/oidc_provider.py) with a discovery document
and a JWKS; the example runs as its own process, and a real Socket.IO client connects with the
provider's RS256 and ES256 tokens, before and after the provider rotates its keys.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import socketio

from tests.conftest import free_port
from tests.integration.conftest import SioClient, clean_environ
from tests.oidc_provider import OidcProvider, ProviderKey, start_provider

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "oidc_jwks" / "app.py"
START_TIMEOUT = 20.0


@pytest.fixture
def provider() -> Iterator[OidcProvider]:
    served = start_provider(OidcProvider(keys=[ProviderKey.rsa("kc-rsa-1"),
                                               ProviderKey.ec("kc-ec-1")]))
    yield served
    served.stop()


@pytest.fixture
def run_example(tmp_path: Path) -> Iterator[Callable[..., tuple[str, Path]]]:
    """``run_example(*args, **env)`` → the example's URL, once it printed its ready line."""
    procs: list[subprocess.Popen[bytes]] = []

    def run(*args: str, **env: str) -> tuple[str, Path]:
        port = free_port()
        environ = clean_environ()
        environ.update({"DIHYA_RT_DATABASE_URL": f"sqlite:///{tmp_path / 'example.db'}",
                        "DIHYA_RT_AUDIT_LOG": str(tmp_path / "audit.log"),
                        "PYTHONPATH": str(ROOT / "src"), **env})
        out = tmp_path / "output.log"
        with open(out, "wb") as sink:
            proc = subprocess.Popen([sys.executable, str(SCRIPT), "--port", str(port), *args],
                                    cwd=tmp_path, env=environ, stdout=sink,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + START_TIMEOUT
        while "ready on http://" not in out.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"example not ready:\n{out.read_text(errors='replace')}")
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}", out

    yield run
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def connect() -> Iterator[Callable[[str, str], SioClient]]:
    clients: list[SioClient] = []

    def open_(url: str, token: str) -> SioClient:
        client = SioClient(socketio.Client(reconnection=False))
        clients.append(client)
        with contextlib.suppress(socketio.exceptions.ConnectionError):  # see connect_error
            client.client.connect(url, auth={"token": token}, transports=["websocket"],
                                  wait_timeout=5)
        return client

    yield open_
    for client in clients:
        client.disconnect()


def test_provider_tokens_connect_by_kid_and_rotation_needs_no_restart(
        provider, run_example, connect):
    url, _ = run_example(DIHYA_RT_JWT_JWKS_URL=provider.jwks_url,
                         DIHYA_RT_JWT_ISSUER=provider.issuer,
                         DIHYA_RT_JWT_AUDIENCE=provider.audience,
                         DIHYA_RT_JWT_JWKS_MIN_REFETCH_SECONDS="0.5")
    rsa_1, ec_1 = provider.keys
    amina = connect(url, provider.sign(rsa_1, sub="amina", name="Amina",
                                       roles=["user", "moderator"]))
    assert amina.connected, amina.connect_error
    me = amina.call("whoami")
    assert me["ok"], me
    assert (me["data"]["user_id"], me["data"]["roles"], me["data"]["name"]) == \
        ("amina", ["user", "moderator"], "Amina")
    claims = amina.call("oidc:claims")["data"]  # the host app's own event
    assert (claims["issuer"], claims["audience"]) == (provider.issuer, provider.audience)
    bilal = connect(url, provider.sign(ec_1, sub="bilal"))
    assert bilal.call("whoami")["data"]["user_id"] == "bilal"

    # tokens of a stranger, of the wrong audience, or with a kid the provider never published
    stranger = connect(url, provider.sign(ProviderKey.rsa("kc-rsa-1")))  # same kid, other key
    assert not stranger.connected
    assert stranger.connect_error["message"] == "bad signature"
    wrong_aud = connect(url, provider.sign(rsa_1, aud="another-api"))
    assert wrong_aud.connect_error["message"] == "wrong audience"
    unknown = connect(url, provider.sign(rsa_1, kid="never-published"))
    assert (unknown.connect_error["code"], unknown.connect_error["reason"],
            unknown.connect_error["message"]) == (
        "unauthenticated", "invalid_token", "unknown signing key (kid not in the provider's JWKS)")

    rsa_2 = ProviderKey.rsa("kc-rsa-2")
    provider.keys = [rsa_2, ec_1]  # the provider rotates; rsa-1 retires
    time.sleep(0.5)
    chen = connect(url, provider.sign(rsa_2, sub="chen"))
    assert chen.connected, chen.connect_error
    assert chen.call("whoami")["data"]["user_id"] == "chen"
    assert amina.connected  # connections made with the old key are not cut by a rotation


def test_discover_reads_the_jwks_url_and_issuer_from_the_provider(provider, run_example,
                                                                  connect):
    url, _ = run_example("--discover", provider.url, DIHYA_RT_JWT_AUDIENCE=provider.audience)
    client = connect(url, provider.sign(provider.keys[0], sub="dina"))
    assert client.connected, client.connect_error
    assert client.call("whoami")["data"]["user_id"] == "dina"
    assert client.call("oidc:claims")["data"]["issuer"] == provider.issuer
    assert provider.count() == 1
