"""Serving an app with Realtime on gevent's WSGI server: the one way `serve` runs.

Why one module: ``dihya-realtime serve`` and the pytest plugin's host-app runner
(:mod:`dihya_realtime.testing.serve_app`) must run a server the same way - the WebSocket
handler with its guards (header timeout, body caps), the refused-handshake hook, the ready
line, and SIGTERM as a clean stop (stop accepting, disconnect every client so the audit trail
gets their disconnects, then flush) - or a host app's tests would not test what production
runs. The caller patches gevent (``monkey.patch_all()``) before importing this.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


def serve_forever(app: Any, rt: Realtime, host: str, port: int,
                  on_ready: Callable[[str, int], None]) -> int:
    """Serve ``app`` on ``host:port`` until SIGTERM or Ctrl-C; ``on_ready(host, port)`` runs
    once the socket listens (the bound port, if 0 was asked). Returns the exit status."""
    import gevent
    from gevent.pywsgi import WSGIHandler, WSGIServer

    from dihya_realtime.transport.websocket import pywsgi_handler_class

    settings = rt.settings
    server = WSGIServer((host, port), app, log=None,
                        error_log=logging.getLogger("dihya_realtime.wsgi"),
                        handler_class=pywsgi_handler_class(
                            WSGIHandler, header_timeout=settings.http_header_timeout,
                            max_body=settings.max_http_body_bytes,
                            max_polling_body=settings.max_payload_bytes))
    rt.guard.install_upgrade_hook(server)  # a refused WebSocket handshake gets HTTP 429
    server.start()
    bound_host, bound_port = server.address[:2]
    on_ready(bound_host, bound_port)

    def shutdown() -> None:
        # SIGTERM (systemd, Kubernetes, `docker stop`) is a normal stop, not a crash: stop
        # accepting, tell every client (they see a server disconnect, the audit trail gets
        # their disconnect), then leave serve_forever so `rt.close()` flushes the audit rows.
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


__all__ = ["serve_forever"]
