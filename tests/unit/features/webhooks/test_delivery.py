"""Delivery through the queue to a real local receiver, in one process (memory broker)."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

from dihya_realtime.features.webhooks.models import FAILED, WebhookDelivery
from dihya_realtime.features.webhooks.queue import backoff
from dihya_realtime.kernel.auth import hash_api_key
from dihya_realtime.webhooks import verify_signature
from tests.unit.conftest import wait_until
from tests.unit.features.webhooks.receiver import Receiver
from tests.unit.kernel.test_pipeline import audit_lines

SECRET = "whsec-unit-0123456789abcdef"
API_KEY = "test-api-key-0123456789"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.down()


def webhook_rt(make_rt, receiver, **overrides):
    settings = {"webhooks": {"host": {"url": receiver.url, "secret": SECRET}},
                "webhook_poll_interval": 0.05, "webhook_backoff_base": 0.05,
                "webhook_backoff_max": 0.2, "webhook_timeout": 2,
                "api_keys": hash_api_key(API_KEY), **overrides}
    return make_rt(**settings)


def test_every_delivery_is_signed_with_the_id_type_created_at_and_data(make_rt, connect,
                                                                       receiver):
    rt = webhook_rt(make_rt, receiver)
    alice = connect(rt, "alice")
    assert alice.call("subscribe", {"channel": "chat:general"})["ok"]
    receiver.wait(lambda evs: {"channel.occupied", "presence.joined"} <= {e["type"] for e in evs})
    for item in receiver.received:
        assert verify_signature(SECRET, item.headers["X-Dihya-Signature"], item.body)
        event = item.event
        assert set(event) == {"id", "type", "created_at", "data"}
        assert item.headers["X-Dihya-Event-Id"] == event["id"]
    joined = receiver.events("presence.joined")[0]
    assert joined["data"] == {"channel": "chat:general",
                              "user": {"user_id": "alice", "name": "alice"}}


def test_occupied_and_vacated_once_per_transition_however_many_subscribers(make_rt, connect,
                                                                           receiver):
    rt = webhook_rt(make_rt, receiver)
    alice, bob = connect(rt, "alice"), connect(rt, "bob")
    for client in (alice, bob):
        assert client.call("subscribe", {"channel": "chat:room1"})["ok"]
    assert alice.call("unsubscribe", {"channel": "chat:room1"})["ok"]
    receiver.wait(lambda evs: len([e for e in evs if e["type"] == "presence.left"]) == 1)
    assert not receiver.events("channel.vacated")  # bob is still there
    bob.disconnect()
    receiver.wait(lambda evs: any(e["type"] == "channel.vacated" for e in evs))
    assert alice.call("subscribe", {"channel": "chat:room1"})["ok"]
    events = receiver.wait(lambda evs: len([e for e in evs
                                             if e["type"] == "channel.occupied"]) == 2)
    kinds = [e["type"] for e in events if e["type"].startswith("channel.")]
    assert kinds == ["channel.occupied", "channel.vacated", "channel.occupied"]


def test_only_the_events_an_endpoint_asked_for_are_queued(make_rt, connect, receiver):
    rt = webhook_rt(make_rt, receiver, webhooks={"host": {
        "url": receiver.url, "secret": SECRET, "events": ["notification.read"]}})
    alice = connect(rt, "alice")
    assert alice.call("subscribe", {"channel": "chat:general"})["ok"]
    [note] = rt.notify(user_ids=["alice"], category="billing", title="Paid")
    assert alice.call("notifications:mark_read", {"ids": [note["id"]]})["ok"]
    events = receiver.wait(lambda evs: len(evs) >= 1)
    time.sleep(0.3)
    assert [e["type"] for e in receiver.events()] == ["notification.read"]
    assert events[0]["data"] == {"user_id": "alice", "ids": [note["id"]]}


def test_a_receiver_down_then_up_gets_every_event_once_by_id(make_rt, receiver):
    rt = webhook_rt(make_rt, receiver)
    receiver.down()
    ids = [rt.webhooks.publish("chat.message_sent", {"n": i}) for i in range(5)]
    wait_until(lambda: rt.metrics.webhook_deliveries.labels("host", "retry")._value.get() >= 2)
    receiver.up()
    events = receiver.wait(lambda evs: len(evs) >= 5)
    time.sleep(0.3)
    got = [e["id"] for e in receiver.events()]
    assert sorted(got) == sorted(ids) and len(got) == len(set(got))
    assert rt.webhooks.queue.pending_counts() == {}
    assert [e["data"]["n"] for e in sorted(events, key=lambda e: ids.index(e["id"]))] == \
        list(range(5))
    audit = [r["type"] for r in audit_lines(rt)]
    assert "webhook_failing" in audit and "webhook_recovered" in audit


def test_a_redirect_is_a_failure_never_followed(make_rt, receiver):
    receiver.status, receiver.location = 302, "http://127.0.0.1:9/elsewhere"
    rt = webhook_rt(make_rt, receiver)
    rt.webhooks.publish("chat.message_sent", {"n": 1})
    wait_until(lambda: rt.metrics.webhook_deliveries.labels("host", "retry")._value.get() >= 1)
    failing = [r for r in audit_lines(rt) if r["type"] == "webhook_failing"]
    assert failing and "redirect not followed 302" in json.dumps(failing[0])


def test_past_the_retry_horizon_a_delivery_is_failed_audited_and_counted(make_rt, receiver):
    receiver.status = 500
    rt = webhook_rt(make_rt, receiver, webhook_retry_horizon=0.5)
    event_id = rt.webhooks.publish("chat.message_sent", {"n": 1})
    wait_until(lambda: rt.metrics.webhook_deliveries.labels("host", "failed")._value.get() == 1)
    with rt.db.session() as s:
        row = s.scalars(sa.select(WebhookDelivery)).one()
        assert row.state == FAILED and row.last_error == "status 500" and row.attempts >= 2
    gave_up = [r for r in audit_lines(rt) if r["type"] == "webhook_failed"]
    assert gave_up[0]["details"]["event_id"] == event_id
    text = rt.metrics.render().decode()
    assert 'dihya_rt_webhook_deliveries_total{endpoint="host",outcome="failed"} 1.0' in text
    everything = text + json.dumps(audit_lines(rt))
    assert SECRET not in everything and receiver.url not in everything


def test_a_full_queue_drops_new_events_with_a_metric_and_an_audit_row(make_rt, receiver):
    receiver.down()
    rt = webhook_rt(make_rt, receiver, webhook_max_pending=3, webhook_backoff_base=60,
                    webhook_backoff_max=60)
    ids = [rt.webhooks.publish("chat.message_sent", {"n": i}) for i in range(5)]
    assert ids[3] is None and ids[4] is None and all(ids[:3])
    assert rt.metrics.webhook_deliveries.labels("host", "dropped")._value.get() == 2
    dropped = [r for r in audit_lines(rt) if r["type"] == "webhook_dropped"]
    assert len(dropped) == 1 and dropped[0]["details"]["max_pending"] == 3


def test_the_test_route_sends_a_signed_test_event_behind_the_api_key(make_rt, receiver):
    rt = webhook_rt(make_rt, receiver)
    http = rt.app.test_client()
    assert http.post("/api/v1/webhooks/test", json={}).status_code == 401
    headers = {"X-API-Key": API_KEY}
    reply = http.post("/api/v1/webhooks/test", json={"endpoint": "host"}, headers=headers)
    assert reply.status_code == 200, reply.json
    [result] = reply.json["data"]["results"]
    assert result["delivered"] and result["status"] == 200
    [item] = receiver.received
    assert item.event["type"] == "webhook.test" and item.event["id"] == result["id"]
    assert verify_signature(SECRET, item.headers["X-Dihya-Signature"], item.body)
    missing = http.post("/api/v1/webhooks/test", json={"endpoint": "nope"}, headers=headers)
    assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


def test_without_endpoints_nothing_listens_and_the_test_route_is_not_found(make_rt, connect):
    rt = make_rt(api_keys=hash_api_key(API_KEY))
    assert not rt.domain_events.heard
    reply = rt.app.test_client().post("/api/v1/webhooks/test", json={},
                                      headers={"X-API-Key": API_KEY})
    assert reply.status_code == 404


def test_backoff_doubles_is_capped_and_jittered_down_by_at_most_half():
    assert backoff(1, 1, 100, rand=1.0) == 1
    assert backoff(4, 1, 100, rand=1.0) == 8
    assert backoff(30, 1, 100, rand=1.0) == 100
    assert backoff(30, 1, 100, rand=0.0) == 50


def test_a_receiver_dribbling_its_answer_is_cut_after_twice_the_timeout() -> None:
    """Each byte comes within the timeout, so only the whole-exchange bound stops it: the
    worker (and every other endpoint's deliveries) is held 2 x timeout at most."""
    import socket as socket_
    import threading
    import time

    from dihya_realtime.features.webhooks.sender import post

    listener = socket_.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def dribble() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" * 10:
            if stop.is_set():
                break
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        conn.close()

    server = threading.Thread(target=dribble, daemon=True)
    server.start()
    port = listener.getsockname()[1]
    started = time.monotonic()
    outcome = post(f"http://127.0.0.1:{port}/hook", "s" * 16, b"{}", event_id="e1",
                   event_type="webhook.test", timeout=0.5, max_response_bytes=1024)
    took = time.monotonic() - started
    stop.set()
    listener.close()
    assert outcome.delivered is False
    assert outcome.error == "no answer within 1 s"
    assert took < 3.0  # 1 s bound; without it, ~4 s of dribbled status line and headers
