"""Collaborative editing events: shared Yjs documents over the same Socket.IO connection.

Binary values (``update``, ``sync_step1`` …) travel as Socket.IO binary attachments; see
``docs/collab.md`` for the wire shape and how a ``yjs`` client speaks it. The payload, reply
and push schemas are in :mod:`.schemas`, the HTTP API in :mod:`.http`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dihya_realtime.features.collab.http import register_routes
from dihya_realtime.features.collab.schemas import (
    AccessPayload,
    AccessReply,
    AccessSubject,
    AwarenessPayload,
    AwarenessReply,
    AwarenessState,
    ClosedEvent,
    GrantPayload,
    JoinPayload,
    JoinReply,
    LeavePayload,
    LeaveReply,
    SyncPayload,
    SyncReply,
    UpdatedEvent,
    UpdatePayload,
    UpdateReply,
)
from dihya_realtime.features.collab.service import DocService
from dihya_realtime.kernel.errors import forbidden
from dihya_realtime.kernel.pipeline import EventContext
from dihya_realtime.kernel.registry import event, server_event
from dihya_realtime.kernel.settings import RateLimit

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime

    Ctx = EventContext[Realtime]  # handlers see the facade: mypy follows ctx.rt.<feature>


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


@event("doc:leave", payload=LeavePayload, reply=LeaveReply, permission="doc:read",
       emits=("doc:awareness",))
def leave(ctx: Ctx, payload: LeavePayload) -> dict:
    """Stop taking part in a document; the others see this participant's awareness cleared.

    Payload example: ``{"doc_id": "spec-42"}``.
    """
    docs: DocService = ctx.rt.docs
    return {"doc_id": payload.doc_id, "left": docs.leave(ctx.conn, payload.doc_id)}


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


@event("doc:access", payload=AccessPayload, reply=AccessReply, permission="doc:read")
def access(ctx: Ctx, payload: AccessPayload) -> dict:
    """Who may open a document: its creator and its grants.

    For the document's creator or a holder of ``doc:admin``. Payload example:
    ``{"doc_id": "spec-42"}``; reply as ``doc:grant``. Refusals: ``forbidden``,
    ``not_found``.
    """
    return _manage(ctx, payload.doc_id).grants(payload.doc_id)


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


server_event("doc:closed", ClosedEvent, """
    The server made this connection leave a document, as ``doc:leave`` would.

    No more ``doc:update`` or ``doc:awareness`` for it; the others saw this participant's
    awareness cleared; an update for it now gets ``conflict`` (join first). After an
    ``auth:refresh`` every joined document is checked again (roles, then the host app's
    access callback): one the new token may no longer read is closed with
    ``reason: "forbidden"`` (``unavailable`` when the check could not be made; join again
    later). Example: ``{"doc_id": "spec-42", "reason": "forbidden"}``.
""")


# -- set-up: the service, the hooks, the HTTP API


def setup(rt: Realtime) -> None:
    """Attach ``rt.docs``, the disconnect and refresh hooks and the ``/api/v1/docs`` routes
    (:mod:`.http`)."""
    docs = DocService(rt)
    rt.docs = docs
    rt.on_disconnect(lambda conn, reason: docs.drop_connection(conn))

    @rt.on_refresh
    def close_unreadable_docs(ctx: Ctx) -> None:
        docs.close_unreadable(ctx.conn)  # each close is audited as doc_leave, with its reason
    register_routes(rt, rt.blueprint)
