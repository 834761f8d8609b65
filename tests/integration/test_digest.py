"""The email digest end to end on real processes: `dihya-realtime digest` mails what stayed
unread to a local SMTP server, the unsubscribe link in the email works over HTTP without
signing in, `serve` sends due digests on its own, and two `digest` processes on one
PostgreSQL mail each notification once."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dihya_realtime.realtime import Realtime
from tests.integration.conftest import ServerProcess, cli_command, reset_postgres
from tests.smtp_capture import SmtpCapture, bodies, running_smtp

SENT = re.compile(r"digests sent: (\d+)")


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpCapture]:
    yield from running_smtp(tmp_path)


def digest_env(smtp: SmtpCapture, **extra: str) -> dict[str, str]:
    return {"SMTP_URL": smtp.url(), "SMTP_FROM": "Dihya <digest@example.com>",
            "DIGEST_DELAY": "0", "DIGEST_SCHEDULE": "off",
            "DIGEST_BASE_URL": "http://placeholder.example", **extra}


def start_with_digest(start_server: Callable[..., ServerProcess], smtp: SmtpCapture,
                      **extra: Any) -> ServerProcess:
    server = start_server(start=False, **digest_env(smtp, **extra))
    server.env["DIHYA_RT_DIGEST_BASE_URL"] = server.url  # the port is known only now
    return server.start()


def sent_by(result: subprocess.CompletedProcess[str]) -> int:
    assert result.returncode == 0, result.stderr
    match = SENT.search(result.stdout)
    assert match, result.stdout
    return int(match.group(1))


def notify(server: ServerProcess, user: str, title: str) -> str:
    status, reply = server.http("POST", "/api/v1/notifications",
                                {"user_id": user, "title": title}, api_key=True)
    assert status == 201, reply
    return str(reply["data"]["notifications"][0]["id"])


def http(method: str, url: str, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_digest_command_mails_unread_items_and_the_link_unsubscribes(
        start_server, sio_client, token, smtp_server):
    server = start_with_digest(start_server, smtp_server)
    bob = sio_client(server, token=token("bob"))
    assert bob.call("notifications:set_digest", {"digest": "daily"})["data"]["digest"] == "daily"
    status, _ = server.http("PUT", "/api/v1/users/bob/email", {"email": "bob@example.com"},
                            api_key=True)
    assert status == 200
    notify(server, "bob", "Build 42 failed")
    read = notify(server, "bob", "Already read")
    assert bob.call("notifications:mark_read", {"ids": [read]})["ok"]

    assert sent_by(server.cli("digest")) == 1
    [message] = smtp_server.wait()
    text, html = bodies(message)
    assert "Build 42 failed" in text and "Build 42 failed" in html
    assert "Already read" not in text and "Already read" not in html
    assert sent_by(server.cli("digest")) == 0  # nothing is mailed twice

    link = message["List-Unsubscribe"].strip("<>")
    assert link.startswith(server.url + "/digest/unsubscribe?token=") and link in text
    status, page = http("GET", link)  # a stranger's browser: no token, no cookie
    assert status == 200 and '<form method="post"' in page
    assert bob.call("notifications:preferences")["data"]["digest"] == "daily"
    status, page = http("POST", link, b"List-Unsubscribe=One-Click")  # RFC 8058 one-click
    assert status == 200 and 'id="unsubscribed"' in page
    assert bob.call("notifications:preferences")["data"]["digest"] == "off"

    notify(server, "bob", "After unsubscribing")
    assert sent_by(server.cli("digest")) == 0
    assert len(smtp_server.messages) == 1
    sent = server.wait_audit("digest_sent")
    assert sent["user_id"] == "bob" and sent["details"] == {"items": 1}
    assert "bob@example.com" not in server.audit_path.read_text()
    server.wait_audit("digest_unsubscribed", lambda line: line["outcome"] == "ok")


def test_serve_sends_due_digests_on_its_schedule(start_server, sio_client, token,
                                                 smtp_server):
    server = start_with_digest(start_server, smtp_server, DIGEST_SCHEDULE="1s",
                               DIGEST_DEFAULT="hourly")
    server.http("PUT", "/api/v1/users/carol/email", {"email": "carol@example.com"},
                api_key=True)
    notify(server, "carol", "Scheduled digest item")

    [message] = smtp_server.wait(1, timeout=10)
    assert "Scheduled digest item" in bodies(message)[0]
    time.sleep(2.5)  # two more passes: nothing new is due, nothing is sent again
    assert len(smtp_server.messages) == 1


def test_digest_without_smtp_exits_with_a_message(start_server):
    server = start_server()
    result = server.cli("digest")
    assert result.returncode == 2 and "DIHYA_RT_SMTP_URL" in result.stderr


@pytest.mark.postgres
def test_two_digest_processes_mail_each_notification_once(start_server, smtp_server,
                                                          postgres_url, jwt_secret):
    reset_postgres(postgres_url)
    server = start_with_digest(start_server, smtp_server, DATABASE_URL=postgres_url,
                               DIGEST_DEFAULT="daily")
    worker = Realtime(database_url=postgres_url, jwt_secret=jwt_secret, redis_url=None,
                      audit_log="off", audit_db=False)
    users = [f"u{i:03d}" for i in range(80)]
    try:
        for user in users:
            worker.notify(user_id=user, title="warm-up")  # creates rt.notifications
            worker.notifications.digest.set_email(user, f"{user}@example.com")
        for n in range(2):
            worker.notify(user_ids=users, title=f"second-{n}")
    finally:
        worker.close()

    procs = [subprocess.Popen([*cli_command(), "digest"], cwd=server.workdir, env=server.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]

    counts = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        counts.append(int(SENT.search(out).group(1)))  # type: ignore[union-attr]
    assert sum(counts) == len(users)
    messages = smtp_server.wait(len(users))
    time.sleep(0.5)
    assert len(smtp_server.messages) == len(users)
    assert sorted(r for _, rcpts, _ in smtp_server.messages for r in rcpts) == \
        sorted(f"{u}@example.com" for u in users)
    for message in messages:
        text = bodies(message)[0]
        assert text.count("warm-up") == 1 and text.count("second-0") == 1 \
            and text.count("second-1") == 1
