"""Transactional publish: a row in the host's transaction, published after commit, once, in
commit order per channel; on SQLite and PostgreSQL, with the relay running in the background.
"""

from __future__ import annotations

import random
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.outbox import Queued
from dihya_realtime.kernel.outbox import relay as relay_module
from dihya_realtime.store.outbox import FAILED, OUTBOX, PENDING, insert_row
from tests.unit.conftest import Inbox, wait_until

CHANNEL = "live:orders"
HOST = sa.MetaData()
ORDERS = sa.Table("host_orders", HOST, sa.Column("id", sa.Integer, primary_key=True),
                  sa.Column("label", sa.String(50)))
COUNTER = sa.Table("host_counter", HOST, sa.Column("id", sa.Integer, primary_key=True),
                   sa.Column("n", sa.Integer, nullable=False))


@pytest.fixture
def host_sessions(database_url):
    """The host app's own engine and sessions on the same database (not ours)."""
    kwargs = {"connect_args": {"timeout": 30}} if database_url.startswith("sqlite") else {}
    engine = sa.create_engine(database_url, **kwargs)
    HOST.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(COUNTER).values(id=1, n=0))
    yield sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def outbox_rt(make_rt, database_url):
    return make_rt(database_url=database_url, outbox_poll_interval=0.1, outbox_lease=2)


@pytest.fixture
def manual_rt(make_rt, database_url):
    """No background relay: the test runs each pass (``rt.outbox.relay.run_once()``)."""
    return make_rt(database_url=database_url, outbox_enabled=False)


def subscriber(rt, connect, channel=CHANNEL):
    client = connect(rt, "alice", roles=("admin",))
    assert client.call("subscribe", {"channel": channel})["ok"]
    return Inbox(client)


def rows(rt, state=None):
    query = sa.select(OUTBOX.c.id, OUTBOX.c.state, OUTBOX.c.error).order_by(OUTBOX.c.seq)
    if state:
        query = query.where(OUTBOX.c.state == state)
    with rt.db.engine.connect() as conn:
        return conn.execute(query).all()


def data_of(inbox, channel=CHANNEL):
    return [p["data"] for p in inbox.events("publication") if p["channel"] == channel]


def test_a_committed_publish_is_delivered_once_after_commit(manual_rt, connect, host_sessions):
    inbox = subscriber(manual_rt, connect)
    with host_sessions() as session, session.begin():
        session.execute(sa.insert(ORDERS).values(id=1, label="first"))
        queued = manual_rt.publish(CHANNEL, {"order": 1}, session=session)
        assert isinstance(queued, Queued) and queued.stream == CHANNEL
        assert manual_rt.outbox.relay.run_once() == 0  # not committed: invisible to the relay
    assert manual_rt.outbox.relay.run_once() == 1
    assert manual_rt.outbox.relay.run_once() == 0
    wait_until(lambda: data_of(inbox) == [{"order": 1}])
    time.sleep(0.2)
    assert data_of(inbox) == [{"order": 1}]
    assert rows(manual_rt) == []
    assert manual_rt.metrics.outbox_published._value.get() == 1


def test_the_background_relay_delivers_after_commit(outbox_rt, connect, host_sessions):
    inbox = subscriber(outbox_rt, connect)
    with host_sessions() as session, session.begin():
        outbox_rt.publish(CHANNEL, {"order": 2}, session=session)
    wait_until(lambda: data_of(inbox) == [{"order": 2}])
    wait_until(lambda: rows(outbox_rt) == [])
    time.sleep(0.3)  # several more passes
    assert data_of(inbox) == [{"order": 2}]


def test_a_rolled_back_transaction_publishes_nothing(outbox_rt, connect, host_sessions):
    inbox = subscriber(outbox_rt, connect)
    with pytest.raises(RuntimeError), host_sessions() as session, session.begin():
        session.execute(sa.insert(ORDERS).values(id=7, label="never"))
        outbox_rt.publish(CHANNEL, {"order": 7}, session=session)
        raise RuntimeError("the host's request failed")
    with host_sessions() as session, session.begin():
        outbox_rt.publish(CHANNEL, {"order": 8}, session=session)
    wait_until(lambda: data_of(inbox) == [{"order": 8}])
    assert outbox_rt.outbox.relay.run_once() == 0
    assert data_of(inbox) == [{"order": 8}]
    with host_sessions() as session:
        assert session.execute(sa.select(ORDERS)).all() == []


