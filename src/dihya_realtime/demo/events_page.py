"""The ``/docs/events`` page's content: the AsyncAPI document arranged for reading.

The docstrings stay reStructuredText-flavoured (they are also the Python docs); this turns the
subset they use into HTML at render time: ``code`` spans, ``Payload example::`` literal
blocks, ``- `` lists. Each event gets its error codes, its rate limit and size limits (from the
running server's settings, so the page tells the truth about this deployment), a JavaScript
and a Python snippet, and every nested type it mentions is defined once and linked.
"""

from __future__ import annotations

import html
import json
import re
import textwrap
from typing import Any

from markupsafe import Markup

# What a client does about each code (the ErrorEnvelope's enum).
ERROR_ADVICE = {
    "unauthenticated": "no valid token: sign in again (or refresh the token) and reconnect",
    "forbidden": "the user may not do this (a permission, membership or an anonymous user)",
    "invalid_payload": "the payload does not match the schema: `details` names the fields",
    "not_found": "what the payload names does not exist (or is not visible to the user)",
    "conflict": "the state changed under the request: read it again, then retry",
    "rate_limited": "too many calls: wait `retry_after` seconds, then retry",
    "payload_too_large": "the payload is over one of the event's own caps: send less",
    "unavailable": "the server cannot serve it now (a dependency is down): retry later",
    "internal": "a bug on the server: report it with the time of the call",
}
ALWAYS = ("rate_limited", "unavailable", "internal")

_INLINE = re.compile(r"``(.+?)``|:[a-z]+:`~?([^`]+?)`|`([^`]+?)`|\*\*(.+?)\*\*")


def inline_html(text: str) -> Markup:
    """One run of text: escaped, with ``code``, :role:`x`, `x` and **strong** rendered."""
    escaped = html.escape(text, quote=False)

    def sub(m: re.Match[str]) -> str:
        if m.group(4):
            return f"<strong>{m.group(4)}</strong>"
        return f"<code>{m.group(1) or m.group(2) or m.group(3)}</code>"

    return Markup(_INLINE.sub(sub, escaped))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def doc_html(text: str | None) -> Markup:
    """A docstring as HTML: paragraphs, ``- `` lists, and each ``::`` literal block as a code
    block (``Reply example::`` → "Reply example:" and the indented block under it)."""
    if not text:
        return Markup("")
    lines = textwrap.dedent(text).strip("\n").splitlines()
    out: list[str] = []
    para: list[str] = []
    literal_next = False

    def flush() -> None:
        nonlocal literal_next
        if not para:
            return
        joined = " ".join(line.strip() for line in para)
        literal_next = joined.endswith("::")
        if literal_next:
            joined = joined[:-2].rstrip() + ("" if joined[:-2].endswith(" ") else ":")
        items = [p.strip()[2:] for p in para if p.strip().startswith(("- ", "* "))]
        if items and all(line.strip().startswith(("- ", "* ")) or _indent(line) > 0
                         for line in para):
            blocks: list[list[str]] = []
            current: list[str] = []
            for line in para:
                if line.strip().startswith(("- ", "* ")) and current:
                    blocks.append(current)
                    current = []
                current.append(line.strip().lstrip("-* ").strip() if not current else line.strip())
            blocks.append(current)
            out.append("<ul>" + "".join(f"<li>{inline_html(' '.join(b))}</li>" for b in blocks)
                       + "</ul>")
        elif joined:
            out.append(f"<p>{inline_html(joined)}</p>")
        para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
            continue
        if literal_next and _indent(line) > 0:
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > 0):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            depth = min(_indent(b) for b in block if b.strip())
            code = "\n".join(b[depth:] for b in block)
            out.append(code_block(code, "json" if code.lstrip()[:1] in "{[" else "text"))
            literal_next = False
            continue
        literal_next = False
        para.append(line)
        i += 1
    flush()
    return Markup("".join(out))


def code_block(code: str, language: str) -> str:
    """A code block with a copy button (web/src/events.js wires the button). The ``pre``
    scrolls sideways on a phone, so it takes keyboard focus (axe: scrollable-region-focusable)."""
    return (f'<div class="code-block"><pre tabindex="0"><code class="lang-{language}">'
            f'{html.escape(code, quote=False)}</code></pre>'
            '<button type="button" class="copy" hidden>Copy</button></div>')


# -- types


