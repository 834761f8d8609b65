"""Emits to a Socket.IO room whose members are spread over processes, by interest.

A collaborative document's room holds its participants on every process. Emitting to it
through the Socket.IO message queue made every process receive every update, participants or
none (issue 14). :class:`RoomRelay` sends the emit on the room's broker topic instead
(``Broker.send``: one SPUBLISH, no history), which only the processes with a local member
watch (:class:`~dihya_realtime.kernel.interest.Interest`: from the first local member to a
linger after the last); each emits it to its own members.

Bytes in the payload (a Yjs update) travel base64-encoded inside the message, with the paths
where they were, and are bytes again when emitted: clients see exactly what a direct emit
would have sent.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dihya_realtime.kernel.errors import RealtimeError
from dihya_realtime.kernel.interest import Interest
from dihya_realtime.kernel.rooms import user_room

if TYPE_CHECKING:
    from dihya_realtime.broker import Message
    from dihya_realtime.kernel.host import Host

log = logging.getLogger("dihya_realtime.relay")

RELAY_PREFIX = "__room:"
"""Broker topics of relayed rooms, one per room."""


class RoomRelay:
    """Join, leave and emit to rooms relayed by interest."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._lock = threading.RLock()
        self.interest = Interest("room relay", host.broker, host.settings.interest_linger,
                                 in_use=self._in_use, topic_of=topic_of,
                                 server=lambda: host.socketio.server, lock=self._lock)

    def join(self, sid: str, rooms: str | Iterable[str], *, keep_pending: bool = False
             ) -> bool:
        """Put this process's connection ``sid`` in ``rooms`` (one or several); returns once
        their relays reach this process (``True``).

        When the broker cannot promise it (its links are down, no confirmation): raises
        ``unavailable`` and takes ``sid`` out again; or, with ``keep_pending``, leaves ``sid``
        in the rooms, whose relays reach it once the broker is back (the connection is then
        told to ``resync``), and returns ``False``. A connection joining its rooms at connect
        keeps them pending: an outage must not cost it its rooms for good."""
        names = [rooms] if isinstance(rooms, str) else list(dict.fromkeys(rooms))
        with self._lock:
            for room in names:
                self.host.socketio.server.enter_room(sid, room, namespace="/")
        try:
            self.interest.acquire(names)
        except RealtimeError as exc:
            if not keep_pending:
                for room in names:
                    self.leave(sid, room)
                raise
            log.warning("connection %s: %d rooms relayed here once the broker is back: %s",
                        sid, len(names), exc.message)
            return False
        return True

    def leave(self, sid: str, room: str) -> None:
        """Take ``sid`` out of ``room`` (whether or not it is still connected)."""
        with self._lock:
            # the manager's own bookkeeping: local, never a message to the other processes
            self.host.socketio.server.manager.basic_leave_room(sid, "/", room)
        self.interest.release(room)

    def emit(self, room: str, event: str, data: Any, skip_sid: str | None = None,
             skip_user: str | None = None) -> None:
        """Emit ``event`` to ``room``'s members on every process, through the redaction filter,
        but ``skip_sid`` and every connection of ``skip_user`` (each process skips the members
        of that user's personal room). Raises ``unavailable`` when the broker cannot take it
        (nobody got it)."""
        clean = self.host.redact(data, event=event)
        wire, binary = _to_json(clean)
        message: dict[str, Any] = {"room": room, "event": event, "data": wire}
        if binary:
            message["binary"] = binary
        if skip_sid is not None:
            message["skip_sid"] = skip_sid
        if skip_user is not None:
            message["skip_user"] = skip_user
        try:
            self.host.broker.send(topic_of(room), message)
        except RealtimeError:
            raise
        except Exception as exc:  # BrokerUnavailable is a RealtimeError; anything else is ours
            raise RealtimeError("internal", f"relay to {room!r} failed: {exc}") from exc

    def deliver(self, message: Message) -> bool:
        """A message on a relayed room's topic: emit it to this process's members. Returns
        whether ``message`` was one."""
        if not message.topic.startswith(RELAY_PREFIX) or not isinstance(message.data, dict):
            return False
        data = message.data
        server = self.host.socketio.server if self.host.socketio is not None else None
        if server is None:
            return True
        skip: list[str] = [data["skip_sid"]] if isinstance(data.get("skip_sid"), str) else []
        if isinstance(data.get("skip_user"), str):
            rooms = server.manager.rooms.get("/") or {}
            skip += list(rooms.get(user_room(data["skip_user"])) or ())
        server.emit(str(data.get("event")), _from_json(data.get("data"), data.get("binary")),
                    to=str(data.get("room")), skip_sid=skip or None, namespace="/",
                    ignore_queue=True)
        return True

    def _in_use(self, room: str) -> bool:
        rooms = self.host.socketio.server.manager.rooms.get("/")
        return bool(rooms and rooms.get(room))


def topic_of(room: str) -> str:
    return RELAY_PREFIX + room


Path = list[str | int]


def _to_json(value: Any, path: Path | None = None, found: list[Path] | None = None
             ) -> tuple[Any, list[Path]]:
    """``value`` with every bytes value (at any depth) as base64 text, and the paths where
    they were: only those become bytes again (a client's own text never does)."""
    path = [] if path is None else path
    found = [] if found is None else found
    if isinstance(value, bytes | bytearray | memoryview):
        found.append(path)
        return base64.b64encode(bytes(value)).decode("ascii"), found
    if isinstance(value, dict):
        return {k: _to_json(v, [*path, k], found)[0] for k, v in value.items()}, found
    if isinstance(value, list | tuple):
        return [_to_json(v, [*path, i], found)[0] for i, v in enumerate(value)], found
    return value, found


def _from_json(value: Any, paths: Any) -> Any:
    for path in paths if isinstance(paths, list) else ():
        if not path:
            return base64.b64decode(value)
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = base64.b64decode(parent[path[-1]])
    return value


__all__ = ["RELAY_PREFIX", "RoomRelay", "topic_of"]
