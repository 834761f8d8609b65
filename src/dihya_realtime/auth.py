"""Kept for the documented import ``from dihya_realtime.auth import mint_token``.

The code lives in :mod:`dihya_realtime.kernel.auth`.
"""

from dihya_realtime.kernel.auth import mint_token

__all__ = ["mint_token"]
