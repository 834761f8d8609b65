"""The event modules, one per feature; importing this package declares every event.

``register_socketio_events(socketio)`` is the seed's entry point: it attaches dihya-realtime
to a ``SocketIO`` the host app already made. Each feature module may define
``setup(rt)`` to attach its service to the :class:`~dihya_realtime.server.Realtime`
(``rt.channels`` …) and its connect/disconnect hooks; modules are discovered, so adding a
feature means adding a file here.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask_socketio import SocketIO

    from dihya_realtime.server import Realtime


def feature_modules() -> list[ModuleType]:
    """Every feature module of this package, core first, in name order after that."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))
    names.sort(key=lambda n: (n != "core", n))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def setup_features(rt: Realtime) -> None:
    for module in feature_modules():
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(rt)


def register_socketio_events(socketio: SocketIO, **settings: Any) -> Realtime:
    """Attach dihya-realtime's authenticated, validated events to an existing ``SocketIO``.

    ``settings`` override ``DIHYA_RT_*`` values. Returns the :class:`Realtime` object.
    """
    from dihya_realtime.server import Realtime

    app = socketio.sockio_mw.flask_app if socketio.sockio_mw is not None else None
    if app is None:
        raise RuntimeError("register_socketio_events needs a SocketIO created with a Flask app")
    return Realtime(app, socketio=socketio, **settings)


feature_modules()  # declare every event at import time: the docs read the registry

__all__ = ["register_socketio_events", "setup_features", "feature_modules"]
