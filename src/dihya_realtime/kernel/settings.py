"""One validated configuration object for the whole service.

Values come, highest priority first, from keyword arguments (tests, embedding apps),
``DIHYA_RT_*`` environment variables, the TOML file named by ``DIHYA_RT_CONFIG`` and the
defaults below. A bad value stops start-up with :class:`SettingsError`, whose message names
the setting (``DIHYA_RT_MAX_PAYLOAD_BYTES: Input should be a valid integer``).

Lists given through the environment are comma separated
(``DIHYA_RT_ALLOWED_ORIGINS=https://a.example,https://b.example``); nested tables
(``roles``, ``namespaces``) come from the TOML file or as JSON in the environment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from dihya_realtime.kernel.domain_events import EVENT_TYPES
from dihya_realtime.kernel.redaction import SECRET_WORDS

ENV_PREFIX = "DIHYA_RT_"

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# Secret words of key names (see redaction.py: matched by shape, so "api_key" also catches
# apiKey, X-API-KEY, x_api_key). These are always applied; DIHYA_RT_REDACT_KEYS adds words.
DEFAULT_REDACT_KEYS = sorted(SECRET_WORDS)

DEFAULT_ROLES: dict[str, list[str]] = {
    "admin": ["*"],
    "moderator": [
        "chat:moderate",
        "chat:write",
        "notifications:send",
        "live:read",
        "doc:edit",
        "doc:read",
    ],
    "user": ["chat:write", "live:read", "doc:edit", "doc:read"],
}


class SettingsError(Exception):
    """Raised when the configuration is invalid; the message names each bad setting."""


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """``"24h"`` → 86400.0; numbers are seconds. Raises ``ValueError`` on anything else."""
    if isinstance(value, int | float):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 24h)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


class HistoryPolicy(BaseModel):
    """How much of a channel's past the broker keeps for history and recovery."""

    size: int = Field(default=0, ge=0, le=100_000)
    ttl: float = 86400.0

    _parse_ttl = field_validator("ttl", mode="before")(lambda cls, v: parse_duration(v))


class NamespacePolicy(BaseModel):
    """The policy of one channel namespace (``[namespaces.chat]`` in ``realtime.toml``).

    ``subscribe`` / ``publish`` name the permission needed; ``publish = None`` means only the
    server publishes there (live updates). ``personal`` channels are ``ns:#<user_id>`` and
    only that user may subscribe.
    """

    model_config = {"extra": "forbid"}

    subscribe: str | None = None
    publish: str | None = None
    presence: bool = False
    history: HistoryPolicy = Field(default_factory=HistoryPolicy)
    anonymous: bool = False
    personal: bool = False


def default_namespaces() -> dict[str, NamespacePolicy]:
    return {
        "chat": NamespacePolicy(
            subscribe="chat:write",
            publish="chat:write",
            presence=True,
            history=HistoryPolicy(size=200, ttl=86400),
        ),
        "live": NamespacePolicy(
            subscribe="live:read", publish=None, history=HistoryPolicy(size=100, ttl=3600)
        ),
        "user": NamespacePolicy(personal=True, history=HistoryPolicy(size=100, ttl=86400)),
    }


class RateLimit(BaseModel):
    """A token bucket: ``rate`` tokens per second, at most ``burst`` saved up."""

    rate: float = Field(gt=0)
    burst: int = Field(ge=1)


class WebhookEndpoint(BaseModel):
    """One webhook receiver (``[webhooks.<name>]``): where, the signing secret, which events.

    The URL must be ``http(s)``; the secret signs every body (``X-Dihya-Signature``) and is
    never logged, audited nor exported; ``events`` defaults to every type.
    """

    model_config = {"extra": "forbid"}
    url: str = Field(min_length=1, max_length=2048)
    secret: SecretStr
    events: list[str] = Field(default_factory=lambda: list(EVENT_TYPES))

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a webhook url must be http:// or https:// with a host")
        return value

    @field_validator("secret")
    @classmethod
    def _long_secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:
            raise ValueError("a webhook secret must be at least 16 characters")
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown webhook event(s) {', '.join(unknown)}; "
                             f"known: {', '.join(EVENT_TYPES)}")
        return list(dict.fromkeys(value))


