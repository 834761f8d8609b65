"""Notifications: a persistent in-app inbox per user, delivered live to every connection.

What Novu's Inbox, Knock or MagicBell give users, served by this backend:

- **Stored first.** :meth:`NotificationService.notify` writes one row per recipient, then
  delivers. A user with no connection open gets nothing live, but the row is there: at the next
  connect the server pushes ``notifications:counts`` and ``notifications:list`` shows it.
- **Every tab follows.** New notifications go to the user's Socket.IO room (every connection,
  every process, through the Redis message queue when there is one). Every state change a
  client makes is pushed to the user's *other* connections as ``notifications:updated`` plus
  fresh ``notifications:counts``, so a second tab's badge follows the first.
- **Only servers create.** Clients read and change their own notifications; creation is the
  Python API (trusted server code) or ``POST /api/v1/notifications`` with an API key.
- **Works from a worker.** A ``Realtime()`` built without a Flask app has no Socket.IO server;
  it stores, then emits through a write-only Socket.IO emitter on the Redis message queue (or
  skips live delivery when there is no Redis: the next connect still shows everything).

Counts: ``unseen`` is what a badge shows (not yet seen, not archived); ``unread`` is what the
inbox bolds (not yet read, not archived). Marking read also marks seen.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast
from urllib.parse import urlsplit

import orjson
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.dialects import postgresql, sqlite

from dihya_realtime.kernel.errors import forbidden, invalid, not_found
from dihya_realtime.kernel.payloads import JsonValue
from dihya_realtime.kernel.pipeline import validation_details
from dihya_realtime.store.models import User, UTCDateTime, upsert_users
from dihya_realtime.store.notifications import Notification, NotificationPreference

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection as SqlConnection

    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.kernel.principal import Principal
    from dihya_realtime.realtime import Realtime
    from dihya_realtime.store import Database

log = logging.getLogger("dihya_realtime.notifications")

MAX_DATA_BYTES = 8 * 1024
MAX_RECIPIENTS = 10_000
MAX_IDS = 100
DEFAULT_CATEGORY = "general"
_CHUNK = 500  # rows per IN (...) / executemany: well under SQLite's and PostgreSQL's limits
CONNECT_BATCH = _CHUNK  # connects handled per transaction by the connect hook
_CATEGORY_RE = r"^[a-z0-9][a-z0-9_.:-]{0,63}$"
_CURSOR_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")

Severity = Literal["info", "success", "warning", "error"]
Status = Literal["unread", "read", "archived", "all"]
State = Literal["read", "unread", "seen", "archived", "unarchived"]
UserId = Annotated[str, Field(min_length=1, max_length=128)]
Category = Annotated[str, Field(pattern=_CATEGORY_RE, description="e.g. mention, billing")]
NotificationId = Annotated[str, Field(min_length=1, max_length=32)]
NOTIFICATIONS = cast(sa.Table, Notification.__table__)
PREFERENCES = cast(sa.Table, NotificationPreference.__table__)
RoleResolver = Callable[[str], Iterable[str]]
"""``resolver(role) -> user ids``: whom ``notify(role=…)`` reaches."""


# -- values on the wire


class NotificationIn(BaseModel):
    """What a server sends to create notifications (Python keyword arguments or HTTP body)."""

    model_config = ConfigDict(extra="forbid")

    user_ids: list[UserId] | None = Field(default=None, min_length=1, max_length=MAX_RECIPIENTS)
    user_id: UserId | None = None
    role: str | None = Field(default=None, min_length=1, max_length=64)
    category: Category = DEFAULT_CATEGORY
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=2000)
    data: dict[str, JsonValue] = Field(default_factory=dict,
                                       description="any JSON object ≤ 8 KB")
    action_url: str | None = Field(default=None, max_length=2048,
                                   description="http(s) URL or a path starting with /")
    severity: Severity = "info"
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("data")
    @classmethod
    def _data_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(orjson.dumps(value))
        except TypeError as exc:
            raise ValueError(f"data must be JSON: {exc}") from None
        if size > MAX_DATA_BYTES:
            raise ValueError(f"data is {size} bytes as JSON; the limit is {MAX_DATA_BYTES}")
        return value

    @field_validator("action_url")
    @classmethod
    def _action_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(c.isspace() or ord(c) < 32 for c in value) or "\\" in value:
            raise ValueError("action_url must not contain spaces, control characters or \\")
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            return value
        # "//evil.example" is a URL on another host, not a relative path.
        if not parts.scheme and not parts.netloc and value.startswith("/") \
                and not value.startswith("//"):
            return value
        raise ValueError("action_url must be an http(s) URL or a path starting with /")


class NotificationOut(BaseModel):
    """One notification as clients see it (the idempotency key stays on the server)."""

    id: str
    user_id: str
    category: str
    title: str
    body: str
    data: dict[str, Any]
    action_url: str | None
    severity: Severity
    created_at: datetime
    seen_at: datetime | None
    read_at: datetime | None
    archived_at: datetime | None


class Counts(BaseModel):
    """The badges: ``unseen`` and ``unread`` among the user's non-archived notifications."""

    unseen: int = Field(ge=0)
    unread: int = Field(ge=0)


