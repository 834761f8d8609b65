"""The catch-up's memory of delivered positions stays bounded, and is not kept at all with
the memory broker (whose fan-out cannot be lost)."""

from __future__ import annotations

from types import SimpleNamespace

from dihya_realtime.broker import Publication, StreamPosition
from dihya_realtime.features.channels.catchup import PRUNE_FLOOR, FanoutCatchUp


def _channels(rooms: dict, with_hook: bool = True) -> SimpleNamespace:
    broker = SimpleNamespace()
    if with_hook:
        broker.add_resubscribe_hook = lambda fn: None
    manager = SimpleNamespace(rooms={"/": rooms})
    rt = SimpleNamespace(socketio=SimpleNamespace(server=SimpleNamespace(manager=manager)))
    return SimpleNamespace(broker=broker, rt=rt)


def _pub(channel: str, offset: int, epoch: str = "e") -> Publication:
    return Publication(channel, offset, epoch, f"id{offset}", 0.0, None, None)


def test_positions_of_abandoned_channels_are_forgotten() -> None:
    rooms: dict = {"ch:live:kept": {"sid1": "eio1"}}
    catchup = FanoutCatchUp(_channels(rooms))  # type: ignore[arg-type]
    catchup.subscribed("live:kept", StreamPosition(3, "e"))
    for i in range(PRUNE_FLOOR * 3):
        catchup.subscribed(f"live:gone{i}", StreamPosition(1, "e"))
    assert len(catchup._positions) <= PRUNE_FLOOR + 1
    assert catchup._positions["live:kept"] == StreamPosition(3, "e")


def test_duplicates_after_a_catch_up_are_dropped_in_order() -> None:
    catchup = FanoutCatchUp(_channels({"ch:live:a": {"s": "e"}}))  # type: ignore[arg-type]
    catchup.subscribed("live:a", StreamPosition(1, "e"))
    assert catchup.accept(_pub("live:a", 2), local=True)
    assert catchup.accept(_pub("live:a", 3), local=True)
    assert not catchup.accept(_pub("live:a", 3), local=True)
    assert not catchup.accept(_pub("live:a", 2), local=True)
    assert catchup.accept(_pub("live:a", 1, epoch="new"), local=True)  # a new epoch


def test_nothing_is_tracked_with_the_memory_broker() -> None:
    catchup = FanoutCatchUp(_channels({}, with_hook=False))  # type: ignore[arg-type]
    catchup.subscribed("live:a", StreamPosition(1, "e"))
    assert catchup.accept(_pub("live:a", 1), local=True)
    assert catchup.accept(_pub("live:a", 1), local=True)
    assert not catchup._positions
