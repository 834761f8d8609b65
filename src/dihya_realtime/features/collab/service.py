"""Collaborative documents: Yjs CRDTs held by the server with pycrdt, synced over Socket.IO.

Why the design looks like this:

- **SQL is the source of truth.** Every accepted update is appended to ``doc_updates`` (with
  the next ``seq`` of its document) before the client's ack, so no acknowledged edit is lost
  when every process restarts. Compaction folds updates into ``doc_snapshots`` with
  :func:`pycrdt.merge_updates` (lossless: it keeps updates whose dependencies have not arrived
  yet, which ``Doc.get_update`` would drop).
- **The in-memory ``Doc`` of a process is a cache that catches up from SQL.** A process keeps
  one pycrdt ``Doc`` per document that has local participants. Updates accepted on this
  process are applied to it at once; updates accepted on *other* processes are relayed to
  the clients through the Socket.IO message queue, and the cache picks them up from SQL
  (``seq`` greater than the last one it applied) whenever its state is about to be used: a
  join, a sync step 1, a ``read``. Because ``seq`` is handed out under the document's row lock,
  a reader that sees ``seq`` n has seen every smaller one, so "greater than the last applied"
  has no gaps. No extra broker subscription, no ordering problem: Yjs updates commute and
  applying one twice is harmless.
- **Join enters the Socket.IO room before reading the state**, so an update committed during
  the join reaches the client either in the state or as a relayed ``doc:update`` (maybe
  both; harmless).
- **An update is checked against the document's current state before anything is stored**,
  in a worker process (:mod:`dihya_realtime.features.collab.worker`) within a budget of
  structs, client
  ids, CPU time and resulting size: pycrdt holds the GIL, and an update that is cheap against
  an empty document can take seconds to merge into a real one. What the event loop then
  pays to apply it to its cache is bounded by that CPU budget. An update that changes
  nothing (a reader's sync answer, however its delete set is encoded) is not stored.
- **A stored update that will not apply is quarantined**, not retried forever: the cache
  loads the log merged into one update (fast, whatever the history); if that fails, a
  worker finds the culprits, which move to ``doc_quarantine`` (audited ``doc_quarantine``)
  and the document opens without them. Compaction checks the same way before it merges.
- **Access is explicit**: a document's creator edits it; others need a grant (to a user or
  a role, ``read`` or ``edit``) from the creator or a holder of ``doc:admin``, by
  ``doc:grant`` / ``doc:revoke`` or ``PUT /api/v1/docs/<id>/access``. Role permissions
  (``doc:read`` / ``doc:edit``) stay a ceiling. A host app that sets
  :attr:`DocService.access_check` decides instead of the grants.
- **Awareness is ephemeral**: kept in memory per participant, relayed with the user identity
  and a ``client_id`` chosen by the server (a client cannot pose as another user or overwrite
  another participant's cursor), cleared (``state: null``) on leave and disconnect.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from pycrdt import Doc, Text, YMessageType, YSyncMessageType, create_sync_message, merge_updates
from sqlalchemy.exc import IntegrityError

from dihya_realtime.features.collab import worker as doc_worker
from dihya_realtime.kernel.errors import (
    ErrorCode,
    RealtimeError,
    conflict,
    forbidden,
    invalid,
    not_found,
)
from dihya_realtime.kernel.principal import Principal
from dihya_realtime.kernel.settings import HistoryPolicy
from dihya_realtime.store.collab import (
    DocGrant,
    DocQuarantine,
    DocRecord,
    DocSnapshot,
    DocUpdate,
)

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.collab")

DOC_ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
EMPTY_UPDATE = b"\x00\x00"
"""The Yjs update that changes nothing (what a client with nothing new sends as sync step 2)."""

Access = Literal["edit", "read"]
AccessCheck = Callable[[Principal, str], "Access | None"]
"""``fn(principal, doc_id) -> "edit" | "read" | None``: the host app's per-document rule."""

AWARENESS_CONTROL = "__control:doc_awareness"
"""Broker channel asking every process to send its participants' awareness to a joiner."""
_CONTROL_HISTORY = HistoryPolicy(size=0, ttl=60)

_docs: sa.Table = DocRecord.__table__  # type: ignore[assignment]
_updates: sa.Table = DocUpdate.__table__  # type: ignore[assignment]
_snapshots: sa.Table = DocSnapshot.__table__  # type: ignore[assignment]
_grants: sa.Table = DocGrant.__table__  # type: ignore[assignment]
_quarantine: sa.Table = DocQuarantine.__table__  # type: ignore[assignment]
_RANK: dict[str | None, int] = {None: 0, "read": 1, "edit": 2}
ACCESS_CONTROL_ACTION = "doc_access"


def room_of(doc_id: str) -> str:
    """The Socket.IO room of a document's participants (on every process)."""
    return f"doc:{doc_id}"


