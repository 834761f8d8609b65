"""CORS headers for Socket.IO long-polling responses, for allowed origins only.

engine.io's own CORS handling is off so that a disallowed Origin gets a Socket.IO
``connect_error`` naming the reason; this WSGI middleware puts back what a cross-origin
browser client needs, on the Socket.IO path only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dihya_realtime.kernel.auth import origin_listed
from dihya_realtime.kernel.settings import Settings


class CorsForAllowedOrigins:
    """CORS headers on Socket.IO long-polling responses, for allowed origins only.

    engine.io's own CORS handling is off (see :meth:`Realtime.socketio_options`) so that a
    disallowed Origin gets a Socket.IO ``connect_error`` naming the reason rather than a bare
    HTTP 400; this puts back the headers a cross-origin browser client needs — on the
    Socket.IO path only (the host app's other routes keep their own CORS policy), and with
    credentials only for a listed origin, never for one admitted by ``*``.
    """

    def __init__(self, wsgi_app: Callable, settings: Settings,
                 path: str = "/socket.io/") -> None:
        self.wsgi_app = wsgi_app
        self.settings = settings
        self.path = path

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        origin = environ.get("HTTP_ORIGIN")
        if not origin or not environ.get("PATH_INFO", "").startswith(self.path):
            return self.wsgi_app(environ, start_response)
        listed = origin_listed(self.settings, environ, origin)
        if not listed and "*" not in self.settings.allowed_origins:
            return self.wsgi_app(environ, start_response)
        extra = [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        if listed:
            extra.append(("Access-Control-Allow-Credentials", "true"))

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            if "access-control-allow-origin" not in {h[0].lower() for h in headers}:
                headers = [*headers, *extra]
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)
