"""Channels: one model for every feature (chat, notifications, live updates, collaboration).

A channel is ``namespace:name``; the namespace carries its policy from the configuration
(:class:`~dihya_realtime.kernel.settings.NamespacePolicy`). The broker assigns offsets, keeps
history
and fans out; this service decides who may do what and delivers to the connections of this
process.

Loss-free subscribe: while a subscription is being set up, live publications for that
connection are held back in a buffer; the reply carries history up to a position, and once the
reply has been *sent*, the buffered publications past that position are delivered in order.
So a client sees every offset once, in order, with no gap between its reply and the live stream.

What one connection can cost is bounded: subscriptions per connection, and replies carrying
history (recovery on subscribe, ``history``) are pages of at most
``DIHYA_RT_HISTORY_PAGE_MAX_COUNT`` publications and ``DIHYA_RT_HISTORY_PAGE_MAX_BYTES``
bytes, with ``more`` saying whether the rest follows - complete, never silently partial.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dihya_realtime.broker import (
    BrokerUnavailable,
    PresenceEvent,
    Publication,
    RecoveryResult,
    StreamPosition,
)
from dihya_realtime.broker.base import wire_size
from dihya_realtime.features.channels.catchup import FanoutCatchUp
from dihya_realtime.features.channels.interest import ChannelInterest
from dihya_realtime.kernel.errors import ErrorCode, RealtimeError, forbidden, invalid, not_found
from dihya_realtime.kernel.settings import NamespacePolicy

if TYPE_CHECKING:
    from dihya_realtime.kernel.connections import Connection
    from dihya_realtime.realtime import Realtime

log = logging.getLogger("dihya_realtime.channels")

CHANNEL_RE = re.compile(r"^([a-z][a-z0-9_]{0,31}):([A-Za-z0-9_.#=@,-]{1,128})\Z")
"""``\\Z``, not ``$``: Python's ``$`` also matches before a final newline."""


AccessCheck = Callable[["Connection", "ChannelRef", str], None]
"""``fn(conn, ref, action)`` with action ``"read"`` or ``"publish"``; raises to refuse."""


def idempotency_scope(key: str, user_id: str | None = None) -> str:
    """The broker's idempotency key for a client's (``user_id``) or the server's ``key``.

    Structured (a JSON array), never concatenated: user ``tenant`` with key ``17:c1-42`` and
    user ``tenant:17`` with key ``c1-42`` are two keys, and no server key equals a client's.
    """
    parts = ["server", key] if user_id is None else ["user", user_id, key]
    return json.dumps(parts, separators=(",", ":"))


def page_by_bytes(publications: list[Publication], max_bytes: int,
                  newest: bool = False) -> list[Publication]:
    """The longest run of ``publications`` (from the oldest, or the ``newest``) whose JSON fits
    in ``max_bytes``; always at least one, so paging makes progress whatever their size."""
    order = reversed(publications) if newest else iter(publications)
    kept: list[Publication] = []
    total = 0
    for pub in order:
        total += wire_size(pub)
        if kept and total > max_bytes:
            break
        kept.append(pub)
    return kept[::-1] if newest else kept


def room_of(channel: str) -> str:
    """The Socket.IO room of a channel's local subscribers."""
    return "ch:" + channel


@dataclass(frozen=True, slots=True)
class ChannelRef:
    channel: str
    namespace: str
    name: str
    policy: NamespacePolicy