class Page(BaseModel):
    items: list[NotificationOut] = Field(description="newest first")
    next_cursor: str | None = Field(
        description="pass as ``before`` for the next page; null on the last page")


class Updated(BaseModel):
    ids: list[str] = Field(description="the notifications whose state changed")
    state: State


class StateChange(Updated):
    counts: Counts


class CategoryPreference(BaseModel):
    category: str
    push: bool = Field(description="live push (``notifications:new``) on or off")
    critical: bool = Field(description="critical categories are always pushed")


class Preferences(BaseModel):
    preferences: list[CategoryPreference] = Field(
        description="the categories the user has notifications in, has set, or that are "
                    "critical; any other category is pushed")
    critical: list[str]


def serialize(row: Any) -> dict[str, Any]:
    """A row of ``notifications`` as its JSON form (ISO 8601 UTC timestamps)."""
    return NotificationOut.model_validate(row, from_attributes=True).model_dump(mode="json")


def encode_cursor(created_at: datetime, id_: str) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{id_}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, id) a cursor points after; ``invalid_payload`` when it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, id_ = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None or not _CURSOR_ID.match(id_):
            raise ValueError(raw)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise invalid("bad cursor: pass the next_cursor of a previous page",
                      [{"field": "before", "message": "not a cursor from notifications:list",
                        "type": "value_error"}]) from None
    return created_at, id_


def _insert_for(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def purge_notifications(db: Database, older_than: float, now: datetime | None = None) -> int:
    """Delete read or archived notifications created more than ``older_than`` seconds ago.

    Unread, unarchived notifications are kept whatever their age: the user has not dealt with
    them yet. Returns how many rows were deleted.
    """
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=older_than)
    table = NOTIFICATIONS
    with db.write_transaction() as conn:
        result = conn.execute(table.delete().where(
            table.c.created_at < cutoff,
            sa.or_(table.c.read_at.is_not(None), table.c.archived_at.is_not(None))))
    return int(result.rowcount or 0)


