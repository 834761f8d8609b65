"""The pytest plugin as a host app uses it: a tiny app with its own ``@rt.event``, tested in
this process (Flask-SocketIO test client) and against a real server process serving its
factory, in a pytest run of its own (``pytester``), with the plugin found by its entry point.
"""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points

import dihya_realtime.testing as plugin

pytest_plugins = ["pytester"]

HOST_APP = '''
from flask import Flask
from pydantic import BaseModel, Field

from dihya_realtime import Realtime


class VotePayload(BaseModel):
    poll_id: str
    choice: int = Field(ge=0, le=9)


def create_app(**overrides):
    app = Flask(__name__)
    rt = Realtime(app, **overrides)

    @rt.event("poll:vote", payload=VotePayload)
    def vote(ctx, payload):
        """Vote in a poll. Payload example: {"poll_id": "p1", "choice": 2}."""
        rt.publish(f"live:poll-{payload.poll_id}", {"choice": payload.choice})
        return {"accepted": True}

    return app
'''

CONFTEST = '''
import pytest

from pollapp import create_app


@pytest.fixture
def rt_app_factory():
    return create_app
'''

HOST_TESTS = '''
import threading

import pytest

from dihya_realtime.client import RealtimeError


def test_vote_in_process(rt_test_client):
    assert rt_test_client.call("poll:vote", {"poll_id": "p1", "choice": 2}) == {"accepted": True}
    with pytest.raises(RealtimeError) as refused:
        rt_test_client.call("poll:vote", {"poll_id": "p1", "choice": 42})
    assert refused.value.code == "invalid_payload"


def test_vote_reaches_subscribers_in_process(rt_connect):
    voter, watcher = rt_connect("alice"), rt_connect("bob")
    watcher.call("subscribe", {"channel": "live:poll-p1"})
    voter.call("poll:vote", {"poll_id": "p1", "choice": 3})
    assert [p["data"] for p in watcher.events("publication")] == [{"choice": 3}]


def test_vote_on_a_real_server(rt_server, rt_client):
    voter, watcher = rt_client("alice"), rt_client("bob")
    got, arrived = [], threading.Event()
    sub = watcher.subscribe("live:poll-p1", lambda p: (got.append(p), arrived.set()))
    sub.ready.result(timeout=5)
    assert voter.call("poll:vote", {"poll_id": "p1", "choice": 4}) == {"accepted": True}
    assert arrived.wait(5)
    assert got[0]["data"] == {"choice": 4}
    with pytest.raises(RealtimeError) as refused:
        voter.call("poll:vote", {"poll_id": "p1", "choice": 42})
    assert refused.value.code == "invalid_payload"
    assert rt_server.running
'''


def test_the_plugin_is_registered_under_pytest11():
    found = [e for e in entry_points(group="pytest11") if e.name == "dihya_realtime"]
    assert [e.value for e in found] == ["dihya_realtime.testing"]


def test_the_plugin_only_adds_rt_fixtures_none_autouse_and_no_hook():
    fixtures = [name for name, value in vars(plugin).items()
                if hasattr(value, "_fixture_function_marker") or
                type(value).__name__ == "FixtureFunctionDefinition"]
    assert sorted(fixtures) == sorted(plugin.__all__)
    assert all(name.startswith("rt_") for name in fixtures)
    assert "autouse" not in inspect.getsource(plugin)
    # no hook: loading the plugin changes nothing for a suite that uses none of its fixtures
    assert [name for name in vars(plugin) if name.startswith("pytest_")] == []


def test_a_host_app_tests_its_own_event_in_process_and_on_a_real_server(pytester):
    pytester.makepyfile(pollapp=HOST_APP, conftest=CONFTEST, test_poll=HOST_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120)
    result.assert_outcomes(passed=3)


def test_without_a_factory_the_fixtures_serve_the_built_in_app(pytester):
    pytester.makepyfile(test_builtin='''
def test_whoami_both_ways(rt_test_client, rt_client):
    assert rt_test_client.call("whoami")["user_id"] == "alice"
    assert rt_client("bob", roles=["user", "moderator"]).call("whoami")["roles"] == [
        "user", "moderator"]
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=120)
    result.assert_outcomes(passed=1)
