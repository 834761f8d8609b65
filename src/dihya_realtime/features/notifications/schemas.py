"""The values of the notifications feature on the wire: what a server sends to create, what
clients see, and the counts, pages and preferences in replies.

One place for the shapes, so the events, the HTTP route and every part of the service agree
(the reply models are what the registry documents and the reply-contract test checks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dihya_realtime.kernel.payloads import JsonValue

MAX_DATA_BYTES = 8 * 1024
MAX_RECIPIENTS = 10_000
MAX_IDS = 100
DEFAULT_CATEGORY = "general"
_CATEGORY_RE = r"^[a-z0-9][a-z0-9_.:-]{0,63}$"

Severity = Literal["info", "success", "warning", "error"]
Status = Literal["unread", "read", "archived", "all"]
State = Literal["read", "unread", "seen", "archived", "unarchived"]
UserId = Annotated[str, Field(min_length=1, max_length=128)]
Category = Annotated[str, Field(pattern=_CATEGORY_RE, description="e.g. mention, billing")]
NotificationId = Annotated[str, Field(min_length=1, max_length=32)]
RoleResolver = Callable[[str], Iterable[str]]
"""``resolver(role) -> user ids``: whom ``notify(role=…)`` reaches."""


class NotificationIn(BaseModel):
    """What a server sends to create notifications (Python keyword arguments or HTTP body)."""

    model_config = ConfigDict(extra="forbid")

    user_ids: list[UserId] | None = Field(default=None, min_length=1, max_length=MAX_RECIPIENTS)
    user_id: UserId | None = None
    role: str | None = Field(default=None, min_length=1, max_length=64)
    category: Category = DEFAULT_CATEGORY
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=2000)
    data: dict[str, JsonValue] = Field(default_factory=dict,
                                       description="any JSON object ≤ 8 KB")
    action_url: str | None = Field(default=None, max_length=2048,
                                   description="http(s) URL or a path starting with /")
    severity: Severity = "info"
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("data")
    @classmethod
    def _data_size(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(orjson.dumps(value))
        except TypeError as exc:
            raise ValueError(f"data must be JSON: {exc}") from None
        if size > MAX_DATA_BYTES:
            raise ValueError(f"data is {size} bytes as JSON; the limit is {MAX_DATA_BYTES}")
        return value

    @field_validator("action_url")
    @classmethod
    def _action_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(c.isspace() or ord(c) < 32 for c in value) or "\\" in value:
            raise ValueError("action_url must not contain spaces, control characters or \\")
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            return value
        # "//evil.example" is a URL on another host, not a relative path.
        if not parts.scheme and not parts.netloc and value.startswith("/") \
                and not value.startswith("//"):
            return value
        raise ValueError("action_url must be an http(s) URL or a path starting with /")


class NotificationOut(BaseModel):
    """One notification as clients see it (the idempotency key stays on the server)."""

    id: str
    user_id: str
    category: str
    title: str
    body: str
    data: dict[str, Any]
    action_url: str | None
    severity: Severity
    created_at: datetime
    seen_at: datetime | None
    read_at: datetime | None
    archived_at: datetime | None


class Counts(BaseModel):
    """The badges: ``unseen`` and ``unread`` among the user's non-archived notifications."""

    unseen: int = Field(ge=0)
    unread: int = Field(ge=0)


class Page(BaseModel):
    items: list[NotificationOut] = Field(description="newest first")
    next_cursor: str | None = Field(
        description="pass as ``before`` for the next page; null on the last page")


class Updated(BaseModel):
    ids: list[str] = Field(description="the notifications whose state changed")
    state: State


class StateChange(Updated):
    counts: Counts


class CategoryPreference(BaseModel):
    category: str
    push: bool = Field(description="live push (``notifications:new``) on or off")
    critical: bool = Field(description="critical categories are always pushed")


class Preferences(BaseModel):
    preferences: list[CategoryPreference] = Field(
        description="the categories the user has notifications in, has set, or that are "
                    "critical; any other category is pushed")
    critical: list[str]


def serialize(row: Any) -> dict[str, Any]:
    """A row of ``notifications`` as its JSON form (ISO 8601 UTC timestamps)."""
    return NotificationOut.model_validate(row, from_attributes=True).model_dump(mode="json")
