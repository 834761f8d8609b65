"""The notification tables live in the feature; the migration still creates them as declared."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from dihya_realtime.features.notifications.models import Notification, NotificationPreference
from dihya_realtime.store import Base, Database


def test_the_models_are_on_the_metadata_migrations_describe():
    tables = Base.metadata.tables
    assert tables["notifications"] is Notification.__table__
    assert tables["notification_preferences"] is NotificationPreference.__table__


def test_the_notifications_migration_matches_the_models(database_url):
    db = Database(database_url)
    try:
        db.migrate()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        db.dispose()
    assert [d for d in diff if "notification" in repr(d)] == []
