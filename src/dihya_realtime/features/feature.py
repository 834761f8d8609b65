"""The :class:`Feature` protocol: what a feature package's ``events`` module offers the server.

Written down so that mypy holds every feature to it (each package's ``__init__`` assigns its
``events`` module to a :class:`Feature`) and :func:`dihya_realtime.features.setup_features`
calls ``setup`` without guessing. A feature's other modules are its own business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


@runtime_checkable
class Feature(Protocol):
    """A feature's ``events`` module.

    Importing it declares the feature's events (``@event``, ``server_event``) on the default
    registry. ``setup(rt)`` runs once per :class:`~dihya_realtime.realtime.Realtime` that runs
    the feature (never for one left off by ``DIHYA_RT_FEATURES``): it builds the service
    (``rt.chat`` …), attaches the connect / refresh / disconnect hooks, registers control
    actions and adds the HTTP routes (``http.register_routes``). A feature with nothing to
    attach still defines it, documented as doing nothing.
    """

    def setup(self, rt: Realtime) -> None:
        """Attach the feature to ``rt``."""


__all__ = ["Feature"]
