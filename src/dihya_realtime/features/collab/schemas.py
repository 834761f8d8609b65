"""Collaborative editing schemas: the payloads, replies and server events of :mod:`.events`,
and the bodies of the HTTP API in :mod:`.http`.

Kept apart from the handlers because the events reference (``docs/events.md``) and the
AsyncAPI and OpenAPI documents are generated from these models: reading them is reading the
wire contract. Binary fields (:data:`Binary`) travel as Socket.IO binary attachments.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, Strict, field_validator, model_validator

from dihya_realtime.features.collab.service import DOC_ID_RE
from dihya_realtime.kernel.payloads import JsonValue

DocId = Annotated[str, Field(pattern=DOC_ID_RE.pattern, description="the document id")]
Binary = Annotated[bytes, Strict(), Field(description="binary (a Socket.IO attachment)")]
AWARENESS_MAX_BYTES = 8192


class DocUser(BaseModel):
    user_id: str
    name: str | None


class JoinPayload(BaseModel):
    doc_id: DocId
    sync_step1: Binary | None = Field(
        default=None, description="optional: the client's sync step 1, so that the reply's "
        "sync_step2 holds only what the client lacks")


class AwarenessState(BaseModel):
    doc_id: str
    client_id: int = Field(description="the participant's awareness key, chosen by the server")
    user: DocUser = Field(description="who it is, stamped by the server")
    state: dict[str, Any] | None = Field(description="null: the participant left")


class JoinReply(BaseModel):
    doc_id: str
    read_only: bool
    client_id: int = Field(description="this participant's awareness key")
    seq: int = Field(description="the last stored update included in the state")
    sync_step1: Binary = Field(description="the server's state vector (y-protocols step 1)")
    sync_step2: Binary = Field(description="the state the client lacks (y-protocols step 2)")
    awareness: list[AwarenessState]


class UpdatePayload(BaseModel):
    doc_id: DocId
    update: Binary = Field(description="a Yjs update (v1 encoding)")


class UpdateReply(BaseModel):
    doc_id: str
    seq: int = Field(description="the document's sequence number after this update")


class SyncPayload(BaseModel):
    doc_id: DocId
    message: Binary = Field(description="a y-protocols sync message (step 1, step 2 or update)")


class SyncReply(BaseModel):
    doc_id: str
    message: Binary | None = Field(description="the server's step 2 when you sent a step 1")
    seq: int


class AwarenessPayload(BaseModel):
    doc_id: DocId
    state: dict[str, JsonValue] | None = Field(
        description="cursor, selection, display preferences …; null clears it")

    @field_validator("state")
    @classmethod
    def _small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        import orjson

        if value is not None and len(orjson.dumps(value)) > AWARENESS_MAX_BYTES:
            raise ValueError(f"awareness state larger than {AWARENESS_MAX_BYTES} bytes")
        return value


class AwarenessReply(BaseModel):
    doc_id: str
    client_id: int


class LeavePayload(BaseModel):
    doc_id: DocId


class LeaveReply(BaseModel):
    doc_id: str
    left: bool = Field(description="false if the connection had not joined it")


Subject = Annotated[str, Field(min_length=1, max_length=128)]


class AccessSubject(BaseModel):
    """Exactly one of ``user_id`` and ``role``."""

    doc_id: DocId
    user_id: Subject | None = None
    role: Subject | None = None

    @model_validator(mode="after")
    def _one_subject(self) -> AccessSubject:
        if (self.user_id is None) == (self.role is None):
            raise ValueError("give exactly one of user_id and role")
        return self

    def change(self, mode: str | None) -> tuple[str, str, Any]:
        if self.user_id is not None:
            return ("user", self.user_id, mode)
        return ("role", str(self.role), mode)


class GrantPayload(AccessSubject):
    mode: Literal["read", "edit"]


class AccessEntry(BaseModel):
    user_id: str | None = None
    role: str | None = None
    mode: Literal["read", "edit"]


class UserGrant(BaseModel):
    user_id: str
    mode: Literal["read", "edit"]


class RoleGrant(BaseModel):
    role: str
    mode: Literal["read", "edit"]


class AccessReply(BaseModel):
    doc_id: str
    created_by: str | None = Field(description="edits it without a grant; null if created "
                                   "over HTTP")
    grants: list[UserGrant | RoleGrant] = Field(description="each names a user_id or a role")


class AccessPayload(BaseModel):
    doc_id: DocId


class UpdatedEvent(BaseModel):
    doc_id: str
    update: Binary = Field(description="a Yjs update to apply")
    seq: int


class ClosedEvent(BaseModel):
    doc_id: str
    reason: str = Field(description='"forbidden" | "unavailable"')


# -- the bodies of the HTTP API (:mod:`.http`)

class AccessBody(BaseModel):
    grants: list[AccessEntry] = Field(max_length=1000)

    @field_validator("grants")
    @classmethod
    def _one_subject(cls, value: list[AccessEntry]) -> list[AccessEntry]:
        for entry in value:
            if (entry.user_id is None) == (entry.role is None):
                raise ValueError("each grant names exactly one of user_id and role")
        return value


class CreateDoc(BaseModel):
    doc_id: DocId
    text: str | None = Field(default=None, max_length=1_000_000)
    root: str = Field(default="text", pattern=r"^[A-Za-z0-9_.-]{1,64}$")


__all__ = [
    "AWARENESS_MAX_BYTES", "AccessBody", "AccessEntry", "AccessPayload", "AccessReply",
    "AccessSubject", "AwarenessPayload", "AwarenessReply", "AwarenessState", "Binary",
    "ClosedEvent", "CreateDoc", "DocId", "DocUser", "GrantPayload", "JoinPayload", "JoinReply",
    "LeavePayload", "LeaveReply", "RoleGrant", "Subject", "SyncPayload", "SyncReply",
    "UpdatePayload", "UpdateReply", "UpdatedEvent", "UserGrant",
]
