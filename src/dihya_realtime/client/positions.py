"""Where a client is in one channel's stream, and which publications it still owes the app.

Pure bookkeeping, no I/O: :class:`ChannelStream` decides for each publication whether it is
new (deliver), a repeat (drop) or past a gap (fill from ``history`` first). Publications are
numbered by ``offset`` within an ``epoch`` (docs/events.md); across epochs (a server that lost
its history) only the ``id`` tells a repeat, so the ids recently delivered are kept — at most
``max_seen`` of them. Publications that arrive while the stream is being caught up are held
(at most ``max_held``; past that they are dropped and the catch-up reads them from history).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

SEEN_IDS_KEPT = 2000
HELD_KEPT = 10_000


@dataclass(frozen=True)
class Position:
    """The last publication delivered: what ``since`` asks the server to continue after."""

    offset: int
    epoch: str

    def to_wire(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch}


class ChannelStream:
    """One channel's position, recent ids and held publications. Not thread-safe on its own:
    the client touches it from its dispatcher thread only."""

    def __init__(self, position: Position | None = None, max_seen: int = SEEN_IDS_KEPT,
                 max_held: int = HELD_KEPT) -> None:
        self.position = position
        self.max_seen = max_seen
        self.max_held = max_held
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._held: list[dict[str, Any]] | None = None
        self.held_overflowed = False

    # -- deciding
    def is_duplicate(self, pub: dict[str, Any]) -> bool:
        pos = self.position
        if pos is not None and pub.get("epoch") == pos.epoch and pub["offset"] <= pos.offset:
            return True
        return pub.get("id") in self._seen

    def is_gap(self, pub: dict[str, Any]) -> bool:
        """True when publications between the position and ``pub`` were never delivered."""
        pos = self.position
        return (pos is not None and pub.get("epoch") == pos.epoch
                and pub["offset"] > pos.offset + 1)

    def accept(self, pub: dict[str, Any], any_epoch: bool = False) -> bool:
        """Record ``pub`` as delivered and move the position; False for a repeat.

        ``any_epoch``: history read after a failed recovery, where only the id tells a repeat.
        """
        if any_epoch:
            if pub.get("id") in self._seen:
                return False
        elif self.is_duplicate(pub):
            return False
        self._remember(pub.get("id"))
        self.advance(pub["offset"], pub["epoch"])
        return True

    def advance(self, offset: int, epoch: str) -> None:
        """Move forward (a new epoch replaces the old position whatever its offset)."""
        pos = self.position
        if pos is None or pos.epoch != epoch or offset > pos.offset:
            self.position = Position(int(offset), str(epoch))

    def _remember(self, pub_id: Any) -> None:
        if pub_id is None:
            return
        self._seen[pub_id] = None
        self._seen.move_to_end(pub_id)
        while len(self._seen) > self.max_seen:
            self._seen.popitem(last=False)

    @property
    def seen_count(self) -> int:
        return len(self._seen)

    # -- holding live publications during a catch-up
    @property
    def holding(self) -> bool:
        return self._held is not None

    def start_holding(self) -> None:
        if self._held is None:
            self._held = []
            self.held_overflowed = False

    def hold(self, pub: dict[str, Any]) -> None:
        assert self._held is not None, "not holding"
        if len(self._held) >= self.max_held:
            self.held_overflowed = True  # the catch-up reads the rest from history
            return
        self._held.append(pub)

    def release(self) -> list[dict[str, Any]]:
        """Stop holding; the held publications, current epoch in offset order first."""
        held, self._held = self._held or [], None
        epoch = self.position.epoch if self.position else None
        return sorted(held, key=lambda p: (p.get("epoch") != epoch, p.get("offset", 0)))