def test_a_bad_channel_or_an_oversized_row_is_refused_in_the_request(outbox_rt, host_sessions):
    with host_sessions() as session, session.begin():
        with pytest.raises(RealtimeError) as bad:
            outbox_rt.publish("nope:x", {}, session=session)
        assert bad.value.code is ErrorCode.NOT_FOUND
        with pytest.raises(RealtimeError) as big:
            outbox_rt.publish(CHANNEL, "x" * (1024 * 1024 + 1), session=session)
        assert big.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert rows(outbox_rt) == []


def test_a_session_on_another_database_is_refused(outbox_rt, tmp_path):
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with Session(other) as session, pytest.raises(ValueError, match="same database"):
        outbox_rt.publish(CHANNEL, {}, session=session)
    other.dispose()


def test_commit_order_per_channel_under_concurrent_transactions(outbox_rt, connect,
                                                                host_sessions):
    """Each transaction writes its row, waits, then takes the host's counter row lock and
    commits: the counter gives the commit order, which need not be the insert order."""
    inbox = subscriber(outbox_rt, connect)
    committed: dict[str, int] = {}
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(8):
                tag = uuid.uuid4().hex
                with host_sessions() as session, session.begin():
                    outbox_rt.publish(CHANNEL, {"tag": tag}, session=session)
                    time.sleep(rng.uniform(0, 0.01))
                    n = session.execute(sa.update(COUNTER).where(COUNTER.c.id == 1)
                                        .values(n=COUNTER.c.n + 1).returning(COUNTER.c.n)
                                        ).scalar_one()
                    committed[tag] = n
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    wait_until(lambda: len(data_of(inbox)) == 32, timeout=15)
    order = [committed[d["tag"]] for d in data_of(inbox)]
    assert order == sorted(order) == list(range(1, 33))


def test_a_poison_row_is_set_aside_audited_and_the_channel_goes_on(manual_rt, connect,
                                                                   host_sessions):
    inbox = subscriber(manual_rt, connect)
    with host_sessions() as session, session.begin():
        # a namespace removed between the write and the relay: the channel refuses the row
        insert_row(session.connection(), "publish", "gone:x", {"channel": "gone:x", "data": 1})
        manual_rt.publish(CHANNEL, {"after": "poison"}, session=session)
    assert manual_rt.outbox.relay.run_once() == 2
    wait_until(lambda: data_of(inbox) == [{"after": "poison"}])
    (failed,) = rows(manual_rt, FAILED)
    assert failed.error.startswith("not_found")
    assert rows(manual_rt, PENDING) == []
    assert manual_rt.metrics.outbox_failed._value.get() == 1
    assert manual_rt.metrics.outbox_rows.labels(FAILED)._value.get() == 1
    manual_rt.audit.flush()
    with manual_rt.db.engine.connect() as conn:
        audited = conn.execute(sa.text(
            "SELECT outcome FROM audit_events WHERE type = 'outbox_failed'")).all()
    assert [a.outcome for a in audited] == ["not_found"]


def test_an_unavailable_broker_keeps_the_rows_for_the_next_pass(manual_rt, connect,
                                                                host_sessions, monkeypatch):
    inbox = subscriber(manual_rt, connect)
    publish = manual_rt.channels.publish
    calls = []

    def down_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RealtimeError(ErrorCode.UNAVAILABLE, "the broker is unavailable")
        return publish(*args, **kwargs)

    monkeypatch.setattr(manual_rt.channels, "publish", down_once)
    with host_sessions() as session, session.begin():
        manual_rt.publish(CHANNEL, {"n": 1}, session=session)
        manual_rt.publish(CHANNEL, {"n": 2}, session=session)
    with pytest.raises(relay_module.Retry):
        manual_rt.outbox.relay.run_once()
    assert len(rows(manual_rt, PENDING)) == 2
    assert manual_rt.outbox.relay.run_once() == 2
    wait_until(lambda: data_of(inbox) == [{"n": 1}, {"n": 2}])


