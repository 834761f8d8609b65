"""The channels' HTTP API: publish, broadcast, presence, history and disconnect.

What a back end calls with an API key (``/api/v1/…``), beside the Python calls
(``rt.publish`` …) it fronts. Registered by :func:`.events.setup`; the bodies' models are in
:mod:`.schemas`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, jsonify, request

from dihya_realtime.broker import StreamPosition
from dihya_realtime.features.channels.schemas import HttpBroadcast, HttpDisconnect, HttpPublish
from dihya_realtime.http.api import require_api_key
from dihya_realtime.http.bodies import body
from dihya_realtime.kernel.errors import invalid

if TYPE_CHECKING:
    from dihya_realtime.realtime import Realtime


def register_routes(rt: Realtime, bp: Blueprint) -> None:
    """Add the channel routes to ``bp`` (the API blueprint, ``rt.blueprint``)."""
    api_key = require_api_key(rt)

    @bp.post("/api/v1/publish")
    @api_key
    @body(HttpPublish)
    def http_publish(body: HttpPublish) -> Any:
        """Publish on a channel (any namespace: the server may publish everywhere).

        Body: ``{"channel": "live:project-9", "data": {...}, "idempotency_key"?: "..."}``.
        """
        pub, created = rt.publish(body.channel, body.data, idempotency_key=body.idempotency_key)
        return jsonify({"ok": True, "data": {"offset": pub.offset, "epoch": pub.epoch,
                                             "id": pub.id, "created": created}})

    @bp.post("/api/v1/broadcast")
    @api_key
    @body(HttpBroadcast)
    def http_broadcast(body: HttpBroadcast) -> Any:
        """Publish the same data on several channels (every name checked first)."""
        for channel in body.channels:
            rt.channels.resolve(channel)  # all or nothing: check every name first
        pubs = rt.broadcast(body.channels, body.data)
        return jsonify({"ok": True, "data": {"publications": [
            {"channel": p.channel, "offset": p.offset, "epoch": p.epoch, "id": p.id}
            for p in pubs]}})

    @bp.get("/api/v1/channels/<path:channel>/presence")
    @api_key
    def http_presence(channel: str) -> Any:
        """Who is in a channel: one entry per user."""
        return jsonify({"ok": True, "data": {"members": rt.presence(channel)}})

    @bp.get("/api/v1/channels/<path:channel>/history")
    @api_key
    def http_history(channel: str) -> Any:
        """A channel's retained publications.

        Query: ``?limit=1..100`` (the latest) or ``?since_offset=41&since_epoch=f3a9``.
        Paged like the ``history`` event: ``more: true`` → ask again from the last offset.
        """
        limit = request.args.get("limit", type=int)
        if limit is not None and not 1 <= limit <= 100:
            raise invalid("limit must be 1..100", [{"field": "limit",
                                                     "message": "must be 1..100"}])
        since = None
        if "since_offset" in request.args:
            since = StreamPosition(offset=request.args.get("since_offset", type=int) or 0,
                                   epoch=request.args.get("since_epoch", ""))
        result = rt.history(channel, limit=limit, since=since)
        return jsonify({"ok": True, "data": {
            "publications": [p.to_wire() for p in result.publications],
            "offset": result.position.offset, "epoch": result.position.epoch,
            "recovered": result.recovered, "more": result.more}})

    @bp.post("/api/v1/users/<user_id>/disconnect")
    @api_key
    @body(HttpDisconnect, optional=True)
    def http_disconnect(user_id: str, body: HttpDisconnect) -> Any:
        """Disconnect every connection of a user, on every process. Body: ``{"reason"?}``."""
        rt.disconnect_user(user_id, body.reason)
        return jsonify({"ok": True, "data": {"user_id": user_id}})


__all__ = ["register_routes"]
