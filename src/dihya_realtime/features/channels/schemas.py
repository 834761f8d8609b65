"""Channel schemas: the payloads, replies and server events of :mod:`.events`, and the bodies
of the HTTP API in :mod:`.http`.

Kept apart from the handlers because the events reference (``docs/events.md``) and the
AsyncAPI and OpenAPI documents are generated from these models: reading them is reading the
wire contract.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from dihya_realtime.broker import StreamPosition
from dihya_realtime.kernel.payloads import JsonValue

ChannelName = Field(min_length=3, max_length=161, examples=["chat:general"],
                    description="namespace:name")


class Since(BaseModel):
    offset: int = Field(ge=0, description="the last offset the client saw")
    epoch: str = Field(min_length=1, max_length=64, description="the epoch it belonged to")

    def position(self) -> StreamPosition:
        return StreamPosition(offset=self.offset, epoch=self.epoch)


class UserInfo(BaseModel):
    user_id: str
    name: str | None = None


class PublicationModel(BaseModel):
    channel: str
    offset: int
    epoch: str
    id: str
    ts: float = Field(description="UNIX seconds when the broker accepted it")
    data: Any
    from_: UserInfo | None = Field(default=None, alias="from",
                                   description="the publishing user (client publishes)")


class PresenceMember(BaseModel):
    user_id: str
    name: str | None
    connections: int = Field(description="open connections of this user in the channel")
    since: float = Field(description="UNIX seconds of the user's first connection")


class PresenceReply(BaseModel):
    members: list[PresenceMember]


class SubscribePayload(BaseModel):
    channel: str = ChannelName
    since: Since | None = Field(default=None, description="recover what was missed after it")


class SubscribeReply(BaseModel):
    channel: str
    offset: int = Field(description="the channel's top offset when the reply was made")
    epoch: str
    recovered: bool = Field(description="true when `since` was given and every missed "
                            "publication is in `publications` or follows with `history` "
                            "(see `more`)")
    publications: list[PublicationModel]
    more: bool = Field(description="true when a page cap stopped "
                       "`publications` before `offset`: continue with `history` from the last "
                       "offset received until `more` is false")
    presence: PresenceReply | None = None


class ChannelPayload(BaseModel):
    channel: str = ChannelName


class UnsubscribeReply(BaseModel):
    channel: str
    unsubscribed: bool = Field(description="false when the connection was not subscribed")


class PublishPayload(BaseModel):
    channel: str = ChannelName
    data: JsonValue = Field(description="any JSON value")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128,
                                        description="same key within 5 min → same result")


class PublishReply(BaseModel):
    offset: int
    epoch: str
    id: str


class HistoryPayload(BaseModel):
    channel: str = ChannelName
    limit: int | None = Field(default=None, ge=1, le=100)
    since: Since | None = None


class HistoryReply(BaseModel):
    publications: list[PublicationModel]
    offset: int
    epoch: str
    recovered: bool = Field(description="with `since`: false when history no longer reaches "
                            "back that far (then `publications` is empty)")
    more: bool = Field(description="with `since`: true when a page cap "
                       "stopped `publications` before `offset`; ask again from the last "
                       "offset received until it is false")


class PresenceEventModel(BaseModel):
    channel: str
    user: UserInfo


class UnsubscribedEvent(BaseModel):
    channel: str
    reason: str = Field(description='the reason given to `rt.unsubscribe` (default "server"), '
                        'or "forbidden" / "unavailable" after an `auth:refresh`, '
                        'or "recover" (subscribe again with `since`)')


# -- the bodies of the HTTP API (:mod:`.http`)

class HttpPublish(BaseModel):
    channel: str = ChannelName
    data: JsonValue
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class HttpBroadcast(BaseModel):
    channels: list[str] = Field(min_length=1, max_length=1000)
    data: JsonValue


class HttpDisconnect(BaseModel):
    reason: str = Field(default="disconnected by server", max_length=200)


__all__ = [
    "ChannelName", "ChannelPayload", "HistoryPayload", "HistoryReply", "HttpBroadcast",
    "HttpDisconnect", "HttpPublish", "PresenceEventModel", "PresenceMember", "PresenceReply",
    "PublicationModel", "PublishPayload", "PublishReply", "Since", "SubscribePayload",
    "SubscribeReply", "UnsubscribeReply", "UnsubscribedEvent", "UserInfo",
]
