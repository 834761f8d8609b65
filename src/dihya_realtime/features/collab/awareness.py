"""Awareness: who is in a document and where their cursor is, ephemeral and per process.

Kept in memory per participant (never stored), relayed with the user identity and a
``client_id`` chosen by the server, so a client cannot pose as another user or overwrite
another participant's cursor; cleared (``state: null``) on leave and disconnect.

A joiner gets the states held by its own process in the join reply. Those held by other
processes are sent to it after the reply: it asks every process over the control bus (action
``doc_awareness``), and each answers with its participants' states on the joiner's user topic
(action ``doc_awareness_to``: only the processes holding that user receive it), where the
joiner's own process emits them to its sid. With one process (no Redis) there is nobody to ask.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dihya_realtime.features.collab.rooms import OpenDocs, relay_quietly, room_of
from dihya_realtime.kernel.errors import RealtimeError

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.collab")

AWARENESS_CONTROL_ACTION = "doc_awareness"
"""The control action asking every process to send its participants' awareness to a joiner."""
AWARENESS_ANSWER_ACTION = "doc_awareness_to"
"""The answer, on the joiner's user topic: the states, for the joiner's sid."""


class AwarenessRelay:
    """Store, relay and exchange between processes the participants' awareness states."""

    def __init__(self, rt: Realtime, open_docs: OpenDocs, node_id: str) -> None:
        self.rt = rt
        self.open_docs = open_docs
        self.node_id = node_id
        rt.control.register(AWARENESS_CONTROL_ACTION, self._send_states_to_joiner)
        rt.control.register(AWARENESS_ANSWER_ACTION, self._states_for_joiner, to_users=True)

    def set(self, conn: Connection, doc_id: str, state: dict[str, Any] | None) -> int:
        """Store and relay this participant's awareness state; returns its ``client_id``."""
        _, participant = self.open_docs.joined_room(conn, doc_id)
        participant.state = state
        relay_quietly(self.rt, room_of(doc_id), "doc:awareness",
                      participant.awareness(doc_id), skip_sid=conn.sid)
        return participant.client_id

    def ask_peers(self, conn: Connection, doc_id: str) -> None:
        """Ask the other processes to send their participants' awareness to this joiner."""
        if not self.rt.settings.redis_url:
            return  # one process: the join reply already carried every state
        try:
            self.rt.control.send(AWARENESS_CONTROL_ACTION, doc_id=doc_id, sid=conn.sid,
                                 user_id=conn.user_id, node=self.node_id)
        except RealtimeError:
            log.warning("could not ask peers for the awareness of %s", doc_id)

    def _send_states_to_joiner(self, data: dict[str, Any]) -> None:
        if data.get("node") == self.node_id:
            return  # the joiner's own process: its reply carried these
        doc_id, sid = str(data.get("doc_id")), str(data.get("sid"))
        states = list(self.open_docs.states(doc_id))
        if not states:
            return
        user_id = data.get("user_id")
        if not isinstance(user_id, str):  # asked by a process of an earlier version
            for wire in states:
                self.rt.emit("doc:awareness", wire, to=sid)
            return
        try:
            self.rt.control.send_to_users([user_id], AWARENESS_ANSWER_ACTION, sid=sid,
                                          states=states)
        except RealtimeError:
            log.warning("could not send the awareness of %s to a joiner", doc_id)

    def _states_for_joiner(self, data: dict[str, Any]) -> None:
        """On the processes holding the joiner's user: emit to the joiner's sid if it is here."""
        sid = str(data.get("sid"))
        if self.rt.connections.get(sid) is None:
            return
        for wire in data.get("states") or []:
            self.rt.emit("doc:awareness", wire, to=sid)
