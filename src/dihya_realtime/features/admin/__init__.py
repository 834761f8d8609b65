"""The admin console's events: connections, channels, the audit trail, metrics (``admin:*``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy holds the events module to the Feature protocol; nothing runs
    from dihya_realtime.features.admin import events
    from dihya_realtime.features.feature import Feature

    _feature: Feature = events
