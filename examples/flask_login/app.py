"""A host app that signs its users in with Flask-Login; dihya-realtime trusts that session.

The browser signs in on the app's own ``/login`` (a session cookie, as any Flask-Login app),
then opens a Socket.IO connection to the same origin: dihya-realtime resolves Flask-Login's
``current_user`` through this app's ``user_loader`` during the handshake, so ``whoami`` says
``amina`` with her roles. No token anywhere.

Run it (from the repository, or anywhere after ``pip install 'dihya-realtime[flask-login]'``)::

    python examples/flask_login/app.py --port 5001

``DIHYA_RT_*`` variables configure dihya-realtime as usual (``DIHYA_RT_DATABASE_URL``,
``DIHYA_RT_ALLOWED_ORIGINS`` when the page is served from another origin …); this file sets
only ``flask_login=True``. tests/examples/test_example_flask_login.py runs it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from gevent import monkey

monkey.patch_all()

from flask import Flask, jsonify, request  # noqa: E402
from flask_login import (  # noqa: E402
    LoginManager,
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
)
from werkzeug.security import check_password_hash, generate_password_hash  # noqa: E402

from dihya_realtime import Realtime  # noqa: E402


@dataclass
class User(UserMixin):
    """The app's own user model; dihya-realtime reads ``get_id()``, ``roles`` and ``name``."""

    id: str
    name: str
    password_hash: str
    roles: list[str] = field(default_factory=list)


def demo_users() -> dict[str, User]:
    return {
        "amina": User("amina", "Amina", generate_password_hash("amina-password"),
                      ["user", "moderator"]),
        "bilal": User("bilal", "Bilal", generate_password_hash("bilal-password"), ["user"]),
    }


def create_app(users: dict[str, User] | None = None, **realtime_settings: object) -> Flask:
    """The host app: Flask-Login first, then dihya-realtime with ``flask_login=True``."""
    users = users if users is not None else demo_users()
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("EXAMPLE_SECRET_KEY") or os.urandom(32)
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"

    login_manager = LoginManager(app)  # before Realtime: it checks the LoginManager is there

    @login_manager.user_loader
    def load_user(user_id: str) -> User | None:
        return users.get(user_id)

    @app.get("/")
    def home() -> str:
        who = current_user.name if current_user.is_authenticated else "nobody"
        return (f"<h1>Flask-Login example</h1><p>Signed in as {who}.</p>"
                '<form method="post" action="/login"><input name="username">'
                '<input name="password" type="password"><button>Sign in</button></form>')

    @app.post("/login")
    def login():  # noqa: ANN202
        form = request.get_json(silent=True) or request.form
        user = users.get(str(form.get("username", "")))
        if user is None or not check_password_hash(user.password_hash,
                                                   str(form.get("password", ""))):
            return jsonify(ok=False, error="wrong username or password"), 401
        login_user(user)
        return jsonify(ok=True, user_id=user.id)

    @app.post("/logout")
    @login_required
    def logout():  # noqa: ANN202
        logout_user()
        return jsonify(ok=True)

    rt = Realtime(app, flask_login=True, async_mode="gevent", **realtime_settings)
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
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args()
    serve(create_app(), args.host, args.port, "flask-login example")


if __name__ == "__main__":
    main()
