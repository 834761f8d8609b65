"""Domain events: what happened, told by the feature it happened in, to whoever listens.

Why a seam in the kernel: features are independent of each other, yet one of them (webhooks)
must hear what the others do (a chat message sent, a notification read, a channel's subscriber
arriving). The feature where it happens calls ``rt.domain_events.emit(type, data)``; a listener
added with :meth:`DomainEvents.listen` hears it, in the emitting thread. With no listener an
emit costs one list check, so a server without webhooks pays nothing. A listener that raises
is logged and never fails what emitted (a sent message stays sent).

:data:`EVENT_TYPES` is the vocabulary a host may ask webhooks for; ``channel.subscribed`` and
``channel.unsubscribed`` are per connection and per process, told so that a listener can derive
the cluster-wide ``channel.occupied`` / ``channel.vacated`` transitions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("dihya_realtime.domain_events")

EVENT_TYPES = (
    "channel.occupied",
    "channel.vacated",
    "presence.joined",
    "presence.left",
    "chat.message_sent",
    "chat.message_edited",
    "chat.message_deleted",
    "notification.read",
)
"""The events a webhook endpoint may ask for (``DIHYA_RT_WEBHOOKS``, ``events``)."""

CHANNEL_SUBSCRIBED = "channel.subscribed"
CHANNEL_UNSUBSCRIBED = "channel.unsubscribed"

Listener = Callable[[str, dict[str, Any]], None]


class DomainEvents:
    """Listeners of the domain events of one ``Realtime``."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def listen(self, fn: Listener) -> Listener:
        """Call ``fn(type, data)`` for every event emitted from now on."""
        self._listeners.append(fn)
        return fn

    @property
    def heard(self) -> bool:
        """Is anyone listening? (An emitter may skip building costly data when not.)"""
        return bool(self._listeners)

    def emit(self, type_: str, data: dict[str, Any]) -> None:
        """Tell every listener; a listener's failure is logged, never raised."""
        for fn in self._listeners:
            try:
                fn(type_, data)
            except Exception:
                log.exception("a listener of %s failed", type_)


__all__ = ["CHANNEL_SUBSCRIBED", "CHANNEL_UNSUBSCRIBED", "EVENT_TYPES", "DomainEvents",
           "Listener"]
