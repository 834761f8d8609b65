"""How a chat room's events reach its members: one relay on the room, by interest.

A room's pushes used to be one Socket.IO-queue emit addressed to the members' personal rooms,
which every process received, members or none (issue 14). Now each connection of a member is
in the room's relayed Socket.IO room (``chat-room:<room id>``, :class:`~dihya_realtime.kernel
.relay.RoomRelay`), and a push is one ``rt.relay.emit`` (one SPUBLISH) that only the processes
holding a member's connection receive.

Keeping the relayed rooms equal to the memberships is this module's job:

- on connect, one query finds the user's rooms (at most
  ``DIHYA_RT_CHAT_MAX_RELAYED_ROOMS``, the most recently joined: a member of more gets the
  others' live events after ``chat:join`` on them again) and the connection joins them all
  with one wait for the broker (kept pending while it is down); on disconnect it leaves them
  (the relay stops watching a room a linger after its last local member);
- when someone becomes a member or stops being one, the acting process moves that user's
  connections here at once (so the joiner's own connection is in the room before its reply)
  and sends the control action ``chat_membership`` on the user's topic, which the processes
  holding the user's other connections apply to theirs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dihya_realtime.features.chat.models import ChatMember
from dihya_realtime.kernel.errors import RealtimeError

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.chat")

MEMBERSHIP_ACTION = "chat_membership"
"""The control action that moves a user's connections in or out of a room's relay."""

ROOM_PREFIX = "chat-room:"

PUBLIC_ROOMS = "chat-public-rooms"
"""The relayed Socket.IO room of every connection allowed to chat (``chat:write``): where a
new public room is announced (``chat:room_created``). One name, never a user's choice."""


def relay_room(room_id: str) -> str:
    """The relayed Socket.IO room of a chat room (not ``chat:<id>``, the room's channel)."""
    return ROOM_PREFIX + room_id


class RelayedRooms:
    """The chat rooms each local connection is in, kept in step with the memberships."""

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self._lock = threading.Lock()
        self._joined: dict[str, set[str]] = {}  # sid → chat room ids it was put in
        self._announced: set[str] = set()  # sids in PUBLIC_ROOMS

    def setup(self) -> None:
        """Register the connect and disconnect hooks and the membership control action."""
        self.rt.on_connect(self.connected)
        self.rt.on_disconnect(lambda conn, reason: self.disconnected(conn.sid))
        self.rt.control.register(MEMBERSHIP_ACTION, self._on_membership, to_users=True)

    # -- delivery

    def emit(self, room_id: str, event: str, data: Any, skip_user: str | None = None) -> None:
        """Relay ``event`` to the room's members on every process (but ``skip_user``'s
        connections). What is pushed is stored already or a courtesy: with the broker down it
        is logged, never the caller's error (clients catch up with ``chat:history``)."""
        try:
            self.rt.relay.emit(relay_room(room_id), event, data, skip_user=skip_user)
        except RealtimeError as exc:
            log.warning("could not relay %s to room %s: %s", event, room_id, exc.message)

    # -- membership

    def changed(self, room_id: str, user_ids: Iterable[str], member: bool) -> None:
        """``user_ids`` became members of ``room_id`` (``member``) or stopped being ones: their
        connections here move now, those on other processes when the control action comes."""
        users = list(dict.fromkeys(user_ids))
        for user_id in users:
            self._apply(user_id, room_id, member)
        try:
            self.rt.control.send_to_users(users, MEMBERSHIP_ACTION, room_id=room_id,
                                          member=member)
        except RealtimeError as exc:
            log.warning("room %s: membership of %s not sent to the other processes: %s",
                        room_id, users, exc.message)

    def announce_public_room(self, room: dict[str, Any]) -> None:
        """Tell every connection that may chat, on every process, of a new public room (a
        courtesy: with the broker down it is logged; ``chat:rooms`` lists it anyway)."""
        try:
            self.rt.relay.emit(PUBLIC_ROOMS, "chat:room_created", room)
        except RealtimeError as exc:
            log.warning("could not announce room %s: %s", room.get("id"), exc.message)

    def connected(self, conn: Connection) -> None:
        """A member's new connection joins the relays of the member's rooms (and, allowed to
        chat, the announcements of new public rooms)."""
        cap = self.rt.settings.chat_max_relayed_rooms
        with self.rt.db.session() as s:
            room_ids = list(s.scalars(
                sa.select(ChatMember.room_id).where(ChatMember.user_id == conn.user_id)
                .order_by(ChatMember.joined_at.desc(), ChatMember.room_id).limit(cap + 1)))
        if len(room_ids) > cap:
            log.warning("user %s is in more than %d chat rooms (DIHYA_RT_CHAT_MAX_RELAYED_ROOMS)"
                        ": live events of the others are not delivered to this connection",
                        conn.user_id, cap)
            room_ids = room_ids[:cap]
        self._join(conn.sid, room_ids, announced=conn.can("chat:write"))

    def disconnected(self, sid: str) -> None:
        with self._lock:
            room_ids = self._joined.pop(sid, set())
            announced = sid in self._announced
            self._announced.discard(sid)
        if announced:
            self.rt.relay.leave(sid, PUBLIC_ROOMS)
        for room_id in room_ids:
            self.rt.relay.leave(sid, relay_room(room_id))

    def rooms_of(self, sid: str) -> set[str]:
        """The chat rooms whose relays ``sid`` is in (tests)."""
        with self._lock:
            return set(self._joined.get(sid, ()))

    def _on_membership(self, data: dict[str, Any]) -> None:
        room_id, user_id = data.get("room_id"), data.get("user_id")
        if isinstance(room_id, str) and isinstance(user_id, str):
            self._apply(user_id, room_id, bool(data.get("member")))

    def _apply(self, user_id: str, room_id: str, member: bool) -> None:
        for conn in self.rt.connections.of_user(user_id):
            if member:
                self._join(conn.sid, room_id)
            else:
                self._leave(conn.sid, room_id)

    def _join(self, sid: str, room_ids: str | list[str], announced: bool = False) -> None:
        """Put ``sid`` in the rooms' relays (and, ``announced``, in :data:`PUBLIC_ROOMS`), all
        with one wait. With the broker down they are kept, pending: relayed here once it is
        back, when the connection is told to ``resync`` (dropping them would end the rooms'
        live events for it for good)."""
        room_ids = [room_ids] if isinstance(room_ids, str) else room_ids
        if not room_ids and not announced:
            return
        with self._lock:
            self._joined.setdefault(sid, set()).update(room_ids)
            if announced:
                self._announced.add(sid)
        names = [relay_room(r) for r in room_ids] + ([PUBLIC_ROOMS] if announced else [])
        try:
            self.rt.relay.join(sid, names, keep_pending=True)
        except (KeyError, ValueError) as exc:  # the sid is gone already
            with self._lock:
                self._joined.get(sid, set()).difference_update(room_ids)
                self._announced.discard(sid)
            log.warning("connection %s: rooms not relayed here: %s", sid, exc)
            return
        if self.rt.connections.get(sid) is None:  # closed meanwhile: its disconnect ran
            self.disconnected(sid)

    def _leave(self, sid: str, room_id: str) -> None:
        with self._lock:
            rooms = self._joined.get(sid)
            if rooms is None or room_id not in rooms:
                return
            rooms.discard(room_id)
        self.rt.relay.leave(sid, relay_room(room_id))


__all__ = ["MEMBERSHIP_ACTION", "PUBLIC_ROOMS", "RelayedRooms", "relay_room"]