def type_html(schema: dict[str, Any]) -> Markup:
    """A field's type, each named type a link to its definition on the page."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return Markup(f'<a href="#t-{html.escape(name)}"><code>{html.escape(name)}</code></a>')
    if "anyOf" in schema or "oneOf" in schema:
        options = [type_html(s) for s in schema.get("anyOf") or schema.get("oneOf") or []]
        return Markup(" | ").join(dict.fromkeys(options))
    if schema.get("type") == "array":
        return Markup("list[") + type_html(schema.get("items") or {}) + Markup("]")
    if "const" in schema:
        return Markup("<code>{}</code>").format(json.dumps(schema["const"]))
    if "enum" in schema:
        return Markup(" | ").join(Markup("<code>{}</code>").format(json.dumps(v))
                                  for v in schema["enum"])
    if schema.get("type") == "object" and "additionalProperties" in schema:
        inner = schema["additionalProperties"]
        value = type_html(inner) if isinstance(inner, dict) else Markup("any")
        return Markup("dict[str, ") + value + Markup("]")
    return Markup("<code>{}</code>").format(schema.get("type") or "any")


def limits_of(schema: dict[str, Any]) -> str:
    """A field's bounds in words (``1–80 chars``, ``≤ 50 items``, ``0 ≤ n ≤ 100``)."""
    for option in schema.get("anyOf") or []:
        if option.get("type") != "null":
            schema = {**option, **{k: v for k, v in schema.items() if k != "anyOf"}}
    parts = []
    for lo, hi, unit in (("minLength", "maxLength", "chars"), ("minItems", "maxItems", "items")):
        if lo in schema or hi in schema:
            low, high = schema.get(lo, 0), schema.get(hi)
            parts.append(f"{low}–{high} {unit}" if high is not None and low
                         else f"≤ {high} {unit}" if high is not None else f"≥ {low} {unit}")
    if "minimum" in schema or "maximum" in schema or "exclusiveMinimum" in schema:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum")
        if isinstance(high, int) and high >= 2**53:  # "any integer a database holds"
            high = None
        parts.append(" ≤ ".join(str(p) for p in (low, "n", high) if p is not None))
    if "pattern" in schema:
        parts.append(f"pattern {schema['pattern']}")
    return ", ".join(parts)


