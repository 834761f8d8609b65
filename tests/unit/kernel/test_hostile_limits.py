"""Limits that count cost: what one client can make the server keep, send back or repeat."""

from __future__ import annotations

import re

import orjson
import pytest
from pydantic import BaseModel, Field

from dihya_realtime.features.channels.events import PublishPayload
from dihya_realtime.features.channels.service import CHANNEL_RE
from dihya_realtime.features.collab.service import DOC_ID_RE
from dihya_realtime.features.notifications.inbox import _CURSOR_ID
from tests.unit.conftest import fresh_registry
from tests.unit.kernel.test_pipeline import audit_lines


def test_channel_name_with_a_trailing_newline_is_refused(rt, connect):
    alice = connect(rt)
    refused = alice.call("subscribe", {"channel": "chat:room\n"})
    assert refused["error"]["code"] == "invalid_payload"
    refused = alice.call("publish", {"channel": "chat:room\n", "data": 1})
    assert refused["error"]["code"] == "invalid_payload"


@pytest.mark.parametrize("pattern", [CHANNEL_RE, _CURSOR_ID])
def test_input_patterns_do_not_accept_a_trailing_newline(pattern: re.Pattern[str]) -> None:
    good = "chat:room" if pattern is CHANNEL_RE else "abc"
    assert pattern.match(good)
    assert not pattern.match(good + "\n")


def test_doc_id_pattern_refuses_a_trailing_newline_in_python_and_in_pydantic() -> None:
    assert not DOC_ID_RE.fullmatch("doc\n")

    class Doc(BaseModel):  # pydantic's `pattern=` is Rust regex, where `$` is end of text
        id: str = Field(pattern=DOC_ID_RE.pattern)

    with pytest.raises(ValueError):
        Doc(id="doc\n")
    assert Doc(id="doc").id == "doc"


def test_idempotency_keys_of_two_users_never_collide(rt, connect):
    # "tenant" + "17:c1-42" used to be the same key as "tenant:17" + "c1-42"
    one = connect(rt, "tenant")
    two = connect(rt, "tenant:17")
    first = one.call("publish", {"channel": "chat:general", "data": "from tenant",
                                 "idempotency_key": "17:c1-42"})
    second = two.call("publish", {"channel": "chat:general", "data": "from tenant:17",
                                  "idempotency_key": "c1-42"})
    assert first["ok"] and second["ok"], (first, second)
    assert second["data"]["offset"] == first["data"]["offset"] + 1
    # a server key cannot take a client's key either
    pub, created = rt.publish("chat:general", "server", idempotency_key="c1-42")
    assert created


class ManyInts(BaseModel):
    values: dict[str, int]


def test_validation_error_details_are_capped(make_rt, connect):
    reg = fresh_registry()

    @reg.event("test:ints", payload=ManyInts)
    def ints(ctx, payload):
        """Takes a map of ints."""
        return None

    rt = make_rt(registry_=reg)
    alice = connect(rt)
    reply = alice.call("test:ints", {"values": {f"k{i:05d}" * 40: "x" for i in range(2000)}})
    assert reply["error"]["code"] == "invalid_payload"
    details = reply["error"]["details"]
    assert len(orjson.dumps(reply)) < 8_000
    assert details[-1]["type"] == "truncated" and details[-1]["truncated"] is True
    assert all(len(d["field"]) <= 200 and len(d["message"]) <= 200 for d in details)
    row = audit_lines(rt, "invalid_payload")[-1]
    assert len(orjson.dumps(row)) < 8_000


def test_subscriptions_per_connection_are_capped(make_rt, connect):
    rt = make_rt(max_subscriptions_per_connection=3)
    alice = connect(rt)
    for i in range(3):
        assert alice.call("subscribe", {"channel": f"chat:r{i}"})["ok"]
    # subscribing again to one it has is not a new subscription
    assert alice.call("subscribe", {"channel": "chat:r0"})["ok"]
    refused = alice.call("subscribe", {"channel": "chat:r3"})
    assert refused["error"]["code"] == "forbidden"
    assert refused["error"]["details"] == {"reason": "subscriptions", "limit": 3}
    assert alice.call("unsubscribe", {"channel": "chat:r0"})["ok"]
    assert alice.call("subscribe", {"channel": "chat:r3"})["ok"]


def _publish(client, n: int, size: int = 10) -> dict:
    first = None
    for i in range(n):
        reply = client.call("publish", {"channel": "chat:general", "data": "x" * size + str(i)})
        assert reply["ok"], reply
        first = first or reply["data"]
    assert first is not None
    return first


def test_recovery_on_subscribe_pages_by_count_and_the_client_continues_with_history(
        make_rt, connect):
    rt = make_rt(history_page_max_count=4)
    bob, alice = connect(rt, "bob"), connect(rt, "alice")
    epoch = _publish(bob, 10)["epoch"]
    reply = alice.call("subscribe", {"channel": "chat:general",
                                     "since": {"offset": 0, "epoch": epoch}})["data"]
    assert reply["recovered"] is True and reply["more"] is True and reply["offset"] == 10
    got = [p["offset"] for p in reply["publications"]]
    assert got == [1, 2, 3, 4]
    while True:
        page = alice.call("history", {"channel": "chat:general",
                                      "since": {"offset": got[-1], "epoch": epoch}})["data"]
        assert page["recovered"] is True
        got += [p["offset"] for p in page["publications"]]
        if not page["more"]:
            break
    assert got == list(range(1, 11))


