"""Storing a chat message: the one path for a member's message and the server's.

Ordering: ``seq`` is allocated by the statement that stores the message, by incrementing
``chat_rooms.last_seq`` (a row lock on PostgreSQL, the database write lock from
``BEGIN IMMEDIATE`` on SQLite). A failed insert rolls the counter back, so ``seq`` is gap-free
and strictly increasing per room, whatever the number of processes.

The hot path of the chat feature (``chat:send``), so it is written in SQLAlchemy Core, in as
few round trips as the rules allow (the ORM's unit of work and identity map were most of a
send's cost). One statement checks the room (and for a member's message: membership, mute,
``reply_to``) *and* takes the next ``seq``; the insert skips a resent ``client_msg_id``; the
mentions are inserted for the members among the candidates; the author's read marker moves.
When a check or the insert finds nothing to do, nothing is stored and :class:`Refused` says
so: the caller finds out why (the duplicate to return, or the error to raise).

A ``system`` message (the server's, through the HTTP API) goes the same way without the
author's checks, idempotency key and read marker.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dihya_realtime.features.chat.common import table
from dihya_realtime.features.chat.models import ChatMember, ChatMention, ChatMessage, ChatRoom

if TYPE_CHECKING:
    from dihya_realtime.store import Database

COLUMNS = ("id", "room_id", "seq", "kind", "author_id", "author_name", "client_msg_id", "text",
           "reply_to", "created_at")
"""The columns a message row gives (``seq`` comes from the room). A ``system`` row gives
``data`` too: JSON, ``null`` included; a user's message has none (SQL ``NULL``)."""


class Refused(Exception):  # noqa: N818 - a signal to the caller, never raised to clients
    """Nothing was stored (and ``seq`` was not taken): no such room, a rule of the author's
    message said no, or its ``client_msg_id`` is stored already."""


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing a message tells its caller, to reply and push without another query."""

    seq: int
    room_name: str
    room_kind: str
    """``room`` or ``dm``."""
    dm_peers: list[str]
    """In a DM, its members but the author (who are notified of the message); else empty."""
    mentioned: list[str]
    """The candidates that are members, in the candidates' order (their mentions stored)."""


def store_message(db: Database, row: dict[str, Any], wanted: list[str]) -> Stored:
    """Store ``row`` (the :data:`COLUMNS` but ``seq``; ``kind`` ``user`` or ``system``) and the
    mentions of the members among ``wanted``; raises :class:`Refused` when nothing was stored.

    PostgreSQL: ONE statement in autocommit (the ``seq`` bump with every check, the insert,
    the mentions, the author's read marker and, in a DM, its peers as data-modifying CTEs). The
    room's row lock is then held inside the server for the statement and its commit only,
    never across a round trip to this (busy) process: with a transaction around it the lock
    waited for the greenlet to be scheduled again to send ``COMMIT``, which capped a room's
    rate and queued its senders. Any error aborts the whole statement, so a concurrent resend
    (a unique violation on the insert, raised as ``IntegrityError``) leaves no gap.
    SQLite: the same steps as separate statements under the write lock of ``BEGIN IMMEDIATE``
    (no network there, and SQLite has no writing CTEs).
    """
    by_user = row["kind"] == "user"
    checks = {"rid": row["room_id"], "uid": row["author_id"], "now": row["created_at"],
              "parent": row["reply_to"]}
    stmts = _statements(db.is_postgres, by_user, row["reply_to"] is not None)
    if db.is_postgres:
        params = {**checks, **{f"v_{k}": v for k, v in row.items()}, "wanted": wanted}
        with db.engine.connect() as conn:
            got = conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                stmts.combined, params).first()
        if got is None:
            raise Refused
        present = set(got.mentioned or ())
        return Stored(got.seq, got.name, got.kind, list(got.dm_peers or ()),
                      [u for u in wanted if u in present])
    with db.write_transaction() as conn:
        got = conn.execute(stmts.bump, checks).first()
        if got is None:
            raise Refused
        seq, room_name, room_kind = got.seq, got.name, got.kind
        if conn.execute(stmts.insert, {**row, "seq": seq}).first() is None:
            raise Refused
        if by_user:
            conn.execute(stmts.read_marker, {**checks, "new_seq": seq})
        dm_peers = list(conn.scalars(stmts.members, checks)) if by_user and room_kind == "dm" \
            else []
        mentioned: list[str] = []
        if wanted:
            present = set(conn.scalars(stmts.mentions, {
                "mid": row["id"], "rid": row["room_id"], "new_seq": seq, "wanted": wanted}))
            mentioned = [u for u in wanted if u in present]
    return Stored(seq, room_name, room_kind, dm_peers, mentioned)


@dataclass(frozen=True, slots=True)
class _Statements:
    """The Core statements of :func:`store_message`, built once (compiled once)."""

    combined: Any  # PostgreSQL: everything in one autocommit statement
    bump: Any  # SQLite: the checks and the next seq
    insert: Any
    read_marker: Any
    members: Any  # SQLite: a DM's members but the author
    mentions: Any  # SQLite: the mentioned members, inserted and returned