def fields_of(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required") or [])
    return [{"name": name, "type": type_html(sub), "required": name in required,
             "limits": limits_of(sub),
             "description": inline_html(sub.get("description") or sub.get("title") or "")}
            for name, sub in (schema.get("properties") or {}).items()]


def refs_in(schema: Any) -> set[str]:
    """Every named type a schema mentions, however deep."""
    found: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            found.add(ref.rsplit("/", 1)[-1])
        for value in schema.values():
            found |= refs_in(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= refs_in(value)
    return found


# -- snippets


def example_value(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0) -> Any:
    """A plausible value for a field: its first example, else one shaped like its type."""
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if "$ref" in schema and depth < 3:
        return example_payload(schemas.get(schema["$ref"].rsplit("/", 1)[-1], {}), schemas,
                               depth + 1)
    options = [o for o in schema.get("anyOf") or schema.get("oneOf") or []
               if o.get("type") != "null"]
    if options:
        return example_value(options[0], schemas, depth)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type"))
    return {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {},
            "null": None}.get(kind, "…")


def example_payload(schema: dict[str, Any], schemas: dict[str, Any], depth: int = 0
                    ) -> dict[str, Any]:
    """The required fields (and those with an example) of a payload, filled in."""
    required = set(schema.get("required") or [])
    return {name: example_value(sub, schemas, depth)
            for name, sub in (schema.get("properties") or {}).items()
            if name in required or sub.get("examples")}


_PAYLOAD_INLINE = re.compile(r"Payload example:\s*``(\{.*?\})``", re.S)
_PAYLOAD_BLOCK = re.compile(r"Payload example::[ \t]*\n\s*\n((?:[ \t]+\S.*(?:\n|$)|[ \t]*\n)+)")


def documented_payload(description: str) -> dict[str, Any] | None:
    """The docstring's own payload example (``Payload example::`` or an inline one), when it
    is JSON: a better snippet than one made up from the schema."""
    text = textwrap.dedent(description or "")
    found = _PAYLOAD_BLOCK.search(text)
    candidates = []
    if found:
        block = textwrap.dedent(found.group(1)).strip()
        candidates += [block, block.splitlines()[0] if block else ""]
    found = _PAYLOAD_INLINE.search(text)
    if found:
        candidates.append(found.group(1))
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def snippets(name: str, client_event: bool, payload: dict[str, Any] | None) -> dict[str, str]:
    """The JavaScript (dihya-realtime-client) and Python (dihya_realtime.client) snippets."""
    if not client_event:
        return {"js": f'rt.on("{name}", (payload) => {{\n  console.log(payload);\n}});',
                "python": f'client.on("{name}", lambda payload: print(payload))'}
    js_payload = json.dumps(payload or {}, ensure_ascii=False)
    py_payload = repr(payload or {})
    return {
        "js": ('import { createClient, RealtimeError } from "dihya-realtime-client";\n\n'
               "const rt = createClient(undefined, { getToken: async () => fetchToken() });\n"
               "try {\n"
               f'  const data = await rt.call("{name}", {js_payload});\n'
               "} catch (err) {\n"
               "  if (err instanceof RealtimeError) console.warn(err.code, err.message);\n"
               "}"),
        "python": ("from dihya_realtime.client import Client, RealtimeError\n\n"
                   'with Client("http://127.0.0.1:5000", token=token) as client:\n'
                   "    try:\n"
                   f'        data = client.call("{name}", {py_payload})\n'
                   "    except RealtimeError as err:\n"
                   "        print(err.code, err.message)"),
    }


# -- the page


def error_codes(description: str, permission: str | None, anonymous: bool,
                has_payload: bool) -> list[dict[str, str]]:
    """The codes a client event may answer: those its checks imply, those its text names."""
    codes = []
    if not anonymous:
        codes.append("unauthenticated")
    if permission or not anonymous or "``forbidden``" in description:
        codes.append("forbidden")
    if has_payload:
        codes.append("invalid_payload")
    codes += [c for c in ("not_found", "conflict", "payload_too_large")
              if f"``{c}``" in description]
    codes += ALWAYS
    return [{"code": c, "advice": inline_html(ERROR_ADVICE[c])} for c in dict.fromkeys(codes)]


def events_page(doc: dict[str, Any], limits: dict[str, str] | None = None,
                max_payload_bytes: int | None = None) -> dict[str, Any]:
    """The AsyncAPI document arranged for the page: events grouped by feature prefix.

    ``limits``: each client event's rate limit in words (the running server's, settings
    overrides included); ``max_payload_bytes``: the size cap of any payload."""
    schemas = doc["components"]["schemas"]
    messages = doc["components"]["messages"]
    limits = limits or {}
    wanted: set[str] = set()

    def model(ref: dict[str, Any]) -> dict[str, Any] | None:
        if "$ref" not in ref:
            return None
        name = ref["$ref"].rsplit("/", 1)[-1]
        schema = schemas.get(name, {})
        wanted.add(name)
        wanted.update(refs_in(schema.get("properties") or {}))
        return {"name": name, "fields": fields_of(schema)}

    groups: dict[str, list[dict[str, Any]]] = {}
    for key, op in doc["operations"].items():
        msg = messages[key]
        name = msg["name"]
        client_event = op["action"] == "receive"
        payload_ref = msg.get("payload") or {}
        payload_schema = schemas.get(payload_ref.get("$ref", "").rsplit("/", 1)[-1], {})
        description = msg.get("description") or ""
        entry = {"name": name, "anchor": "ev-" + key,
                 "direction": "client → server" if client_event else "server → client",
                 "summary": inline_html(msg.get("summary") or ""),
                 "description": doc_html(description),
                 "permission": msg.get("x-permission"),
                 "payload": model(payload_ref), "reply": None,
                 "errors": (error_codes(description, msg.get("x-permission"),
                                        msg.get("x-allow-anonymous", True),
                                        "$ref" in payload_ref) if client_event else []),
                 "rate": limits.get(name) if client_event else None,
                 "max_bytes": max_payload_bytes if client_event else None,
                 "snippets": snippets(name, client_event,
                                      (documented_payload(description)
                                       or example_payload(payload_schema, schemas))
                                      if "$ref" in payload_ref else None)}
        reply = messages.get(key + "_reply")
        if reply:
            ok = reply["payload"]["oneOf"][0]["properties"]["data"]
            entry["reply"] = model(ok)
        feature = name.split(":", 1)[0] if ":" in name else "core"
        groups.setdefault(feature, []).append(entry)
    for group in groups.values():
        group.sort(key=lambda e: (e["direction"] != "client → server", e["name"]))
    ordered = sorted(groups.items(), key=lambda kv: (kv[0] != "core", kv[0]))
    # nested types: every named type a field mentions, and the ones those mention in turn
    seen: set[str] = set()
    while wanted - seen:
        name = (wanted - seen).pop()
        seen.add(name)
        wanted |= refs_in(schemas.get(name, {}))
    types = []
    for name in sorted(seen):
        schema = schemas.get(name, {})
        types.append({"name": name, "anchor": "t-" + name,
                      "description": inline_html(schema.get("description") or ""),
                      "fields": fields_of(schema),
                      "values": type_html(schema) if "properties" not in schema else None})
    info = {**doc["info"], "description": inline_html(doc["info"].get("description") or "")}
    return {"info": info, "servers": doc.get("servers", {}), "groups": ordered,
            "types": types,
            "error_codes": [(c, inline_html(a)) for c, a in ERROR_ADVICE.items()]}