def test_recovery_pages_by_bytes(make_rt, connect):
    rt = make_rt(history_page_max_bytes=30_000)
    bob, alice = connect(rt, "bob"), connect(rt, "alice")
    epoch = _publish(bob, 6, size=10_000)["epoch"]
    reply = alice.call("subscribe", {"channel": "chat:general",
                                     "since": {"offset": 0, "epoch": epoch}})
    data = reply["data"]
    assert data["more"] is True and 1 <= len(data["publications"]) <= 3
    assert len(orjson.dumps(reply)) < 40_000
    latest = alice.call("history", {"channel": "chat:general"})["data"]
    assert latest["more"] is False and 1 <= len(latest["publications"]) <= 3
    assert latest["publications"][-1]["offset"] == 6  # the newest page


def test_retained_memory_after_idempotent_publishes_is_bounded(make_rt, connect):
    """2,000 publishes of 60 KB with idempotency keys used to keep ~120 MB for 5 minutes."""
    import tracemalloc

    rt = make_rt(rate_limit_events={"publish": {"rate": 100_000, "burst": 100_000}},
                 rate_limit_user={"rate": 100_000, "burst": 100_000})
    alice = connect(rt)
    channel = rt.channels.resolve("chat:general")
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(2000):
            rt.channels.publish(channel.channel, "x" * 60_000 + str(i), ref=channel,
                                idempotency_key=f"k-{i}")
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert alice.connected
    assert retained < 12 * 1024 * 1024, retained


def test_publish_payload_json_value_is_untouched():
    assert PublishPayload.model_validate({"channel": "chat:a", "data": [1]}).data == [1]


def test_a_new_channel_past_the_history_channels_cap_is_refused_and_old_history_stays(
        make_rt, connect):
    rt = make_rt(max_history_channels=2)
    alice = connect(rt)
    for room in ("a", "b"):
        assert alice.call("publish", {"channel": f"chat:{room}", "data": room})["ok"]
    refused = alice.call("publish", {"channel": "chat:c", "data": "c"})
    assert refused["error"]["code"] == "unavailable"
    assert refused["error"]["details"] == {"reason": "history_channels", "limit": 2}
    kept = alice.call("history", {"channel": "chat:a"})["data"]["publications"]
    assert [p["data"] for p in kept] == ["a"]


def test_http_history_is_paged_too(make_rt, connect):
    from dihya_realtime.kernel.auth import hash_api_key

    rt = make_rt(history_page_max_count=2, api_keys=hash_api_key("k" * 24))
    bob = connect(rt, "bob")
    epoch = _publish(bob, 5)["epoch"]
    http = rt.app.test_client().get(
        f"/api/v1/channels/chat:general/history?since_offset=0&since_epoch={epoch}",
        headers={"X-API-Key": "k" * 24})
    data = http.get_json()["data"]
    assert data["recovered"] is True and data["more"] is True
    assert [p["offset"] for p in data["publications"]] == [1, 2]


def test_a_repeated_client_publish_answers_the_first_result(rt, connect):
    alice = connect(rt)
    payload = {"channel": "chat:general", "data": "x" * 1000, "idempotency_key": "k-1"}
    first, again = alice.call("publish", payload), alice.call("publish", payload)
    assert first["ok"] and again["ok"]
    assert again["data"] == first["data"]


def test_an_unknown_event_name_is_clipped_in_the_reply_and_the_audit(rt, connect):
    alice = connect(rt)
    reply = alice.call("x" * 20_000)
    assert reply["error"]["code"] == "not_found"
    assert len(orjson.dumps(reply)) < 1_000
    assert len(orjson.dumps(audit_lines(rt, "unknown_event")[-1])) < 2_000


def test_subscriptions_being_set_up_count_toward_the_cap(make_rt, connect):
    rt = make_rt(max_subscriptions_per_connection=2)
    alice = connect(rt)
    conn = next(iter(rt.connections))
    original = rt.broker.position
    nested: list[dict] = []

    def subscribe_two_more_meanwhile(channel, history):
        if not nested:  # while chat:a is being set up, two more arrive
            nested.append({})
            for name in ("chat:b", "chat:c"):
                ref = rt.channels.resolve(name)
                try:
                    nested.append(rt.channels.subscribe(conn, ref, None)[0])
                except Exception as exc:  # noqa: BLE001
                    nested.append({"refused": getattr(exc, "details", None)})
        return original(channel, history)

    rt.broker.position = subscribe_two_more_meanwhile
    try:
        assert alice.call("subscribe", {"channel": "chat:a"})["ok"]
    finally:
        rt.broker.position = original
    assert nested[-1] == {"refused": {"reason": "subscriptions", "limit": 2}}
    assert conn.channels == {"chat:a", "chat:b"}
    assert rt.channels._reserved == {}