def _parse_table(text: str | bytes, name: str) -> Any:
    """A table given as text: JSON, else TOML (``DIHYA_RT_WEBHOOKS``)."""
    import json
    import tomllib

    raw = text.decode() if isinstance(text, bytes) else text
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return tomllib.loads(raw)
    except tomllib.TOMLDecodeError:
        raise ValueError(f"{name}: neither JSON nor a TOML table") from None


class Settings(BaseSettings):
    """Every setting of dihya-realtime, each documented in docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        case_sensitive=False,
        validate_default=True,
    )

    # -- running
    dev: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=0, le=65535)
    async_mode: Literal["gevent", "threading"] = "gevent"
    secret_key: SecretStr | None = None  # Flask session signing key of the standalone app
    # which features run: "all", or names (channels, chat, collab, notifications); session
    # always runs. Checked against the feature packages when Realtime starts.
    features: CsvList = Field(default_factory=lambda: ["all"])

    # -- authentication
    jwt_secret: SecretStr | None = None
    jwt_public_key_file: Path | None = None
    jwt_private_key_file: Path | None = None  # only to mint tokens (`dihya-realtime token`)
    jwt_algorithms: CsvList = Field(default_factory=list)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: float = Field(default=0, ge=0, le=300)
    # Keys of an OIDC provider (Auth0, Keycloak, Cognito, Entra…), chosen by the token's kid.
    # Not with JWT_PUBLIC_KEY_FILE (which key would RS256 mean?); with JWT_SECRET, HS* tokens
    # use the secret and RS*/PS*/ES* tokens the JWKS. https, or http only to a loopback host.
    jwt_jwks_url: str | None = None
    jwt_jwks_cache_seconds: float = Field(default=300, ge=1, le=86400)  # then re-read
    # an unknown kid fetches the set again, at most once per this many seconds
    jwt_jwks_min_refetch_seconds: float = Field(default=10, ge=0.1, le=3600)
    jwt_jwks_timeout: float = Field(default=5, gt=0, le=60)  # connect + read of one fetch
    jwt_jwks_max_bytes: int = Field(default=128 * 1024, ge=1024, le=4 * 1024 * 1024)

    @field_validator("jwt_jwks_url")
    @classmethod
    def _jwks_url_is_https(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS:
            return value
        raise ValueError("must be an https:// URL (http:// only for localhost/127.0.0.1/[::1])")

    @model_validator(mode="after")
    def _jwks_not_with_public_key(self) -> Settings:
        if self.jwt_jwks_url and self.jwt_public_key_file is not None:
            raise ValueError("jwt_jwks_url and jwt_public_key_file are exclusive: verify with "
                             "the provider's JWKS or with one public key, not both")
        return self
    allow_query_token: bool = False
    session_auth: bool = False
    session_user_key: str = "user_id"
    session_roles_key: str = "roles"
    session_name_key: str = "name"
    anonymous: bool = False
    expiry_warning_seconds: float = Field(default=60, ge=0)
    expiry_grace_seconds: float = Field(default=25, ge=0)
    # the host app's Flask-Login session and Flask-JWT-Extended tokens (optional extras)
    flask_login: bool = False
    flask_login_roles_attr: str = Field(default="roles", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    flask_login_name_attr: str = Field(default="name", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    flask_jwt_extended: bool = False
    flask_jwt_extended_roles_claim: str = Field(default="roles", min_length=1, max_length=128)
    flask_jwt_extended_name_claim: str = Field(default="name", min_length=1, max_length=128)

    # -- transport
    allowed_origins: CsvList = Field(default_factory=list)
    max_payload_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    ping_interval: float = Field(default=25, gt=0)
    ping_timeout: float = Field(default=20, gt=0)

    # -- storage and scale
    database_url: str = "sqlite:///dihya_realtime.db"
    redis_url: str | None = None
    redis_prefix: str = "dihya"
    interest_linger: float = Field(default=5, ge=0)  # s a channel stays watched, unused

    # -- HTTP API
    api_keys: CsvList = Field(default_factory=list)

    # -- audit
    audit_log: str = "-"  # "-" = stdout, "off", or a file path
    audit_db: bool = True

    # -- rate limits
    rate_limit_event: RateLimit = Field(default_factory=lambda: RateLimit(rate=50, burst=100))
    rate_limit_user: RateLimit = Field(default_factory=lambda: RateLimit(rate=200, burst=400))
    rate_limit_connect_ip: RateLimit = Field(default_factory=lambda: RateLimit(rate=20, burst=60))
    rate_limit_abuse_strikes: int = Field(default=50, ge=1)

    # -- redaction
    redact_keys: CsvList = Field(default_factory=lambda: list(DEFAULT_REDACT_KEYS))

    # -- authorization and channels
    roles: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_ROLES))
    namespaces: dict[str, NamespacePolicy] = Field(default_factory=default_namespaces)
    idempotency_ttl: float = Field(default=300, gt=0)
    presence_ttl: float = Field(default=30, gt=0)

    # -- notifications
    notifications_retention: float = Field(default=30 * 86400, gt=0)  # `purge` default age
    notifications_critical_categories: CsvList = Field(default_factory=lambda: ["security"])
    _notifications_retention = field_validator("notifications_retention", mode="before")(
        lambda cls, v: parse_duration(v))
    _notifications_split = field_validator("notifications_critical_categories", mode="before")(
        lambda cls, v: _split_csv(v))

    # -- Web Push (features/notifications/push_*.py, docs/notifications.md "Web Push")
    vapid_private_key_file: Path | None = None  # PEM (`dihya-realtime vapid-keys`); unset: off
    vapid_subject: str | None = None  # "mailto:ops@example.com" or an https URL (RFC 8292)
    # push services a subscription may point at (host or ".suffix"); "*" = any (not advised)
    push_allowed_hosts: CsvList = Field(default_factory=lambda: [
        "fcm.googleapis.com", ".push.services.mozilla.com", ".push.apple.com",
        ".notify.windows.com"])
    push_allow_http: bool = False  # accept http:// endpoints (local push services in tests)
    push_max_subscriptions: int = Field(default=10, ge=1, le=100)  # per user; next: limit
    push_max_attempts: int = Field(default=8, ge=1, le=50)  # 429/5xx retries, then dropped
    push_retry_base: float = Field(default=5, gt=0)  # seconds; doubles per attempt
    push_retry_max: float = Field(default=3600, gt=0)  # cap of one wait (and of Retry-After)
    push_ttl: int = Field(default=86400, ge=0, le=2419200)  # TTL header: kept while offline
    push_timeout: float = Field(default=10, gt=0, le=60)  # one request to a push service
    push_poll_interval: float = Field(default=1, gt=0, le=60)  # queue polling
    push_lease: float = Field(default=120, gt=0)  # a claimed job is re-claimable after this
    _push_hosts_split = field_validator("push_allowed_hosts", mode="before")(
        lambda cls, v: _split_csv(v))

    # -- notifications: email digest (docs/notifications.md, "Email digest")
    # smtp://[user:password@]host[:port] (add ?starttls=true, or smtp+starttls://) or
    # smtps:// (implicit TLS). Unset: no digest is ever sent (the command says so).
    smtp_url: SecretStr | None = None
    smtp_from: str | None = Field(default=None, max_length=320)  # the From: of every digest
    smtp_timeout: float = Field(default=10, gt=0, le=300)  # connect and each SMTP command
    # a user's digest when they never chose: off | hourly | daily
    digest_default: Literal["off", "hourly", "daily"] = "off"
    # a notification unread this long (and not archived) may go into a digest
    digest_delay: float = Field(default=15 * 60, ge=0)
    # how often `serve` sends due digests; "off" (or 0) leaves it to `dihya-realtime digest`
    digest_schedule: float = Field(default=300, ge=0)
    digest_max_items: int = Field(default=20, ge=1, le=500)  # listed per email; "and N more"
    digest_max_per_run: int = Field(default=500, ge=1, le=100_000)  # emails per run
    # the public URL of this service, for the unsubscribe link (required with SMTP_URL)
    digest_base_url: str | None = None
    # joined to notifications' relative action_url paths (/builds/42) in the email
    digest_app_url: str | None = None
    # signs unsubscribe links (default: SECRET_KEY, then JWT_SECRET); links last this long
    digest_secret: SecretStr | None = None
    digest_unsubscribe_ttl: float = Field(default=90 * 86400, gt=0)
    # a folder of templates (digest.txt, digest.html) used before the built-in ones
    digest_templates: Path | None = None
    _digest_durations = field_validator("digest_delay", "digest_unsubscribe_ttl", mode="before")(
        lambda cls, v: parse_duration(v))

    @field_validator("digest_schedule", mode="before")
    @classmethod
    def _digest_schedule(cls, value: Any) -> Any:
        return 0.0 if str(value).strip().lower() == "off" else parse_duration(value)

    @field_validator("digest_base_url", "digest_app_url")
    @classmethod
    def _digest_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s):// URL")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _smtp_complete(self) -> Settings:
        if self.smtp_url is None:
            return self
        scheme = urlsplit(self.smtp_url.get_secret_value()).scheme
        if scheme not in ("smtp", "smtps", "smtp+starttls"):
            raise ValueError(f"{ENV_PREFIX}SMTP_URL must start with smtp://, smtp+starttls:// "
                             "or smtps://")
        if not self.smtp_from:
            raise ValueError(f"{ENV_PREFIX}SMTP_FROM is required with {ENV_PREFIX}SMTP_URL "
                             "(the digest's From:)")
        if not self.digest_base_url:
            raise ValueError(f"{ENV_PREFIX}DIGEST_BASE_URL is required with "
                             f"{ENV_PREFIX}SMTP_URL (the unsubscribe links)")
        if not (self.digest_secret or self.secret_key or self.jwt_secret):
            raise ValueError(f"{ENV_PREFIX}DIGEST_SECRET (or SECRET_KEY or JWT_SECRET) is "
                             f"required with {ENV_PREFIX}SMTP_URL (it signs unsubscribe links)")
        return self

    # -- collab
    docs_compact_every: int = Field(default=200, ge=1)  # updates merged into a snapshot
    docs_compact_idle: float = Field(default=30, ge=0)  # seconds without updates; 0 = never
    docs_create_on_join: bool = True  # doc:join of an unknown document by an editor creates it

    # -- chat
    chat_typing_ttl: float = Field(default=6, gt=0)  # typing expires without renewal
    chat_typing_throttle: float = Field(default=2, ge=0)  # min seconds between typing:true
    chat_history_limit: int = Field(default=50, ge=1, le=100)  # chat:history default page

    # -- hostile input: connection guard (Engine.IO sessions, CONNECTs, client address)
    # An Engine.IO session without an authenticated CONNECT within this is closed (seconds).
    connect_timeout: float = Field(default=10, gt=0, le=300)
    # Engine.IO sessions not yet authenticated, per client address; the next handshake → 429.
    max_pending_per_ip: int = Field(default=20, ge=1)
    # Authenticated connections of one user on one process; the next CONNECT → rate_limited.
    max_connections_per_user: int = Field(default=20, ge=1)
    # CONNECT packets one Engine.IO session may send; past it the session is closed.
    max_connects_per_session: int = Field(default=16, ge=1)
    # Proxies (CIDRs) whose X-Forwarded-For names the client address.
    trusted_proxies: CsvList = Field(default_factory=list)
    # Connect refusals: one audit row per (address, reason) and window, then a counted summary.
    refusal_audit_window: float = Field(default=60, gt=0, le=3600)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: Any) -> Any:
        import ipaddress

        value = _split_csv(value)
        for item in value or ():
            try:
                ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                raise ValueError(f"not an IP network (CIDR): {item!r}") from None
        return value

    # -- hostile input: chat
    # chat:rooms: the page size when the client gives no `limit`, and the largest it may ask
    chat_rooms_page_limit: int = Field(default=100, ge=1, le=1000)
    # Rooms whose live events a connection gets from connect (the most recently joined); a
    # member of more gets the others' after `chat:join` on them again (or reads history).
    chat_max_relayed_rooms: int = Field(default=1000, ge=1)
    # Different emoji on one message; reacting with one more → `conflict`, details
    # {"reason": "too_many_reactions", "limit": N} (an emoji already there is always accepted).
    chat_max_reaction_kinds: int = Field(default=20, ge=1, le=1000)
    # chat:reactors: the page size when the client gives no `limit`, and the largest it may ask
    chat_reactors_page_limit: int = Field(default=50, ge=1, le=1000)

    # -- hostile input: limits that count cost
    # Subscriptions one connection may hold; one more → `forbidden`, details
    # {"reason": "subscriptions", "limit": N} (unsubscribe first).
    max_subscriptions_per_connection: int = Field(default=200, ge=1)
    # Channels keeping history, per broker (this process's memory, or one Redis). Starting
    # history on one more drops the history of the least recently published channel if it
    # has been idle for history_evict_idle (or expired); if every channel is more recent, the
    # publish → `unavailable`, details {"reason": "history_channels", "limit": N}. Recent
    # history is never evicted: a client creating channels pushes out only idle history, one
    # channel per channel it starts.
    max_history_channels: int = Field(default=100_000, ge=1)
    history_evict_idle: float = Field(default=600, ge=0)
    _history_evict_idle = field_validator("history_evict_idle", mode="before")(
        lambda cls, v: parse_duration(v))
    # Bytes of history per channel (JSON of the publications): the oldest are trimmed past
    # it, and a recovery reaching back past them says recovered=false.
    max_history_bytes_per_channel: int = Field(default=4 * 1024 * 1024, ge=1024)
    # Bytes of history all channels together keep (per broker). Past it, the oldest
    # publications of the least recently published channels are trimmed (their recovery then
    # says recovered=false); the channel published to keeps its newest publication and no
    # publish is refused for it. The memory broker enforces it; on Redis, history is bounded
    # by Redis's own `maxmemory` (set it, with `volatile-lru`: docs/limits.md) and a write
    # Redis refuses for memory → `unavailable`.
    max_history_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # One `history` / `subscribe`-with-`since` reply holds at most this many publications and
    # (past the first) bytes; `more: true` says to continue with `history` from the last offset.
    history_page_max_count: int = Field(default=100, ge=1, le=10_000)
    history_page_max_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Per-event rate-limit buckets kept in memory (one per user and event); the least
    # recently used are forgotten past it.
    rate_limit_max_keys: int = Field(default=100_000, ge=100)

    # -- hostile input: documents
    # A Yjs update is checked in a worker process against the document's current state
    # (pycrdt holds the GIL, so a thread would still freeze the event loop). Over a cap →
    # payload_too_large; bytes that do not apply to the document → invalid_payload.
    doc_update_max_structs: int = Field(default=20_000, ge=1)  # items/GC/skip in one update
    doc_update_max_clients: int = Field(default=256, ge=1)  # distinct client ids in one update
    doc_update_cpu_seconds: float = Field(default=0.05, gt=0, le=10)  # CPU to integrate one
    doc_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)  # encoded document state
    doc_workers: int = Field(default=2, ge=1, le=64)  # worker processes per server process
    doc_worker_timeout: float = Field(default=5, gt=0, le=300)  # wall/CPU per job, then killed
    doc_worker_memory_mb: int = Field(default=512, ge=0)  # heap of a worker (0 = no limit)

    # -- hostile input: inbound packets
    # A binary packet's attachments: at most this many, announced in its header; their bytes,
    # with the header's, count against DIHYA_RT_MAX_PAYLOAD_BYTES as they arrive.
    # Over either → payload_too_large.
    max_attachments: int = Field(default=16, ge=1, le=1024)
    # Bytes one connection may send: every Engine.IO message is charged by its length. Over it
    # → rate_limited with retry_after, and a strike (DIHYA_RT_RATE_LIMIT_ABUSE_STRIKES).
    rate_limit_bytes: RateLimit = Field(
        default_factory=lambda: RateLimit(rate=256 * 1024, burst=1024 * 1024))

    @model_validator(mode="after")
    def _byte_burst_holds_a_message(self) -> Settings:
        if self.rate_limit_bytes.burst < self.max_payload_bytes:
            raise ValueError("rate_limit_bytes: burst must be at least max_payload_bytes "
                             f"({self.max_payload_bytes}), or no message that size could pass")
        return self

    # -- hostile input: http
    # Seconds a client has to send a request line and headers (in total; also bounds an idle
    # keep-alive connection); then the connection is closed.
    http_header_timeout: float = Field(default=10, gt=0, le=300)
    # An HTTP request body over this is refused with 413 payload_too_large before it is read
    # (Content-Length) or as it arrives (chunked). At least DIHYA_RT_MAX_PAYLOAD_BYTES.
    max_http_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=256 * 1024 * 1024)

    @model_validator(mode="after")
    def _http_body_holds_a_payload(self) -> Settings:
        if self.max_http_body_bytes < self.max_payload_bytes:
            raise ValueError(f"max_http_body_bytes must be at least DIHYA_RT_MAX_PAYLOAD_BYTES "
                             f"({self.max_payload_bytes}): an HTTP publish carries a payload")
        return self

    # -- perf
    # Per-event limits by event name ({"publish": {"rate": 500, "burst": 1000}}), consulted
    # before an event's declared `rate=` and the DIHYA_RT_RATE_LIMIT_EVENT default.
    rate_limit_events: dict[str, RateLimit] = Field(default_factory=dict)

    # -- webhooks (features/webhooks, docs/webhooks.md): endpoints by name, a TOML table
    # ([webhooks.search] url, secret, events) or JSON in the environment (TOML text too)
    webhooks: Annotated[dict[str, WebhookEndpoint], NoDecode] = Field(default_factory=dict)
    webhook_timeout: float = Field(default=5, gt=0, le=60)  # connect + response of one POST
    webhook_retry_horizon: float = Field(default=86400, gt=0, le=30 * 86400)  # then failed
    webhook_backoff_base: float = Field(default=1, gt=0, le=3600)  # first retry delay
    webhook_backoff_max: float = Field(default=3600, gt=0, le=86400)  # cap of one delay
    webhook_max_pending: int = Field(default=10_000, ge=1, le=10_000_000)  # queued/endpoint
    webhook_max_response_bytes: int = Field(default=4096, ge=0, le=1024 * 1024)  # read cap
    webhook_poll_interval: float = Field(default=1, gt=0, le=60)  # due deliveries checked
    webhook_batch: int = Field(default=50, ge=1, le=1000)  # deliveries claimed per pass

    @field_validator("webhooks", mode="before")
    @classmethod
    def _webhooks_text(cls, value: Any) -> Any:
        if isinstance(value, str | bytes):
            return _parse_table(value, "webhooks")
        return value

    @field_validator("webhooks")
    @classmethod
    def _webhook_names(cls, value: dict[str, WebhookEndpoint]) -> dict[str, WebhookEndpoint]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise ValueError(
                    f"webhook endpoint name {name!r} must match [A-Za-z0-9_.-]{{1,64}}")
        return value

    _split = field_validator("jwt_algorithms", "allowed_origins", "api_keys", "redact_keys",
                             "features", mode="before")(lambda cls, v: _split_csv(v))

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, value: dict[str, NamespacePolicy]) -> dict[str, NamespacePolicy]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
                raise ValueError(f"namespace name {name!r} must match [a-z][a-z0-9_]{{0,31}}")
        return value

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        if not self.jwt_algorithms:
            if self.jwt_public_key_file is not None:
                self.jwt_algorithms = ["RS256", "ES256"]
            elif self.jwt_jwks_url:
                self.jwt_algorithms = ["RS256", "ES256"] + (["HS256"] if self.jwt_secret else [])
            else:
                self.jwt_algorithms = ["HS256"]
        bad = [a for a in self.jwt_algorithms if a.lower() == "none"]
        if bad:
            raise ValueError("jwt_algorithms: 'none' is never accepted")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(ENV_PREFIX + "CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise SettingsError(f"{ENV_PREFIX}CONFIG: no such file: {config_file}")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    # -- transactional publish (the outbox: kernel/outbox, docs/host-integration.md)
    # Run the relay in this process (every process may: one leads at a time, by lease).
    outbox_enabled: bool = True
    # Seconds between polls for committed rows (SQLite; PostgreSQL's NOTIFY wakes it sooner).
    outbox_poll_interval: float = Field(default=1.0, gt=0, le=60)
    # Rows one pass publishes before it looks again.
    outbox_batch_size: int = Field(default=100, ge=1, le=10000)
    # Seconds the leading relay holds its lease; a killed leader is replaced after this.
    outbox_lease: float = Field(default=10, gt=0, le=600)
    # Longest wait between passes while the broker or the database is unavailable.
    outbox_retry_max: float = Field(default=30, gt=0, le=3600)
    # Unexpected errors a row may meet before it is set aside as failed.
    outbox_max_attempts: int = Field(default=10, ge=1, le=1000)
    # JSON bytes of one row's payload; over it → payload_too_large when the row is written.
    outbox_max_payload_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)

    # -- admin console (features/admin, docs/admin.md)
    # Connections and channels one process lists in a snapshot; beyond: `truncated`.
    admin_max_connections: int = Field(default=500, ge=1, le=10000)
    admin_max_channels: int = Field(default=500, ge=1, le=10000)
    # Seconds a snapshot waits for the other processes' answers (Redis only).
    admin_gather_timeout: float = Field(default=0.5, gt=0, le=10)

    @model_validator(mode="after")
    def _outbox_lease_outlasts_a_poll(self) -> Settings:
        if self.outbox_lease <= 2 * self.outbox_poll_interval:
            raise ValueError("outbox_lease must be more than twice outbox_poll_interval: the "
                             "leading relay renews it once per pass")
        return self

    # -- derived views
    @property
    def jwt_configured(self) -> bool:
        return (self.jwt_secret is not None or self.jwt_public_key_file is not None
                or bool(self.jwt_jwks_url))

    def require_production_ready(self) -> None:
        """Refuse to serve in production mode without a way to verify tokens."""
        if not self.dev and not self.jwt_configured:
            raise SettingsError(
                f"{ENV_PREFIX}JWT_SECRET, {ENV_PREFIX}JWT_PUBLIC_KEY_FILE or "
                f"{ENV_PREFIX}JWT_JWKS_URL is required "
                "outside dev mode (use --dev for a local demo)"
            )


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning pydantic's errors into one message naming each bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            name = ENV_PREFIX + loc.upper() if "." not in loc else loc
            lines.append(f"{name}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
