"""The connection lifecycle's hooks: every hook runs, a failing one never hides the others."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dihya_realtime.kernel.lifecycle import Hooks, refusal


def test_a_failing_connect_hook_is_logged_and_the_next_still_runs(caplog):
    hooks, ran = Hooks(), []
    hooks.connect.append(lambda conn: 1 / 0)
    hooks.connect.append(lambda conn: ran.append(conn))
    hooks.connected("conn")
    assert ran == ["conn"]
    assert "connect hook" in caplog.text


def test_a_failing_disconnect_hook_does_not_stop_the_others():
    hooks, ran = Hooks(), []
    hooks.disconnect.append(lambda conn, reason: ran.append(("first", reason)))
    hooks.disconnect.append(lambda conn, reason: 1 / 0)
    hooks.disconnect.append(lambda conn, reason: ran.append(("third", reason)))
    hooks.disconnected("conn", "transport close")
    assert ran == [("first", "transport close"), ("third", "transport close")]


def test_refresh_runs_every_hook_then_raises_the_first_failure():
    hooks, ran = Hooks(), []

    def broken(ctx):
        raise KeyError("first")

    def also_broken(ctx):
        raise ValueError("second")

    hooks.refresh.extend([broken, lambda ctx: ran.append(ctx), also_broken])
    ctx = SimpleNamespace()
    with pytest.raises(KeyError, match="first"):
        hooks.refreshed(ctx)
    assert ran == [ctx]


def test_a_refusal_carries_its_error_at_the_top_and_under_data():
    exc = refusal({"code": "rate_limited", "message": "slow down", "retry_after": 1.0})
    assert str(exc) == "slow down"
    assert exc.error_args["code"] == "rate_limited"
    assert exc.error_args["data"] == {"code": "rate_limited", "message": "slow down",
                                      "retry_after": 1.0}


def test_realtime_hooks_are_the_lifecycles(rt):
    seen = []
    rt.on_connect(lambda conn: seen.append(conn.user_id))
    assert rt.connect_hooks is rt.lifecycle.hooks.connect
    rt.lifecycle.hooks.connected(SimpleNamespace(user_id="alice"))
    assert seen == ["alice"]

