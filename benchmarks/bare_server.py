"""The bare Flask-SocketIO baseline of ``make bench``: no auth, no validation, no audit.

Same stack as ``dihya-realtime serve`` (gevent, gevent-websocket, Flask-SocketIO) with the
three handlers every scenario needs, so the ratio "dihya-realtime / bare" is the price of
the checks. Usage: ``python benchmarks/bare_server.py --port 5101``;
``--ws simple-websocket`` hides gevent-websocket so engine.io falls back to simple-websocket
(the ``bare-simplews`` target of ``run.py``, to compare the two WebSocket stacks).
"""

from __future__ import annotations

import sys

from gevent import monkey

monkey.patch_all()

if "simple-websocket" in sys.argv:
    sys.modules["geventwebsocket"] = None  # type: ignore[assignment] - engine.io falls back

import argparse  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

from flask import Flask  # noqa: E402
from flask_socketio import SocketIO, join_room  # noqa: E402
from gevent.pywsgi import WSGIHandler, WSGIServer  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent", cors_allowed_origins="*", logger=False,
                    engineio_logger=False, manage_session=False)


@socketio.on("echo")
def echo(data: Any) -> Any:
    """The acked-event baseline: reply with what came in."""
    return {"ok": True, "data": data}


@socketio.on("join")
def join(data: dict) -> Any:
    join_room(data["room"])
    return {"ok": True}


@socketio.on("broadcast")
def broadcast(data: dict) -> Any:
    """The fan-out baseline: one emit to the room, then the ack."""
    socketio.emit("message", data["data"], to=data["room"])
    return {"ok": True}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5101)
    parser.add_argument("--ws", choices=("gevent-websocket", "simple-websocket"),
                        default="gevent-websocket")
    args = parser.parse_args()
    handler: Any = WSGIHandler
    if args.ws == "gevent-websocket":
        from geventwebsocket.handler import WebSocketHandler

        handler = WebSocketHandler
    server = WSGIServer((args.host, args.port), app, log=None, handler_class=handler)
    server.start()
    print(f"bare server ready on {args.host}:{args.port} pid {os.getpid()}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