def check_doc_id(doc_id: str) -> str:
    if not isinstance(doc_id, str) or not DOC_ID_RE.fullmatch(doc_id):
        raise invalid("doc_id must match [A-Za-z0-9_.:@-]{1,128}",
                      [{"field": "doc_id", "message": "bad document id"}])
    return doc_id


def _apply(doc: Doc, update: bytes) -> bool:
    """Apply ``update``; ``False`` (``doc`` unchanged) if it does not apply."""
    try:
        doc.apply_update(update)
    except Exception:
        return False
    except BaseException as exc:  # a Rust panic surfaces as pyo3's PanicException
        if type(exc).__name__ != "PanicException":
            raise
        return False
    return True


def _read_var_uint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varuint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def parse_sync_message(message: bytes) -> tuple[YSyncMessageType, bytes]:
    """Split a y-protocols sync message (``[0, type, varuint len, payload]``).

    Raises ``invalid_payload`` on anything else, including an awareness message (type 1).
    """
    try:
        if len(message) < 3 or message[0] != YMessageType.SYNC:
            raise ValueError("not a y-protocols sync message")
        kind = YSyncMessageType(message[1])
        length, pos = _read_var_uint(message, 2)
        if pos + length != len(message):
            raise ValueError("length does not match the payload")
        return kind, message[pos:]
    except ValueError as exc:
        raise invalid(f"malformed sync message: {exc}", [{"field": "message"}]) from None


def sync_step2_message(update: bytes) -> bytes:
    """A y-protocols sync step 2 message carrying ``update``."""
    return bytes([YMessageType.SYNC, YSyncMessageType.SYNC_STEP2]) + var_uint(len(update)) \
        + update


def var_uint(num: int) -> bytes:
    """``num`` as lib0's variable-length unsigned integer (the Yjs and y-protocols framing)."""
    out = bytearray()
    while num > 127:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    out.append(num)
    return bytes(out)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True, eq=False)
class Participant:
    """One connection taking part in one document on this process."""

    sid: str
    user: dict[str, Any]  # {"user_id", "name"}: what others see, stamped by the server
    mode: Access
    client_id: int  # the awareness key, chosen by the server (uint32, as in y-protocols)
    state: dict[str, Any] | None = None

    def awareness(self, doc_id: str) -> dict[str, Any]:
        return {"doc_id": doc_id, "client_id": self.client_id, "user": self.user,
                "state": self.state}


@dataclass(eq=False)
class _Turn:
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0


@dataclass(eq=False)
class DocRoom:
    """A document open on this process: its pycrdt ``Doc`` (a cache of SQL) and participants."""

    doc_id: str
    doc: Doc = field(default_factory=Doc)
    seq: int = 0  # the highest seq applied to ``doc`` with every smaller one applied too
    lock: threading.RLock = field(default_factory=threading.RLock)
    participants: dict[str, Participant] = field(default_factory=dict)


