"""The collaborative editing HTTP API: create a document, read it, read and set its access.

What a back end calls with an API key (``/api/v1/docs…``). Registered by
:func:`.events.setup`; the bodies' models are in :mod:`.schemas`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from dihya_realtime.features.collab.schemas import AccessBody, CreateDoc
from dihya_realtime.http.api import require_api_key
from dihya_realtime.http.bodies import body

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


def register_routes(rt: Realtime, bp: Blueprint) -> None:
    """Add the document routes to ``bp`` (the API blueprint), serving ``rt.docs``."""
    docs = rt.docs
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


__all__ = ["register_routes"]
