"""What chat needs from other features, declared as interfaces (ports).

Chat tells mentioned users through the notifications feature without importing it: it is given
an object that meets :class:`Notifier` (``Realtime`` does, through ``rt.notify``) or ``None``,
and then mentions are still stored and counted by ``chat:rooms``, only not notified.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Notifier(Protocol):
    """Creates in-app notifications (see ``NotificationService.notify`` for the contract)."""

    def notify(self, *, user_ids: Sequence[str], category: str, title: str, body: str,
               data: dict[str, Any], idempotency_key: str,
               silent_user_ids: Sequence[str] = ()) -> object:
        """Store one notification per user and deliver it live; a repeat of
        ``idempotency_key`` creates nothing. ``silent_user_ids`` get theirs in-app only, never
        pushed to their devices (a room they muted). May raise: chat logs it and carries on."""
        ...


__all__ = ["Notifier"]
