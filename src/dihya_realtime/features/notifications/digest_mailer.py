"""Sending digests over SMTP: ``DIHYA_RT_SMTP_URL`` parsed once, one connection per run.

- ``smtp://host:25`` plain (a local relay), ``smtp://host:587?starttls=true`` or
  ``smtp+starttls://host:587`` upgrades with STARTTLS (refuses to go on if the server cannot),
  ``smtps://host:465`` is TLS from the first byte. TLS verifies the server's certificate
  against the system's CAs.
- Credentials ride in the URL (``smtp+starttls://user:password@host``, percent-encoded); they
  are never logged: :meth:`SmtpTarget.describe` is what log lines show.
- Every socket operation has ``DIHYA_RT_SMTP_TIMEOUT``: a stuck server cannot hang a run.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from dihya_realtime.kernel.settings import Settings

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    tls: bool  # implicit TLS (smtps://)
    starttls: bool
    username: str | None
    password: str | None
    timeout: float

    @classmethod
    def parse(cls, url: str, timeout: float = 10) -> SmtpTarget:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps", "smtp+starttls") or not parts.hostname:
            raise ValueError("an SMTP URL is smtp://, smtp+starttls:// or smtps://host[:port]")
        query = parse_qs(parts.query)
        tls = scheme == "smtps"
        starttls = scheme == "smtp+starttls" or \
            query.get("starttls", ["false"])[-1].lower() in _TRUE
        port = parts.port or (465 if tls else 587 if starttls else 25)
        return cls(host=parts.hostname, port=port, tls=tls, starttls=starttls and not tls,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpTarget | None:
        if settings.smtp_url is None:
            return None
        return cls.parse(settings.smtp_url.get_secret_value(), settings.smtp_timeout)

    def describe(self) -> str:
        """Host, port and mode, never the credentials (for logs and errors)."""
        mode = "tls" if self.tls else "starttls" if self.starttls else "plain"
        return f"{self.host}:{self.port} ({mode})"


class Mailer:
    """One SMTP session: :meth:`send` opens it on first use; :meth:`close` ends it."""

    def __init__(self, target: SmtpTarget, context: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.context = context or ssl.create_default_context()
        self._smtp: smtplib.SMTP | None = None
        self.sent = 0

    def open(self) -> None:
        """Connect (and log in) now: a run checks the server answers before claiming work."""
        if self._smtp is not None:
            return
        t = self.target
        smtp: smtplib.SMTP
        if t.tls:
            smtp = smtplib.SMTP_SSL(t.host, t.port, timeout=t.timeout, context=self.context)
        else:
            smtp = smtplib.SMTP(t.host, t.port, timeout=t.timeout)
        try:
            smtp.ehlo()
            if t.starttls:
                smtp.starttls(context=self.context)  # SMTPNotSupportedError if not offered
                smtp.ehlo()
            if t.username is not None:
                smtp.login(t.username, t.password or "")
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp

    def send(self, message: EmailMessage) -> None:
        self.open()
        assert self._smtp is not None
        self._smtp.send_message(message)
        self.sent += 1

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


__all__ = ["Mailer", "SmtpTarget"]
