"""The digest's SMTP client against real servers: STARTTLS and implicit TLS with a verified
certificate, credentials from the URL (never shown), and refusing an unverified server."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from dihya_realtime.features.notifications.digest_mailer import Mailer, SmtpTarget
from tests.smtp_capture import SmtpCapture, running_smtp


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpCapture]:
    yield from running_smtp(tmp_path)


def message(to: str = "bob@example.com") -> EmailMessage:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "digest@example.com", to, "1 unread notification"
    m.set_content("hello")
    return m


@pytest.fixture
def tls_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SmtpCapture]:
    server = SmtpCapture(tmp_path, tls=request.param, login=("mailer", "p@ss:word")).start()
    yield server
    server.stop()


@pytest.mark.parametrize("tls_server,scheme", [("starttls", "smtp+starttls"),
                                               ("starttls", "smtp"),
                                               ("tls", "smtps")], indirect=["tls_server"])
def test_sends_over_tls_and_logs_in_with_the_urls_credentials(tls_server, scheme):
    query = "?starttls=true" if scheme == "smtp" else ""
    target = SmtpTarget.parse(tls_server.url(scheme, "mailer:p%40ss%3Aword@") + query, 5)
    mailer = Mailer(target, context=tls_server.client_context)

    mailer.send(message())
    mailer.close()

    [received] = tls_server.wait()
    assert received["Subject"] == "1 unread notification"
    assert tls_server.logins == ["mailer"]
    assert "p@ss" not in target.describe() and "mailer" not in target.describe()


@pytest.mark.parametrize("tls_server", ["starttls"], indirect=True)
def test_an_unverified_certificate_is_refused(tls_server):
    target = SmtpTarget.parse(tls_server.url("smtp+starttls", "mailer:p%40ss%3Aword@"), 5)
    mailer = Mailer(target)  # the system's CAs do not know the test certificate

    with pytest.raises(ssl.SSLCertVerificationError):
        mailer.send(message())
    assert tls_server.messages == [] and tls_server.logins == []


@pytest.mark.parametrize("tls_server", ["starttls"], indirect=True)
def test_plain_smtp_to_a_server_requiring_starttls_sends_nothing(tls_server):
    mailer = Mailer(SmtpTarget.parse(tls_server.url("smtp"), 5))

    with pytest.raises(smtplib.SMTPException):
        mailer.send(message())
    assert tls_server.messages == []


def test_starttls_refuses_to_go_on_in_clear_when_not_offered(smtp_server):
    mailer = Mailer(SmtpTarget.parse(smtp_server.url("smtp+starttls"), 5))

    with pytest.raises(smtplib.SMTPNotSupportedError):
        mailer.send(message())
    assert smtp_server.messages == []


@pytest.mark.parametrize("url,expected", [
    ("smtp://relay.local", ("relay.local", 25, False, False, None, None)),
    ("smtp://relay.local:2525?starttls=true", ("relay.local", 2525, False, True, None, None)),
    ("smtp+starttls://u:p%2Fw@mail.example", ("mail.example", 587, False, True, "u", "p/w")),
    ("smtps://u@mail.example", ("mail.example", 465, True, False, "u", None)),
])
def test_smtp_urls(url, expected):
    t = SmtpTarget.parse(url)
    assert (t.host, t.port, t.tls, t.starttls, t.username, t.password) == expected


@pytest.mark.parametrize("url", ["http://mail.example", "smtp://", "mail.example:25"])
def test_not_an_smtp_url(url):
    with pytest.raises(ValueError):
        SmtpTarget.parse(url)
