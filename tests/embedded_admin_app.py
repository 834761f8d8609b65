"""A host app embedding dihya-realtime with its own handler on namespace ``/admin``.

Run by tests/integration/test_hostile_connections.py as a real gevent server:
``python -m tests.embedded_admin_app PORT`` (settings from ``DIHYA_RT_*``).
"""

from __future__ import annotations

import sys

from gevent import monkey

monkey.patch_all()

from flask import Flask, request  # noqa: E402
from flask_socketio import SocketIO  # noqa: E402
from gevent.pywsgi import WSGIHandler, WSGIServer  # noqa: E402

from dihya_realtime.realtime import Realtime  # noqa: E402
from dihya_realtime.transport.websocket import pywsgi_handler_class  # noqa: E402


def main(port: int) -> None:
    app = Flask("embedded")
    socketio = SocketIO(app, async_mode="gevent")

    @socketio.on("call", namespace="/admin")
    def call() -> str:
        conn = rt.connection(request.sid, "/admin")  # type: ignore[attr-defined]
        return f"admin secret for {conn.user_id if conn else 'nobody'}"

    rt = Realtime(app, socketio=socketio, async_mode="gevent")
    rt.db.migrate()
    server = WSGIServer(("127.0.0.1", port), app, log=None,
                        handler_class=pywsgi_handler_class(WSGIHandler))
    rt.guard.install_upgrade_hook(server)
    server.start()
    print("embedded ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