class NotificationService:
    """Create, list, count and change notifications; deliver them live. ``rt.notifications``."""

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.db = rt.db
        self.table = NOTIFICATIONS
        self.prefs = PREFERENCES
        self.critical = frozenset(rt.settings.notifications_critical_categories)
        self.role_resolver: RoleResolver = self.users_with_role
        self._emitter: Any = None
        self._emitter_lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._connect_queue: list[tuple[str, Principal]] = []
        self._connect_draining = False

    # -- creating (server side only)

    def notify(
        self,
        *,
        user_ids: Sequence[str] | None = None,
        user_id: str | None = None,
        role: str | None = None,
        category: str = DEFAULT_CATEGORY,
        title: str,
        body: str = "",
        data: dict[str, Any] | None = None,
        action_url: str | None = None,
        severity: str = "info",
        idempotency_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """Store a notification for each recipient, then deliver it live; returns them.

        Recipients are ``user_ids``, one ``user_id``, or every user holding ``role`` (through
        :attr:`role_resolver`). With an ``idempotency_key``, a repeat returns the notifications
        the first call created and delivers nothing again. Bad fields raise ``invalid_payload``
        with one detail per field. Example::

            rt.notify(user_ids=["17"], category="builds", title="Build 42 finished",
                      data={"build": 42}, action_url="/builds/42", severity="success")
        """
        fields = {"user_ids": list(user_ids) if user_ids is not None else None,
                  "user_id": user_id, "role": role, "category": category, "title": title,
                  "body": body, "data": {} if data is None else data, "action_url": action_url,
                  "severity": severity, "idempotency_key": idempotency_key}
        request = self.validate({k: v for k, v in fields.items() if v is not None})
        notifications, _created = self.create(request)
        return notifications

    def validate(self, raw: Any) -> NotificationIn:
        """Check a creation request; ``invalid_payload`` names every bad field."""
        try:
            request = NotificationIn.model_validate(raw)
        except ValidationError as exc:
            raise invalid("invalid notification", validation_details(exc)) from None
        given = [n for n in ("user_ids", "user_id", "role") if getattr(request, n) is not None]
        if len(given) != 1:
            raise invalid("give exactly one of user_ids, user_id or role",
                          [{"field": "user_ids", "type": "value_error",
                            "message": "give exactly one of user_ids, user_id or role"}])
        return request

    def recipients(self, request: NotificationIn) -> list[str]:
        if request.role is not None:
            ids = [str(u) for u in self.role_resolver(request.role)]
        else:
            ids = request.user_ids if request.user_ids is not None else [request.user_id or ""]
        return list(dict.fromkeys(ids))  # once each, in the order given

    def create(self, request: NotificationIn) -> tuple[list[dict[str, Any]], int]:
        """Store and deliver a validated request; returns (every notification, how many new)."""
        users = self.recipients(request)
        if not users:
            return [], 0
        now = datetime.now(UTC)
        rows = [{"id": uuid.uuid4().hex, "user_id": u, "category": request.category,
                 "title": request.title, "body": request.body, "data": request.data,
                 "action_url": request.action_url, "severity": request.severity,
                 "created_at": now, "seen_at": None, "read_at": None, "archived_at": None,
                 "idempotency_key": request.idempotency_key} for u in users]
        table = self.table
        with self.db.write_transaction() as conn:
            if request.idempotency_key is None:
                for chunk in _chunks(rows):
                    conn.execute(table.insert(), list(chunk))
                stored = rows
            else:
                insert = _insert_for(self.db.dialect)(table).on_conflict_do_nothing(
                    index_elements=["user_id", "idempotency_key"])
                for chunk in _chunks(rows):
                    conn.execute(insert, list(chunk))
                by_user: dict[str, Any] = {}
                for chunk in _chunks(users):
                    by_user.update((r.user_id, r) for r in conn.execute(
                        sa.select(table).where(table.c.user_id.in_(chunk),
                                               table.c.idempotency_key == request.idempotency_key)))
                stored = [by_user[u] for u in users]
        new_ids = {r["id"] for r in rows}
        out = [serialize(r) for r in stored]
        fresh = [n for n in out if n["id"] in new_ids]
        self.rt.audit.record("notifications_created", outcome="ok", details={
            "category": request.category, "recipients": len(users), "created": len(fresh)})
        if fresh:
            self.deliver(fresh)
        return out, len(fresh)

    def deliver(self, notifications: list[dict[str, Any]]) -> None:
        """Push new notifications (unless muted) and the new counts to their users.

        Delivery failures are logged, never raised: the notifications are stored, and the
        next connect pushes the counts anyway.
        """
        users = list(dict.fromkeys(n["user_id"] for n in notifications))
        try:
            muted = self._muted(users, notifications[0]["category"])
            for n in notifications:
                if n["user_id"] not in muted:
                    self._emit_to_user(n["user_id"], "notifications:new", n)
            for user, counts in self.counts_many(users).items():
                self._emit_to_user(user, "notifications:counts", counts)
        except Exception:
            log.exception("live delivery of %d notifications failed (they are stored)",
                          len(notifications))

    def _muted(self, users: list[str], category: str) -> set[str]:
        if category in self.critical:
            return set()
        prefs = self.prefs
        muted: set[str] = set()
        with self.db.engine.connect() as conn:
            for chunk in _chunks(users):
                muted.update(conn.scalars(sa.select(prefs.c.user_id).where(
                    prefs.c.user_id.in_(chunk), prefs.c.category == category,
                    prefs.c.push.is_(False))))
        return muted

    # -- role targeting

    def users_with_role(self, role: str) -> list[str]:
        """The default :attr:`role_resolver`: users seen at connect whose roles include it.

        Replace it (``rt.notifications.role_resolver = fn``) when the host app knows its users
        better, e.g. users who never connected.
        """
        users = User.__table__
        has_role: Any
        if self.db.is_postgres:
            has_role = sa.cast(users.c.roles, postgresql.JSONB).contains([role])
        else:
            has_role = sa.text("EXISTS (SELECT 1 FROM json_each(users.roles) "
                               "WHERE json_each.value = :role)").bindparams(role=role)
        with self.db.engine.connect() as conn:
            return list(conn.scalars(sa.select(users.c.id).where(has_role).order_by(users.c.id)))

    # -- reading

    def counts(self, user_id: str) -> dict[str, int]:
        return self.counts_many([user_id])[user_id]

    def counts_many(self, user_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """``{user_id: {"unseen": n, "unread": m}}`` for every given user (zeros included)."""
        t = self.table
        result = {u: {"unseen": 0, "unread": 0} for u in user_ids}
        unseen = sa.func.sum(sa.case((t.c.seen_at.is_(None), 1), else_=0))
        unread = sa.func.sum(sa.case((t.c.read_at.is_(None), 1), else_=0))
        with self.db.engine.connect() as conn:
            for chunk in _chunks(list(user_ids)):
                query = sa.select(t.c.user_id, unseen, unread).where(
                    t.c.user_id.in_(chunk), t.c.archived_at.is_(None)).group_by(t.c.user_id)
                for user, n_unseen, n_unread in conn.execute(query):
                    result[user] = {"unseen": int(n_unseen or 0), "unread": int(n_unread or 0)}
        return result

    def page(self, user_id: str, status: Status = "all", category: str | None = None,
             before: str | None = None, limit: int = 20) -> dict[str, Any]:
        """One page of the user's notifications, newest first.

        Keyset pagination on ``(created_at, id)``: a page never repeats or skips an item, even
        when many notifications share a timestamp or new ones arrive between pages.
        """
        t = self.table
        query = sa.select(t).where(t.c.user_id == user_id)
        if status == "archived":
            query = query.where(t.c.archived_at.is_not(None))
        else:
            query = query.where(t.c.archived_at.is_(None))
            if status == "unread":
                query = query.where(t.c.read_at.is_(None))
            elif status == "read":
                query = query.where(t.c.read_at.is_not(None))
        if category is not None:
            query = query.where(t.c.category == category)
        if before is not None:
            at, after_id = decode_cursor(before)
            query = query.where(sa.or_(t.c.created_at < at,
                                       sa.and_(t.c.created_at == at, t.c.id < after_id)))
        query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit + 1)
        with self.db.engine.connect() as conn:
            rows = list(conn.execute(query))
        items = rows[:limit]
        cursor = encode_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
        return {"items": [serialize(r) for r in items], "next_cursor": cursor}

    # -- changing state (only the user's own notifications)

    def mark(self, user_id: str, ids: Sequence[str], state: State) -> list[str]:
        """Move the user's notifications ``ids`` to ``state``; returns the ids that changed.

        All or nothing: if any id is not one of the user's notifications (someone else's, or
        none at all), ``not_found`` and nothing changes.
        """
        t = self.table
        wanted = list(dict.fromkeys(ids))
        with self.db.write_transaction() as conn:
            owned = set(conn.scalars(sa.select(t.c.id).where(
                t.c.user_id == user_id, t.c.id.in_(wanted))))
            missing = [i for i in wanted if i not in owned]
            if missing:
                raise not_found("no such notification", {"ids": missing})
            return self._update(conn, user_id, state, t.c.id.in_(wanted))

    def mark_all(self, user_id: str, state: Literal["read", "seen"],
                 category: str | None = None) -> list[str]:
        """Mark every one of the user's notifications (of ``category``) read or seen."""
        where = [] if category is None else [self.table.c.category == category]
        with self.db.write_transaction() as conn:
            return self._update(conn, user_id, state, *where)

    def _update(self, conn: SqlConnection, user_id: str, state: State,
                *where: Any) -> list[str]:
        t = self.table
        now = datetime.now(UTC)
        changes: dict[str, tuple[Any, dict[str, Any]]] = {
            "read": (t.c.read_at.is_(None),
                     {"read_at": now,
                      "seen_at": sa.func.coalesce(t.c.seen_at, sa.literal(now, UTCDateTime()))}),
            "unread": (t.c.read_at.is_not(None), {"read_at": None}),
            "seen": (t.c.seen_at.is_(None), {"seen_at": now}),
            "archived": (t.c.archived_at.is_(None), {"archived_at": now}),
            "unarchived": (t.c.archived_at.is_not(None), {"archived_at": None}),
        }
        needs_change, values = changes[state]
        stmt = (t.update().where(t.c.user_id == user_id, needs_change, *where)
                .values(**values).returning(t.c.id))
        return sorted(conn.scalars(stmt))

    def changed(self, user_id: str, ids: list[str], state: State,
                skip_sid: str | None = None) -> dict[str, int]:
        """Tell the user's other connections what changed; returns the new counts.

        ``skip_sid`` (the connection that made the change) learns it from its reply instead.
        """
        counts = self.counts(user_id)
        if ids:
            try:
                self._emit_to_user(user_id, "notifications:updated",
                                   {"ids": ids, "state": state}, skip_sid=skip_sid)
                self._emit_to_user(user_id, "notifications:counts", counts, skip_sid=skip_sid)
            except Exception:
                log.exception("pushing a notification state change failed")
        return counts

    # -- preferences

    def preferences(self, user_id: str) -> dict[str, Any]:
        """The user's push setting for every category they have, have set, or is critical."""
        t, p = self.table, self.prefs
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
            p = self.prefs
            insert = _insert_for(self.db.dialect)(p)
            stmt = insert.on_conflict_do_update(
                index_elements=[p.c.user_id, p.c.category],
                set_={"push": insert.excluded.push, "updated_at": insert.excluded.updated_at})
            with self.db.write_transaction() as conn:
                conn.execute(stmt, [{"user_id": user_id, "category": c, "push": on,
                                     "updated_at": now} for c, on in push.items()])
        return self.preferences(user_id)

    # -- connections

    def on_connect(self, conn: Connection) -> None:
        """Connect hook: refresh the users row and push the counts, off the connect path.

        Connects are queued and one background task drains the queue in batches (group
        commit): a burst of N connects costs a few transactions, not 2·N. SQLite's commit
        blocks the whole gevent loop (an fsync), and one per connect was what held the
        connect rate at a fifth of the bare server's. A lone connect is not delayed: the
        drain starts at once and takes whatever has queued meanwhile.
        """
        if conn.principal.anonymous:
            return
        with self._connect_lock:
            self._connect_queue.append((conn.sid, conn.principal))
            if self._connect_draining:
                return
            self._connect_draining = True
        try:
            self.rt.socketio.server.start_background_task(self._drain_connects)
        except BaseException:
            with self._connect_lock:
                self._connect_draining = False
            raise

    def _drain_connects(self) -> None:
        while True:
            with self._connect_lock:
                batch = self._connect_queue[:CONNECT_BATCH]
                del self._connect_queue[:CONNECT_BATCH]
                if not batch:
                    self._connect_draining = False
                    return
            try:
                self.after_connect_many(batch)
            except Exception:  # after_connect_many logs its own; the drain must go on
                log.exception("connect batch failed")

    def after_connect(self, sid: str, principal: Principal) -> None:
        """Refresh one connection's users row and push its counts (see ``after_connect_many``)."""
        self.after_connect_many([(sid, principal)])

    def after_connect_many(self, batch: Sequence[tuple[str, Principal]]) -> None:
        """Upsert the users of these connections in one transaction, then push each its
        notification counts (one query for all)."""
        try:
            with self.db.write_transaction() as conn:
                upsert_users(conn, [(p.user_id, p.name, p.roles) for _, p in batch],
                             datetime.now(UTC))
        except Exception:
            log.exception("could not record users %r", sorted({p.user_id for _, p in batch}))
        try:
            counts = self.counts_many(list(dict.fromkeys(p.user_id for _, p in batch)))
            for sid, principal in batch:
                self.rt.emit("notifications:counts", counts[principal.user_id], to=sid)
        except Exception:
            log.exception("could not push notification counts at connect")

    # -- retention

    def purge(self, older_than: float | None = None) -> int:
        """Delete read or archived notifications older than the retention (or ``older_than``)."""
        age = self.rt.settings.notifications_retention if older_than is None else older_than
        return purge_notifications(self.db, age)

    # -- emitting, with or without a Socket.IO server in this process

    def _emit_to_user(self, user_id: str, event: str, data: Any,
                      skip_sid: str | None = None) -> None:
        rt = self.rt
        if rt.socketio is not None:
            rt.emit_to_user(user_id, event, data, skip_sid=skip_sid)
            return
        emitter = self._worker_emitter()
        if emitter is not None:
            from dihya_realtime.kernel.rooms import user_room

            emitter.emit(event, rt.redact(data, event=event), to=user_room(user_id),
                         namespace="/", skip_sid=skip_sid)

    def _worker_emitter(self) -> Any:
        """A write-only Socket.IO emitter on the Redis message queue, made on first use.

        Only for processes without a Socket.IO server (workers); ``None`` without Redis, in
        which case live delivery is skipped and clients see the notification at next connect.
        """
        settings = self.rt.settings
        if settings.redis_url is None:
            return None
        with self._emitter_lock:
            if self._emitter is None:
                from flask_socketio import SocketIO

                self._emitter = SocketIO(message_queue=settings.redis_url,
                                         channel=f"{settings.redis_prefix}-socketio",
                                         async_mode="threading")
        return self._emitter
