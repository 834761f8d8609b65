"""The built-in features, one package each: service, events (and what else it needs).

A feature package's ``events`` module declares its events when imported and may define
``setup(rt)`` to attach its service to the :class:`~dihya_realtime.realtime.Realtime`
(``rt.channels`` …) and its connect/disconnect hooks. Packages are discovered, so adding a
feature means adding a package here. The kernel never imports this package.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def feature_modules() -> list[ModuleType]:
    """Every feature's events module, session first, in name order after that."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__)
                   if m.ispkg and not m.name.startswith("_"))
    names.sort(key=lambda n: (n != "session", n))
    return [importlib.import_module(f"{__name__}.{name}.events") for name in names]


__all__ = ["feature_modules"]
