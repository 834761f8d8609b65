"""The value types of the channel protocol, and their JSON forms.

What a broker hands around - positions, publications, presence events, messages - and how
they are written to history and to the wire. Apart from :mod:`base` (the interface) so each
module holds one job; :mod:`base` re-exports every name, as before.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson


def new_publication_id() -> str:
    """32 hex digits, random like a uuid4's, without uuid4's ``os.urandom`` system call per
    publication (5% of the loop under acked load on this VM). Publication ids are for
    de-duplication, not secrets; ``random`` is re-seeded in a forked child."""
    return f"{random.getrandbits(128):032x}"


def idempotency_digest(key: str) -> str:
    """A fixed-length digest of an idempotency key, for storage keys built from it.

    Fixed length and hex only, so ``<channel> + <digest>`` can never be read back as another
    channel with another key, whatever characters either holds.
    """
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def encode_wire(pub: Publication) -> bytes:
    """A publication's client-facing form as JSON bytes (orjson; the stdlib for what orjson
    refuses, such as integers past 64 bits)."""
    wire = pub.to_wire()
    try:
        return orjson.dumps(wire)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(wire, separators=(",", ":")).encode()


def decode_wire(raw: bytes) -> Publication:
    """The inverse of :func:`encode_wire`."""
    try:
        wire = orjson.loads(raw)
    except orjson.JSONDecodeError:
        wire = json.loads(raw)
    return Publication.from_wire(wire)


def wire_size(pub: Publication) -> int:
    """The bytes a publication costs in history (its JSON), as both brokers count them."""
    return len(encode_wire(pub))


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a channel's stream stands: the last offset within one epoch.

    An epoch names one unbroken run of offsets. When a channel's state is lost (expired, or
    Redis restarted without persistence) a new epoch begins at offset 0, so a client holding
    a position of the old epoch knows it cannot be recovered.
    """

    offset: int
    epoch: str

    def to_wire(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}


@dataclass(frozen=True, slots=True)
class Publication:
    """One message on a channel, as every subscriber receives it."""

    channel: str
    offset: int
    epoch: str
    id: str
    ts: float  # UNIX seconds, taken by the publisher
    data: Any  # JSON-able
    from_: dict[str, Any] | None = None  # {"user_id", "name"} of a client publisher

    def to_wire(self) -> dict[str, Any]:
        """The client-facing form: ``{channel, offset, epoch, id, ts, data, from?}``."""
        wire: dict[str, Any] = {
            "channel": self.channel,
            "offset": self.offset,
            "epoch": self.epoch,
            "id": self.id,
            "ts": self.ts,
            "data": self.data,
        }
        if self.from_ is not None:
            wire["from"] = self.from_
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Publication:
        return cls(
            channel=wire["channel"],
            offset=int(wire["offset"]),
            epoch=wire["epoch"],
            id=wire["id"],
            ts=float(wire["ts"]),
            data=wire.get("data"),
            from_=wire.get("from"),
        )


@dataclass
class RecoveryResult:
    """What :meth:`Broker.history` found.

    ``recovered`` is True only when ``publications`` is complete for the request; when it
    is False the list is empty (never a partial recovery) and ``position`` tells the client
    where the stream stands now. ``more`` is True when a page cap stopped ``publications``
    before ``position.offset``: the rest follows from the last offset returned.
    """

    recovered: bool
    publications: list[Publication] = field(default_factory=list)
    position: StreamPosition = field(default_factory=lambda: StreamPosition(0, ""))
    more: bool = False


@dataclass
class PresenceEvent:
    """A user's first connection joined a channel, or their last one left it."""

    channel: str
    kind: Literal["join", "leave"]
    user: dict[str, Any]  # {"user_id", "name"}

    def to_wire(self) -> dict[str, Any]:
        return {"channel": self.channel, "kind": self.kind, "user": self.user}


@dataclass(frozen=True, slots=True)
class Message:
    """A message sent on a topic with :meth:`Broker.send`: no offset, no history."""

    topic: str
    data: Any  # JSON-able


Handler = Callable[[Publication | PresenceEvent | Message], None]


def topic_list(topics: str | Iterable[str]) -> list[str]:
    """``topics`` of :meth:`Broker.send` as a list, a lone name as a list of one."""
    return [topics] if isinstance(topics, str) else list(dict.fromkeys(topics))


def encode_json(data: Any) -> bytes:
    """``data`` as JSON bytes, as the Socket.IO packets encode it (orjson, non-string keys
    allowed; the stdlib for what orjson refuses). Raises ``TypeError`` if neither can."""
    try:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(data, separators=(",", ":")).encode()


def check_recovery(
    since: StreamPosition,
    top: StreamPosition,
    publications: list[Publication],
    limit: int | None,
    page: int | None = None,
) -> RecoveryResult:
    """All-or-nothing recovery: shared by both brokers so they decide it the same way.

    ``publications`` are the retained ones after ``since.offset`` in ascending order (at
    most ``page`` of them). The result is recovered only if they are exactly
    ``since.offset + 1 ..`` up to ``top.offset``, or the first ``page`` of those (then
    ``more`` is True).
    """
    missed = top.offset - since.offset
    expected = missed if page is None else min(missed, page)
    complete = (
        since.epoch == top.epoch
        and missed >= 0
        and (limit is None or missed <= limit)
        and len(publications) == expected
        and (expected == 0 or publications[0].offset == since.offset + 1)
    )
    if not complete:
        return RecoveryResult(False, [], top)
    return RecoveryResult(True, publications, top, more=expected < missed)


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    """The part of a user that presence shows to other subscribers."""
    return {"user_id": str(user["user_id"]), "name": user.get("name")}


def fold_members(entries: Iterable[tuple[dict[str, Any], float]]) -> list[dict[str, Any]]:
    """Fold ``(user, since)`` pairs, one per connection, into one member per user."""
    members: dict[str, dict[str, Any]] = {}
    for user, since in entries:
        user_id = str(user["user_id"])
        member = members.get(user_id)
        if member is None:
            members[user_id] = {
                "user_id": user_id,
                "name": user.get("name"),
                "connections": 1,
                "since": since,
            }
        else:
            member["connections"] += 1
            member["since"] = min(member["since"], since)
    return sorted(members.values(), key=lambda m: (m["since"], m["user_id"]))
