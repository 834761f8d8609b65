"""The chat HTTP API: post a system message to a room, read a room's history.

What a back end calls with an API key (``/api/v1/chat/…``). Registered by
:func:`.events.setup`; the body's model is in :mod:`.schemas`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify, request

from dihya_realtime.features.chat.schemas import HistoryPayload, HttpMessage
from dihya_realtime.http.api import require_api_key
from dihya_realtime.http.bodies import body
from dihya_realtime.kernel.payloads import validate

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


def register_routes(rt: Realtime, bp: Blueprint) -> None:
    """Add the chat routes to ``bp`` (the API blueprint), serving ``rt.chat``."""
    service = rt.chat

    @bp.post("/api/v1/chat/rooms/<room_id>/messages")
    @require_api_key(rt)
    @body(HttpMessage, message="invalid message")
    def post_message(room_id: str, body: HttpMessage) -> Any:
        """Post a system message: ``{"text": "Deploy finished", "data": {"build": 42}}``."""
        message = service.send_system_message(room_id, body.text, body.data)
        return jsonify({"ok": True, "data": message}), 201

    @bp.get("/api/v1/chat/rooms/<room_id>/messages")
    @require_api_key(rt)
    def get_messages(room_id: str) -> Any:
        """History, as ``chat:history``: ``?before_seq=``, ``after_seq=``, ``around_seq=``,
        ``limit=``."""
        query = validate(HistoryPayload, {"room_id": room_id, **request.args.to_dict()},
                         "invalid query")
        page = service.history(None, room_id, query.before_seq, query.after_seq,
                               query.around_seq, query.limit)
        return jsonify({"ok": True, "data": page})


__all__ = ["register_routes"]
