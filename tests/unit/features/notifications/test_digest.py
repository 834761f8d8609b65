"""The email digest against a real SMTP server: what goes in, what never does, at most once,
the unsubscribe link, addresses, templates (the host's, and hostile titles), on SQLite and
PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import itsdangerous.timed
import pytest
import sqlalchemy as sa
from flask import Flask

from dihya_realtime.features.notifications.digest import DigestNotConfigured, valid_email
from dihya_realtime.features.notifications.digest_tokens import UnsubscribeTokens
from dihya_realtime.features.notifications.models import NOTIFICATIONS
from dihya_realtime.kernel.auth import hash_api_key
from dihya_realtime.realtime import Realtime
from tests.smtp_capture import SmtpCapture, bodies, running_smtp
from tests.unit.conftest import fresh_registry

API_KEY = "digest-test-key-" + "k" * 24
FROM = "Dihya <digest@example.com>"


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpCapture]:
    yield from running_smtp(tmp_path)


def digest_settings(smtp: SmtpCapture, **extra: Any) -> dict[str, Any]:
    return {"smtp_url": smtp.url(), "smtp_from": FROM, "digest_base_url": "http://rt.example",
            "digest_delay": 0, "digest_schedule": "off", "api_keys": hash_api_key(API_KEY),
            **extra}


@pytest.fixture
def drt(make_rt, database_url, smtp_server):
    return make_rt(database_url=database_url, **digest_settings(smtp_server))


def subscribe(rt: Realtime, user: str, frequency: str = "daily",
              email: str | None = None) -> None:
    rt.notifications.digest.set_frequency(user, frequency)
    rt.notifications.digest.set_email(user, email or f"{user}@example.com")


def titles_in(text: str, candidates: list[str]) -> set[str]:
    return {t for t in candidates if t in text}


def test_one_digest_per_user_with_exactly_the_unread_items(drt, smtp_server):
    subscribe(drt, "bob")
    made = {t: drt.notify(user_id="bob", title=t)[0]["id"]
            for t in ("Build 41 failed", "Build 42 passed", "Read already", "Archived one")}
    drt.notifications.mark("bob", [made["Read already"]], "read")
    drt.notifications.mark("bob", [made["Archived one"]], "archived")
    drt.notify(user_id="carol", title="Carol has no digest")  # default: off

    run = drt.notifications.digest.send_due()

    assert (run.sent, run.items, run.users) == (1, 2, ["bob"])
    [(mail_from, rcpts, message)] = smtp_server.messages
    assert rcpts == ["bob@example.com"] and mail_from == "digest@example.com"
    assert message["Subject"] == "2 unread notifications"
    text, html = bodies(message)
    everything = [*made, "Carol has no digest"]
    assert titles_in(text, everything) == {"Build 41 failed", "Build 42 passed"}
    assert titles_in(html, everything) == {"Build 41 failed", "Build 42 passed"}
    unsubscribe = message["List-Unsubscribe"].strip("<>")
    assert unsubscribe.startswith("http://rt.example/digest/unsubscribe?token=")
    assert unsubscribe in text and message["List-Unsubscribe-Post"] == \
        "List-Unsubscribe=One-Click"


def test_read_items_are_never_mailed(drt, smtp_server):
    subscribe(drt, "bob")
    drt.notify(user_id="bob", title="Seen and read")
    drt.notifications.mark_all("bob", "read")

    run = drt.notifications.digest.send_due()

    assert run.sent == 0 and smtp_server.messages == []


def test_each_notification_is_mailed_once_and_new_ones_wait_for_the_cadence(
        drt, smtp_server):
    subscribe(drt, "bob", "hourly")
    drt.notify(user_id="bob", title="First")
    assert drt.notifications.digest.send_due().sent == 1
    drt.notify(user_id="bob", title="Second")

    assert drt.notifications.digest.send_due().sent == 0  # the last digest is too recent
    later = datetime.now(UTC) + timedelta(hours=1, seconds=1)
    assert drt.notifications.digest.send_due(now=later).sent == 1

    first, second = smtp_server.wait(2)
    assert "First" in bodies(first)[0] and "Second" not in bodies(first)[0]
    assert "Second" in bodies(second)[0] and "First" not in bodies(second)[0]
    with drt.db.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).where(
            NOTIFICATIONS.c.digested_at.is_(None))) == 0


def test_a_notification_waits_for_the_delay(make_rt, smtp_server, tmp_path):
    rt = make_rt(**digest_settings(smtp_server, digest_delay="30m"))
    subscribe(rt, "bob")
    rt.notify(user_id="bob", title="Fresh")

    assert rt.notifications.digest.send_due().sent == 0
    assert rt.notifications.digest.send_due(
        now=datetime.now(UTC) + timedelta(minutes=31)).sent == 1


def test_a_long_backlog_lists_the_newest_and_counts_the_rest(make_rt, smtp_server):
    rt = make_rt(**digest_settings(smtp_server, digest_max_items=2))
    subscribe(rt, "bob")
    for i in range(5):
        rt.notify(user_id="bob", title=f"Item {i}")

    run = rt.notifications.digest.send_due()

    assert (run.sent, run.items) == (1, 5)
    text, html = bodies(smtp_server.wait()[0])
    assert titles_in(html, [f"Item {i}" for i in range(5)]) == {"Item 3", "Item 4"}
    assert "and 3 more" in text and "5 unread notifications" in text


def test_hostile_titles_are_escaped_in_html(drt, smtp_server):
    subscribe(drt, "bob")
    drt.notify(user_id="bob", title='<script>alert("x")</script><img src=x onerror=y>',
               body="<b>bold?</b>", action_url='https://ok.example/"><script>')

    drt.notifications.digest.send_due()

    text, html = bodies(smtp_server.wait()[0])
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;bold?&lt;/b&gt;" in html
    assert '"><script>' not in html
    assert '<script>alert("x")</script>' in text  # plain text is not HTML: shown as written


def test_the_host_apps_templates_override_ours(tmp_path, settings_overrides,
                                               smtp_server):
    folder = tmp_path / "host-templates"
    folder.mkdir()
    (folder / "digest.txt").write_text("HOST DIGEST for {{ total }}: "
                                       "{% for i in items %}{{ i.title }};{% endfor %}\n")
    app = Flask("host", template_folder=str(folder))
    rt = Realtime(registry_=fresh_registry(),
                  **{**settings_overrides, **digest_settings(smtp_server)})
    rt.db.migrate()
    rt.init_app(app)
    try:
        subscribe(rt, "bob")
        rt.notify(user_id="bob", title="Deploy done")
        rt.notifications.digest.send_due()
    finally:
        rt.close()

    text, html = bodies(smtp_server.wait()[0])
    assert text.strip() == "HOST DIGEST for 1: Deploy done;"
    assert "Deploy done" in html and "Unsubscribe" in html  # ours: not overridden


def test_the_hosts_address_loader_comes_first_and_no_address_is_never_a_backlog(
        drt, smtp_server):
    subscribe(drt, "bob", email="stored@example.com")
    drt.notifications.digest.set_frequency("dora", "daily")
    addresses = {"bob": "bob@host.example"}
    drt.notifications.digest.email_address_loader(addresses.get)
    drt.notify(user_ids=["bob", "dora"], title="Hello")

    run = drt.notifications.digest.send_due()

    assert (run.sent, run.no_address) == (1, 1)
    assert [rcpts for _, rcpts, _ in smtp_server.messages] == [["bob@host.example"]]
    addresses["dora"] = "dora@host.example"  # too late for what was due without an address
    later = datetime.now(UTC) + timedelta(days=2)
    assert drt.notifications.digest.send_due(now=later).sent == 0


def test_smtp_down_claims_nothing(make_rt, smtp_server, tmp_path):
    from tests.conftest import free_port

    rt = make_rt(**digest_settings(smtp_server, smtp_url=f"smtp://127.0.0.1:{free_port()}",
                                   smtp_timeout=2))
    subscribe(rt, "bob")
    rt.notify(user_id="bob", title="Kept for later")
    with pytest.raises(OSError):
        rt.notifications.digest.send_due()
    rt.notifications.digest.settings.smtp_url = type(rt.settings.smtp_url)(smtp_server.url())

    assert rt.notifications.digest.send_due().sent == 1
    assert "Kept for later" in bodies(smtp_server.wait()[0])[0]


def test_without_smtp_the_digest_says_so(rt):
    with pytest.raises(DigestNotConfigured):
        rt.notifications.digest.send_due()


# -- at most once across processes


@pytest.mark.parametrize("database_url", ["sqlite", pytest.param("postgres",
                         marks=pytest.mark.postgres)], indirect=True)
def test_two_processes_racing_mail_each_notification_once(make_rt, database_url,
                                                          smtp_server):
    first = make_rt(database_url=database_url, **digest_settings(smtp_server))
    second = make_rt(database_url=database_url, **digest_settings(smtp_server))
    users = [f"user{i}" for i in range(30)]
    for user in users:
        subscribe(first, user)
    titles = []
    for i in range(90):
        titles.append(f"note-{i:03d}-end")
        first.notify(user_id=users[i % len(users)], title=titles[-1])
    runs: list[Any] = []
    start = threading.Barrier(2)

    def race(rt: Realtime) -> None:
        start.wait()
        runs.append(rt.notifications.digest.send_due())

    threads = [threading.Thread(target=race, args=(rt,)) for rt in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert sum(r.sent for r in runs) == len(users)
    mailed = [t for _, _, m in smtp_server.messages for t in titles if t in bodies(m)[0]]
    assert sorted(mailed) == sorted(titles)  # every one, none twice
    assert sorted(r for _, rcpts, _ in smtp_server.messages for r in rcpts) == \
        sorted(f"{u}@example.com" for u in users)


# -- choosing the digest, and leaving it


def test_set_digest_event_and_preferences_show_it(drt, connect):
    client = connect(drt, "bob")
    assert client.call("notifications:preferences")["data"]["digest"] == "off"

    reply = client.call("notifications:set_digest", {"digest": "hourly"})

    assert reply["ok"] and reply["data"]["digest"] == "hourly"
    assert client.call("notifications:preferences")["data"]["digest"] == "hourly"
    assert drt.notifications.digest.frequency("bob") == "hourly"
    bad = client.call("notifications:set_digest", {"digest": "weekly"})
    assert not bad["ok"] and bad["error"]["code"] == "invalid_payload"


def test_the_unsubscribe_link_confirms_then_turns_the_digest_off(drt, smtp_server):
    subscribe(drt, "bob")
    drt.notify(user_id="bob", title="Hi")
    drt.notifications.digest.send_due()
    link = urlsplit(smtp_server.wait()[0]["List-Unsubscribe"].strip("<>"))
    http = drt.app.test_client()

    page = http.get(f"{link.path}?{link.query}")
    assert page.status_code == 200 and b'<form method="post"' in page.data
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert drt.notifications.digest.frequency("bob") == "daily"  # a GET changes nothing

    done = http.post(f"{link.path}?{link.query}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200 and b"unsubscribed" in done.data
    assert drt.notifications.digest.frequency("bob") == "off"
    drt.notify(user_id="bob", title="After unsubscribing")
    later = datetime.now(UTC) + timedelta(days=2)
    assert drt.notifications.digest.send_due(now=later).sent == 0


def test_a_forged_or_expired_unsubscribe_token_changes_nothing(drt, monkeypatch):
    subscribe(drt, "bob")
    http = drt.app.test_client()
    forged = UnsubscribeTokens("another key", 3600).make("bob")
    with monkeypatch.context() as m:  # our key and salt, signed in 1970
        m.setattr(itsdangerous.timed, "time", SimpleNamespace(time=lambda: 1_000_000))
        stale = UnsubscribeTokens.from_settings(drt.settings).make("bob")
    good = UnsubscribeTokens.from_settings(drt.settings).make("bob")
    assert http.get("/digest/unsubscribe", query_string={"token": good}).status_code == 200

    for token in (forged, stale, "", "x" * 2000):
        response = http.post("/digest/unsubscribe", query_string={"token": token})
        assert response.status_code == 400, token
    assert drt.notifications.digest.frequency("bob") == "daily"


def test_put_email_needs_the_api_key_and_one_plain_address(drt):
    http = drt.app.test_client()
    path = "/api/v1/users/bob/email"
    auth = {"Authorization": f"Bearer {API_KEY}"}

    assert http.put(path, json={"email": "bob@example.com"}).status_code == 401
    for bad in ("bob@example.com\r\nBcc: eve@evil.example", "Bob <bob@example.com>",
                "bob@@example.com", "a@b.c, eve@evil.example", "x" * 300 + "@example.com"):
        response = http.put(path, json={"email": bad}, headers=auth)
        assert response.status_code == 400, bad
    ok = http.put(path, json={"email": "bob@example.com"}, headers=auth)
    assert ok.status_code == 200
    assert drt.notifications.digest.store.subscription("bob")[1] == "bob@example.com"
    assert http.put(path, json={"email": None}, headers=auth).status_code == 200
    assert drt.notifications.digest.store.subscription("bob")[1] is None


@pytest.mark.parametrize("address,ok", [("bob@example.com", True), ("b.o+b@ex-a.example", True),
                                        ("bob@example..com", False), ("bob", False),
                                        ("bob@ex ample.com", False), ("bob@exa\nmple.com", False)])
def test_valid_email(address: str, ok: bool) -> None:
    assert valid_email(address) is ok


def test_settings_require_a_sender_and_a_base_url_with_smtp():
    from dihya_realtime.kernel.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="SMTP_FROM"):
        load_settings(smtp_url="smtp://127.0.0.1", digest_base_url="http://x.example")
    with pytest.raises(SettingsError, match="DIGEST_BASE_URL"):
        load_settings(smtp_url="smtp://127.0.0.1", smtp_from="a@example.com")
    with pytest.raises(SettingsError, match="SMTP_URL must start"):
        load_settings(smtp_url="http://127.0.0.1", smtp_from="a@example.com",
                      digest_base_url="http://x.example")
    with pytest.raises(SettingsError, match="DIGEST_SECRET"):
        load_settings(smtp_url="smtp://127.0.0.1", smtp_from="a@example.com",
                      digest_base_url="http://x.example", jwt_public_key_file="/k.pem")
    assert load_settings(digest_schedule="off").digest_schedule == 0
    assert load_settings(digest_schedule="90s").digest_schedule == 90


def test_a_server_sends_due_digests_on_its_own_schedule(make_rt, smtp_server):
    rt = make_rt(**digest_settings(smtp_server, digest_schedule="0.2s"))
    subscribe(rt, "bob")
    rt.notify(user_id="bob", title="Sent by the schedule")

    [message] = smtp_server.wait(1, timeout=5)
    assert "Sent by the schedule" in bodies(message)[0]
    assert rt.notifications.digest.sweeper is not None
    passes = rt.notifications.digest.sweeper.passes
    deadline = time.monotonic() + 5
    while rt.notifications.digest.sweeper.passes < passes + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(smtp_server.messages) == 1  # later passes found nothing new
    rt.notifications.digest.stop()


