"""The names DESIGN.md and the README promise, importable as written there."""

from __future__ import annotations

import subprocess
import sys

from flask import Flask


def test_realtime_and_create_app_import_from_the_package(tmp_path):
    from dihya_realtime import Realtime, create_app

    app = Flask("host")
    rt = Realtime(app, jwt_secret="s" * 32, async_mode="threading", audit_log="off",
                  database_url=f"sqlite:///{tmp_path / 't.db'}")
    try:
        assert app.extensions["dihya_realtime"] is rt
    finally:
        rt.close()
    standalone = create_app(jwt_secret="s" * 32, async_mode="threading", audit_log="off",
                            database_url=f"sqlite:///{tmp_path / 'u.db'}")
    try:
        rt = standalone.extensions["dihya_realtime"]
        assert rt.app is standalone
        # Flask's extension manners: the app is never stored on the extension; ``rt.app`` is
        # the app its SocketIO serves, and connections find theirs in environ["flask.app"]
        assert "app" not in vars(rt)
    finally:
        standalone.extensions["dihya_realtime"].close()


def test_the_cli_does_not_load_flask_socketio_before_serve_monkey_patches():
    """``serve`` patches the standard library for gevent first: nothing may import it earlier."""
    code = "import sys, dihya_realtime.cli; print('flask_socketio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
