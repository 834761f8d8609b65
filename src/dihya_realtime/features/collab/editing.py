"""Editing a document: check, store, apply and relay one Yjs update; answer a sync.

**An update is checked against the document's current state before anything is stored**, in
a worker process (:mod:`dihya_realtime.features.collab.worker`) within a budget of structs,
client ids, CPU time and resulting size: pycrdt holds the GIL, and an update that is cheap
against an empty document can take seconds to merge into a real one. What the event loop then
pays to apply it to its cache is bounded by that CPU budget. An update that changes nothing (a
reader's sync answer, however its delete set is encoded) is not stored. One user has one check
running at a time, so nobody can hold every worker.

Updates accepted here are applied to this process's cache at once and relayed to the other
participants through the Socket.IO message queue; other processes' caches pick them up from
SQL when their state is next used (:meth:`UpdateLog.catch_up`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pycrdt import YSyncMessageType

from dihya_realtime.features.collab import worker as doc_worker
from dihya_realtime.features.collab.rooms import DocRoom, OpenDocs, relay_quietly, room_of
from dihya_realtime.features.collab.updatelog import UpdateLog
from dihya_realtime.features.collab.yjs import (
    EMPTY_UPDATE,
    apply_update,
    parse_sync_message,
    sync_step2_message,
)
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError, forbidden, invalid

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.collab")


@dataclass(eq=False)
class _Turn:
    lock: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0


class Editing:
    """``doc:update`` and ``doc:sync`` for the participants of this process."""

    def __init__(self, rt: Realtime, open_docs: OpenDocs, updates: UpdateLog) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.open_docs = open_docs
        self.updates = updates
        self._lock = threading.Lock()
        self._checking: dict[str, _Turn] = {}  # user id → its turn at the doc workers

    def update(self, conn: Connection, doc_id: str, update: bytes, *,
               noop_from_reader: bool = False) -> int:
        """Check, store, apply and relay one Yjs update; returns the document's ``seq``.

        The update is checked against the document's current state in a worker process
        (:meth:`check`); nothing is stored or relayed unless it passes, and one that changes
        nothing is not stored. ``noop_from_reader``: a read-only participant may send an
        update that changes nothing (its sync answer). The ack follows the commit.
        """
        room, participant = self.open_docs.joined_room(conn, doc_id)
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
        seq = self.updates.append(doc_id, update, conn.user_id)
        with room.lock:
            if not apply_update(room.doc, update):  # checked above; never block the write path
                log.error("could not apply stored update %s#%d to the cache", doc_id, seq)
            if room.seq == seq - 1:
                room.seq = seq
        relay_quietly(self.rt, room_of(doc_id), "doc:update",
                      {"doc_id": doc_id, "update": update, "seq": seq}, skip_sid=conn.sid)
        self.updates.after_append(doc_id, seq)
        return seq

    def sync(self, conn: Connection, doc_id: str, message: bytes) -> dict[str, Any]:
        """Handle a y-protocols sync message: step 1 → our step 2; step 2 / update → stored."""
        kind, payload = parse_sync_message(message)
        if kind is YSyncMessageType.SYNC_STEP1:
            room, _ = self.open_docs.joined_room(conn, doc_id)
            with room.lock:
                self.updates.catch_up(room)
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
            self.updates.catch_up(room)
            state = room.doc.get_update()
        s = self.settings
        budget = doc_worker.Budget(max_structs=s.doc_update_max_structs,
                                   max_clients=s.doc_update_max_clients,
                                   max_doc_bytes=s.doc_max_bytes,
                                   cpu_seconds=s.doc_update_cpu_seconds)
        try:
            return self.updates.workers().check(state, update, budget)
        except RealtimeError as exc:
            if exc.code is not ErrorCode.UNAVAILABLE:
                self.rt.audit.record("doc_update_refused", outcome="refused", details={
                    "doc_id": room.doc_id, "code": exc.code.value, "size": len(update),
                    "limit": (exc.details or {}).get("limit")}, **conn.audit_fields())
            raise
