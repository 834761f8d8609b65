"""Transactional publish across real ``serve`` processes on one database and one Redis.

The host app is this test process: a worker's ``Realtime()`` (no relay of its own) writes
outbox rows through its own SQLAlchemy sessions; the servers' relays publish them.
"""

from __future__ import annotations

import re
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from dihya_realtime import Realtime
from dihya_realtime.store.outbox import OUTBOX

CHANNEL = "live:orders"


@pytest.fixture
def shared(database_url, redis_url, redis_prefix):
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix}


@pytest.fixture
def host(database_url, redis_url, redis_prefix, jwt_secret, tmp_path):
    """The host app's side: a ``Realtime()`` without an app (no relay) and its own engine."""
    rt = Realtime(database_url=database_url, redis_url=redis_url, redis_prefix=redis_prefix,
                  jwt_secret=jwt_secret, audit_log="off", audit_db=False)
    engine = sa.create_engine(database_url)
    yield rt, sessionmaker(engine)
    engine.dispose()
    rt.close()


def publications(client, channel=CHANNEL):
    return [p["data"] for p in client.events("publication") if p["channel"] == channel]


def wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def outbox_rows(database_url):
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(OUTBOX.c.id)).all()
    finally:
        engine.dispose()


def published_total(server) -> float:
    status, text = server.http("GET", "/metrics")
    assert status == 200
    match = re.search(r"^dihya_rt_outbox_published_total ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_relay_killed_between_commit_and_relay_publishes_after_restart_once(
        start_server, shared, host, database_url, sio_client, token):
    """The relay of ``relay`` looks every 30 s (SQLite) or is paused (PostgreSQL, where the
    commit's NOTIFY would wake it at once): the row commits, the process is SIGKILLed before
    it relays, and the restarted process publishes it, once."""
    postgres = database_url.startswith("postgresql")
    relay = start_server(OUTBOX_POLL_INTERVAL="30", OUTBOX_LEASE="61",
                         OUTBOX_ENABLED="false" if postgres else "true", **shared)
    watcher_server = start_server(migrate=False, OUTBOX_ENABLED="false", **shared)
    watcher = sio_client(watcher_server, token("w"))
    assert watcher.call("subscribe", {"channel": CHANNEL})["ok"]
    rt, sessions = host
    with sessions() as session, session.begin():
        rt.publish(CHANNEL, {"order": 1}, session=session)
    time.sleep(0.5)
    assert publications(watcher) == []  # committed, not relayed yet
    relay.kill()
    relay.env["DIHYA_RT_OUTBOX_ENABLED"] = "true"
    relay.restart()
    assert wait_until(lambda: publications(watcher) == [{"order": 1}]), watcher.received
    assert wait_until(lambda: outbox_rows(database_url) == [])
    time.sleep(1.0)
    assert publications(watcher) == [{"order": 1}]
    history = watcher.call("history", {"channel": CHANNEL, "limit": 10})["data"]
    assert [p["data"] for p in history["publications"]] == [{"order": 1}]


def test_two_relay_processes_publish_each_row_once_in_commit_order(
        start_server, shared, host, database_url, sio_client, token):
    first = start_server(start=False, OUTBOX_POLL_INTERVAL="0.05", OUTBOX_LEASE="2", **shared)
    second = start_server(start=False, migrate=False, OUTBOX_POLL_INTERVAL="0.05",
                          OUTBOX_LEASE="2", **shared)
    first.launch()
    second.launch()
    first.wait_ready()
    second.wait_ready()
    watcher = sio_client(second, token("w"))
    assert watcher.call("subscribe", {"channel": CHANNEL})["ok"]
    rt, sessions = host
    for batch in range(12):
        with sessions() as session, session.begin():
            for i in range(5):
                rt.publish(CHANNEL, {"n": batch * 5 + i}, session=session)
    assert wait_until(lambda: len(publications(watcher)) >= 60), len(publications(watcher))
    time.sleep(1.0)
    assert publications(watcher) == [{"n": n} for n in range(60)]
    assert published_total(first) + published_total(second) == 60
    assert outbox_rows(database_url) == []
