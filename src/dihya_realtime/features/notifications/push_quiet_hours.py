"""Quiet hours: a user's daily window (their own time zone) with no Web Push.

Notifications are stored and delivered live as always; only the push to closed tabs waits
for nobody: a notification created in quiet hours is not pushed at all (the user sees it in
the inbox), except in a critical category (``DIHYA_RT_NOTIFICATIONS_CRITICAL_CATEGORIES``).
The window may wrap midnight (22:00 → 07:00); ``start == end`` is refused (a window of
nothing or of everything says nothing useful: turn push off per category instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import BaseModel, Field, field_validator

from dihya_realtime.features.notifications.models import PUSH_QUIET_HOURS, chunks, insert_for

if TYPE_CHECKING:
    from dihya_realtime.store import Database

_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class QuietHoursIn(BaseModel):
    start: str = Field(pattern=_HHMM, description="local time HH:MM, e.g. 22:00")
    end: str = Field(pattern=_HHMM, description="local time HH:MM, e.g. 07:00")
    timezone: str = Field(min_length=1, max_length=64, description="IANA, e.g. Europe/Paris")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone") from None
        return value

    @field_validator("end")
    @classmethod
    def _not_empty(cls, value: str, info: Any) -> str:
        if info.data.get("start") == value:
            raise ValueError("end must differ from start")
        return value


def minutes(hhmm: str) -> int:
    hours, mins = hhmm.split(":")
    return int(hours) * 60 + int(mins)


def hhmm(total: int) -> str:
    return f"{total // 60:02d}:{total % 60:02d}"


def in_window(start: int, end: int, now_minute: int) -> bool:
    if start < end:
        return start <= now_minute < end
    return now_minute >= start or now_minute < end  # wraps midnight


class QuietHours:
    """Read and set users' quiet hours; say who is in them now."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.table = PUSH_QUIET_HOURS

    def get(self, user_id: str) -> dict[str, str] | None:
        t = self.table
        with self.db.engine.connect() as conn:
            row = conn.execute(sa.select(t).where(t.c.user_id == user_id)).first()
        if row is None:
            return None
        return {"start": hhmm(row.start_minute), "end": hhmm(row.end_minute),
                "timezone": row.timezone}

    def set_window(self, user_id: str, window: QuietHoursIn | None) -> dict[str, str] | None:
        t = self.table
        with self.db.write_transaction() as conn:
            if window is None:
                conn.execute(t.delete().where(t.c.user_id == user_id))
                return None
            values = {"user_id": user_id, "start_minute": minutes(window.start),
                      "end_minute": minutes(window.end), "timezone": window.timezone,
                      "updated_at": datetime.now(UTC)}
            insert = insert_for(self.db.dialect)(t)
            conn.execute(insert.on_conflict_do_update(
                index_elements=[t.c.user_id],
                set_={k: insert.excluded[k] for k in values if k != "user_id"}), [values])
        return self.get(user_id)

    def quiet_now(self, user_ids: Sequence[str], now: datetime | None = None) -> set[str]:
        """Those of ``user_ids`` whose quiet hours include ``now``."""
        now = now or datetime.now(UTC)
        t = self.table
        quiet: set[str] = set()
        with self.db.engine.connect() as conn:
            for chunk in chunks(list(user_ids)):
                for row in conn.execute(sa.select(t).where(t.c.user_id.in_(chunk))):
                    local = now.astimezone(ZoneInfo(row.timezone))
                    if in_window(row.start_minute, row.end_minute,
                                 local.hour * 60 + local.minute):
                        quiet.add(row.user_id)
        return quiet


__all__ = ["QuietHours", "QuietHoursIn", "in_window"]
