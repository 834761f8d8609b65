"""A host app whose users sign in at an OIDC provider; dihya-realtime verifies the provider's
tokens with the keys of its JWKS URL.

The browser (or a mobile app, a CLI) gets an access token from the provider (Auth0, Keycloak,
Cognito, Entra…) and connects with it: ``io(url, {auth: {token}})``. dihya-realtime picks the
key by the token's ``kid`` from the provider's JWKS, checks issuer and audience, and follows
the provider's key rotation without a restart. This app holds no secret at all.

Run it (from the repository, or anywhere after ``pip install dihya-realtime``)::

    DIHYA_RT_JWT_JWKS_URL=https://YOUR_TENANT.eu.auth0.com/.well-known/jwks.json \\
    DIHYA_RT_JWT_ISSUER=https://YOUR_TENANT.eu.auth0.com/ \\
    DIHYA_RT_JWT_AUDIENCE=https://realtime.example.com \\
    python examples/oidc_jwks/app.py --port 5003

(Keycloak: ``https://HOST/realms/REALM/protocol/openid-connect/certs``, issuer
``https://HOST/realms/REALM``.) ``--discover ISSUER_URL`` reads the JWKS URL and issuer from
the provider's ``/.well-known/openid-configuration`` instead. The provider puts the user's
roles in a ``roles`` claim (an Auth0 Action, a Keycloak mapper).
tests/examples/test_example_oidc_jwks.py runs it against a local provider.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.request

from gevent import monkey

monkey.patch_all()

from flask import Flask, jsonify  # noqa: E402

from dihya_realtime import Realtime  # noqa: E402

DISCOVERY_MAX_BYTES = 64 * 1024


def discover(issuer: str, timeout: float = 5) -> dict[str, str]:
    """``DIHYA_RT_*`` settings from the provider's OIDC discovery document."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - operator's URL
        document = json.loads(response.read(DISCOVERY_MAX_BYTES))
    return {"jwt_jwks_url": document["jwks_uri"], "jwt_issuer": document["issuer"]}


def create_app(**realtime_settings: object) -> Flask:
    """The host app: its own routes, dihya-realtime configured by DIHYA_RT_JWT_JWKS_URL."""
    app = Flask(__name__)

    rt = Realtime(app, async_mode="gevent", **realtime_settings)
    rt.db.migrate()  # an example's convenience: production runs `dihya-realtime migrate`

    @app.get("/")
    def home() -> str:
        return ("<h1>OIDC / JWKS example</h1><p>Connect with the access token your identity "
                "provider issued: <code>io(url, {auth: {token}})</code>.</p>")

    @app.get("/healthz")
    def healthz():  # noqa: ANN202
        return jsonify(ok=True, jwks_url=rt.settings.jwt_jwks_url)

    @rt.event("oidc:claims")
    def oidc_claims(ctx, payload):  # noqa: ANN001, ANN202
        """The provider's claims this connection was accepted with (the built-in ``whoami``
        gives user id, roles and name). Payload example: {}."""
        claims = ctx.conn.principal.claims
        return {"issuer": claims.get("iss"), "audience": claims.get("aud"),
                "expires_at": claims.get("exp")}

    return app


def serve(app: Flask, host: str, port: int, name: str) -> None:
    """Serve ``app`` the way ``dihya-realtime serve`` does (gevent, our WebSocket handler and
    its guards, SIGTERM as a clean stop)."""
    from dihya_realtime.serving import serve_forever

    serve_forever(app, app.extensions["dihya_realtime"], host, port,
                  lambda h, p: print(f"{name} ready on http://{h}:{p}", flush=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5003)
    parser.add_argument("--discover", metavar="ISSUER_URL",
                        default=os.environ.get("OIDC_ISSUER_URL"),
                        help="read the JWKS URL and issuer from the provider's discovery document")
    args = parser.parse_args()
    settings = discover(args.discover) if args.discover else {}
    serve(create_app(**settings), args.host, args.port, "oidc-jwks example")


if __name__ == "__main__":
    main()
