"""``DIHYA_RT_RATE_LIMIT_EVENTS`` overrides an event's declared rate limit."""

from __future__ import annotations


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
    from dihya_realtime.kernel.settings import load_settings

    monkeypatch.setenv("DIHYA_RT_RATE_LIMIT_EVENTS", '{"publish": {"rate": 500, "burst": 1000}}')
    limit = load_settings().rate_limit_events["publish"]
    assert (limit.rate, limit.burst) == (500, 1000)
