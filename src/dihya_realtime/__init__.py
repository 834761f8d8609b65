"""dihya-realtime: authenticated, validated, audited realtime features for Flask apps.

``from dihya_realtime import Realtime, create_app``. Both are loaded on first use: the
``dihya-realtime serve`` command must monkey-patch the standard library for gevent before
Flask-SocketIO (and with it ``threading``) is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.principal import Principal
from dihya_realtime.version import __version__

if TYPE_CHECKING:
    from dihya_realtime.app import create_app
    from dihya_realtime.realtime import Realtime

__all__ = ["ErrorCode", "Principal", "Realtime", "RealtimeError", "__version__", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "Realtime":
        from dihya_realtime.realtime import Realtime

        return Realtime
    if name == "create_app":
        from dihya_realtime.app import create_app

        return create_app
    raise AttributeError(f"module 'dihya_realtime' has no attribute {name!r}")
