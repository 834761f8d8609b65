"""Per-category push preferences: a user turns live push off for a category, never for a
critical one (``DIHYA_RT_NOTIFICATIONS_CRITICAL_CATEGORIES``).

A muted category is still stored and counted; only ``notifications:new`` is not pushed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dihya_realtime.features.notifications.models import (
    NOTIFICATIONS,
    PREFERENCES,
    chunks,
    insert_for,
)
from dihya_realtime.kernel.errors import forbidden

if TYPE_CHECKING:
    from dihya_realtime.store import Database


class PushPreferences:
    """Read and change who has turned live push off for which category."""

    def __init__(self, db: Database, critical: Iterable[str]) -> None:
        self.db = db
        self.table = PREFERENCES
        self.critical = frozenset(critical)

    def preferences(self, user_id: str) -> dict[str, Any]:
        """The user's push setting for every category they have, have set, or is critical."""
        t, p = NOTIFICATIONS, self.table
        with self.db.engine.connect() as conn:
            stored = {category: bool(push) for category, push in conn.execute(
                sa.select(p.c.category, p.c.push).where(p.c.user_id == user_id))}
            seen = set(conn.scalars(sa.select(t.c.category).where(t.c.user_id == user_id)
                                    .distinct()))
        categories = sorted(set(stored) | seen | self.critical)
        return {"preferences": [{"category": c, "critical": c in self.critical,
                                 "push": c in self.critical or stored.get(c, True)}
                                for c in categories],
                "critical": sorted(self.critical)}

    def set_preferences(self, user_id: str, push: dict[str, bool]) -> dict[str, Any]:
        """Turn live push on or off per category; a critical category cannot be turned off.

        All or nothing: one critical category turned off → ``forbidden`` and nothing changes.
        """
        refused = sorted(c for c, on in push.items() if not on and c in self.critical)
        if refused:
            raise forbidden("critical notifications cannot be turned off",
                            {"categories": refused})
        if push:
            now = datetime.now(UTC)
            p = self.table
            insert = insert_for(self.db.dialect)(p)
            stmt = insert.on_conflict_do_update(
                index_elements=[p.c.user_id, p.c.category],
                set_={"push": insert.excluded.push, "updated_at": insert.excluded.updated_at})
            with self.db.write_transaction() as conn:
                conn.execute(stmt, [{"user_id": user_id, "category": c, "push": on,
                                     "updated_at": now} for c, on in push.items()])
        return self.preferences(user_id)

    def muted(self, users: list[str], category: str) -> set[str]:
        """Those of ``users`` who turned push off for ``category`` (none if it is critical)."""
        if category in self.critical:
            return set()
        prefs = self.table
        muted: set[str] = set()
        with self.db.engine.connect() as conn:
            for chunk in chunks(users):
                muted.update(conn.scalars(sa.select(prefs.c.user_id).where(
                    prefs.c.user_id.in_(chunk), prefs.c.category == category,
                    prefs.c.push.is_(False))))
        return muted
