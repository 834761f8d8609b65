"""The session events every connection has: who am I, refreshing the token."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # mypy holds the events module to the Feature protocol; nothing runs
    from dihya_realtime.features.feature import Feature
    from dihya_realtime.features.session import events

    _feature: Feature = events
