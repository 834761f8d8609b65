"""Event names a client sends that are reserved or unknown: never dispatched, rate limited
before they are audited, audited even when the name is not valid UTF-8."""

from __future__ import annotations

from tests.unit.kernel.test_pipeline import audit_lines


def test_a_client_cannot_fake_the_disconnect_event_to_escape_kicks(rt, connect):
    mallory = connect(rt, "mallory")
    reply = mallory.call("disconnect")
    assert reply["error"]["code"] == "not_found"
    assert [c.user_id for c in rt.connections] == ["mallory"]  # still tracked
    rt.disconnect_user("mallory", "kicked")
    assert not mallory.is_connected()


def test_a_client_cannot_fake_the_connect_event_to_forge_its_address(rt, connect):
    mallory = connect(rt, "mallory")
    reply = mallory.call("connect", {"REMOTE_ADDR": "10.6.6.6"}, {"token": "x"})
    assert reply["error"]["code"] == "not_found"
    assert {c.remote_addr for c in rt.connections} != {"10.6.6.6"}
    assert len(rt.connections) == 1


def test_unknown_events_are_rate_limited_before_they_are_audited(make_rt, connect):
    rt = make_rt(rate_limit_event={"rate": 0.01, "burst": 3}, rate_limit_abuse_strikes=3)
    client = connect(rt)
    codes = []
    for _ in range(20):
        if not client.is_connected():
            break
        try:
            codes.append(client.call("no:such")["error"]["code"])
        except RuntimeError:
            break
    assert codes[:3] == ["not_found"] * 3 and "rate_limited" in codes
    assert len(audit_lines(rt, "unknown_event")) == 3
    assert not client.is_connected()


def test_an_event_name_with_a_lone_surrogate_is_still_audited(rt, connect):
    client = connect(rt)
    assert client.call("x\ud800")["error"]["code"] == "not_found"
    assert len(audit_lines(rt, "unknown_event")) == 1
