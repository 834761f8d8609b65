"""dihya-realtime: authenticated, validated, audited realtime features for Flask apps."""

from dihya_realtime.errors import ErrorCode, RealtimeError
from dihya_realtime.principal import Principal

__all__ = ["ErrorCode", "Principal", "RealtimeError"]
__version__ = "0.1.0"
