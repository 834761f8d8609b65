"""The hot-path changes of issue 6 keep behaviour: rate-limit overrides, packet JSON, and the
skipped emit of a publication nobody on this process subscribes to."""

from __future__ import annotations

import json
import math

from dihya_realtime.server import PacketJSON


def test_rate_limit_events_setting_overrides_the_declared_limit(make_rt, connect):
    # `publish` declares 50/s burst 100; the setting wins, both ways
    rt = make_rt(rate_limit_events={"publish": {"rate": 0.001, "burst": 2}})
    client = connect(rt)
    body = {"channel": "chat:general", "data": {"n": 1}}
    assert client.call("publish", body)["ok"] and client.call("publish", body)["ok"]
    assert client.call("publish", body)["error"]["code"] == "rate_limited"
    # other events keep their own limits
    assert client.call("subscribe", {"channel": "chat:general"})["ok"]


def test_rate_limit_events_setting_parses_from_the_environment(monkeypatch):
    from dihya_realtime.settings import load_settings

    monkeypatch.setenv("DIHYA_RT_RATE_LIMIT_EVENTS", '{"publish": {"rate": 500, "burst": 1000}}')
    limit = load_settings().rate_limit_events["publish"]
    assert (limit.rate, limit.burst) == (500, 1000)


def test_packet_json_matches_the_stdlib_and_falls_back_where_orjson_refuses():
    doc = {"a": [1, 2.5, None, True], "é": "ü", "n": {"x": "y"}}
    assert json.loads(PacketJSON.dumps(doc, separators=(",", ":"))) == doc
    assert PacketJSON.dumps({1: "int key"}) == '{"1":"int key"}'
    big = 2**70  # past orjson's 64-bit integers: the stdlib encodes it
    assert json.loads(PacketJSON.dumps({"big": big})) == {"big": big}
    assert math.isnan(PacketJSON.loads('{"x": NaN}')["x"])  # a stdlib-only literal
    assert PacketJSON.loads(b'[1,"two"]') == [1, "two"]


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
