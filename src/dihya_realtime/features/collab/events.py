"""Collaborative editing events: shared Yjs documents over the same Socket.IO connection.

Binary values (``update``, ``sync_step1`` …) travel as Socket.IO binary attachments; see
``docs/collab.md`` for the wire shape and how a ``yjs`` client speaks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from flask import Response, jsonify, request
from pydantic import BaseModel, Field, Strict, field_validator, model_validator

from dihya_realtime.features.collab.service import DOC_ID_RE, DocService
from dihya_realtime.http.api import require_api_key
from dihya_realtime.http.bodies import body
from dihya_realtime.kernel.errors import forbidden
from dihya_realtime.kernel.payloads import JsonValue
from dihya_realtime.kernel.pipeline import EventContext
from dihya_realtime.kernel.registry import event, server_event
from dihya_realtime.kernel.settings import RateLimit

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

    Ctx = EventContext[Realtime]  # handlers see the facade: mypy follows ctx.rt.<feature>

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


@event("doc:join", payload=JoinPayload, reply=JoinReply, permission="doc:read",
       emits=("doc:update", "doc:awareness"), binary=True, audit="doc_join",
       audit_details=lambda p, r: {"doc_id": p.doc_id, "read_only": r["read_only"],
                                   "seq": r["seq"]})
def join(ctx: Ctx, payload: JoinPayload) -> dict:
    """Join a document: the reply carries its state (Yjs sync step 1 and step 2).

    Then answer the server's ``sync_step1`` with ``doc:sync`` (your step 2: what the server
    lacks), and from then on send ``doc:update``. A document is open to its creator, to the
    users and roles it was granted to (``doc:grant``, ``PUT /api/v1/docs/<id>/access``) and to
    ``doc:admin``; the roles' ``doc:edit`` / ``doc:read`` cap the mode. Anyone with
    ``doc:edit`` may create a document by joining it (``DIHYA_RT_DOCS_CREATE_ON_JOIN``) and
    becomes its creator; readers get ``read_only: true``. Payload example::

        {"doc_id": "spec-42"}

    Reply: ``{"ok": true, "data": {"doc_id": "spec-42", "read_only": false,
    "client_id": 2718281828, "seq": 17, "sync_step1": <bytes>, "sync_step2": <bytes>,
    "awareness": [{"doc_id": "spec-42", "client_id": 314159, "user": {"user_id": "17",
    "name": "Alice"}, "state": {"cursor": {"anchor": 3, "head": 3}}}]}}``

    Refusals: ``forbidden`` (no access), ``not_found`` (no such document and not created).
    """
    docs: DocService = ctx.rt.docs
    reply = docs.join(ctx.conn, payload.doc_id, payload.sync_step1)
    ctx.after_reply(lambda: docs.ask_peers_for_awareness(ctx.conn, payload.doc_id))
    return reply


class UpdatePayload(BaseModel):
    doc_id: DocId
    update: Binary = Field(description="a Yjs update (v1 encoding)")


class UpdateReply(BaseModel):
    doc_id: str
    seq: int = Field(description="the document's sequence number after this update")


@event("doc:update", payload=UpdatePayload, reply=UpdateReply, permission="doc:edit",
       rate=RateLimit(rate=60, burst=200), emits=("doc:update",), binary=True,
       audit="doc_update",
       audit_details=lambda p, r: {"doc_id": p.doc_id, "size": len(p.update), "seq": r["seq"]})
def update(ctx: Ctx, payload: UpdatePayload) -> dict:
    """Apply a Yjs update to a joined document; acked once it is stored.

    It is relayed to every other participant on every process as ``doc:update``. The update
    is first applied to a copy of the document's current state in a worker process; one
    that changes nothing is acked without being stored. Payload example:
    ``{"doc_id": "spec-42", "update": <bytes>}``; reply
    ``{"ok": true, "data": {"doc_id": "spec-42", "seq": 18}}``.

    Refusals (nothing stored, nothing relayed): ``invalid_payload`` (not a Yjs update, or it
    does not apply to this document); ``payload_too_large`` with ``details.limit``:
    ``structs`` (``DIHYA_RT_DOC_UPDATE_MAX_STRUCTS``), ``clients``
    (``DIHYA_RT_DOC_UPDATE_MAX_CLIENTS``), ``cpu_seconds``
    (``DIHYA_RT_DOC_UPDATE_CPU_SECONDS``), ``doc_bytes`` (``DIHYA_RT_DOC_MAX_BYTES``), or
    more bytes than ``DIHYA_RT_MAX_PAYLOAD_BYTES``; ``forbidden`` (read-only);
    ``conflict`` (not joined); ``unavailable`` with ``retry_after`` (every worker busy).
    Each refusal over a cap is audited as ``doc_update_refused``.
    """
    docs: DocService = ctx.rt.docs
    seq = docs.update(ctx.conn, payload.doc_id, payload.update)
    return {"doc_id": payload.doc_id, "seq": seq}


class SyncPayload(BaseModel):
    doc_id: DocId
    message: Binary = Field(description="a y-protocols sync message (step 1, step 2 or update)")


class SyncReply(BaseModel):
    doc_id: str
    message: Binary | None = Field(description="the server's step 2 when you sent a step 1")
    seq: int


@event("doc:sync", payload=SyncPayload, reply=SyncReply, permission="doc:read",
       rate=RateLimit(rate=20, burst=50), emits=("doc:update",), binary=True,
       audit="doc_update",
       audit_details=lambda p, r: None if r["message"] is not None else {
           "doc_id": p.doc_id, "size": len(p.message), "seq": r["seq"]})
def sync(ctx: Ctx, payload: SyncPayload) -> dict:
    """Send a y-protocols sync message for a joined document.

    A step 2 (your answer to the join reply's ``sync_step1``) or an update is checked,
    stored and relayed like ``doc:update`` (same refusals); one that changes nothing is
    acked without being stored, from a read-only participant too (judged by content: its
    answer may carry the document's delete set); a step 1 gets the server's step 2 in the
    reply (e.g. after a reconnect). Payload example: ``{"doc_id": "spec-42",
    "message": <bytes>}``; reply ``{"ok": true, "data": {"doc_id": "spec-42",
    "message": null, "seq": 18}}``.
    """
    docs: DocService = ctx.rt.docs
    return docs.sync(ctx.conn, payload.doc_id, payload.message)


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


@event("doc:awareness", payload=AwarenessPayload, reply=AwarenessReply,
       permission="doc:read", rate=RateLimit(rate=30, burst=60),
       emits=("doc:awareness",))
def awareness(ctx: Ctx, payload: AwarenessPayload) -> dict:
    """Share this participant's cursor, selection and the like with the others.

    Relayed as ``doc:awareness`` with the user identity stamped by the server.
    Payload example: ``{"doc_id": "spec-42", "state": {"cursor": {"anchor": 3, "head": 7},
    "color": "#f783ac"}}``.
    """
    docs: DocService = ctx.rt.docs
    client_id = docs.awareness(ctx.conn, payload.doc_id, payload.state)
    return {"doc_id": payload.doc_id, "client_id": client_id}


class LeavePayload(BaseModel):
    doc_id: DocId


class LeaveReply(BaseModel):
    doc_id: str
    left: bool = Field(description="false if the connection had not joined it")


@event("doc:leave", payload=LeavePayload, reply=LeaveReply, permission="doc:read",
       emits=("doc:awareness",))
def leave(ctx: Ctx, payload: LeavePayload) -> dict:
    """Stop taking part in a document; the others see this participant's awareness cleared.

    Payload example: ``{"doc_id": "spec-42"}``.
    """
    docs: DocService = ctx.rt.docs
    return {"doc_id": payload.doc_id, "left": docs.leave(ctx.conn, payload.doc_id)}


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


def _manage(ctx: Ctx, doc_id: str) -> DocService:
    docs: DocService = ctx.rt.docs
    if not docs.may_manage(ctx.conn.principal, ctx.conn.can("doc:admin"), doc_id):
        raise forbidden("only the document's creator or a doc:admin may change its access",
                        {"doc_id": doc_id})
    return docs


@event("doc:grant", payload=GrantPayload, reply=AccessReply, permission="doc:read",
       rate=RateLimit(rate=5, burst=20))
def grant(ctx: Ctx, payload: GrantPayload) -> dict:
    """Give a user or a role ``read`` or ``edit`` access to a document (replacing theirs).

    For the document's creator or a holder of ``doc:admin``. Role permissions stay a
    ceiling (a user without ``doc:edit`` only reads). Payload example::

        {"doc_id": "spec-42", "user_id": "17", "mode": "edit"}
        {"doc_id": "spec-42", "role": "reviewer", "mode": "read"}

    Reply: ``{"ok": true, "data": {"doc_id": "spec-42", "created_by": "5", "grants":
    [{"user_id": "17", "mode": "edit"}, {"role": "reviewer", "mode": "read"}]}}``.
    Refusals: ``forbidden`` (not the creator nor ``doc:admin``), ``not_found`` (no such
    document), ``invalid_payload`` (neither or both of ``user_id`` and ``role``).
    """
    docs = _manage(ctx, payload.doc_id)
    return docs.set_grants(payload.doc_id, [payload.change(payload.mode)], by=ctx.conn.user_id)


@event("doc:revoke", payload=AccessSubject, reply=AccessReply, permission="doc:read",
       rate=RateLimit(rate=5, burst=20), emits=("doc:closed",))
def revoke(ctx: Ctx, payload: AccessSubject) -> dict:
    """Take a user's or a role's grant away; their open copies are closed (``doc:closed``).

    For the document's creator or a holder of ``doc:admin``; the creator's own access is not
    a grant and stays. Payload example: ``{"doc_id": "spec-42", "user_id": "17"}``.
    Reply: as ``doc:grant``. Refusals: ``forbidden``, ``not_found``, ``invalid_payload``.
    """
    docs = _manage(ctx, payload.doc_id)
    return docs.set_grants(payload.doc_id, [payload.change(None)], by=ctx.conn.user_id)


class AccessPayload(BaseModel):
    doc_id: DocId


@event("doc:access", payload=AccessPayload, reply=AccessReply, permission="doc:read")
def access(ctx: Ctx, payload: AccessPayload) -> dict:
    """Who may open a document: its creator and its grants.

    For the document's creator or a holder of ``doc:admin``. Payload example:
    ``{"doc_id": "spec-42"}``; reply as ``doc:grant``. Refusals: ``forbidden``,
    ``not_found``.
    """
    return _manage(ctx, payload.doc_id).grants(payload.doc_id)


class UpdatedEvent(BaseModel):
    doc_id: str
    update: Binary = Field(description="a Yjs update to apply")
    seq: int


server_event("doc:update", UpdatedEvent, """
    Another participant changed a document you joined: apply ``update`` (``Y.applyUpdate``).

    Example: ``{"doc_id": "spec-42", "update": <bytes>, "seq": 18}``.
""")
server_event("doc:awareness", AwarenessState, """
    A participant's awareness changed; ``state: null`` means they left or disconnected.

    ``user`` and ``client_id`` are set by the server. Example: ``{"doc_id": "spec-42",
    "client_id": 314159, "user": {"user_id": "17", "name": "Alice"},
    "state": {"cursor": {"anchor": 3, "head": 7}}}``.
""")


class ClosedEvent(BaseModel):
    doc_id: str
    reason: str = Field(description='"forbidden" | "unavailable"')


server_event("doc:closed", ClosedEvent, """
    The server made this connection leave a document, as ``doc:leave`` would.

    No more ``doc:update`` or ``doc:awareness`` for it; the others saw this participant's
    awareness cleared; an update for it now gets ``conflict`` (join first). After an
    ``auth:refresh`` every joined document is checked again (roles, then the host app's
    access callback): one the new token may no longer read is closed with
    ``reason: "forbidden"`` (``unavailable`` when the check could not be made; join again
    later). Example: ``{"doc_id": "spec-42", "reason": "forbidden"}``.
""")


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


def setup(rt: Realtime) -> None:
    docs = DocService(rt)
    rt.docs = docs
    rt.on_disconnect(lambda conn, reason: docs.drop_connection(conn))

    @rt.on_refresh
    def close_unreadable_docs(ctx: Ctx) -> None:
        docs.close_unreadable(ctx.conn)  # each close is audited as doc_leave, with its reason

    bp = rt.blueprint
    api_key = require_api_key(rt)

    @bp.post("/api/v1/docs")
    @api_key
    @body(CreateDoc, message="invalid document")
    def http_create_doc(body: CreateDoc) -> Any:
        """Create a document, optionally with initial text.

        Body: ``{"doc_id": "spec-42", "text": "# Spec\\n"}`` → 201 with the document.
        """
        return jsonify(docs.create(body.doc_id, body.text, root=body.root)), 201

    @bp.get("/api/v1/docs/<doc_id>/access")
    @api_key
    def http_read_access(doc_id: str) -> Any:
        """Who may open a document: ``{"doc_id", "created_by", "grants": [...]}``."""
        return jsonify(docs.grants(doc_id))

    @bp.put("/api/v1/docs/<doc_id>/access")
    @api_key
    @body(AccessBody, message="invalid grants")
    def http_set_access(doc_id: str, body: AccessBody) -> Any:
        """Replace a document's grants.

        Body: ``{"grants": [{"user_id": "17", "mode": "edit"}, {"role": "staff",
        "mode": "read"}]}`` → 200 with the grants. Open copies of users who lost access
        are closed (``doc:closed``).
        """
        changes = [("user", e.user_id, e.mode) if e.user_id is not None
                   else ("role", str(e.role), e.mode) for e in body.grants]
        return jsonify(docs.set_grants(doc_id, changes, by=None, replace=True))

    @bp.get("/api/v1/docs/<doc_id>")
    @api_key
    def http_read_doc(doc_id: str) -> Any:
        """A document as JSON, or its text with ``?format=text``.

        ``?roots=text:text,meta:map`` names the roots to read (kinds: text, map, array, xml).
        """
        roots = None
        if request.args.get("roots"):
            roots = {}
            for item in request.args["roots"].split(","):
                name, _, kind = item.partition(":")
                roots[name.strip()] = (kind or "text").strip()
        doc = docs.read(doc_id, roots=roots)
        if request.args.get("format") == "text":
            return Response(doc["text"] or "", mimetype="text/plain; charset=utf-8")
        return jsonify(doc)
