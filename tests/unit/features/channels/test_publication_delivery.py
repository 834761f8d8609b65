"""A publication is redacted and emitted only when this process has subscribers to it."""

from __future__ import annotations


def test_publication_without_local_subscribers_is_not_redacted_or_emitted(rt, connect):
    seen: list[str] = []
    redact = rt.redact

    def spy(value, *, event, conn=None):
        seen.append(event)
        return redact(value, event=event, conn=conn)

    rt.redact = spy
    publisher = connect(rt, "bob")
    assert publisher.call("publish", {"channel": "chat:empty", "data": {"n": 1}})["ok"]
    assert "publication" not in seen  # nobody here subscribes: no redaction, no emit
    listener = connect(rt, "alice")
    assert listener.call("subscribe", {"channel": "chat:empty"})["ok"]
    assert publisher.call("publish", {"channel": "chat:empty", "data": {"n": 2}})["ok"]
    assert "publication" in seen
    assert [p["data"] for p in listener.events("publication")] == [{"n": 2}]
