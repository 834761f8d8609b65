"""A channel subscription as the application holds it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dihya_realtime.client.positions import ChannelStream, Position

if TYPE_CHECKING:
    from dihya_realtime.client.client import Client

PublicationHandler = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RecoveryFailed:
    """What ``on_recovery_failed`` receives: publications between ``since`` and ``position``
    may never reach ``on_publication``; re-read the state the channel feeds.

    ``reason``: ``"not_recovered"`` (the server answered ``recovered: false``: a new epoch, or
    history no longer reaches back) or ``"history"`` (a gap could not be read from history).
    """

    channel: str
    since: Position | None
    position: Position | None
    reason: str


RecoveryHandler = Callable[[RecoveryFailed], None]


class Subscription:
    """``ready`` is a :class:`concurrent.futures.Future`: the first subscribe reply's ``data``
    (``sub.ready.result(timeout=5)``), or :class:`RealtimeError` when it was refused."""

    def __init__(self, client: Client, channel: str, on_publication: PublicationHandler,
                 on_recovery_failed: RecoveryHandler | None, since: Position | None) -> None:
        self.client = client
        self.channel = channel
        self.on_publication = on_publication
        self.on_recovery_failed = on_recovery_failed
        self.stream = ChannelStream(since)
        self.ready: Future[dict[str, Any]] = Future()
        self.active = True
        self.closed_reason: str | None = None

    @property
    def position(self) -> Position | None:
        """The last publication delivered (what ``since`` will be after a reconnect)."""
        return self.stream.position

    def unsubscribe(self, timeout: float | None = None) -> None:
        self.client.unsubscribe(self.channel, timeout=timeout)

    def __repr__(self) -> str:
        return f"Subscription({self.channel!r}, position={self.position}, active={self.active})"
