"""Webhooks: the host app hears channel, presence, chat and notification events over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy holds the events module to the Feature protocol; nothing runs
    from dihya_realtime.features.feature import Feature
    from dihya_realtime.features.webhooks import events

    _feature: Feature = events
