"""Collab awareness crosses processes over the control bus, and never over the Socket.IO queue.

Two Realtime objects on one database and one Redis broker stand in for two processes; their
Socket.IO servers have no message queue, so whatever reaches a client of the other process
crossed on the broker. Each process's emits are also recorded where they leave the feature.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask_socketio import SocketIO

from dihya_realtime.realtime import Realtime
from tests.unit.conftest import fresh_registry

Emitted = list[tuple[str, Any, str | None]]


@pytest.fixture
def process(settings_overrides, redis_url, redis_prefix, tmp_path, monkeypatch
            ) -> Iterator[Callable[[str], tuple[Realtime, Emitted]]]:
    """``process(name)``: a Realtime on the shared database and Redis, and what it emits."""
    made: list[Realtime] = []

    def make(name: str) -> tuple[Realtime, Emitted]:
        rt = Realtime(registry_=fresh_registry(), **{
            **settings_overrides, "docs_compact_idle": 0, "redis_url": redis_url,
            "redis_prefix": redis_prefix, "audit_log": str(tmp_path / f"{name}.log")})
        rt.db.migrate()
        app = Flask(name)
        app.config["SECRET_KEY"] = "test-session-key"
        rt.init_app(app, socketio=SocketIO(app, async_mode="threading"))  # no message queue
        emitted: Emitted = []
        emit = rt.emit

        def record(event: str, data: Any, to: str | None = None, **kw: Any) -> None:
            emitted.append((event, data, to))
            emit(event, data, to=to, **kw)

        monkeypatch.setattr(rt, "emit", record)
        made.append(rt)
        return rt, emitted

    yield make
    for rt in made:
        rt.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)
    return found


def test_a_joiner_is_sent_the_cursors_held_by_another_process(process, connect):
    one, sent_by_one = process("one")
    two, _ = process("two")
    one.docs.create("spec-42")
    one.docs.set_grants("spec-42", [("role", "user", "edit")], by=None)
    alice = connect(one, "alice")
    assert alice.call("doc:join", {"doc_id": "spec-42"})["ok"]
    cursor = {"cursor": {"anchor": 1, "head": 4}}
    mine = alice.call("doc:awareness", {"doc_id": "spec-42", "state": cursor})["data"]
    bob = connect(two, "bob")
    joined = bob.call("doc:join", {"doc_id": "spec-42"})["data"]
    assert joined["awareness"] == []  # process two holds no participant of its own
    bob_sid = two.connections.of_user("bob")[0].sid
    # two asked every process over the control bus; one answered on bob's user topic, and
    # two (which holds bob) emitted to bob's sid: bob's client really gets it
    received: list[Any] = []
    answer = wait_for(lambda: received.extend(
        m["args"][0] for m in bob.get_received() if m["name"] == "doc:awareness") or received)
    assert answer == [{"doc_id": "spec-42", "client_id": mine["client_id"],
                       "user": {"user_id": "alice", "name": "alice"}, "state": cursor}]
    assert not [to for event, _, to in sent_by_one if to == bob_sid]  # nothing aimed from one
