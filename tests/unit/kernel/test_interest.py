"""The one interest rule: watch on first use, unwatch a linger after the last, not while used."""

from __future__ import annotations

import time
from types import SimpleNamespace

from dihya_realtime.kernel.interest import Interest


class Broker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def watch(self, topic: str) -> None:
        self.calls.append(("watch", topic))

    def unwatch(self, topic: str) -> None:
        self.calls.append(("unwatch", topic))


def make(linger: float, used: set[str], idle: list[str] | None = None) -> tuple[Interest, Broker]:
    broker = Broker()
    server = SimpleNamespace(start_background_task=lambda fn: None, sleep=time.sleep)
    interest = Interest("test", broker, linger, in_use=used.__contains__,
                        topic_of=lambda key: f"t:{key}", server=lambda: server,
                        on_idle=(idle.append if idle is not None else None))
    return interest, broker


def test_acquire_watches_the_keys_topic():
    interest, broker = make(5, {"a"})
    interest.acquire("a")
    assert broker.calls == [("watch", "t:a")]


def test_release_of_a_key_still_in_use_changes_nothing():
    interest, broker = make(5, {"a"})
    interest.release("a")
    assert broker.calls == [] and not interest.lingering("a")


def test_an_unused_key_is_unwatched_only_after_the_linger():
    used: set[str] = set()
    idle: list[str] = []
    interest, broker = make(5, used, idle)
    interest.release("a")
    assert idle == ["a"] and interest.lingering("a")
    assert interest.tick(time.monotonic()) is True  # still lingering
    assert broker.calls == []
    assert interest.tick(time.monotonic() + 6) is False
    assert broker.calls == [("unwatch", "t:a")]


def test_a_key_used_again_within_the_linger_stays_watched():
    used: set[str] = set()
    interest, broker = make(5, used)
    interest.release("a")
    used.add("a")
    interest.acquire("a")
    interest.tick(time.monotonic() + 6)
    assert broker.calls == [("watch", "t:a")]


def test_without_linger_an_unused_key_is_unwatched_at_once():
    interest, broker = make(0, set())
    interest.release("a")
    assert broker.calls == [("unwatch", "t:a")]
