"""``python -m dihya_realtime.testing.serve_app package.module:create_app --port N``.

Serves a host app's factory the way ``dihya-realtime serve`` serves the built-in one: gevent
(patched first), the same WebSocket handler and guards, the same ready line, SIGTERM as a
clean stop. The factory is called with no argument: settings come from ``DIHYA_RT_*``
variables. Its database is migrated first (tests start from an empty SQLite file).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any


def load_factory(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not attr:
        raise SystemExit(f"serve_app: expected 'module:function', got {path!r}")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


def main(argv: list[str] | None = None) -> int:
    from gevent import monkey

    monkey.patch_all()
    import logging
    import signal

    import gevent
    from gevent.pywsgi import WSGIHandler, WSGIServer

    from dihya_realtime.features import migration_branches
    from dihya_realtime.transport.websocket import pywsgi_handler_class

    parser = argparse.ArgumentParser(prog="dihya_realtime.testing.serve_app")
    parser.add_argument("factory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("DIHYA_RT_ASYNC_MODE", "gevent")
    app = load_factory(args.factory)()
    rt = app.extensions.get("dihya_realtime")
    if rt is None:
        raise SystemExit(f"serve_app: {args.factory} returned an app without Realtime")
    rt.db.migrate(migration_branches(rt.settings.features))
    settings = rt.settings
    server = WSGIServer((args.host, args.port), app, log=None,
                        error_log=logging.getLogger("dihya_realtime.wsgi"),
                        handler_class=pywsgi_handler_class(
                            WSGIHandler, header_timeout=settings.http_header_timeout,
                            max_body=settings.max_http_body_bytes,
                            max_polling_body=settings.max_payload_bytes))
    rt.guard.install_upgrade_hook(server)
    server.start()
    host, port = server.address[:2]
    print(f"dihya-realtime ready on http://{host}:{port} (host app {args.factory}, "
          f"pid {os.getpid()})", flush=True)

    def shutdown() -> None:
        server.close()
        for conn in list(rt.connections):
            rt.disconnect_sid(conn.sid)
        server.stop(timeout=2)

    gevent.signal_handler(signal.SIGTERM, shutdown)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
