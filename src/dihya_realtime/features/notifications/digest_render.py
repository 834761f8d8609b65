"""The digest email: subject, plain-text and HTML bodies from Jinja templates, and headers.

Templates (``digest_subject.txt``, ``digest.txt``, ``digest.html``, and the unsubscribe page
``digest_unsubscribe.html``) are looked up first in the host app's own template folder (the
Flask app's ``template_folder``), then in ``DIHYA_RT_DIGEST_TEMPLATES``, then in the package:
a host app overrides one by adding a file of the same name. ``.html`` templates are
autoescaped: titles and bodies are whatever a sender wrote, and are treated as hostile.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import BaseLoader, ChoiceLoader, Environment, FileSystemLoader, select_autoescape

PACKAGE_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


class DigestTemplates:
    """A Jinja environment over the host's templates, then ours."""

    def __init__(self, loaders: Sequence[BaseLoader] = ()) -> None:
        self.env = Environment(
            loader=ChoiceLoader([*loaders, FileSystemLoader(str(PACKAGE_TEMPLATES))]),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            keep_trailing_newline=True)

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)


def item_url(action_url: str | None, app_url: str | None) -> str | None:
    """A link for the email: absolute http(s) URLs as they are; a path joined to
    ``DIHYA_RT_DIGEST_APP_URL`` (no link without it: a mail client has no "current site")."""
    if not action_url:
        return None
    if urlsplit(action_url).scheme in ("http", "https"):
        return action_url
    if app_url and action_url.startswith("/") and not action_url.startswith("//"):
        return app_url + action_url
    return None


def build_message(templates: DigestTemplates, *, sender: str, to: str, items: list[Any],
                  total: int, frequency: str, unsubscribe_url: str,
                  app_url: str | None) -> EmailMessage:
    """One digest email: ``multipart/alternative`` (text, then HTML) with RFC 8058 one-click
    ``List-Unsubscribe`` headers. A header value with a line break raises ``ValueError``."""
    context = {
        "items": [{"id": r.id, "title": r.title, "body": r.body, "category": r.category,
                   "severity": r.severity, "created_at": r.created_at,
                   "url": item_url(r.action_url, app_url)} for r in items],
        "total": total, "more": max(0, total - len(items)), "frequency": frequency,
        "unsubscribe_url": unsubscribe_url, "app_url": app_url,
    }
    subject = " ".join(templates.render("digest_subject.txt", **context).split())
    message = EmailMessage()
    message["Subject"] = subject[:200]
    message["From"] = sender
    message["To"] = Address(addr_spec=to)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    message["List-Unsubscribe"] = f"<{unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(templates.render("digest.txt", **context))
    message.add_alternative(templates.render("digest.html", **context), subtype="html")
    return message


__all__ = ["PACKAGE_TEMPLATES", "DigestTemplates", "build_message", "item_url"]
