"""One way for a process to ask every process to do something: the control bus.

Some work cannot be done where it is asked for: disconnecting a user whose connections live on
other processes, closing a document for participants elsewhere, sending a joiner the cursors
held by the other processes. Each used to carry its own broker channel and its own dispatch,
and each had to get the same details right (a publication that is never delivered to clients,
no history kept, one bad message never stopping the broker's reader).

:class:`ControlBus` holds those details once. A feature registers a handler per action at
set-up; :meth:`ControlBus.send` publishes ``{"action": action, **args}`` on the broker channel
``__control:<action>`` (no history; the broker fans it out to every process that registered
a handler for the action, since registering watches the channel, this one included), and
every process hands it to the handler registered for the action. Handlers run
in the broker's delivery thread, in order: they must be quick (start a background task for
slow work). A handler that wants to skip its own process compares a node id it sent.

An action about one user's connections (``disconnect_user``, ``unsubscribe``, the emits of
``rt.emit_to_user``) is registered with ``to_users=True`` and sent with
:meth:`ControlBus.send_to_users`: it travels on each user's topic (``Broker.send``, no
offset, no history) and reaches only the processes where the user has a connection, which
watch that topic (:mod:`dihya_realtime.kernel.user_interest`), not every process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from dihya_realtime.broker import Broker, BrokerUnavailable, Message, Publication
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.rooms import user_of_topic, user_topic
from dihya_realtime.kernel.settings import HistoryPolicy

log = logging.getLogger("dihya_realtime.control")

CONTROL_PREFIX = "__control:"
"""Publications on these channels are instructions to every process, never delivered."""
CONTROL_HISTORY = HistoryPolicy(size=0, ttl=60)

ControlHandler = Callable[[dict[str, Any]], None]
"""``fn(data)``: ``data`` is what :meth:`ControlBus.send` published (``action`` included);
for :meth:`ControlBus.send_to_users`, with the ``user_id`` whose topic carried it."""


class ControlBus:
    """Actions every process can be asked to do, each with one handler, over the broker."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._handlers: dict[str, ControlHandler] = {}
        self._lock = threading.Lock()
        self._unknown_seen: set[str] = set()

    def register(self, action: str, handler: ControlHandler, *, to_users: bool = False) -> None:
        """Handle ``action`` on this process; a second handler for one action is an error.

        ``to_users``: the action is sent with :meth:`send_to_users` only, so no broadcast
        channel is watched for it (the users' topics are, while they have connections here).
        """
        with self._lock:
            if action in self._handlers:
                raise ValueError(f"control action {action!r} has a handler already")
            self._handlers[action] = handler
        if to_users:
            return
        # every process with a handler receives the action's channel (interest routing);
        # with the broker down it is subscribed as soon as the broker is back
        try:
            self.broker.watch(CONTROL_PREFIX + action)
        except BrokerUnavailable:
            log.warning("control action %r: the broker is unavailable; its channel is "
                        "subscribed when the broker is back", action)

    def send(self, action: str, **args: Any) -> None:
        """Ask every process (this one included) to do ``action`` with ``args``.

        Raises ``unavailable`` when the broker cannot be reached (nothing was sent).
        """
        try:
            self.broker.publish(CONTROL_PREFIX + action, {"action": action, **args},
                                history=CONTROL_HISTORY)
        except BrokerUnavailable as exc:
            raise RealtimeError(ErrorCode.UNAVAILABLE, "the broker is unavailable") from exc

    def send_to_users(self, user_ids: Iterable[str], action: str, **args: Any) -> None:
        """Ask the processes holding a connection of each of ``user_ids`` (this one included)
        to do ``action`` with ``args``: one message on each user's topic, ``args`` encoded
        once. The handler gets ``{"action", **args, "user_id"}``.

        Raises ``unavailable`` when the broker cannot be reached (nothing was sent).
        """
        topics = [user_topic(u) for u in user_ids]
        if not topics:
            return
        try:
            self.broker.send(topics, {"action": action, **args})
        except BrokerUnavailable as exc:
            raise RealtimeError(ErrorCode.UNAVAILABLE, "the broker is unavailable") from exc

    def dispatch(self, message: Any) -> bool:
        """Run the handler of a control message; returns whether ``message`` was one.

        An action nobody registered (sent by a process with another feature set or version)
        is logged and ignored; a handler that raises is logged, and the next message is
        handled as usual.
        """
        if isinstance(message, Message):
            user_id = user_of_topic(message.topic)
            if user_id is None:
                return False
            data = {**message.data, "user_id": user_id} if isinstance(message.data, dict) else {}
            source = message.topic
        elif isinstance(message, Publication) and message.channel.startswith(CONTROL_PREFIX):
            data = message.data if isinstance(message.data, dict) else {}
            source = message.channel
        else:
            return False
        action = data.get("action")
        handler = self._handlers.get(action) if isinstance(action, str) else None
        if handler is None:
            self._unknown(source, action)
            return True
        try:
            handler(data)
        except Exception:
            log.exception("control action %r failed on this process", action)
        return True

    def _unknown(self, channel: str, action: Any) -> None:
        key = repr(action)
        with self._lock:
            first = key not in self._unknown_seen
            if first and len(self._unknown_seen) < 1000:
                self._unknown_seen.add(key)
        # once per action: a process without a feature would otherwise log every message
        (log.warning if first else log.debug)(
            "control message on %s with no handler for action %r: ignored", channel, action)


__all__ = ["CONTROL_HISTORY", "CONTROL_PREFIX", "ControlBus", "ControlHandler"]