@functools.cache
def _statements(postgres: bool, by_user: bool, with_reply: bool) -> _Statements:
    rooms, members, messages, mentions = (table(ChatRoom), table(ChatMember),
                                          table(ChatMessage), table(ChatMention))

    def bp(column: sa.Column, name: str | None = None) -> sa.BindParameter:
        return sa.bindparam(name or column.name, type_=column.type)

    # parameters of the conditions are named apart from every column (``rid``, not
    # ``room_id``): an UPDATE would turn a parameter named like a column into a SET
    room_id = bp(members.c.room_id, "rid")
    author = bp(members.c.user_id, "uid")
    checks = [rooms.c.id == room_id]
    if by_user:
        checks.append(sa.exists().where(
            members.c.room_id == room_id, members.c.user_id == author,
            sa.or_(members.c.muted_until.is_(None), members.c.muted_until <= bp(
                members.c.muted_until, "now"))))
    if with_reply:
        checks.append(sa.exists().where(messages.c.id == bp(messages.c.id, "parent"),
                                        messages.c.room_id == room_id))
    # the row lock that orders every sender of the room, on every process
    bump = (sa.update(rooms).where(*checks).values(last_seq=rooms.c.last_seq + 1)
            .returning(rooms.c.last_seq.label("seq"), rooms.c.name, rooms.c.kind))
    columns = [*COLUMNS] if by_user else [*COLUMNS, "data"]
    dm_peers = sa.select(members.c.user_id).where(members.c.room_id == room_id,
                                                  members.c.user_id != author)
    if postgres:
        if by_user:
            # Autocommit cannot roll back: the bump must not happen for a resend. The NOT
            # EXISTS skips the common one; a concurrent one (invisible to this statement's
            # snapshot) hits the unique key in the plain INSERT below, which aborts it all.
            bump = bump.where(~sa.exists().where(
                messages.c.room_id == room_id, messages.c.author_id == author,
                messages.c.client_msg_id == bp(messages.c.client_msg_id, "v_client_msg_id")))
        # values as v_<column>: the CTEs' UPDATEs must not see parameters named as columns
        bumped = bump.cte("bump")
        inserted = (sa.insert(messages).from_select(columns, sa.select(*[
            bumped.c.seq if c == "seq" else bp(messages.c[c], f"v_{c}") for c in columns]))
            .returning(messages.c.id, messages.c.seq).cte("ins"))
        mention_rows = (sa.insert(mentions).from_select(
            ["message_id", "user_id", "room_id", "seq"],
            sa.select(inserted.c.id, members.c.user_id, room_id, inserted.c.seq)
            .select_from(inserted.join(members, sa.and_(
                members.c.room_id == room_id, members.c.user_id == sa.any_(
                    sa.bindparam("wanted", type_=postgresql.ARRAY(sa.String())))))))
            .returning(mentions.c.user_id).cte("men"))
        combined = sa.select(
            bumped.c.seq, bumped.c.name, bumped.c.kind,
            # only a DM's: a room's members are never read per message (1,000 rows each)
            sa.case((bumped.c.kind == "dm", sa.select(sa.func.array_agg(members.c.user_id))
                     .where(members.c.room_id == room_id, members.c.user_id != author)
                     .scalar_subquery()), else_=sa.null()).label("dm_peers"),
            sa.select(sa.func.array_agg(mention_rows.c.user_id)).scalar_subquery().label(
                "mentioned"),
        )
        if by_user:
            read = (sa.update(members).where(
                members.c.room_id == room_id, members.c.user_id == author,
                members.c.last_read_seq < inserted.c.seq)
                .values(last_read_seq=inserted.c.seq).returning(members.c.user_id).cte("rd"))
            combined = combined.add_cte(read)
        return _Statements(combined, None, None, None, None, None)
    insert = (sqlite.insert(messages)
              .on_conflict_do_nothing(index_elements=["room_id", "author_id", "client_msg_id"])
              .returning(messages.c.seq))
    read_marker = sa.update(members).where(
        members.c.room_id == room_id, members.c.user_id == author,
        members.c.last_read_seq < bp(members.c.last_read_seq, "new_seq")).values(
        last_read_seq=bp(members.c.last_read_seq, "new_seq"))
    mentioned = sa.insert(mentions).from_select(
        ["message_id", "user_id", "room_id", "seq"],
        sa.select(bp(mentions.c.message_id, "mid"), members.c.user_id, room_id,
                  bp(mentions.c.seq, "new_seq")).where(
            members.c.room_id == room_id,
            members.c.user_id.in_(sa.bindparam("wanted", expanding=True)))
    ).returning(mentions.c.user_id)
    return _Statements(None, bump, insert, read_marker, dm_peers, mentioned)


__all__ = ["COLUMNS", "Refused", "Stored", "store_message"]
