"""Kept for the documented import ``from dihya_realtime.registry import registry, server_event``.

The code lives in :mod:`dihya_realtime.kernel.registry`.
"""

from dihya_realtime.kernel.registry import registry, server_event

__all__ = ["registry", "server_event"]
