"""Where realtime state lives: offsets, history, presence and fan-out.

``create_broker(None, ...)`` gives the embedded :class:`MemoryBroker` (one process);
a Redis URL gives :class:`RedisBroker` (many processes, workers included). Both honour the
contracts written on :class:`Broker`.
"""

from __future__ import annotations

from typing import Any

from dihya_realtime.broker.base import (
    Broker,
    BrokerUnavailable,
    Handler,
    HistoryChannelsFull,
    Message,
    PresenceEvent,
    Publication,
    RecoveryResult,
    StreamPosition,
)
from dihya_realtime.broker.memory import MemoryBroker

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "Handler",
    "HistoryChannelsFull",
    "MemoryBroker",
    "Message",
    "PresenceEvent",
    "Publication",
    "RecoveryResult",
    "RedisBroker",
    "StreamPosition",
    "create_broker",
]


def create_broker(redis_url: str | None, prefix: str = "dihya", **caps: Any) -> Broker:
    """The broker the settings ask for: Redis when a URL is given, else in-memory.

    ``caps``: ``max_history_channels``, ``max_history_bytes_per_channel``, ``max_history_bytes``,
    ``history_evict_idle`` (see :class:`Broker`; defaults as the settings').
    """
    if redis_url is None:
        return MemoryBroker(**caps)
    from dihya_realtime.broker.redis import RedisBroker

    return RedisBroker(redis_url, prefix, **caps)


def __getattr__(name: str) -> object:
    # RedisBroker is imported lazily so the memory-only path never loads redis-py.
    if name == "RedisBroker":
        from dihya_realtime.broker.redis import RedisBroker

        return RedisBroker
    raise AttributeError(name)
