"""``resync``: every connection of this process, once per re-subscription, and only where the
broker's fan-out can be lost (the integration test cuts a real Redis link)."""

from __future__ import annotations

from dihya_realtime.features.session.resync import ResyncNotice


def test_with_the_memory_broker_nothing_is_attached(rt) -> None:
    assert ResyncNotice(rt).attach() is False


def test_a_redis_process_tells_each_of_its_connections_once_per_resubscription(
        process, connect) -> None:
    rt = process("a")
    hooks = rt.broker._listener.resubscribed  # the session feature attached it at setup
    notices = [h.__self__ for h in hooks if isinstance(getattr(h, "__self__", None),
                                                       ResyncNotice)]
    assert len(notices) == 1
    notice = notices[0]
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    for client in (alice, bob):
        client.get_received()
    notice.tell()
    for client in (alice, bob):
        got = [m for m in client.get_received() if m["name"] == "resync"]
        assert [m["args"][0] for m in got] == [{"reason": "fanout_restored"}]
    assert notice.told == 2
    bob.disconnect()
    notice.tell()
    assert [m["name"] for m in alice.get_received() if m["name"] == "resync"] == ["resync"]
    assert notice.told == 3
