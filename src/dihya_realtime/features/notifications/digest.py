"""The email digest: unread notifications mailed to their users, at most once each.

One email per user per run with every notification that stayed unread past
``DIHYA_RT_DIGEST_DELAY`` (the user's choice ``off | hourly | daily``; see
:mod:`.digest_selection` for what is due and why each goes out at most once). Who mails
what:

- ``dihya-realtime digest`` runs :meth:`DigestService.send_due` once (for cron);
- ``serve`` (any server with a Socket.IO server) runs it every ``DIHYA_RT_DIGEST_SCHEDULE``
  unless that is ``off`` or no ``DIHYA_RT_SMTP_URL`` is set;
- a host app may call ``rt.notifications.digest.send_due()`` from its own scheduler.

Addresses: a host app that knows its users' email registers a loader
(``@rt.notifications.digest.email_address_loader``); otherwise (and when the loader returns
``None``) the address stored with ``PUT /api/v1/users/<id>/email`` is used. A due user with no
address has those notifications claimed all the same (counted ``no_address``): a backlog is
never mailed later, all at once.
"""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dihya_realtime.features.notifications.digest_mailer import Mailer, SmtpTarget
from dihya_realtime.features.notifications.digest_render import DigestTemplates, build_message
from dihya_realtime.features.notifications.digest_selection import DigestStore
from dihya_realtime.features.notifications.digest_tokens import UnsubscribeTokens
from dihya_realtime.kernel.sweeper import Sweeper

if TYPE_CHECKING:
    from jinja2 import BaseLoader

    from dihya_realtime.kernel.settings import Settings
    from dihya_realtime.store import Database

log = logging.getLogger("dihya_realtime.digest")

AddressLoader = Callable[[str], "str | None"]
Audit = Callable[..., Any]
MAX_EMAIL = 254
# one address, no display name, no line breaks or spaces (headers are built from it)
_EMAIL = re.compile(r"^[^\s@<>()\[\],;:\"\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})\Z")


class DigestNotConfigured(RuntimeError):
    """No SMTP server (``DIHYA_RT_SMTP_URL``): digests cannot be sent."""


def valid_email(value: str) -> bool:
    return len(value) <= MAX_EMAIL and bool(_EMAIL.match(value)) and ".." not in value


@dataclass
class DigestRun:
    """What one run did: emails ``sent``, users skipped for ``no_address``, emails ``failed``
    (their notifications stay claimed: at most once), ``stopped`` when SMTP broke mid-run."""

    sent: int = 0
    no_address: int = 0
    failed: int = 0
    items: int = 0
    stopped: str | None = None
    users: list[str] = field(default_factory=list)


