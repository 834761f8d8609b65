"""A host app's own ``connect`` handler on an adopted SocketIO: a refusal leaves no
connection and no metric behind, and each attempt is audited."""

from __future__ import annotations

from flask import Flask
from flask_socketio import SocketIO

from tests.unit.conftest import Client
from tests.unit.kernel.test_pipeline import audit_lines


def test_a_host_connect_handler_that_refuses_leaves_nothing_behind(settings_overrides,
                                                                  make_token):
    from dihya_realtime.app import register_socketio_events

    app = Flask("host")
    socketio = SocketIO(app, async_mode="threading")
    rt = register_socketio_events(socketio, **settings_overrides)
    rt.db.migrate()
    try:
        @socketio.on("connect")
        def refuse(auth=None):
            return False

        for _ in range(3):
            client = Client(app, socketio, auth={"token": make_token("alice")})
            assert not client.is_connected()
        assert len(rt.connections) == 0
        assert "dihya_rt_connections 0.0" in rt.metrics.render().decode()
        assert len(audit_lines(rt, "disconnect")) == 3
    finally:
        rt.close()
