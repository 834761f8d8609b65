"""The documents open on this process: each one's Yjs cache and who takes part in it.

A process keeps a :class:`DocRoom` per document that has local participants (the pycrdt ``Doc``
is a cache of SQL, see :mod:`.updatelog`), and drops it when the last one leaves.
:class:`OpenDocs` is that table, with the index from a connection to the documents it joined;
every part of the feature that touches participants goes through it, under its one lock.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pycrdt import Doc

from dihya_realtime.kernel.errors import RealtimeError, conflict, invalid
from dihya_realtime.kernel.principal import Principal

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.collab")

DOC_ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")

Access = Literal["edit", "read"]
AccessCheck = Callable[[Principal, str], "Access | None"]
"""``fn(principal, doc_id) -> "edit" | "read" | None``: the host app's per-document rule."""


def room_of(doc_id: str) -> str:
    """The Socket.IO room of a document's participants (on every process)."""
    return f"doc:{doc_id}"


def relay_quietly(rt: Realtime, room: str, event: str, data: Any,
                  skip_sid: str | None = None) -> None:
    """Relay ``event`` to a document's participants on every process (``rt.relay``: only the
    processes with a participant receive it). What is relayed is already stored (an update)
    or a courtesy (awareness): with the broker down it is logged, never the caller's error;
    participants elsewhere catch up with ``doc:sync`` as after any reconnect."""
    try:
        rt.relay.emit(room, event, data, skip_sid=skip_sid)
    except RealtimeError as exc:
        log.warning("could not relay %s to %s: %s", event, room, exc.message)


def check_doc_id(doc_id: str) -> str:
    if not isinstance(doc_id, str) or not DOC_ID_RE.fullmatch(doc_id):
        raise invalid("doc_id must match [A-Za-z0-9_.:@-]{1,128}",
                      [{"field": "doc_id", "message": "bad document id"}])
    return doc_id


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
class DocRoom:
    """A document open on this process: its pycrdt ``Doc`` (a cache of SQL) and participants."""

    doc_id: str
    doc: Doc = field(default_factory=Doc)
    seq: int = 0  # the highest seq applied to ``doc`` with every smaller one applied too
    lock: threading.RLock = field(default_factory=threading.RLock)
    participants: dict[str, Participant] = field(default_factory=dict)


class OpenDocs:
    """``doc_id → DocRoom`` and ``sid → joined doc ids`` for this process, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._rooms: dict[str, DocRoom] = {}
        self._joined: dict[str, set[str]] = {}  # sid → doc ids

    def get(self, doc_id: str) -> DocRoom | None:
        with self.lock:
            return self._rooms.get(doc_id)

    def enter(self, doc_id: str, sid: str, user: dict[str, Any], mode: Access
              ) -> tuple[DocRoom, Participant, list[dict[str, Any]]]:
        """Open ``doc_id`` if needed and make ``sid`` a participant (joining again keeps its
        ``client_id`` and state); returns the room, the participant and the awareness states
        of the others that have one."""
        with self.lock:
            room = self._rooms.get(doc_id)
            if room is None:
                room = self._rooms[doc_id] = DocRoom(doc_id)
            old = room.participants.get(sid)
            participant = Participant(
                sid=sid, user=user, mode=mode,
                client_id=old.client_id if old else secrets.randbits(32),
                state=old.state if old else None)
            room.participants[sid] = participant
            self._joined.setdefault(sid, set()).add(doc_id)
            others = [o.awareness(doc_id) for o in room.participants.values()
                      if o.sid != sid and o.state is not None]
        return room, participant, others

    def remove(self, doc_id: str, sid: str) -> Participant | None:
        """Take ``sid`` out of ``doc_id`` (closing the room when it was the last one)."""
        with self.lock:
            room = self._rooms.get(doc_id)
            participant = room.participants.pop(sid, None) if room else None
            joined = self._joined.get(sid)
            if joined is not None:
                joined.discard(doc_id)
                if not joined:
                    del self._joined[sid]
            if room is not None and not room.participants:
                del self._rooms[doc_id]
        return participant

    def joined_room(self, conn: Connection, doc_id: str) -> tuple[DocRoom, Participant]:
        """The open document and this connection's place in it, or ``conflict``."""
        with self.lock:
            room = self._rooms.get(doc_id)
            participant = room.participants.get(conn.sid) if room else None
        if room is None or participant is None:
            raise conflict(f"join document {doc_id!r} first (doc:join)", {"doc_id": doc_id})
        return room, participant

    def docs_of(self, sid: str) -> list[str]:
        """The documents ``sid`` takes part in, sorted."""
        with self.lock:
            return sorted(self._joined.get(sid, ()))

    def sids_in(self, doc_id: str) -> list[str]:
        with self.lock:
            room = self._rooms.get(doc_id)
            return list(room.participants) if room else []

    def set_mode(self, doc_id: str, sid: str, mode: Access) -> None:
        """Give a participant (if it is still there) the mode of a new access check."""
        with self.lock:
            room = self._rooms.get(doc_id)
            participant = room.participants.get(sid) if room else None
            if participant is not None:
                participant.mode = mode

    def states(self, doc_id: str) -> list[dict[str, Any]]:
        """The awareness of every participant of ``doc_id`` here that has a state."""
        with self.lock:
            room = self._rooms.get(doc_id)
            return [p.awareness(doc_id) for p in room.participants.values()
                    if p.state is not None] if room else []
