"""Cleaning a record's fields before they are hashed and stored.

Why apart from the writer: what a client sends is hostile or odd (NUL bytes, lone surrogates,
a 10 kB User-Agent, a self-referencing structure, a password in the details), and every rule
for turning it into a storable, hashable value lives here, with no thread or database in sight.

Client strings are stored as received, except that a string holding NUL (PostgreSQL refuses
it) or a lone surrogate (no UTF-8 form) is escaped (:func:`escape_text`), and a value longer
than its column is cut and ends with ``…``; both are named in the row's
``details._audit`` (``escaped``: field names; ``truncated``: field → original length), which
:class:`Marks` collects. Details are redacted (:data:`REDACT_KEYS`: secrets and message bodies
never enter the trail) and reduced to plain JSON values (:func:`clean_details`).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from dihya_realtime.kernel.redaction import Redactor
from dihya_realtime.kernel.settings import DEFAULT_REDACT_KEYS

# Never in the audit trail: secrets (the outbound list) and message bodies.
REDACT_KEYS = frozenset({*DEFAULT_REDACT_KEYS, "data", "text", "body"})
_REDACTOR = Redactor(REDACT_KEYS)

# Column widths: longer values are cut at record time so that one odd User-Agent can never
# make a whole batch fail on PostgreSQL (and the hash covers exactly what is stored).
_LIMITS = {
    "type": 64,
    "user_id": 128,
    "sid": 64,
    "remote_addr": 64,
    "origin": 512,
    "user_agent": 512,
    "event": 128,
    "outcome": 64,
}


def _redact(value: Any) -> Any:
    return _REDACTOR.redact(value)[0]


_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_DETAILS_DEPTH = 32
"""Details nested deeper are kept as one (escaped, cut) string: a record is never refused."""
MAX_DEEP_TEXT = 512


def _needs_escape(text: str) -> bool:
    """NUL (PostgreSQL refuses it in text and JSON) or a lone surrogate (no UTF-8 form)."""
    if "\x00" in text:
        return True
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def escape_text(text: str) -> str:
    """``text`` with backslashes doubled, NUL as ``\\x00`` and lone surrogates as ``\\udXXX``.

    Only strings that need it are escaped, and the record names them in
    ``details._audit.escaped``: there, undoing the escapes gives the exact string received,
    and an unescaped string is stored as received (so ``alice\\x00`` typed by a client and
    ``alice`` + NUL stay two different, recognisable values). Nothing is stripped.
    """
    out = text.replace("\\", "\\\\").replace("\x00", "\\x00")
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)


class Marks:
    """What cleaning did to a record: escaped fields and cut fields (original lengths)."""

    __slots__ = ("escaped", "truncated")

    def __init__(self) -> None:
        self.escaped: list[str] = []
        self.truncated: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.escaped or self.truncated)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.escaped:
            out["escaped"] = self.escaped
        if self.truncated:
            out["truncated"] = self.truncated
        return out


def _plain(value: Any, marks: Marks, depth: int = 0) -> Any:
    """``value`` as plain JSON values whose strings are all storable (see :func:`escape_text`)."""
    if value is None or value is True or value is False:
        return value
    if type(value) is str:
        if _needs_escape(value):
            if "details" not in marks.escaped:
                marks.escaped.append("details")
            return escape_text(value)
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return value
    if depth >= MAX_DETAILS_DEPTH:
        text = _plain(orjson.dumps(value, default=repr).decode()
                      if isinstance(value, dict | list | tuple) else str(value), marks)
        if len(text) > MAX_DEEP_TEXT:
            marks.truncated.setdefault("details", len(text))
            text = text[: MAX_DEEP_TEXT - 1] + "…"
        return text
    if isinstance(value, dict):
        return {_plain(k if isinstance(k, str) else str(k), marks): _plain(v, marks, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, marks, depth + 1) for v in value]
    return _plain(str(value), marks)


def clean_details(details: dict[str, Any] | None, marks: Marks) -> Any:
    """Redacted, and reduced to plain JSON values so that what is stored, re-read and hashed
    is the same on both databases. Strings PostgreSQL or UTF-8 cannot hold are escaped, never
    stripped (:func:`escape_text`)."""
    if details is None:
        return None
    try:
        plain = _plain(_redact(details), marks)
    except RecursionError:  # a self-referencing structure
        plain = {"unserializable": "recursive structure"}
    return orjson.loads(orjson.dumps(plain))


def clean_str(name: str, value: Any, marks: Marks) -> str | None:
    """The column ``name``'s value as stored: escaped if it must be, cut to the column."""
    if value is None:
        return None
    limit = _LIMITS[name]
    if type(value) is str and value.isascii() and "\x00" not in value and len(value) <= limit:
        return value  # the usual case
    text = value if type(value) is str else str(value)
    if _needs_escape(text):
        marks.escaped.append(name)
        text = escape_text(text)
    if len(text) > limit:
        marks.truncated[name] = len(value) if type(value) is str else len(text)
        text = text[: limit - 1] + "…"
    return text
