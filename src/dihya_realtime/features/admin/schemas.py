"""The payloads and replies of the ``admin:*`` events (the events reference is built from them)."""

from __future__ import annotations

from pydantic import BaseModel, Field

USER_ID = r"^[^\x00-\x1f]{1,128}$"


class ConnectionsPayload(BaseModel):
    user_id: str | None = Field(default=None, max_length=128,
                                description="only this user's connections (exact id)")


class ConnectionInfo(BaseModel):
    sid: str
    user_id: str
    name: str | None
    roles: list[str]
    remote_addr: str | None
    user_agent: str | None = Field(description="the first 160 characters")
    connected_at: float = Field(description="UNIX seconds")
    channels: int = Field(description="channels this connection is subscribed to")


class ChannelCount(BaseModel):
    channel: str
    subscribers: int = Field(description="this process's connections subscribed to it")


class ProcessInfo(BaseModel):
    node: str = Field(description="the process's id (as in presence entries)")
    host: str
    pid: int
    at: float = Field(description="UNIX seconds: when this process answered")
    connection_count: int
    channel_count: int
    truncated: bool = Field(description="more than DIHYA_RT_ADMIN_MAX_CONNECTIONS connections "
                            "or DIHYA_RT_ADMIN_MAX_CHANNELS channels: the busiest are listed")
    connections: list[ConnectionInfo]
    channels: list[ChannelCount] = Field(description="its busiest channels, at most "
                                         "DIHYA_RT_ADMIN_MAX_CHANNELS")


class UserSummary(BaseModel):
    user_id: str
    name: str | None
    connections: int
    processes: int


class ConnectionsReply(BaseModel):
    clustered: bool = Field(description="false: one process (no Redis); true: every process "
                            "that answered within DIHYA_RT_ADMIN_GATHER_TIMEOUT")
    processes: list[ProcessInfo] = Field(description="the answering process first")
    users: list[UserSummary] = Field(description="by connections, most first")


class ChannelsPayload(BaseModel):
    offset: int = Field(default=0, ge=0, le=100_000)
    limit: int = Field(default=50, ge=1, le=100)


class PresenceMember(BaseModel):
    user_id: str
    name: str | None = None


class ChannelInfo(BaseModel):
    channel: str
    subscribers: int = Field(description="subscribed connections, every process that answered")
    processes: int
    presence: list[PresenceMember] | None = Field(
        description="at most 20 members; null when the channel's namespace has no presence")
    presence_count: int | None


class ChannelsReply(BaseModel):
    clustered: bool
    total: int = Field(description="channels with a subscriber")
    channels: list[ChannelInfo]
    truncated: bool = Field(description="a process listed only its busiest channels")


class AuditPayload(BaseModel):
    type: str | None = Field(default=None, max_length=64, examples=["permission_denied"])
    user_id: str | None = Field(default=None, max_length=128)
    outcome: str | None = Field(default=None, max_length=64, examples=["forbidden"])
    event: str | None = Field(default=None, max_length=128, examples=["admin:disconnect_user"])
    before_id: int | None = Field(default=None, ge=1, le=2**63 - 1,  # a database integer
                                  description="the previous page's next_before_id")
    limit: int = Field(default=50, ge=1, le=200)


class AuditRow(BaseModel):
    id: int
    ts: float
    type: str
    user_id: str | None
    sid: str | None
    remote_addr: str | None
    event: str | None
    outcome: str | None
    details: object | None


class AuditReply(BaseModel):
    rows: list[AuditRow] = Field(description="newest first")
    next_before_id: int | None = Field(description="null on the last page")


class VerifyReply(BaseModel):
    ok: bool = Field(description="intact and complete")
    intact: bool = Field(description="the hash chain holds")
    rows: int
    dropped: int = Field(description="records lost before they reached the database")
    first_bad_id: int | None
    reason: str | None
    last_hash: str | None


class DisconnectPayload(BaseModel):
    user_id: str = Field(min_length=1, max_length=128, pattern=USER_ID)
    reason: str = Field(default="disconnected by an administrator", min_length=1,
                        max_length=200)


class DisconnectReply(BaseModel):
    user_id: str
    requested: bool = Field(description="every process was asked to disconnect the user")


class MetricsSample(BaseModel):
    at: float = Field(description="UNIX seconds at the end of the minute")
    connections: int
    events: int
    errors: int = Field(description="events answered with an error")
    publications: int
    events_per_s: float
    publications_per_s: float


class MetricsReply(BaseModel):
    node: str = Field(description="the process these metrics are of: the one serving this "
                      "connection")
    host: str
    pid: int
    interval: float = Field(description="seconds per sample")
    samples: list[MetricsSample] = Field(description="at most 60, oldest first")
    current: MetricsSample = Field(description="the minute in progress")
