"""The client's channel logic against a scripted server: subscribe with ``since``, paging,
gap filling from history, failed recovery, ``unsubscribed``/``recover``, ``resync``.

The dispatcher's steps are called directly (they run on its thread in real use); the
server's replies come from a fake ``call`` that records what was asked.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dihya_realtime.client import Client, Position, RealtimeError, RecoveryFailed


def pub(offset: int, epoch: str = "e1") -> dict[str, Any]:
    return {"channel": "live:x", "offset": offset, "epoch": epoch, "id": f"{epoch}-{offset}",
            "ts": 0.0, "data": {"n": offset}}


class FakeServer:
    """Answers ``subscribe`` and ``history`` from a list of publications in one epoch, with
    pages of ``page`` publications; ``retained_from`` is the oldest offset history has."""

    def __init__(self, client: Client, last: int, epoch: str = "e1", page: int = 100,
                 retained_from: int = 1) -> None:
        self.epoch, self.page, self.last, self.retained_from = epoch, page, last, retained_from
        self.asked: list[tuple[str, dict]] = []
        client.call = self.call  # type: ignore[method-assign]

    def after(self, since: dict | None) -> dict[str, Any]:
        if since is None:
            return {"publications": [], "recovered": False, "more": False}
        if since["epoch"] != self.epoch or since["offset"] + 1 < self.retained_from:
            return {"publications": [], "recovered": False, "more": False}
        offsets = list(range(since["offset"] + 1, self.last + 1))
        return {"publications": [pub(o, self.epoch) for o in offsets[:self.page]],
                "recovered": True, "more": len(offsets) > self.page}

    def call(self, event: str, payload: Any = None, timeout: float | None = None) -> Any:
        self.asked.append((event, payload))
        if event in ("subscribe", "history"):
            return {"channel": payload["channel"], "offset": self.last, "epoch": self.epoch,
                    **self.after(payload.get("since"))}
        raise AssertionError(f"unexpected call {event}")


@pytest.fixture
def client() -> Iterator[Client]:
    made = Client("http://127.0.0.1:9")
    yield made
    made.close()


def subscribed(client: Client, since: Position | None = None):
    got: list[dict] = []
    failures: list[RecoveryFailed] = []
    sub = client.subscribe("live:x", got.append, on_recovery_failed=failures.append,
                           since=since)
    return sub, got, failures


def test_resubscribing_with_since_delivers_what_was_missed_over_every_page(client):
    server = FakeServer(client, last=14, page=5)
    sub, got, failures = subscribed(client, Position(2, "e1"))
    client._subscribe(sub)
    assert [p["offset"] for p in got] == list(range(3, 15))
    assert [e for e, _ in server.asked] == ["subscribe", "history", "history"]
    assert server.asked[1][1]["since"] == {"offset": 7, "epoch": "e1"}
    assert sub.ready.result(0)["offset"] == 14
    assert failures == []


def test_a_live_offset_gap_is_filled_from_history_in_order(client):
    server = FakeServer(client, last=0)
    sub, got, failures = subscribed(client)
    client._subscribe(sub)
    server.last = 1
    client._on_publication(pub(1))
    server.last = 6  # 2..5 were never fanned out to us
    client._on_publication(pub(6))
    client._on_publication(pub(4))  # a late copy of one the history gave
    client._on_publication(pub(7))
    assert [p["offset"] for p in got] == [1, 2, 3, 4, 5, 6, 7]
    assert failures == []


def test_a_gap_after_the_subscribe_position_fills_exactly(client):
    server = FakeServer(client, last=3)
    sub, got, _ = subscribed(client)
    client._subscribe(sub)  # position 3
    server.last = 7
    client._on_publication(pub(7))
    client._on_publication(pub(5))
    client._on_publication(pub(8))
    assert [p["offset"] for p in got] == [4, 5, 6, 7, 8]
    assert ("history", {"channel": "live:x", "since": {"offset": 3, "epoch": "e1"}}) \
        in server.asked


def test_a_new_epoch_on_resubscribe_calls_on_recovery_failed_never_a_silent_gap(client):
    FakeServer(client, last=4, epoch="e2")
    sub, got, failures = subscribed(client, Position(9, "e1"))
    client._subscribe(sub)
    assert got == []
    assert failures == [RecoveryFailed("live:x", Position(9, "e1"), Position(4, "e2"),
                                       "not_recovered")]
    client._on_publication(pub(5, "e2"))
    assert [p["offset"] for p in got] == [5]


def test_a_gap_history_no_longer_holds_calls_on_recovery_failed_then_goes_on(client):
    server = FakeServer(client, last=3)
    sub, got, failures = subscribed(client)
    client._subscribe(sub)
    server.last, server.retained_from = 9, 8  # 4..7 trimmed away
    client._on_publication(pub(9))
    assert [f.reason for f in failures] == ["history"]
    assert [p["offset"] for p in got] == [9]


def test_unsubscribed_with_reason_recover_subscribes_again_with_since(client):
    server = FakeServer(client, last=2)
    sub, got, _ = subscribed(client)
    client._subscribe(sub)
    server.last = 4
    client._on_server_event("unsubscribed", {"channel": "live:x", "reason": "recover"})
    assert server.asked[-1] == ("subscribe", {"channel": "live:x",
                                              "since": {"offset": 2, "epoch": "e1"}})
    assert [p["offset"] for p in got] == [3, 4]
    assert client.subscription("live:x") is sub


def test_unsubscribed_for_another_reason_drops_the_subscription(client):
    FakeServer(client, last=0)
    sub, got, _ = subscribed(client)
    client._subscribe(sub)
    client._on_server_event("unsubscribed", {"channel": "live:x", "reason": "forbidden"})
    client._on_publication(pub(1))
    assert client.subscription("live:x") is None and not sub.active
    assert sub.closed_reason == "forbidden" and got == []


def test_a_refused_subscribe_fails_ready_and_forgets_the_channel(client):
    def refuse(event: str, payload: Any = None, timeout: float | None = None) -> Any:
        raise RealtimeError("forbidden", "no", {"reason": "subscriptions", "limit": 200})

    client.call = refuse  # type: ignore[method-assign]
    sub, _, _ = subscribed(client)
    client._subscribe(sub)
    with pytest.raises(RealtimeError) as exc:
        sub.ready.result(0)
    assert exc.value.details == {"limit": 200, "reason": "subscriptions"}
    assert client.subscription("live:x") is None


def test_a_subscribe_cut_by_a_disconnect_waits_for_the_next_connect(client):
    def lost(event: str, payload: Any = None, timeout: float | None = None) -> Any:
        raise RealtimeError("disconnected", "gone")

    client.call = lost  # type: ignore[method-assign]
    sub, _, _ = subscribed(client)
    client._subscribe(sub)
    assert not sub.ready.done() and client.subscription("live:x") is sub


def test_resync_and_other_server_events_reach_on_handlers(client):
    seen: list[tuple[str, Any]] = []
    client.on("resync", lambda data: seen.append(("resync", data)))
    client.on("notifications:new", lambda data: seen.append(("new", data)))
    client._on_server_event("resync", {"reason": "fanout_restored"})
    client._on_server_event("notifications:new", {"id": 1})
    assert seen == [("resync", {"reason": "fanout_restored"}), ("new", {"id": 1})]


def test_auth_expiring_sends_auth_refresh_with_a_fresh_token(client):
    tokens = iter(["t2"])
    client._get_token = lambda: next(tokens)
    sent: list[tuple[str, Any]] = []
    client.call = lambda event, payload=None, timeout=None: sent.append((event, payload))  # type: ignore[method-assign]
    client._on_server_event("auth:expiring", {"expires_in": 5})
    assert sent == [("auth:refresh", {"token": "t2"})]
    assert client.token == "t2"


def test_the_handshake_asks_get_token_every_time_and_survives_its_failure():
    calls = iter(["a", "b"])

    def get_token() -> str:
        return next(calls)  # the third call raises StopIteration

    client = Client("http://127.0.0.1:9", get_token=get_token)
    try:
        assert client._auth() == {"token": "a"}
        assert client._auth() == {"token": "b"}
        assert client._auth() == {"token": "b"}  # the previous token, logged
    finally:
        client.close()


def test_a_publication_without_offset_is_ignored(client):
    FakeServer(client, last=0)
    sub, got, _ = subscribed(client)
    client._subscribe(sub)
    client._on_publication({"channel": "live:x", "offset": "1", "epoch": "e1", "id": "z"})
    assert got == []