class DocService:
    """``rt.docs``: create, read, join, edit and compact collaborative documents.

    Set :attr:`access_check` to narrow access per document, e.g. to a project's members::

        def only_members(principal, doc_id):
            project = doc_id.split(":", 1)[0]
            if principal.user_id in members(project):
                return "edit"
            return "read" if is_public(project) else None

        rt.docs.access_check = only_members
    """

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.access_check: AccessCheck | None = None
        self.node_id = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._rooms: dict[str, DocRoom] = {}
        self._joined: dict[str, set[str]] = {}  # sid → doc ids
        self._dirty: dict[str, float] = {}  # doc id → monotonic time of its last local update
        self._sweeping = False
        self._checking: dict[str, _Turn] = {}  # user id → its turn at the doc workers

    # -- server-side API ------------------------------------------------------------------

    def create(self, doc_id: str, text: str | None = None, *, root: str = "text",
               created_by: str | None = None) -> dict[str, Any]:
        """Create a document, optionally with ``text`` in its ``Text`` root ``root``.

        Raises ``conflict`` if it exists. Returns :meth:`read` of the new document.
        """
        check_doc_id(doc_id)
        if not self._insert(doc_id, created_by):
            raise conflict(f"document {doc_id!r} already exists", {"doc_id": doc_id})
        if text:
            doc: Doc = Doc()
            doc[root] = Text(text)
            self._append(doc_id, doc.get_update(), created_by)
        self.rt.audit.record("doc_create", user_id=created_by, outcome="ok",
                             details={"doc_id": doc_id, "size": len(text or "")})
        return self.read(doc_id, roots={root: "text"})

    def exists(self, doc_id: str) -> bool:
        with self.rt.db.session() as s:
            return s.execute(sa.select(_docs.c.id).where(_docs.c.id == doc_id)).first() \
                is not None

    def read(self, doc_id: str, roots: dict[str, str] | None = None) -> dict[str, Any]:
        """The document as JSON: ``{"doc_id", "seq", "content": {root: value}, "text"}``.

        Yjs updates do not say which type a root is (a client decides when it calls
        ``getText`` / ``getMap``), so ``roots`` names them: ``{"text": "text",
        "meta": "map"}`` (kinds: text, map, array, xml). The default reads the ``Text`` root
        ``text``; ``text`` in the result is that root's plain text (or ``None``).
        """
        check_doc_id(doc_id)
        roots = roots or {"text": "text"}
        state, seq = self.state(doc_id)
        content: dict[str, Any] = {}
        for name, kind in roots.items():
            scratch: Doc = Doc()  # a fresh copy per root: naming a root's type must not leak
            scratch.apply_update(state)
            content[name] = _root_value(scratch, name, kind)
        text = content.get("text") if roots.get("text") == "text" else None
        return {"doc_id": doc_id, "seq": seq, "content": content, "text": text}

    def state(self, doc_id: str) -> tuple[bytes, int]:
        """The full Yjs state of a document as one update, and the last ``seq`` it holds."""
        with self._lock:
            room = self._rooms.get(doc_id)
        if room is not None:
            with room.lock:
                self._catch_up(room)
                return room.doc.get_update(), room.seq
        if not self.exists(doc_id):
            raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
        room = DocRoom(doc_id)
        self._catch_up(room)
        return room.doc.get_update(), room.seq

    # -- access -----------------------------------------------------------------------------

    def access(self, conn: Connection, doc_id: str) -> Access:
        """``edit`` or ``read`` for this connection on this document, else ``forbidden``.

        The roles' ``doc:edit`` / ``doc:read`` are the ceiling; under it, the host app's
        :attr:`access_check` if set, else :meth:`granted` (creator, ``doc:admin``, grants).
        """
        ceiling: Access | None = "edit" if conn.can("doc:edit") else \
            "read" if conn.can("doc:read") else None
        mode: Access | None = None
        if ceiling is not None:
            if self.access_check is not None:
                mode = self.access_check(conn.principal, doc_id)
            elif conn.can("doc:admin"):
                mode = "edit"
            else:
                mode = self.granted(conn.principal, doc_id)
        if mode is None or ceiling is None:
            raise forbidden(f"no access to document {doc_id!r}", {"doc_id": doc_id})
        return mode if _RANK[mode] <= _RANK[ceiling] else ceiling

    def granted(self, principal: Principal, doc_id: str) -> Access | None:
        """What the grants give ``principal``: ``edit`` for the creator, else the widest
        grant to the user or to one of its roles, else ``None``."""
        user_id = principal.user_id
        with self.rt.db.session() as s:
            creator = s.execute(sa.select(_docs.c.created_by).where(_docs.c.id == doc_id)
                                ).first()
            if creator is not None and creator.created_by == user_id:
                return "edit"
            modes = s.execute(sa.select(_grants.c.mode).where(
                _grants.c.doc_id == doc_id,
                sa.or_(sa.and_(_grants.c.kind == "user", _grants.c.subject == user_id),
                       sa.and_(_grants.c.kind == "role",
                               _grants.c.subject.in_(list(principal.roles)))))).scalars()
            best = max(modes, key=lambda m: _RANK.get(m, 0), default=None)
        return best if best in ("read", "edit") else None  # type: ignore[return-value]

    def grants(self, doc_id: str) -> dict[str, Any]:
        """``{"doc_id", "created_by", "grants": [{"user_id" | "role", "mode"}]}``."""
        with self.rt.db.session() as s:
            row = s.execute(sa.select(_docs.c.created_by).where(_docs.c.id == doc_id)).first()
            if row is None:
                raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
            rows = s.execute(sa.select(_grants.c.kind, _grants.c.subject, _grants.c.mode)
                             .where(_grants.c.doc_id == doc_id)
                             .order_by(_grants.c.kind, _grants.c.subject)).all()
        return {"doc_id": doc_id, "created_by": row.created_by,
                "grants": [{("user_id" if r.kind == "user" else "role"): r.subject,
                            "mode": r.mode} for r in rows]}

    def may_manage(self, principal: Principal, can_admin: bool, doc_id: str) -> bool:
        """Whether ``principal`` may change who has access: the creator or ``doc:admin``."""
        if can_admin:
            return True
        with self.rt.db.session() as s:
            row = s.execute(sa.select(_docs.c.created_by).where(_docs.c.id == doc_id)).first()
        if row is None:
            raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
        return row.created_by is not None and row.created_by == principal.user_id

    def set_grants(self, doc_id: str, changes: Sequence[tuple[str, str, Any]],
                   *, by: str | None, replace: bool = False) -> dict[str, Any]:
        """Apply ``(kind, subject, mode)`` changes (``mode`` ``None`` revokes); ``replace``
        drops every other grant first. Audited as ``doc_access``; participants that lost
        access are closed (on every process). Returns :meth:`grants`."""
        check_doc_id(doc_id)
        now = _now()
        with self.rt.db.write_transaction() as c:
            if c.execute(sa.select(_docs.c.id).where(_docs.c.id == doc_id)).first() is None:
                raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
            if replace:
                c.execute(sa.delete(_grants).where(_grants.c.doc_id == doc_id))
            for kind, subject, mode in changes:
                c.execute(sa.delete(_grants).where(_grants.c.doc_id == doc_id,
                                                   _grants.c.kind == kind,
                                                   _grants.c.subject == subject))
                if mode is not None:
                    c.execute(sa.insert(_grants).values(
                        doc_id=doc_id, kind=kind, subject=subject, mode=mode, granted_by=by,
                        created_at=now))
        self.rt.audit.record("doc_access", user_id=by, outcome="ok", details={
            "doc_id": doc_id, "replace": replace,
            "changes": [{"kind": k, "subject": sub, "mode": m} for k, sub, m in changes]})
        self.recheck_participants(doc_id)
        if self.settings.redis_url:
            try:
                self.rt.broker.publish(AWARENESS_CONTROL, {
                    "action": ACCESS_CONTROL_ACTION, "doc_id": doc_id, "node": self.node_id},
                    history=_CONTROL_HISTORY)
            except RealtimeError:
                log.warning("could not tell the other processes that access to %s changed",
                            doc_id)
        return self.grants(doc_id)

    def recheck_participants(self, doc_id: str) -> None:
        """Check every local participant of ``doc_id`` again (after its grants changed)."""
        with self._lock:
            room = self._rooms.get(doc_id)
            sids = list(room.participants) if room else []
        for sid in sids:
            conn = self.rt.connections.get(sid)
            if conn is None:
                continue
            try:
                mode = self.access(conn, doc_id)
            except RealtimeError as exc:
                reason = "forbidden" if exc.code is ErrorCode.FORBIDDEN else "unavailable"
                self.close(conn, doc_id, reason)
                continue
            with self._lock:
                participant = room.participants.get(sid) if room else None
                if participant is not None:
                    participant.mode = mode

    # -- participation (called by the event handlers) -----------------------------------------

    def join(self, conn: Connection, doc_id: str, client_step1: bytes | None = None
             ) -> dict[str, Any]:
        state_vector = None
        if client_step1 is not None:
            kind, state_vector = parse_sync_message(client_step1)
            if kind is not YSyncMessageType.SYNC_STEP1:
                raise invalid("sync_step1 must be a sync step 1 message",
                              [{"field": "sync_step1"}])
        if not self.exists(doc_id):
            # whoever may edit some document may create one by joining it, and owns it
            if not (self.settings.docs_create_on_join and conn.can("doc:edit")):
                raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
            if self._insert(doc_id, conn.user_id):
                self.rt.audit.record("doc_create", outcome="ok", event="doc:join",
                                     details={"doc_id": doc_id, "size": 0},
                                     **conn.audit_fields())
        mode = self.access(conn, doc_id)
        # Enter the room first: an update committed from now on is relayed to this client.
        self.rt.socketio.server.enter_room(conn.sid, room_of(doc_id), namespace="/")
        p = conn.principal
        with self._lock:
            room = self._rooms.get(doc_id)
            if room is None:
                room = self._rooms[doc_id] = DocRoom(doc_id)
            old = room.participants.get(conn.sid)
            participant = Participant(
                sid=conn.sid, user={"user_id": p.user_id, "name": p.display_name},
                mode=mode, client_id=old.client_id if old else secrets.randbits(32),
                state=old.state if old else None)
            room.participants[conn.sid] = participant
            self._joined.setdefault(conn.sid, set()).add(doc_id)
            others = [o.awareness(doc_id) for o in room.participants.values()
                      if o.sid != conn.sid and o.state is not None]
        with room.lock:
            self._catch_up(room)
            step1 = create_sync_message(room.doc)
            try:
                diff = room.doc.get_update(state_vector) if state_vector is not None \
                    else room.doc.get_update()
            except ValueError:
                raise invalid("malformed state vector in sync_step1",
                              [{"field": "sync_step1"}]) from None
            seq = room.seq
        if self.rt.connections.get(conn.sid) is not conn:
            # closed while the state was read: the disconnect hook has run, undo the join
            self.leave(conn, doc_id, reason="disconnect")
            raise RealtimeError(ErrorCode.UNAVAILABLE, "the connection closed")
        return {"doc_id": doc_id, "read_only": mode == "read", "client_id":
                participant.client_id, "seq": seq, "sync_step1": step1,
                "sync_step2": sync_step2_message(diff), "awareness": others}

    def ask_peers_for_awareness(self, conn: Connection, doc_id: str) -> None:
        """Ask the other processes to send their participants' awareness to this joiner."""
        if not self.settings.redis_url:
            return  # one process: the join reply already carried every state
        try:
            self.rt.broker.publish(AWARENESS_CONTROL, {
                "action": "doc_awareness", "doc_id": doc_id, "sid": conn.sid,
                "node": self.node_id}, history=_CONTROL_HISTORY)
        except RealtimeError:
            log.warning("could not ask peers for the awareness of %s", doc_id)

    def on_broker_message(self, message: Any) -> None:
        if getattr(message, "channel", None) != AWARENESS_CONTROL:
            return
        data = message.data
        if data.get("node") == self.node_id:
            return
        if data.get("action") == ACCESS_CONTROL_ACTION:
            self.rt.socketio.start_background_task(self.recheck_participants,
                                                   str(data.get("doc_id")))
            return
        doc_id, sid = str(data.get("doc_id")), str(data.get("sid"))
        with self._lock:
            room = self._rooms.get(doc_id)
            states = [p.awareness(doc_id) for p in room.participants.values()
                      if p.state is not None] if room else []
        for wire in states:
            self.rt.emit("doc:awareness", wire, to=sid)

    def leave(self, conn: Connection, doc_id: str, reason: str = "leave") -> bool:
        """Leave a document: others see this participant's awareness cleared.

        ``reason`` (audited): ``leave`` (the client asked), ``disconnect``, or why the server
        closed it (:meth:`close`).
        """
        with self._lock:
            room = self._rooms.get(doc_id)
            participant = room.participants.pop(conn.sid, None) if room else None
            joined = self._joined.get(conn.sid)
            if joined is not None:
                joined.discard(doc_id)
                if not joined:
                    del self._joined[conn.sid]
            if room is not None and not room.participants:
                del self._rooms[doc_id]
        if participant is None:
            return False
        if reason != "disconnect":  # a closed connection has left every room already
            self.rt.socketio.server.leave_room(conn.sid, room_of(doc_id), namespace="/")
        self.rt.emit("doc:awareness", {**participant.awareness(doc_id), "state": None},
                     to=room_of(doc_id), skip_sid=conn.sid)
        self.rt.audit.record("doc_leave", event="doc:leave", outcome="ok",
                             details={"doc_id": doc_id, "reason": reason},
                             **conn.audit_fields())
        return True

    def close(self, conn: Connection, doc_id: str, reason: str) -> bool:
        """Make ``conn`` leave ``doc_id`` on the server's decision and tell it ``doc:closed``.

        Same as ``doc:leave`` for the others (its awareness is cleared); the client learns
        that its copy no longer syncs, and why.
        """
        if not self.leave(conn, doc_id, reason=reason):
            return False
        self.rt.emit("doc:closed", {"doc_id": doc_id, "reason": reason}, to=conn.sid,
                     local=True)
        return True

    def close_unreadable(self, conn: Connection) -> list[tuple[str, str]]:
        """Close every document ``conn`` may no longer read; returns ``(doc_id, reason)``.

        Access is checked at join; when the connection's principal changes (``auth:refresh``
        with fewer roles) this checks every joined document again with :meth:`access` (roles,
        then :attr:`access_check`), so a user who lost a document stops receiving its updates
        and cursors at once rather than at reconnect. A check that cannot be made (the host
        callback fails) closes the document too, with reason ``unavailable``: access that
        cannot be confirmed is not kept; a refused one gives ``forbidden``. A participant
        that keeps access takes the mode of the new check, so an editor narrowed to
        ``read`` has its updates refused from now on.
        """
        with self._lock:
            doc_ids = sorted(self._joined.get(conn.sid, ()))
        closed: list[tuple[str, str]] = []
        for doc_id in doc_ids:
            try:
                mode = self.access(conn, doc_id)
            except RealtimeError as exc:
                reason = "forbidden" if exc.code is ErrorCode.FORBIDDEN else "unavailable"
            except Exception:
                log.exception("could not check access to document %s again", doc_id)
                reason = "unavailable"
            else:
                with self._lock:
                    room = self._rooms.get(doc_id)
                    participant = room.participants.get(conn.sid) if room else None
                    if participant is not None:
                        participant.mode = mode
                continue
            if self.close(conn, doc_id, reason):
                closed.append((doc_id, reason))
        return closed

    def drop_connection(self, conn: Connection) -> None:
        with self._lock:
            doc_ids = list(self._joined.get(conn.sid, ()))
        for doc_id in doc_ids:
            self.leave(conn, doc_id, reason="disconnect")

    def participant(self, conn: Connection, doc_id: str) -> Participant:
        return self._joined_room(conn, doc_id)[1]

    def _joined_room(self, conn: Connection, doc_id: str) -> tuple[DocRoom, Participant]:
        """The open document and this connection's place in it, or ``conflict``."""
        with self._lock:
            room = self._rooms.get(doc_id)
            participant = room.participants.get(conn.sid) if room else None
        if room is None or participant is None:
            raise conflict(f"join document {doc_id!r} first (doc:join)", {"doc_id": doc_id})
        return room, participant

    def update(self, conn: Connection, doc_id: str, update: bytes, *,
               noop_from_reader: bool = False) -> int:
        """Check, store, apply and relay one Yjs update; returns the document's ``seq``.

        The update is checked against the document's current state in a worker process
        (:meth:`check`); nothing is stored or relayed unless it passes, and one that changes
        nothing is not stored. ``noop_from_reader``: a read-only participant may send an
        update that changes nothing (its sync answer). The ack follows the commit.
        """
        room, participant = self._joined_room(conn, doc_id)
        if participant.mode != "edit" and not noop_from_reader:
            raise forbidden(f"read-only access to document {doc_id!r}", {"doc_id": doc_id})
        if len(update) > self.settings.max_payload_bytes:
            raise RealtimeError(ErrorCode.PAYLOAD_TOO_LARGE, "the update is too large",
                                {"max_bytes": self.settings.max_payload_bytes})
        if update == EMPTY_UPDATE:
            return room.seq
        verdict = self.check(conn, room, update)
        if not verdict.changes:
            return room.seq
        if participant.mode != "edit":
            raise forbidden(f"read-only access to document {doc_id!r}", {"doc_id": doc_id})
        seq = self._append(doc_id, update, conn.user_id)
        with room.lock:
            if not _apply(room.doc, update):  # checked above; never block the write path
                log.error("could not apply stored update %s#%d to the cache", doc_id, seq)
            if room.seq == seq - 1:
                room.seq = seq
        self.rt.emit("doc:update", {"doc_id": doc_id, "update": update, "seq": seq},
                     to=room_of(doc_id), skip_sid=conn.sid)
        self._after_append(doc_id, seq)
        return seq

    def sync(self, conn: Connection, doc_id: str, message: bytes) -> dict[str, Any]:
        """Handle a y-protocols sync message: step 1 → our step 2; step 2 / update → stored."""
        kind, payload = parse_sync_message(message)
        if kind is YSyncMessageType.SYNC_STEP1:
            room, _ = self._joined_room(conn, doc_id)
            with room.lock:
                self._catch_up(room)
                try:
                    diff = room.doc.get_update(payload)
                except ValueError:
                    raise invalid("malformed state vector", [{"field": "message"}]) from None
                return {"doc_id": doc_id, "message": sync_step2_message(diff), "seq": room.seq}
        # a step 2 or an update: one that changes nothing is fine from a reader too (judged
        # by content: a reader's answer carries its delete set, encoded its own way)
        seq = self.update(conn, doc_id, payload, noop_from_reader=True)
        return {"doc_id": doc_id, "message": None, "seq": seq}

    def check(self, conn: Connection, room: DocRoom, update: bytes) -> doc_worker.Verdict:
        """Apply ``update`` to a copy of the document's current state in a worker process,
        within the ``DIHYA_RT_DOC_*`` budget; a refusal is audited (``doc_update_refused``)
        and raised (``payload_too_large`` over a cap, ``invalid_payload`` if it does not
        apply)."""
        with self._lock:  # one check at a time per user: nobody can hold every worker
            turn = self._checking.get(conn.user_id)
            if turn is None:
                turn = self._checking[conn.user_id] = _Turn()
            turn.waiting += 1
        try:
            with turn.lock:
                return self._check(conn, room, update)
        finally:
            with self._lock:
                turn.waiting -= 1
                if not turn.waiting:
                    del self._checking[conn.user_id]

    def _check(self, conn: Connection, room: DocRoom, update: bytes) -> doc_worker.Verdict:
        with room.lock:
            self._catch_up(room)
            state = room.doc.get_update()
        s = self.settings
        budget = doc_worker.Budget(max_structs=s.doc_update_max_structs,
                                   max_clients=s.doc_update_max_clients,
                                   max_doc_bytes=s.doc_max_bytes,
                                   cpu_seconds=s.doc_update_cpu_seconds)
        try:
            return self._workers().check(state, update, budget)
        except RealtimeError as exc:
            if exc.code is not ErrorCode.UNAVAILABLE:
                self.rt.audit.record("doc_update_refused", outcome="refused", details={
                    "doc_id": room.doc_id, "code": exc.code.value, "size": len(update),
                    "limit": (exc.details or {}).get("limit")}, **conn.audit_fields())
            raise

    def _workers(self) -> doc_worker.DocWorkers:
        s = self.settings
        return doc_worker.pool(s.doc_workers, s.doc_worker_timeout,
                               s.doc_worker_memory_mb * 1024 * 1024)

    def awareness(self, conn: Connection, doc_id: str, state: dict[str, Any] | None) -> int:
        """Store and relay this participant's awareness state; returns its ``client_id``."""
        participant = self.participant(conn, doc_id)
        participant.state = state
        self.rt.emit("doc:awareness", participant.awareness(doc_id),
                     to=room_of(doc_id), skip_sid=conn.sid)
        return participant.client_id

    # -- storage ------------------------------------------------------------------------------

    def _insert(self, doc_id: str, created_by: str | None) -> bool:
        now = _now()
        try:
            with self.rt.db.write_transaction() as c:
                c.execute(sa.insert(_docs).values(id=doc_id, created_at=now, updated_at=now,
                                                  last_seq=0, created_by=created_by))
        except IntegrityError:
            return False
        return True

    def _append(self, doc_id: str, update: bytes, user_id: str | None) -> int:
        """Store ``update`` with the next seq of its document. The row lock taken by the
        ``UPDATE`` makes appends to one document commit in seq order."""
        now = _now()
        with self.rt.db.write_transaction() as c:
            seq = c.execute(
                sa.update(_docs).where(_docs.c.id == doc_id)
                .values(last_seq=_docs.c.last_seq + 1, updated_at=now)
                .returning(_docs.c.last_seq)).scalar_one_or_none()
            if seq is None:
                raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
            c.execute(sa.insert(_updates).values(doc_id=doc_id, seq=seq, update=update,
                                                 user_id=user_id, created_at=now))
        return int(seq)

    def _catch_up(self, room: DocRoom) -> None:
        """Apply what SQL holds beyond ``room.seq`` (the caller holds ``room.lock``).

        Updates are read *before* the snapshot: a compaction committed in between deleted
        only updates that the snapshot read afterwards contains, so nothing falls between.
        """
        with self.rt.db.session() as s:
            rows = s.execute(
                sa.select(_updates.c.seq, _updates.c.update)
                .where(_updates.c.doc_id == room.doc_id, _updates.c.seq > room.seq)
                .order_by(_updates.c.seq)).all()
            snap = s.execute(
                sa.select(_snapshots.c.upto_seq, _snapshots.c.state)
                .where(_snapshots.c.doc_id == room.doc_id,
                       _snapshots.c.upto_seq > room.seq)).first()
        seq = room.seq
        if snap is not None:
            room.doc.apply_update(snap.state)  # checked by the compaction that wrote it
            seq = max(seq, snap.upto_seq)
        if rows:
            # merged first: one update loads in milliseconds where applying the log one
            # update at a time can take seconds (each merge rescans concurrent inserts)
            parts = [r.update for r in rows]
            if not _apply(room.doc, _merged(parts)):
                bad = self._quarantine_failing(room.doc_id, room.doc.get_update(), rows,
                                               "does not apply to the document")
                good = [r.update for r in rows if r.seq not in bad]
                if good and not _apply(room.doc, _merged(good)):
                    raise RealtimeError(ErrorCode.INTERNAL, "the document does not load")
            seq = max(seq, rows[-1].seq)
        room.seq = seq

    def _quarantine_failing(self, doc_id: str, base: bytes | None, rows: Sequence[Any],
                            reason: str) -> set[int]:
        """Find (in a worker) the rows that do not apply on top of ``base`` and move them to
        ``doc_quarantine``; returns their seqs."""
        parts = ([base] if base is not None else []) + [r.update for r in rows]
        offset = 1 if base is not None else 0
        try:
            failing = self._workers().failing_parts(parts)
        except TimeoutError:
            raise RealtimeError(ErrorCode.UNAVAILABLE, "the document could not be checked in "
                                "time", {"doc_id": doc_id}, retry_after=5.0) from None
        bad = [rows[i - offset] for i in failing if i >= offset]
        if bad:
            self.quarantine(doc_id, bad, reason)
        return {r.seq for r in bad}

    def quarantine(self, doc_id: str, rows: Sequence[Any], reason: str) -> None:
        """Move stored updates (rows with ``seq``, ``update``) out of the log, audited."""
        now = _now()
        seqs = [r.seq for r in rows]
        with self.rt.db.write_transaction() as c:
            found = c.execute(sa.select(_updates).where(_updates.c.doc_id == doc_id,
                                                        _updates.c.seq.in_(seqs))).all()
            for row in found:
                c.execute(sa.insert(_quarantine).values(
                    doc_id=doc_id, seq=row.seq, update=row.update, user_id=row.user_id,
                    created_at=row.created_at, quarantined_at=now, reason=reason[:200]))
            c.execute(sa.delete(_updates).where(_updates.c.doc_id == doc_id,
                                                _updates.c.seq.in_(seqs)))
        for row in found:
            log.error("document %s: update #%d quarantined (%s)", doc_id, row.seq, reason)
            self.rt.audit.record("doc_quarantine", user_id=row.user_id, outcome="error",
                                 details={"doc_id": doc_id, "seq": row.seq,
                                          "size": len(row.update), "reason": reason})

    def compact(self, doc_id: str) -> int:
        """Merge a document's updates into its snapshot, in one transaction; returns how many.

        Runs every ``DIHYA_RT_DOCS_COMPACT_EVERY`` updates and after
        ``DIHYA_RT_DOCS_COMPACT_IDLE`` seconds without one. Safe on any process at any time.
        """
        # Check first, outside the transaction (in a worker): what will not apply is
        # quarantined, never merged into the snapshot.
        with self.rt.db.session() as s:
            pending = s.execute(sa.select(_updates.c.seq, _updates.c.update)
                                .where(_updates.c.doc_id == doc_id)
                                .order_by(_updates.c.seq)).all()
            base = s.execute(sa.select(_snapshots.c.state)
                             .where(_snapshots.c.doc_id == doc_id)).scalar_one_or_none()
        if not pending:
            return 0
        self._quarantine_failing(doc_id, base, pending, "does not apply to the document")
        checked_upto = pending[-1].seq
        with self.rt.db.write_transaction() as c:
            locked = c.execute(sa.select(_docs.c.last_seq).where(_docs.c.id == doc_id)
                               .with_for_update()).scalar_one_or_none()
            if locked is None:
                return 0
            rows = c.execute(sa.select(_updates.c.seq, _updates.c.update)
                             .where(_updates.c.doc_id == doc_id,
                                    _updates.c.seq <= checked_upto)
                             .order_by(_updates.c.seq)).all()
            if not rows:
                return 0
            snap = c.execute(sa.select(_snapshots.c.state)
                             .where(_snapshots.c.doc_id == doc_id)).scalar_one_or_none()
            parts = ([snap] if snap is not None else []) + [r.update for r in rows]
            state = merge_updates(*parts)
            upto = rows[-1].seq
            values = {"state": state, "upto_seq": upto, "created_at": _now()}
            if snap is None:
                c.execute(sa.insert(_snapshots).values(doc_id=doc_id, **values))
            else:
                c.execute(sa.update(_snapshots).where(_snapshots.c.doc_id == doc_id)
                          .values(**values))
            c.execute(sa.delete(_updates).where(_updates.c.doc_id == doc_id,
                                                _updates.c.seq <= upto))
        self.rt.audit.record("doc_compact", outcome="ok",
                             details={"doc_id": doc_id, "updates": len(rows), "upto_seq": upto,
                                      "size": len(state)})
        return len(rows)

    def _after_append(self, doc_id: str, seq: int) -> None:
        if seq % self.settings.docs_compact_every == 0:
            self.rt.socketio.start_background_task(self._compact_quietly, doc_id)
        if self.settings.docs_compact_idle > 0:
            with self._lock:
                self._dirty[doc_id] = time.monotonic()
                if self._sweeping:
                    return
                self._sweeping = True
            self.rt.socketio.start_background_task(self._sweep)

    def _compact_quietly(self, doc_id: str) -> None:
        try:
            self.compact(doc_id)
        except Exception:
            log.exception("compaction of %s failed; its updates stay in the log", doc_id)

    def _sweep(self) -> None:
        """Compact documents idle for ``docs_compact_idle`` seconds; exits when none is left
        (so an idle server runs no background task)."""
        idle = self.settings.docs_compact_idle
        while True:
            self.rt.socketio.sleep(min(idle, 1.0))
            now = time.monotonic()
            with self._lock:
                due = [d for d, t in self._dirty.items() if now - t >= idle]
                for doc_id in due:
                    del self._dirty[doc_id]
                if not self._dirty and not due:
                    self._sweeping = False
                    return
            for doc_id in due:
                self._compact_quietly(doc_id)


def _merged(parts: list[bytes]) -> bytes:
    if len(parts) == 1:
        return parts[0]
    try:
        return merge_updates(*parts)
    except Exception:
        return b""  # does not apply: the caller looks for the culprits


def _root_value(doc: Doc, name: str, kind: str) -> Any:
    from pycrdt import Array, Map, XmlFragment

    types: dict[str, type] = {"text": Text, "map": Map, "array": Array, "xml": XmlFragment}
    if kind not in types:
        raise invalid(f"unknown root kind {kind!r} (text, map, array, xml)")
    if name not in set(doc.keys()):
        return {"text": "", "xml": "", "map": {}, "array": []}[kind]
    value = doc.get(name, type=types[kind])
    if kind in ("text", "xml"):
        return str(value)
    return value.to_py()
