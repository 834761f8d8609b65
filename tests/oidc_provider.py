"""A local OIDC-like identity provider for tests: a real HTTP server in a thread.

It publishes a JWKS (``/jwks.json``) and a discovery document
(``/.well-known/openid-configuration``), signs RS256 / ES256 tokens with a ``kid``, and lets a
test rotate keys, count hits, answer with errors, oversized or slow bodies, or stop. The unit,
integration and example tests all use it, so "the provider" means one thing everywhere.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER_PATH = ""  # the issuer is the provider's base URL


@dataclass
class ProviderKey:
    """A private key the provider signs with, published under ``kid``."""

    kid: str
    alg: str
    private: Any

    @classmethod
    def rsa(cls, kid: str, alg: str = "RS256") -> ProviderKey:
        return cls(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> ProviderKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self, with_alg: bool = True) -> dict[str, Any]:
        algorithm = RSAAlgorithm if isinstance(self.private, rsa.RSAPrivateKey) else ECAlgorithm
        data: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        data.update({"kid": self.kid, "use": "sig"})
        if with_alg:
            data["alg"] = self.alg
        return data


@dataclass
class OidcProvider:
    """The provider's state; :func:`start_provider` serves it."""

    keys: list[ProviderKey] = field(default_factory=list)
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)  # hostile or odd entries
    status: int = 200
    body: bytes | None = None  # overrides the JWKS body
    send_length: bool = True
    delay: float = 0.0  # seconds before answering /jwks.json
    hits: int = 0
    url: str = ""
    audience: str = "realtime-api"
    server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks.json"

    @property
    def issuer(self) -> str:
        return self.url + "/"

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.keys] + list(self.extra_jwks)}

    def sign(self, key: ProviderKey, sub: str = "alice", ttl: float = 3600,
             kid: str | None = None, **claims: Any) -> str:
        """A token as the provider would issue it (iss, aud, exp, roles)."""
        now = time.time()
        body = {"sub": sub, "iss": self.issuer, "aud": self.audience, "iat": int(now),
                "exp": int(now + ttl), "roles": ["user"], **claims}
        return jwt.encode(body, key.private, algorithm=key.alg,
                          headers={"kid": key.kid if kid is None else kid})

    def count(self) -> int:
        with self._lock:
            return self.hits

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def start_provider(provider: OidcProvider, port: int = 0) -> OidcProvider:
    """Serve ``provider`` on 127.0.0.1 (a free port unless given) in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, length: bool = True) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if length:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            with contextlib.suppress(OSError):  # the client stopped reading (too large)
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/.well-known/openid-configuration":
                doc = {"issuer": provider.issuer, "jwks_uri": provider.jwks_url,
                       "id_token_signing_alg_values_supported": ["RS256", "ES256"]}
                self._send(200, json.dumps(doc).encode())
                return
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", provider.jwks_url)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path != "/jwks.json":
                self._send(404, b"{}")
                return
            with provider._lock:
                provider.hits += 1
            if provider.delay:
                time.sleep(provider.delay)
            body = provider.body if provider.body is not None else \
                json.dumps(provider.jwks()).encode()
            self._send(provider.status, body, provider.send_length)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    provider.server = server
    provider.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), name="oidc-provider",
                     daemon=True).start()
    return provider
