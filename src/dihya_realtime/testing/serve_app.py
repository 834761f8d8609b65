"""``python -m dihya_realtime.testing.serve_app package.module:create_app --port N``.

Serves a host app's factory the way ``dihya-realtime serve`` serves the built-in one
(:func:`dihya_realtime.serving.serve_forever`: gevent patched first, the same WebSocket
handler and guards, the same ready line, SIGTERM as a clean stop). The factory is called with
no argument: settings come from ``DIHYA_RT_*`` variables. Its database is migrated first
(tests start from an empty SQLite file).
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

    from dihya_realtime.features import migration_branches
    from dihya_realtime.serving import serve_forever

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
    def ready(host: str, port: int) -> None:
        print(f"dihya-realtime ready on http://{host}:{port} (host app {args.factory}, "
              f"pid {os.getpid()})", flush=True)

    return serve_forever(app, rt, args.host, args.port, ready)


if __name__ == "__main__":
    sys.exit(main())