def test_a_relay_dying_after_publishing_does_not_publish_twice(
        process, database_url, connect, host_sessions, monkeypatch):
    """Published, then the row could not be deleted (the process died there): the next pass
    publishes with the same key (the row id) and the broker returns the first publication."""
    rt = process("a", database_url=database_url, outbox_enabled=False)  # Redis keeps the keys
    inbox = subscriber(rt, connect)
    with host_sessions() as session, session.begin():
        rt.publish(CHANNEL, {"once": True}, session=session)
    delete = relay_module.delete_row

    def crash(conn, seq):
        raise ConnectionError("the process died before deleting the row")

    monkeypatch.setattr(relay_module, "delete_row", crash)
    with pytest.raises(ConnectionError):
        rt.outbox.relay.run_once()
    monkeypatch.setattr(relay_module, "delete_row", delete)
    assert rt.outbox.relay.run_once() == 1
    wait_until(lambda: data_of(inbox) == [{"once": True}])
    time.sleep(0.3)
    assert data_of(inbox) == [{"once": True}]
    assert rt.history(CHANNEL).position.offset == 1
    assert rows(rt) == []


def test_two_relays_on_one_database_publish_each_row_once_in_order(
        process, database_url, connect, host_sessions):
    a = process("a", database_url=database_url, outbox_poll_interval=0.05, outbox_lease=1)
    b = process("b", database_url=database_url, outbox_poll_interval=0.05, outbox_lease=1)
    inbox = subscriber(a, connect)
    for batch in range(10):
        with host_sessions() as session, session.begin():
            for i in range(5):
                (a if i % 2 else b).publish(CHANNEL, {"n": batch * 5 + i}, session=session)
    wait_until(lambda: len(data_of(inbox)) >= 50, timeout=15)
    time.sleep(0.5)
    assert data_of(inbox) == [{"n": n} for n in range(50)]
    published = (a.metrics.outbox_published._value.get()
                 + b.metrics.outbox_published._value.get())
    assert published == 50


def test_notify_with_a_session_creates_the_notifications_after_commit(outbox_rt, host_sessions):
    with host_sessions() as session, session.begin():
        queued = outbox_rt.notify(user_ids=["17"], title="Build 42", session=session)
        assert isinstance(queued, Queued)
        assert outbox_rt.notifications.counts("17")["unread"] == 0
    wait_until(lambda: outbox_rt.notifications.counts("17")["unread"] == 1)
    with pytest.raises(RuntimeError), host_sessions() as session, session.begin():
        outbox_rt.notify(user_ids=["17"], title="never", session=session)
        raise RuntimeError("rolled back")
    with pytest.raises(RealtimeError) as bad, host_sessions() as session, session.begin():
        outbox_rt.notify(title="nobody", session=session)
    assert bad.value.code is ErrorCode.INVALID_PAYLOAD
    time.sleep(0.3)
    assert outbox_rt.notifications.counts("17")["unread"] == 1


def test_a_system_message_with_a_session_is_posted_after_commit(outbox_rt, host_sessions):
    from dihya_realtime.features.chat.common import Actor

    owner = Actor("owner", "Owner")
    room = outbox_rt.chat.create_room(owner, "deploys", None, "public")
    with host_sessions() as session, session.begin():
        outbox_rt.chat.send_system_message(room["id"], "deploy 42 started", session=session)

    def texts():
        page = outbox_rt.chat.history(None, room["id"], limit=50)
        return [m["text"] for m in page["messages"] if m["kind"] == "system"]

    wait_until(lambda: texts() == ["deploy 42 started"])


def test_a_commit_in_this_process_wakes_the_relay_before_its_next_poll(
        make_rt, database_url, connect, host_sessions):
    rt = make_rt(database_url=database_url, outbox_poll_interval=30, outbox_lease=61)
    inbox = subscriber(rt, connect)
    time.sleep(0.2)  # the relay's first pass is done; its next poll is 30 s away
    with host_sessions() as session, session.begin():
        rt.publish(CHANNEL, {"woken": "by the commit"}, session=session)
    wait_until(lambda: data_of(inbox) == [{"woken": "by the commit"}], timeout=3)


def test_postgres_notify_wakes_the_relay_for_a_commit_of_another_process(
        make_rt, postgres_url, connect):
    """The row is written without our session hook (as another process would): only the
    NOTIFY sent at its commit can wake the relay before its next poll."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    rt = make_rt(database_url=postgres_url, outbox_poll_interval=30, outbox_lease=61)
    inbox = subscriber(rt, connect)
    time.sleep(0.5)  # the relay listens and has done its first pass
    with engine.begin() as conn:
        insert_row(conn, "publish", CHANNEL, {"channel": CHANNEL, "data": {"via": "notify"}})
        time.sleep(0.5)
        assert data_of(inbox) == []  # not committed: not notified
    wait_until(lambda: data_of(inbox) == [{"via": "notify"}], timeout=3)
    engine.dispose()