class DigestService:
    """Preferences, addresses and sending of the email digest (``rt.notifications.digest``)."""

    def __init__(self, db: Database, settings: Settings, audit: Audit | None = None,
                 template_loaders: Sequence[BaseLoader] = ()) -> None:
        self.settings = settings
        self.store = DigestStore(db, settings.digest_default, settings.digest_delay)
        self.audit = audit
        loaders = list(template_loaders)
        if settings.digest_templates is not None:
            from jinja2 import FileSystemLoader

            loaders.append(FileSystemLoader(str(settings.digest_templates)))
        self.templates = DigestTemplates(loaders)
        self.address_loader: AddressLoader | None = None
        self.sweeper: Sweeper | None = None

    # -- preferences and addresses

    def email_address_loader(self, fn: AddressLoader) -> AddressLoader:
        """Register ``fn(user_id) -> email or None``, the host app's source of addresses::

            @rt.notifications.digest.email_address_loader
            def email_of(user_id):
                user = User.query.get(user_id)
                return user.email if user and user.email_verified else None
        """
        self.address_loader = fn
        return fn

    def frequency(self, user_id: str) -> str:
        return self.store.subscription(user_id)[0]

    def set_frequency(self, user_id: str, frequency: str) -> str:
        self.store.set_frequency(user_id, frequency)
        return frequency

    def set_email(self, user_id: str, email: str | None) -> None:
        """Store the address the digest goes to (``None`` forgets it); ``ValueError`` when it
        is not one plain address."""
        if email is not None and not valid_email(email):
            raise ValueError("not an email address")
        self.store.set_email(user_id, email)

    def address(self, user_id: str) -> str | None:
        """The loader's address, else the stored one; an invalid one counts as none."""
        address = self.address_loader(user_id) if self.address_loader is not None else None
        if address is None:
            address = self.store.subscription(user_id)[1]
        if address is not None and not valid_email(address):
            log.warning("digest: user %r has an invalid address; skipped", user_id)
            return None
        return address

    def unsubscribe_url(self, user_id: str, tokens: UnsubscribeTokens | None = None) -> str:
        """The link that turns the user's digest off without signing in."""
        token = (tokens or UnsubscribeTokens.from_settings(self.settings)).make(user_id)
        return f"{self.settings.digest_base_url}/digest/unsubscribe?token={token}"

    # -- sending

    def send_due(self, now: datetime | None = None, mailer: Mailer | None = None) -> DigestRun:
        """Send every due digest (at most ``DIHYA_RT_DIGEST_MAX_PER_RUN``) and return counts.

        The SMTP server is reached before anything is claimed: if it is down, nothing is lost
        and the next run tries again. A refused recipient fails that email only; any other SMTP
        error stops the run (the rest stays due).
        """
        s = self.settings
        target = SmtpTarget.from_settings(s)
        if target is None:
            raise DigestNotConfigured("DIHYA_RT_SMTP_URL is not set: no digest can be sent")
        tokens = UnsubscribeTokens.from_settings(s)  # NoSigningKey before any claim
        now = now or datetime.now(UTC)
        run = DigestRun()
        users = self.store.due_users(now, s.digest_max_per_run)
        if not users:
            return run
        mailer = mailer or Mailer(target)
        mailer.open()
        try:
            for user_id in users:
                if not self._send_one(user_id, now, mailer, tokens, run):
                    break
        finally:
            mailer.close()
        return run

    def _send_one(self, user_id: str, now: datetime, mailer: Mailer,
                  tokens: UnsubscribeTokens, run: DigestRun) -> bool:
        """Claim and mail one user's digest; ``False`` stops the run."""
        s = self.settings
        try:
            address = self.address(user_id)
        except Exception:  # the host's loader failed: leave this user's items due
            log.exception("digest: the email address loader failed for user %r", user_id)
            return True
        claimed = self.store.claim(user_id, now, s.digest_max_items)
        if claimed is None:
            return True  # another run took them, or the digest was just turned off
        if address is None:
            run.no_address += 1
            self._audit(user_id, "no_address", claimed.total)
            return True
        assert s.smtp_from is not None
        message = build_message(
            self.templates, sender=s.smtp_from, to=address, items=claimed.items,
            total=claimed.total, frequency=self.frequency(user_id),
            unsubscribe_url=self.unsubscribe_url(user_id, tokens),
            app_url=s.digest_app_url)
        try:
            mailer.send(message)
        except smtplib.SMTPRecipientsRefused:
            run.failed += 1
            self._audit(user_id, "refused", claimed.total)
            return True
        except (smtplib.SMTPException, OSError) as exc:
            run.failed += 1
            run.stopped = type(exc).__name__
            log.error("digest: SMTP %s failed (%s); the run stops", mailer.target.describe(),
                      type(exc).__name__)
            self._audit(user_id, "smtp_error", claimed.total)
            return False
        run.sent += 1
        run.items += claimed.total
        run.users.append(user_id)
        self._audit(user_id, "ok", claimed.total)
        return True

    def _audit(self, user_id: str, outcome: str, items: int) -> None:
        if self.audit is not None:  # never the address nor the content
            self.audit("digest_sent", user_id=user_id, outcome=outcome,
                       details={"items": items})

    # -- scheduling

    def schedule(self, spawn: Callable[..., Any], sleep: Callable[[float], Any]) -> bool:
        """Send due digests every ``DIHYA_RT_DIGEST_SCHEDULE`` in a background task; nothing
        when that is off or SMTP is not configured. Returns whether it was started."""
        s = self.settings
        if s.digest_schedule <= 0 or s.smtp_url is None:
            return False
        self.sweeper = Sweeper("email-digest", s.digest_schedule, self._scheduled_pass,
                               spawn=spawn, sleep=sleep, persistent=True)
        return self.sweeper.wake()

    def _scheduled_pass(self) -> bool:
        try:
            run = self.send_due()
        except OSError as exc:  # SMTP unreachable: nothing was claimed, the next pass retries
            target = SmtpTarget.from_settings(self.settings)
            log.warning("digest: SMTP %s unreachable (%s); retrying in %gs",
                        target.describe() if target else "-", type(exc).__name__,
                        self.settings.digest_schedule)
            return True
        if run.sent or run.failed:
            log.info("digest: %d sent, %d failed, %d without an address", run.sent,
                     run.failed, run.no_address)
        return True

    def stop(self) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()


__all__ = ["DigestNotConfigured", "DigestRun", "DigestService", "valid_email"]