class ChannelService:
    """Subscribe / publish / presence / history, with the namespace policies enforced."""

    def __init__(self, rt: Realtime) -> None:
        self.rt = rt
        self.broker = rt.broker
        self.node_id = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._pending: dict[str, dict[str, list[Publication]]] = {}  # channel → sid → buffer
        self._reserved: dict[str, set[str]] = {}  # sid → channels being subscribed
        self.catchup = FanoutCatchUp(self)  # no silent gap when the fan-out comes back
        # the broker delivers here only the channels subscribed here
        self.interest = ChannelInterest(self, rt.settings.interest_linger)
        self._access_checks: dict[str, list[AccessCheck]] = {}
        # sent on the user's topic (rt.disconnect_user, rt.unsubscribe): received only where
        # the user has a connection
        rt.control.register("disconnect_user", self._control_disconnect_user, to_users=True)
        rt.control.register("unsubscribe", self._control_unsubscribe, to_users=True)

    # -- names and policies
    def resolve(self, channel: str) -> ChannelRef:
        match = CHANNEL_RE.fullmatch(channel) if isinstance(channel, str) else None
        if not match:
            raise invalid(
                "bad channel name: expected namespace:name with namespace [a-z][a-z0-9_]{0,31} "
                "and name [A-Za-z0-9_.#=@,-]{1,128}",
                [{"field": "channel", "message": "bad channel name"}])
        namespace, name = match.groups()
        policy = self.rt.settings.namespaces.get(namespace)
        if policy is None:
            raise not_found(f"unknown channel namespace {namespace!r}",
                            {"namespace": namespace})
        return ChannelRef(channel, namespace, name, policy)

    def add_access_check(self, namespace: str, check: AccessCheck) -> None:
        """Narrow a namespace's policy per channel (e.g. chat rooms: members only).

        The namespace permission is checked first; ``check`` can only refuse more.
        """
        self._access_checks.setdefault(namespace, []).append(check)

    def _run_access_checks(self, conn: Connection, ref: ChannelRef, action: str) -> None:
        for check in self._access_checks.get(ref.namespace, ()):
            check(conn, ref, action)

    def check_read(self, conn: Connection, ref: ChannelRef) -> None:
        """May ``conn`` subscribe to, read the history and presence of ``ref``?"""
        self._check(conn, ref, ref.policy.subscribe, "read")

    def check_publish(self, conn: Connection, ref: ChannelRef) -> None:
        """May ``conn`` publish on ``ref``? Namespaces without ``publish`` are server-only."""
        if ref.policy.publish is None:
            raise forbidden(f"only the server publishes on {ref.namespace!r} channels",
                            {"namespace": ref.namespace})
        self._check(conn, ref, ref.policy.publish, "publish")

    def _check(self, conn: Connection, ref: ChannelRef, permission: str | None,
               action: str) -> None:
        """The namespace policy (signed-in user, personal owner, permission), then the
        feature's own narrowing checks."""
        policy = ref.policy
        if conn.principal.anonymous and not policy.anonymous:
            raise forbidden("this namespace needs a signed-in user")
        if policy.personal and ref.name != f"#{conn.user_id}":
            raise forbidden("a personal channel is only for its owner", {"channel": ref.channel})
        if permission and not conn.can(permission):
            raise forbidden(f"missing permission {permission!r}", {"permission": permission})
        self._run_access_checks(conn, ref, action)

    # -- client operations
    def subscribe(self, conn: Connection, ref: ChannelRef,
                  since: StreamPosition | None) -> tuple[dict[str, Any], Any]:
        """Start a subscription; returns the reply and a callable to run once it is sent.

        With ``since``, the reply recovers one page (see :meth:`history`); ``more`` tells the
        client to continue with ``history``. Past ``max_subscriptions_per_connection``
        channels → ``forbidden`` with details ``{"reason": "subscriptions", "limit": N}``.
        """
        channel = ref.channel
        sid = conn.sid
        server = self.rt.socketio.server
        limit = self.rt.settings.max_subscriptions_per_connection
        with self._lock:
            # subscriptions being set up count too (a burst of concurrent subscribes)
            reserved = self._reserved.setdefault(sid, set())
            new = channel not in conn.channels and channel not in reserved
            if new and len(conn.channels) + len(reserved) >= limit:
                if not reserved:
                    del self._reserved[sid]
                raise forbidden(f"too many subscriptions on this connection (limit {limit}); "
                                "unsubscribe first", {"reason": "subscriptions", "limit": limit})
            self._pending.setdefault(channel, {})[sid] = []
            server.enter_room(sid, room_of(channel), namespace="/")
            reserved.add(channel)
        try:
            # before the position is read: everything published after it reaches this process
            self.interest.acquire(channel)
            if since is not None:
                result = self._page(ref, since=since, limit=None)
            else:
                position = self.broker.position(channel, ref.policy.history)
                result = RecoveryResult(recovered=True, publications=[], position=position)
            reply: dict[str, Any] = {
                "channel": channel,
                "offset": result.position.offset,
                "epoch": result.position.epoch,
                "recovered": result.recovered if since is not None else False,
                "publications": [p.to_wire() for p in result.publications],
                "more": result.more,
            }
            if ref.policy.presence:
                user = {"user_id": conn.user_id, "name": conn.principal.display_name}
                if self.broker.presence_add(channel, sid, user, self.node_id):
                    self.rt.domain_events.emit("presence.joined", {"channel": channel,
                                                                   "user": user})
                reply["presence"] = {"members": self.broker.presence(channel)}
        except BrokerUnavailable as exc:
            self._abort(sid, channel)
            raise RealtimeError(ErrorCode.UNAVAILABLE, "the broker is unavailable") from exc
        except Exception:
            self._abort(sid, channel)
            raise
        conn.channels.add(channel)
        self._unreserve(sid, channel)
        if self.rt.connections.get(sid) is not conn:
            # the connection closed while the broker answered: its disconnect hook has run
            # already, so undo here or the presence entry would outlive it
            self.unsubscribe(conn, channel)
            raise RealtimeError(ErrorCode.UNAVAILABLE, "the connection closed")
        top = result.position
        self.catchup.subscribed(channel, top)
        self.rt.domain_events.emit("channel.subscribed", self._subscription(conn, channel))

        def go_live() -> None:
            with self._lock:
                buffered = self._pending.get(channel, {}).pop(sid, [])
                if not self._pending.get(channel):
                    self._pending.pop(channel, None)
                for pub in buffered:
                    if pub.epoch != top.epoch or pub.offset > top.offset:
                        self.rt.emit("publication", pub.to_wire(), to=sid, local=True)

        return reply, go_live

    def _abort(self, sid: str, channel: str) -> None:
        with self._lock:
            pending = self._pending.get(channel, {})
            pending.pop(sid, None)
            if not pending:
                self._pending.pop(channel, None)
            self.rt.socketio.server.leave_room(sid, room_of(channel), namespace="/")
        self._unreserve(sid, channel)
        self.interest.release(channel)

    def _unreserve(self, sid: str, channel: str) -> None:
        with self._lock:
            reserved = self._reserved.get(sid)
            if reserved is not None:
                reserved.discard(channel)
                if not reserved:
                    del self._reserved[sid]

    def unsubscribe(self, conn: Connection, channel: str) -> bool:
        if channel not in conn.channels:
            return False
        conn.channels.discard(channel)
        self.rt.socketio.server.leave_room(conn.sid, room_of(channel), namespace="/")
        with self._lock:
            pending = self._pending.get(channel, {})
            pending.pop(conn.sid, None)
            if not pending:
                self._pending.pop(channel, None)
        self.interest.release(channel)
        self.rt.domain_events.emit("channel.unsubscribed", self._subscription(conn, channel))
        ref = self.resolve(channel)
        if ref.policy.presence:
            # if the broker is down, the entry goes when this node's heartbeat is reaped
            with contextlib.suppress(BrokerUnavailable):
                if self.broker.presence_remove(channel, conn.sid):
                    self.rt.domain_events.emit("presence.left", {"channel": channel, "user": {
                        "user_id": conn.user_id, "name": conn.principal.display_name}})
        return True

    def _subscription(self, conn: Connection, channel: str) -> dict[str, Any]:
        """The data of ``channel.subscribed`` / ``channel.unsubscribed`` (domain events)."""
        return {"channel": channel, "sid": conn.sid, "node_id": self.node_id,
                "user_id": conn.user_id}

    def remove(self, conn: Connection, channel: str, reason: str) -> bool:
        """Unsubscribe ``conn`` on the server's decision and tell it with ``unsubscribed``."""
        if not self.unsubscribe(conn, channel):
            return False
        self.rt.emit("unsubscribed", {"channel": channel, "reason": reason}, to=conn.sid,
                     local=True)
        return True

    def drop_unreadable(self, conn: Connection) -> list[tuple[str, str]]:
        """Remove ``conn`` from every channel it may no longer read; returns ``(channel, reason)``.

        Read access is checked at subscribe; when the connection's principal changes
        (``auth:refresh`` with fewer roles) this checks every subscription again, with the same
        check (namespace policy, then the features' narrowing checks such as chat room
        membership), so a demoted user stops receiving at once rather than at reconnect. A
        check that cannot be made (the database is down) drops the channel too, with reason
        ``unavailable``: access that cannot be confirmed is not kept; the client may subscribe
        again. A refused check gives reason ``forbidden``.
        """
        dropped: list[tuple[str, str]] = []
        for channel in sorted(conn.channels):
            try:
                self.check_read(conn, self.resolve(channel))
                continue
            except RealtimeError as exc:
                reason = "forbidden" if exc.code is ErrorCode.FORBIDDEN else "unavailable"
            except Exception:
                log.exception("could not check read access to %s again", channel)
                reason = "unavailable"
            if self.remove(conn, channel, reason):
                dropped.append((channel, reason))
        return dropped

    def drop_connection(self, conn: Connection) -> None:
        for channel in list(conn.channels):
            try:
                self.unsubscribe(conn, channel)
            except RealtimeError:
                conn.channels.discard(channel)

    # -- publishing (clients and the server)
    def publish(self, channel: str, data: Any, *, from_: dict | None = None,
                idempotency_key: str | None = None, ref: ChannelRef | None = None,
                idempotency_user: str | None = None,
                by: Connection | None = None) -> tuple[Publication, bool]:
        """Publish; ``idempotency_key`` is the server's, or ``idempotency_user``'s when given.

        A repeated key returns the first result with ``created=False`` and ``data=None``.
        Every publication is audited here, once, whichever path made it: ``by`` the
        connection of a client's ``publish`` event, else the server (event ``server``).
        """
        ref = ref or self.resolve(channel)
        key = None if idempotency_key is None else idempotency_scope(idempotency_key,
                                                                     idempotency_user)
        try:
            pub, created = self.broker.publish(
                ref.channel, data, history=ref.policy.history, from_=from_,
                idempotency_key=key, idempotency_ttl=self.rt.settings.idempotency_ttl)
        except BrokerUnavailable as exc:
            raise RealtimeError(ErrorCode.UNAVAILABLE,
                                "the broker is unavailable; nothing was published") from exc
        if created:
            self.rt.metrics.publications.inc()
            self.rt.audit.record("publish", event="publish" if by else "server", outcome="ok",
                                 details={"channel": pub.channel, "offset": pub.offset},
                                 **(by.audit_fields() if by else {}))
        return pub, created

    def control(self, action: str, **args: Any) -> None:
        """Ask every process (this one included) to do ``action``: ``rt.control.send``."""
        self.rt.control.send(action, **args)

    def history(self, ref: ChannelRef, limit: int | None,
                since: StreamPosition | None) -> RecoveryResult:
        """One page of history: with ``since``, the oldest missed first and ``more`` when the
        page caps stopped it before the top; without, the newest ``limit`` that fit the caps."""
        try:
            return self._page(ref, since=since, limit=limit)
        except BrokerUnavailable as exc:
            raise RealtimeError(ErrorCode.UNAVAILABLE, "the broker is unavailable") from exc

    def _page(self, ref: ChannelRef, *, since: StreamPosition | None,
              limit: int | None) -> RecoveryResult:
        settings = self.rt.settings
        max_count, max_bytes = settings.history_page_max_count, settings.history_page_max_bytes
        if since is None:
            count = max_count if limit is None else min(limit, max_count)
            result = self.broker.history(ref.channel, history=ref.policy.history, limit=count)
            result.publications = page_by_bytes(result.publications, max_bytes, newest=True)
            return result
        result = self.broker.history(ref.channel, history=ref.policy.history, since=since,
                                     limit=limit, page=max_count)
        if result.recovered and result.publications:
            kept = page_by_bytes(result.publications, max_bytes)
            result.publications = kept
            result.more = kept[-1].offset < result.position.offset
        return result

    def presence(self, ref: ChannelRef) -> list[dict]:
        if not ref.policy.presence:
            raise RealtimeError(ErrorCode.NOT_FOUND,
                                f"presence is off for {ref.namespace!r} channels")
        try:
            return self.broker.presence(ref.channel)
        except BrokerUnavailable as exc:
            raise RealtimeError(ErrorCode.UNAVAILABLE, "the broker is unavailable") from exc

    # -- delivery of what the broker fans out (called in order, from one thread)
    def on_broker_message(self, message: Publication | PresenceEvent) -> None:
        if isinstance(message, PresenceEvent):
            self.rt.emit(f"presence:{message.kind}",
                         {"channel": message.channel, "user": message.user},
                         to=room_of(message.channel), local=True)
            return
        room = room_of(message.channel)
        if not self._has_local_members(room):
            # Nobody on this process subscribes: skip the redaction and the emit, which were
            # a tenth of the acked `publish` path's profile (issue 6). Subscribers being set
            # up are in the room already (they enter it before their reply), so no buffer
            # misses the publication.
            return
        if not self.catchup.accept(message, local=True):
            return  # delivered already, from history, when the fan-out came back
        wire = message.to_wire()
        with self._lock:
            waiting = self._pending.get(message.channel)
            skip = None
            if waiting:
                skip = list(waiting)
                for buffer in waiting.values():
                    buffer.append(message)
            self.rt.emit("publication", wire, to=room, skip_sid=skip, local=True)

    def _has_local_members(self, room: str) -> bool:
        """Is any connection of this process in ``room``? (python-socketio drops empty rooms.)"""
        rooms = self.rt.socketio.server.manager.rooms.get("/")
        return bool(rooms and rooms.get(room))

    def _control_disconnect_user(self, data: dict) -> None:
        self.rt.disconnect_user_here(str(data["user_id"]),
                                     str(data.get("reason") or "disconnected"))

    def _control_unsubscribe(self, data: dict) -> None:
        channel = str(data["channel"])
        reason = str(data.get("reason") or "server")
        for conn in self.rt.connections.of_user(str(data["user_id"])):
            self.remove(conn, channel, reason)
