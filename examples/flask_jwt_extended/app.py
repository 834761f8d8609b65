"""A host app that issues its own tokens with Flask-JWT-Extended; dihya-realtime accepts them.

``POST /login`` returns an access and a refresh token made by ``create_access_token`` (roles
and display name as additional claims); the client connects with ``auth: {token}`` and, when
told ``auth:expiring``, gets a new access token from ``POST /refresh`` and sends it with
``auth:refresh``. ``POST /logout`` puts the token's ``jti`` on the blocklist: from then on it
opens no connection and refreshes none. Refresh tokens never connect.

Run it (from the repository, or anywhere after
``pip install 'dihya-realtime[flask-jwt-extended]'``)::

    python examples/flask_jwt_extended/app.py --port 5002

This file sets only ``flask_jwt_extended=True``; ``DIHYA_RT_*`` variables configure the rest.
tests/examples/test_example_flask_jwt_extended.py runs it.
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta

from gevent import monkey

monkey.patch_all()

from flask import Flask, jsonify, request  # noqa: E402
from flask_jwt_extended import (  # noqa: E402
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    get_jwt_identity,
    jwt_required,
)
from werkzeug.security import check_password_hash, generate_password_hash  # noqa: E402

from dihya_realtime import Realtime  # noqa: E402

USERS = {
    "amina": {"name": "Amina", "roles": ["user", "moderator"],
              "password_hash": generate_password_hash("amina-password")},
    "bilal": {"name": "Bilal", "roles": ["user"],
              "password_hash": generate_password_hash("bilal-password")},
}


def create_app(**realtime_settings: object) -> Flask:
    """The host app: its JWTManager and blocklist first, then dihya-realtime."""
    app = Flask(__name__)
    app.config["JWT_SECRET_KEY"] = os.environ.get("EXAMPLE_JWT_SECRET_KEY") or os.urandom(32)
    app.config["JWT_ACCESS_TOKEN_EXPIRES"] = timedelta(minutes=15)
    jwt = JWTManager(app)  # before Realtime: it checks the JWTManager is there
    revoked: set[str] = set()  # a real app keeps this in Redis or its database

    @jwt.token_in_blocklist_loader
    def is_revoked(jwt_header: dict, jwt_payload: dict) -> bool:
        return jwt_payload["jti"] in revoked

    def access_token(user_id: str) -> str:
        user = USERS[user_id]
        return create_access_token(identity=user_id, additional_claims={
            "roles": user["roles"], "name": user["name"]})

    @app.post("/login")
    def login():  # noqa: ANN202
        body = request.get_json(silent=True) or {}
        user_id = str(body.get("username", ""))
        user = USERS.get(user_id)
        if user is None or not check_password_hash(str(user["password_hash"]),
                                                   str(body.get("password", ""))):
            return jsonify(ok=False, error="wrong username or password"), 401
        return jsonify(ok=True, access_token=access_token(user_id),
                       refresh_token=create_refresh_token(identity=user_id))

    @app.post("/refresh")
    @jwt_required(refresh=True)
    def refresh():  # noqa: ANN202
        return jsonify(ok=True, access_token=access_token(get_jwt_identity()))

    @app.post("/logout")
    @jwt_required()
    def logout():  # noqa: ANN202
        revoked.add(get_jwt()["jti"])
        return jsonify(ok=True)

    rt = Realtime(app, flask_jwt_extended=True, async_mode="gevent", **realtime_settings)
    rt.db.migrate()  # an example's convenience: production runs `dihya-realtime migrate`
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
    parser.add_argument("--port", type=int, default=5002)
    args = parser.parse_args()
    serve(create_app(), args.host, args.port, "flask-jwt-extended example")


if __name__ == "__main__":
    main()
