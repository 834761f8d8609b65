"""Collaborative documents: Yjs CRDTs held by the server with pycrdt, synced over Socket.IO.

:class:`DocService` (``rt.docs``) is a facade over the feature's parts, one concept each:

- :mod:`.updatelog`: SQL is the source of truth. Every accepted update is appended (with the
  next ``seq`` of its document) before the client's ack; compaction folds the log into a
  snapshot, every N updates and when a document goes idle;
- :mod:`.quarantine`: a stored update that will not apply is set aside, never retried forever;
- :mod:`.rooms`: the documents open on this process. The in-memory ``Doc`` is a cache that
  catches up from SQL (``seq`` greater than the last applied) whenever its state is used;
  updates accepted on other processes reach the clients through the Socket.IO message queue;
- :mod:`.access`: the roles' ceiling, then the creator, ``doc:admin`` and grants (or the host
  app's :attr:`DocService.access_check`);
- :mod:`.participation`: join (entering the room before reading the state), leave, close;
- :mod:`.editing`: every update is checked against the current state in a worker process
  (:mod:`.worker`) within a budget before anything is stored, then applied and relayed;
- :mod:`.awareness`: ephemeral cursors, stamped by the server, exchanged between processes
  over the kernel's control bus;
- :mod:`.documents`: create and read from the server; :mod:`.yjs`: the bytes themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dihya_realtime.features.collab import worker as doc_worker
from dihya_realtime.features.collab.access import ACCESS_CONTROL_ACTION, DocAccess
from dihya_realtime.features.collab.awareness import AWARENESS_CONTROL_ACTION, AwarenessRelay
from dihya_realtime.features.collab.documents import Documents
from dihya_realtime.features.collab.editing import Editing
from dihya_realtime.features.collab.participation import Participation
from dihya_realtime.features.collab.rooms import (
    DOC_ID_RE,
    Access,
    AccessCheck,
    DocRoom,
    OpenDocs,
    Participant,
    check_doc_id,
    room_of,
)
from dihya_realtime.features.collab.updatelog import UpdateLog
from dihya_realtime.features.collab.yjs import (
    EMPTY_UPDATE,
    parse_sync_message,
    sync_step2_message,
    var_uint,
)

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.kernel.principal import Principal
    from dihya_realtime.realtime import Realtime

__all__ = [
    "ACCESS_CONTROL_ACTION", "AWARENESS_CONTROL_ACTION", "DOC_ID_RE", "EMPTY_UPDATE", "Access",
    "AccessCheck", "DocRoom", "DocService", "Participant", "check_doc_id", "parse_sync_message",
    "room_of", "sync_step2_message", "var_uint",
]


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
        self.node_id = uuid.uuid4().hex  # control messages this process sent come back to it
        self.open_docs = OpenDocs()
        self.updates = UpdateLog(rt)
        self.documents = Documents(rt, self.open_docs, self.updates)
        self.doc_access = DocAccess(rt, self.node_id, recheck=self.recheck_participants)
        self.participation = Participation(rt, self.open_docs, self.updates, self.doc_access)
        self.editing = Editing(rt, self.open_docs, self.updates)
        self.relay = AwarenessRelay(rt, self.open_docs, self.node_id)

    @property
    def access_check(self) -> AccessCheck | None:
        """The host app's per-document rule (``None``: the grants decide)."""
        return self.doc_access.access_check

    @access_check.setter
    def access_check(self, fn: AccessCheck | None) -> None:
        self.doc_access.access_check = fn

    # -- server-side API
    def create(self, doc_id: str, text: str | None = None, *, root: str = "text",
               created_by: str | None = None) -> dict[str, Any]:
        """Create a document (``conflict`` if it exists); see :meth:`Documents.create`."""
        return self.documents.create(doc_id, text, root=root, created_by=created_by)

    def exists(self, doc_id: str) -> bool:
        return self.updates.exists(doc_id)

    def read(self, doc_id: str, roots: dict[str, str] | None = None) -> dict[str, Any]:
        """The document as JSON; ``roots`` names the roots' kinds (:meth:`Documents.read`)."""
        return self.documents.read(doc_id, roots)

    def state(self, doc_id: str) -> tuple[bytes, int]:
        """The full Yjs state of a document as one update, and the last ``seq`` it holds."""
        return self.documents.state(doc_id)

    def compact(self, doc_id: str) -> int:
        """Merge a document's updates into its snapshot; returns how many were merged."""
        return self.updates.compact(doc_id)

    def quarantine(self, doc_id: str, rows: Sequence[Any], reason: str) -> None:
        """Move stored updates (rows with ``seq``, ``update``) out of the log, audited."""
        self.updates.quarantine.move(doc_id, rows, reason)

    def _append(self, doc_id: str, update: bytes, user_id: str | None) -> int:
        """Store ``update`` unchecked (tests build documents with it)."""
        return self.updates.append(doc_id, update, user_id)

    # -- access
    def access(self, conn: Connection, doc_id: str) -> Access:
        """``edit`` or ``read`` for this connection on this document, else ``forbidden``."""
        return self.doc_access.access(conn, doc_id)

    def granted(self, principal: Principal, doc_id: str) -> Access | None:
        """What the grants give ``principal`` (creator: ``edit``), else ``None``."""
        return self.doc_access.granted(principal, doc_id)

    def grants(self, doc_id: str) -> dict[str, Any]:
        """``{"doc_id", "created_by", "grants": [{"user_id" | "role", "mode"}]}``."""
        return self.doc_access.grants(doc_id)

    def may_manage(self, principal: Principal, can_admin: bool, doc_id: str) -> bool:
        """Whether ``principal`` may change who has access: the creator or ``doc:admin``."""
        return self.doc_access.may_manage(principal, can_admin, doc_id)

    def set_grants(self, doc_id: str, changes: Sequence[tuple[str, str, Any]],
                   *, by: str | None, replace: bool = False) -> dict[str, Any]:
        """Apply ``(kind, subject, mode)`` changes (``mode`` ``None`` revokes); participants
        that lost access are closed on every process. Returns :meth:`grants`."""
        return self.doc_access.set_grants(doc_id, changes, by=by, replace=replace)

    def recheck_participants(self, doc_id: str) -> None:
        """Check every local participant of ``doc_id`` again (after its grants changed)."""
        self.participation.recheck(doc_id)

    # -- participation (called by the event handlers)
    def join(self, conn: Connection, doc_id: str, client_step1: bytes | None = None
             ) -> dict[str, Any]:
        return self.participation.join(conn, doc_id, client_step1)

    def ask_peers_for_awareness(self, conn: Connection, doc_id: str) -> None:
        """Ask the other processes to send their participants' awareness to this joiner."""
        self.relay.ask_peers(conn, doc_id)

    def leave(self, conn: Connection, doc_id: str, reason: str = "leave") -> bool:
        """Leave a document: others see this participant's awareness cleared."""
        return self.participation.leave(conn, doc_id, reason)

    def close(self, conn: Connection, doc_id: str, reason: str) -> bool:
        """Make ``conn`` leave ``doc_id`` on the server's decision and tell it ``doc:closed``."""
        return self.participation.close(conn, doc_id, reason)

    def close_unreadable(self, conn: Connection) -> list[tuple[str, str]]:
        """Close every document ``conn`` may no longer read; returns ``(doc_id, reason)``."""
        return self.participation.close_unreadable(conn)

    def drop_connection(self, conn: Connection) -> None:
        self.participation.drop_connection(conn)

    def participant(self, conn: Connection, doc_id: str) -> Participant:
        return self.open_docs.joined_room(conn, doc_id)[1]

    def update(self, conn: Connection, doc_id: str, update: bytes, *,
               noop_from_reader: bool = False) -> int:
        """Check, store, apply and relay one Yjs update; returns the document's ``seq``."""
        return self.editing.update(conn, doc_id, update, noop_from_reader=noop_from_reader)

    def sync(self, conn: Connection, doc_id: str, message: bytes) -> dict[str, Any]:
        """Handle a y-protocols sync message: step 1 → our step 2; step 2 / update → stored."""
        return self.editing.sync(conn, doc_id, message)

    def check(self, conn: Connection, room: DocRoom, update: bytes) -> doc_worker.Verdict:
        """Check ``update`` against the document in a worker, within the budget."""
        return self.editing.check(conn, room, update)

    def awareness(self, conn: Connection, doc_id: str, state: dict[str, Any] | None) -> int:
        """Store and relay this participant's awareness state; returns its ``client_id``."""
        return self.relay.set(conn, doc_id, state)
