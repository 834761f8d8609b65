"""The events reference (Markdown) and the AsyncAPI 3.0 document, both from the registry.

Nothing here is written by hand: each event's text is its handler's docstring and its
schemas are its pydantic models. ``dihya-realtime docs`` writes ``docs/events.md``,
``docs/asyncapi.json`` (the README links them, never copies them) and, from that AsyncAPI
document, the TypeScript event map of the JavaScript client
(``clients/js/src/generated/events.ts``); a test fails when any of them is stale.
"""

from __future__ import annotations

import json
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from dihya_realtime.docs_typescript import typescript_events
from dihya_realtime.kernel.host import Events
from dihya_realtime.version import __version__

ENVELOPE_OK = '{"ok": true, "data": …}'
ENVELOPE_ERR = '{"ok": false, "error": {"code", "message", "details"?, "retry_after"?}}'


def _schema(model: type[BaseModel] | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def type_name(ann: Any) -> str:
    """A readable, stable name for a field's type (``list[str] | None``, ``Any``)."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if ann is type(None):
        return "None"
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")


def _fields(model: type[BaseModel] | None) -> str:
    if model is None:
        return "none"
    parts = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        ann = type_name(info.annotation)
        opt = "" if info.is_required() else "?"
        parts.append(f"`{key}{opt}`: {ann}")
    return ", ".join(parts) or "none"


def events_markdown(registry: Events) -> str:
    """The events reference, grouped by feature, each group in name order (not import
    order: which module a process imported first must not change the document)."""
    out = [
        "Every client event is sent with an ack and answered with an envelope: "
        f"`{ENVELOPE_OK}` or `{ENVELOPE_ERR}`. Sent without an ack, a failure arrives as "
        "the `error` event.",
        "",
    ]
    features: dict[str, list[str]] = {}
    for spec in sorted(registry.events.values(), key=lambda e: e.name):
        lines = [f"#### `{spec.name}` (client → server)", "", spec.summary, ""]
        if spec.description:
            lines += [spec.description, ""]
        lines.append(f"- payload: {_fields(spec.payload)}")
        lines.append(f"- reply `data`: {_fields(spec.reply)}")
        lines.append(f"- permission: `{spec.permission}`" if spec.permission
                     else "- permission: any authenticated connection")
        if not spec.allow_anonymous:
            lines.append("- anonymous users: not allowed (`forbidden`)")
        if spec.rate:
            lines.append(f"- rate limit: {spec.rate.rate:g}/s, burst {spec.rate.burst}")
        lines.append("")
        features.setdefault(spec.feature, []).extend(lines)
    for sev in sorted(registry.server_events.values(), key=lambda e: e.name):
        lines = [f"#### `{sev.name}` (server → client)", "", sev.summary, ""]
        if sev.description:
            lines += [sev.description, ""]
        lines += [f"- payload: {_fields(sev.schema)}", ""]
        features.setdefault(sev.feature, []).extend(lines)
    for feature in sorted(features, key=lambda f: (f != "core", f)):
        out += [f"### {feature}", ""] + features[feature]
    return "\n".join(out).rstrip() + "\n"


def asyncapi_document(registry: Events) -> dict[str, Any]:
    """An AsyncAPI 3.0 document of every event (Socket.IO over WebSocket, namespace ``/``)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}

    def add_schema(model: type[BaseModel] | None) -> dict[str, Any]:
        if model is None:
            return {"type": "null"}
        schema = _schema(model) or {}
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def key(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9_]", "_", name)

    for spec in registry.events.values():
        k = key(spec.name)
        messages[k] = {"name": spec.name, "title": spec.name, "summary": spec.summary,
                       "description": spec.description, "payload": add_schema(spec.payload),
                       "x-permission": spec.permission,
                       "x-allow-anonymous": spec.allow_anonymous}
        messages[k + "_reply"] = {"name": spec.name + " (ack)", "payload": {
            "oneOf": [{"type": "object", "properties": {"ok": {"const": True},
                                                        "data": add_schema(spec.reply)}},
                      {"$ref": "#/components/schemas/ErrorEnvelope"}]}}
        channels[k] = {"address": spec.name, "messages": {
            k: {"$ref": f"#/components/messages/{k}"},
            k + "_reply": {"$ref": f"#/components/messages/{k}_reply"}}}
        operations[k] = {"action": "receive", "channel": {"$ref": f"#/channels/{k}"},
                         "summary": spec.summary,
                         "messages": [{"$ref": f"#/channels/{k}/messages/{k}"}],
                         "reply": {"messages": [
                             {"$ref": f"#/channels/{k}/messages/{k}_reply"}]}}
    for sev in registry.server_events.values():
        k = key(sev.name)
        if k in channels:  # a relay under the client event's own name (doc:update)
            k += "_relayed"
        messages[k] = {"name": sev.name, "title": sev.name, "summary": sev.summary,
                       "description": sev.description, "payload": add_schema(sev.schema)}
        channels[k] = {"address": sev.name,
                       "messages": {k: {"$ref": f"#/components/messages/{k}"}}}
        operations[k] = {"action": "send", "channel": {"$ref": f"#/channels/{k}"},
                         "summary": sev.summary,
                         "messages": [{"$ref": f"#/channels/{k}/messages/{k}"}]}
    schemas["ErrorEnvelope"] = {
        "type": "object", "required": ["ok", "error"],
        "properties": {"ok": {"const": False}, "error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"enum": [
                "unauthenticated", "forbidden", "invalid_payload", "not_found", "conflict",
                "rate_limited", "payload_too_large", "unavailable", "internal"]},
                "message": {"type": "string"}, "details": {},
                "retry_after": {"type": "number"}}}}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "dihya-realtime", "version": __version__, "description":
                 "Socket.IO events of dihya-realtime (namespace `/`). Each event name is an "
                 "AsyncAPI channel; client events are answered with an ack envelope."},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:5000", "protocol": "ws",
                              "pathname": "/socket.io/",
                              "description": "Socket.IO v5 protocol over WebSocket"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


TS_EVENTS_PATH = Path("clients", "js", "src", "generated", "events.ts")


def write_docs(registry: Events, root: Path, check: bool = False) -> list[str]:
    """Write (or with ``check``, compare) the generated files; returns the stale ones."""
    md = events_markdown(registry)
    asyncapi = asyncapi_document(registry)
    doc = json.dumps(asyncapi, indent=2, sort_keys=True) + "\n"
    targets = {root / "docs" / "events.md": "# Events reference\n\n" + md,
               root / "docs" / "asyncapi.json": doc,
               root / TS_EVENTS_PATH: typescript_events(asyncapi)}
    stale = []
    for path, content in targets.items():
        if not path.exists() or path.read_text() != content:
            stale.append(str(path.relative_to(root)))
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
    return stale
