"""A webhook receiver: a small Flask app that checks dihya-realtime's signature.

Run ``WEBHOOK_SECRET=... python examples/webhook_receiver/app.py --port 5004`` and point
``DIHYA_RT_WEBHOOKS`` at ``http://127.0.0.1:5004/webhooks/dihya`` with the same secret. A
delivery with a bad or stale signature gets 400; a delivery seen before (the same ``id``, as
at-least-once delivery may repeat one) gets 200 and is not handled again. ``GET /seen`` lists
the handled events (for the demo and its test).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from typing import Any

from flask import Flask, abort, jsonify, request

from dihya_realtime.webhooks import HEADER, verify_signature


def create_app(secret: str) -> Flask:
    app = Flask(__name__)
    seen: dict[str, dict[str, Any]] = {}  # a real app keeps this in its database
    lock = threading.Lock()

    @app.post("/webhooks/dihya")
    def receive() -> Any:
        body = request.get_data(cache=False)  # the raw bytes: the signature covers them
        if not verify_signature(secret, request.headers.get(HEADER), body):
            abort(400, "bad signature")
        event = json.loads(body)
        with lock:
            if event["id"] in seen:
                return jsonify({"duplicate": True})  # 2xx: we have it, stop retrying
            seen[event["id"]] = event
        handle(event)
        return jsonify({"ok": True})

    @app.get("/seen")
    def handled() -> Any:
        with lock:
            return jsonify(list(seen.values()))

    return app


def handle(event: dict[str, Any]) -> None:
    """The app's own work: start a feed on ``channel.occupied``, index a message …"""
    print(f"webhook {event['type']} {event['id']}", flush=True)


def main() -> None:
    from werkzeug.serving import make_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5004)
    args = parser.parse_args()
    secret = os.environ.get("WEBHOOK_SECRET")
    if not secret:
        raise SystemExit("set WEBHOOK_SECRET (the secret of the endpoint in DIHYA_RT_WEBHOOKS)")
    server = make_server(args.host, args.port, create_app(secret), threaded=True)
    print(f"webhook receiver ready on http://{args.host}:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
