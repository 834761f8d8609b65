"""ChannelStream: each publication once, gaps seen, memory bounded."""

from __future__ import annotations

from dihya_realtime.client.positions import ChannelStream, Position


def pub(offset: int, epoch: str = "e1", id_: str | None = None) -> dict:
    return {"channel": "live:x", "offset": offset, "epoch": epoch,
            "id": id_ or f"{epoch}-{offset}", "data": offset}


def test_publications_at_or_before_the_position_are_repeats():
    stream = ChannelStream(Position(5, "e1"))
    assert not stream.accept(pub(4))
    assert not stream.accept(pub(5))
    assert stream.accept(pub(6))
    assert not stream.accept(pub(6))
    assert stream.position == Position(6, "e1")


def test_a_jump_in_offset_within_the_epoch_is_a_gap():
    stream = ChannelStream(Position(5, "e1"))
    assert not stream.is_gap(pub(6))
    assert stream.is_gap(pub(8))
    assert not stream.is_gap(pub(8, epoch="e2"))  # another epoch: no offsets to compare
    assert not ChannelStream().is_gap(pub(8))  # no position yet


def test_a_new_epoch_replaces_the_position_and_ids_tell_repeats_across_epochs():
    stream = ChannelStream(Position(50, "e1"))
    assert stream.accept(pub(1, epoch="e2", id_="same"))
    assert stream.position == Position(1, "e2")
    assert not stream.accept(pub(9, epoch="e3", id_="same"), any_epoch=True)


def test_the_seen_ids_are_capped_oldest_first():
    stream = ChannelStream(max_seen=3)
    for offset in range(1, 6):
        assert stream.accept(pub(offset, epoch=f"e{offset}"))  # a new epoch each time
    assert stream.seen_count == 3
    assert stream.accept(pub(1, epoch="e1"), any_epoch=True)  # forgotten: accepted again
    assert not stream.accept(pub(5, epoch="e5"), any_epoch=True)


def test_held_publications_are_capped_and_released_in_offset_order():
    stream = ChannelStream(Position(1, "e1"), max_held=3)
    stream.start_holding()
    for offset in (5, 3, 4, 6):
        stream.hold(pub(offset))
    assert stream.held_overflowed
    assert [p["offset"] for p in stream.release()] == [3, 4, 5]
    assert not stream.holding
