"""Building and attaching dihya-realtime: the standalone service and the seed's entry point.

``create_app()`` builds the standalone service that ``dihya-realtime serve`` runs;
``register_socketio_events(socketio)`` attaches dihya-realtime to a ``SocketIO`` the host app
already made. Importing this module declares every event of every feature (the docs read the
registry); :class:`~dihya_realtime.realtime.Realtime` is imported on first use, so that
``serve`` can monkey-patch the standard library before Flask-SocketIO is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dihya_realtime.features import feature_modules, setup_features

if TYPE_CHECKING:
    from flask import Flask
    from flask_socketio import SocketIO

    from dihya_realtime.kernel.settings import Settings
    from dihya_realtime.realtime import Realtime


def register_socketio_events(socketio: SocketIO, **settings: Any) -> Realtime:
    """Attach dihya-realtime's authenticated, validated events to an existing ``SocketIO``.

    ``settings`` override ``DIHYA_RT_*`` values. Returns the :class:`Realtime` object.
    """
    from dihya_realtime.realtime import Realtime

    app = socketio.sockio_mw.flask_app if socketio.sockio_mw is not None else None
    if app is None:
        raise RuntimeError("register_socketio_events needs a SocketIO created with a Flask app")
    return Realtime(app, socketio=socketio, **settings)


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """The standalone dihya-realtime service (what ``dihya-realtime serve`` runs)."""
    import secrets

    from flask import Flask

    from dihya_realtime.kernel.settings import load_settings
    from dihya_realtime.realtime import Realtime

    settings = settings or load_settings(**overrides)
    app = Flask("dihya_realtime")
    app.config["SECRET_KEY"] = (settings.secret_key.get_secret_value() if settings.secret_key
                                else secrets.token_hex(32))
    rt = Realtime(app, settings=settings)
    from dihya_realtime.demo.web import create_web_blueprint

    app.register_blueprint(create_web_blueprint(rt))  # the demo client and /docs/events
    return app


feature_modules()  # declare every event at import time: the docs read the registry

__all__ = ["create_app", "feature_modules", "register_socketio_events", "setup_features"]
