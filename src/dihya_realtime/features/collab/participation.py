"""Taking part in a document: join, leave, and being closed by the server.

**Join enters the Socket.IO room before reading the state**, so an update committed during the
join reaches the client either in the state or as a relayed ``doc:update`` (maybe both;
harmless: Yjs updates commute and applying one twice changes nothing). Access is checked at
join and again whenever it may have narrowed (grants changed, ``auth:refresh``): a participant
that lost it is closed (``doc:closed``) at once rather than at reconnect. Leaving clears the
participant's awareness for the others.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pycrdt import YSyncMessageType, create_sync_message

from dihya_realtime.features.collab.access import DocAccess
from dihya_realtime.features.collab.rooms import OpenDocs, relay_quietly, room_of
from dihya_realtime.features.collab.updatelog import UpdateLog
from dihya_realtime.features.collab.yjs import parse_sync_message, sync_step2_message
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError, invalid, not_found

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.collab")


class Participation:
    """The join / leave / close path of this process's connections."""

    def __init__(self, rt: Realtime, open_docs: OpenDocs, updates: UpdateLog,
                 access: DocAccess) -> None:
        self.rt = rt
        self.open_docs = open_docs
        self.updates = updates
        self.access = access

    def join(self, conn: Connection, doc_id: str, client_step1: bytes | None = None
             ) -> dict[str, Any]:
        state_vector = None
        if client_step1 is not None:
            kind, state_vector = parse_sync_message(client_step1)
            if kind is not YSyncMessageType.SYNC_STEP1:
                raise invalid("sync_step1 must be a sync step 1 message",
                              [{"field": "sync_step1"}])
        if not self.updates.exists(doc_id):
            # whoever may edit some document may create one by joining it, and owns it
            if not (self.rt.settings.docs_create_on_join and conn.can("doc:edit")):
                raise not_found(f"no document {doc_id!r}", {"doc_id": doc_id})
            if self.updates.insert(doc_id, conn.user_id):
                self.rt.audit.record("doc_create", outcome="ok", event="doc:join",
                                     details={"doc_id": doc_id, "size": 0},
                                     **conn.audit_fields())
        mode = self.access.access(conn, doc_id)
        # Enter the room first: an update committed from now on is relayed to this client.
        self.rt.relay.join(conn.sid, room_of(doc_id))  # relays reach this process from now
        p = conn.principal
        room, participant, others = self.open_docs.enter(
            doc_id, conn.sid, {"user_id": p.user_id, "name": p.display_name}, mode)
        with room.lock:
            self.updates.catch_up(room)
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

    def leave(self, conn: Connection, doc_id: str, reason: str = "leave") -> bool:
        """Leave a document: others see this participant's awareness cleared.

        ``reason`` (audited): ``leave`` (the client asked), ``disconnect``, or why the server
        closed it (:meth:`close`).
        """
        participant = self.open_docs.remove(doc_id, conn.sid)
        if participant is None:
            return False
        self.rt.relay.leave(conn.sid, room_of(doc_id))
        relay_quietly(self.rt, room_of(doc_id), "doc:awareness",
                      {**participant.awareness(doc_id), "state": None}, skip_sid=conn.sid)
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

    def recheck(self, doc_id: str) -> None:
        """Check every local participant of ``doc_id`` again (after its grants changed)."""
        for sid in self.open_docs.sids_in(doc_id):
            conn = self.rt.connections.get(sid)
            if conn is None:
                continue
            try:
                mode = self.access.access(conn, doc_id)
            except RealtimeError as exc:
                reason = "forbidden" if exc.code is ErrorCode.FORBIDDEN else "unavailable"
                self.close(conn, doc_id, reason)
                continue
            self.open_docs.set_mode(doc_id, sid, mode)

    def close_unreadable(self, conn: Connection) -> list[tuple[str, str]]:
        """Close every document ``conn`` may no longer read; returns ``(doc_id, reason)``.

        Access is checked at join; when the connection's principal changes (``auth:refresh``
        with fewer roles) this checks every joined document again (roles, then the host app's
        ``access_check``), so a user who lost a document stops receiving its updates and
        cursors at once rather than at reconnect. A check that cannot be made (the host
        callback fails) closes the document too, with reason ``unavailable``: access that
        cannot be confirmed is not kept; a refused one gives ``forbidden``. A participant
        that keeps access takes the mode of the new check, so an editor narrowed to
        ``read`` has its updates refused from now on.
        """
        closed: list[tuple[str, str]] = []
        for doc_id in self.open_docs.docs_of(conn.sid):
            try:
                mode = self.access.access(conn, doc_id)
            except RealtimeError as exc:
                reason = "forbidden" if exc.code is ErrorCode.FORBIDDEN else "unavailable"
            except Exception:
                log.exception("could not check access to document %s again", doc_id)
                reason = "unavailable"
            else:
                self.open_docs.set_mode(doc_id, conn.sid, mode)
                continue
            if self.close(conn, doc_id, reason):
                closed.append((doc_id, reason))
        return closed

    def drop_connection(self, conn: Connection) -> None:
        """The disconnect hook: leave every document, without touching the closed socket."""
        for doc_id in self.open_docs.docs_of(conn.sid):
            self.leave(conn, doc_id, reason="disconnect")
