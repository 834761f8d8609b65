"""Typing indicators: ephemeral, throttled, lapsing on their own, per process.

Nothing here is stored. A typist's state lives on the process of their connection; a
background task per process (only while someone types) pushes ``typing: false`` for the
indicators not renewed in time (a :class:`~dihya_realtime.kernel.sweeper.Sweeper`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from dihya_realtime.features.chat.access import Access
from dihya_realtime.features.chat.base import ChatStore
from dihya_realtime.features.chat.common import Actor, Defer, typing_dict
from dihya_realtime.kernel.sweeper import Sweeper


class TypingTracker:
    """Who is typing where, on this process (a connection lives on one process).

    ``start`` says whether to push: a renewal inside ``throttle`` seconds only extends the
    expiry. Entries not renewed within ``ttl`` seconds are returned by :meth:`expired`.
    """

    def __init__(self, ttl: float, throttle: float) -> None:
        self.ttl = ttl
        self.throttle = throttle
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], tuple[float, float, str]] = {}

    def start(self, room_id: str, user_id: str, sid: str, now: float) -> bool:
        with self._lock:
            key = (room_id, user_id)
            current = self._active.get(key)
            if current is None or now - current[1] >= self.throttle:
                self._active[key] = (now + self.ttl, now, sid)
                return True
            self._active[key] = (now + self.ttl, current[1], sid)
            return False

    def stop(self, room_id: str, user_id: str) -> bool:
        with self._lock:
            return self._active.pop((room_id, user_id), None) is not None

    def expired(self, now: float) -> list[tuple[str, str]]:
        with self._lock:
            gone = [key for key, (expires, _, _) in self._active.items() if expires <= now]
            for key in gone:
                del self._active[key]
            return gone

    def of_sid(self, sid: str) -> list[tuple[str, str]]:
        with self._lock:
            return [key for key, (_, _, s) in self._active.items() if s == sid]

    def __len__(self) -> int:
        return len(self._active)



class TypingIndicator:
    """``chat:typing``: who is typing where, pushed to the other members of the room."""

    def __init__(self, store: ChatStore, access: Access) -> None:
        self.store = store
        self.access = access
        settings = store.rt.settings
        self.state = TypingTracker(settings.chat_typing_ttl, settings.chat_typing_throttle)
        rt = store.rt
        # looked up when used: a service built over a Realtime without a Socket.IO server (a
        # worker, a test) works until someone types
        self.sweeper = Sweeper("chat typing", min(1.0, self.state.ttl / 4), self._sweep,
                                spawn=lambda fn: rt.socketio.start_background_task(fn),
                                sleep=lambda seconds: rt.socketio.sleep(seconds))

    def typing(self, actor: Actor, sid: str, room_id: str, typing: bool) -> dict[str, Any]:
        """Tell the other members that the actor is (no longer) typing; throttled, ephemeral."""
        with self.store.db.session() as s:
            room = self.store.room(s, room_id)
            if typing:
                self.access.require_speaker(s, room, actor)
            else:
                self.access.require_member(s, room, actor)
        tracker = self.state
        if typing:
            push = tracker.start(room_id, actor.user_id, sid, time.monotonic())
            self._ensure_sweeper()
        else:
            push = tracker.stop(room_id, actor.user_id)
        if push:
            self.store.push_room(room_id, "chat:typing",
                                 typing_dict(room_id, actor, typing,
                                             tracker.ttl if typing else None),
                                 skip_user=actor.user_id)
        return {"room_id": room_id, "typing": typing, "sent": push}

    def expire_typing(self, now: float | None = None) -> int:
        """Push ``typing: false`` for every indicator not renewed in time; returns how many."""
        gone = self.state.expired(time.monotonic() if now is None else now)
        for room_id, user_id in gone:
            self._stopped(room_id, user_id)
        return len(gone)

    def _stopped(self, room_id: str, user_id: str) -> None:
        self.store.push_room(room_id, "chat:typing", typing_dict(room_id, Actor(user_id), False),
                             skip_user=user_id)

    def ended(self, room_id: str, gone: Actor, defer: Defer | None) -> None:
        """``gone`` left the room (left, removed, kicked, banned): the others see them stop
        typing now, not when the indicator lapses.

        The typing state lives on the process of the typist's connection. With several
        processes that may not be this one, so ``typing: false`` is pushed whether or not this
        process saw them type (the room's relay takes it to every process; a stop for someone
        not shown typing changes nothing on a client). One process knows: it pushes only when
        they were typing. Never to ``gone``, whose connections may still be in the room's
        relay elsewhere for a moment.
        """
        was_typing = self.state.stop(room_id, gone.user_id)
        if was_typing or self.store.rt.settings.redis_url:
            self.store.push_room(room_id, "chat:typing", typing_dict(room_id, gone, False),
                                 defer, skip_user=gone.user_id)

    def connection_closed(self, sid: str) -> None:
        """A closed connection stops typing at once rather than after the expiry."""
        for room_id, user_id in self.state.of_sid(sid):
            if self.state.stop(room_id, user_id):
                self._stopped(room_id, user_id)

    def _ensure_sweeper(self) -> None:
        """One background task per process while someone types; it ends when nobody does."""
        self.sweeper.interval = min(1.0, self.state.ttl / 4)  # the ttl may change at run time
        self.sweeper.wake()

    def _sweep(self) -> bool:
        self.expire_typing()
        return len(self.state) > 0
