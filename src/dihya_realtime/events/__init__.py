"""Kept for the documented import ``from dihya_realtime.events import register_socketio_events``.

The code lives in :mod:`dihya_realtime.app` (and the events in ``dihya_realtime.features``).
"""

from dihya_realtime.app import register_socketio_events

__all__ = ["register_socketio_events"]
