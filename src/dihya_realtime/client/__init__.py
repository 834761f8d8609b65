"""``from dihya_realtime.client import Client, RealtimeError`` — see docs/python-client.md.

Needs only python-socketio's client and websocket-client (``pip install
'dihya-realtime[client]'``); nothing of the server is imported.
"""

from dihya_realtime.client.client import Client
from dihya_realtime.client.errors import RealtimeError
from dihya_realtime.client.positions import Position
from dihya_realtime.client.subscription import RecoveryFailed, Subscription

__all__ = ["Client", "Position", "RealtimeError", "RecoveryFailed", "Subscription"]
