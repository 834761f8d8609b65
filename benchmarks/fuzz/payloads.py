"""What the fuzzer sends: payloads generated from each declared event's JSON schema, raw
malformed Engine.IO / Socket.IO / WebSocket frames, binary packets and Yjs updates.

Every generator returns a :class:`Case`: what to put on the wire (text frames, binary
frames, raw bytes), whether an ack is expected, and a short label for the report. Cases are
plain data, so a finding can be printed and replayed.
"""

from __future__ import annotations

import json
import random
import re
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from .wire import encode_event, frame

FRAME_LIMIT = 65536  # DIHYA_RT_MAX_PAYLOAD_BYTES's default
UNICODE = ["\x00", "\\u0000", "a\x00b", "\u202eevil\u202c", "\u200b", "\ufeff", "\uffff",
           "\U0001f600" * 3, "e\u0301" * 20, "\u0645\u0631\u062d\u0628\u0627", "\ud800",
           "\udfff", "\ud83d", "\x1b[31mred", "\r\nX-Injected: 1", "line\n", "%s%n%x",
           "'; DROP TABLE users; --", "<script>alert(1)</script>", "../../etc/passwd",
           "\u0000\u0001\u0002\u001f", "\u2028\u2029"]
ODD_NAMES = ["__proto__", "constructor", "$where", "", " ", "a" * 300, "\x00", "_placeholder",
             "num", "toString", "ok", "error"]
EVENT_NAMES = ["connect", "disconnect", "connect_error", "error", "message", "", "*",
               "__proto__", "whoami\x00", "WHOAMI", "chat:", ":", "doc:join ", "x" * 5000,
               "publication", "presence:join", "\ud800", "chat:send\n"]


@dataclass
class Case:
    """One payload: a label, the frames to send, and how to tell the outcome."""

    kind: str  # schema / raw / binary / yjs
    label: str
    event: str | None = None
    data: Any = None  # an event's argument (``bytes`` become attachments)
    raw: list[bytes] = field(default_factory=list)  # ready-made WebSocket frames
    body: str | None = None  # a ready-made event array (``["name", …]``), sent as ``42<ack>…``
    ack: bool = True
    expect_close: bool = False  # the server may close the connection; that is fine
    timeout: float = 2.0

    def wire(self, limit: int = 400) -> str:
        """What was sent, truncated: enough for a developer to rebuild the payload."""
        if self.raw:
            parts = []
            for f in self.raw[:6]:
                parts.append(repr(f[:120]) + (f"…(+{len(f) - 120} bytes)" if len(f) > 120
                                              else ""))
            more = f" …(+{len(self.raw) - 6} frames)" if len(self.raw) > 6 else ""
            return (" ".join(parts) + more)[:limit]
        if self.body is not None:
            text = "421" + self.body
            return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"
        text, att = encode_event(self.event or "", self.data, 1 if self.ack else None)
        out = text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"
        if att:
            out += f" + {len(att)} attachment(s) of {[len(a) for a in att[:5]]} bytes"
            small = [a.hex() for a in att[:3] if len(a) <= 512]
            if small:  # enough to replay a Yjs update byte for byte
                out += " (hex: " + ", ".join(small) + ")"
        return out


# -- values from a JSON schema -------------------------------------------------------------------

@dataclass
class Context:
    """What a worker knows that makes payloads reach deeper: ids it has seen in replies."""

    user: str
    peers: list[str]
    ids: dict[str, list[str]] = field(default_factory=dict)
    docs: list[str] = field(default_factory=list)

    def remember(self, reply: Any, depth: int = 0) -> None:
        if depth > 6:
            return
        if isinstance(reply, dict):
            for k, v in reply.items():
                if isinstance(v, str) and (k == "id" or k.endswith("_id")) and len(v) <= 64:
                    pool = self.ids.setdefault(k if k != "id" else "message_id", [])
                    if v not in pool:
                        pool.append(v)
                        if len(pool) > 50:
                            pool.pop(0)
                else:
                    self.remember(v, depth + 1)
        elif isinstance(reply, list):
            for v in reply[:20]:
                self.remember(v, depth + 1)


class SchemaGen:
    """Valid and invalid instances of a pydantic model's JSON schema."""

    def __init__(self, rng: random.Random, ctx: Context) -> None:
        self.rng = rng
        self.ctx = ctx

    def resolve(self, schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = root.get("$defs", {}).get(schema["$ref"].rsplit("/", 1)[-1], {})
        return schema

    def valid(self, schema: dict[str, Any], root: dict[str, Any], name: str = "",
              depth: int = 0) -> Any:
        r = self.rng
        schema = self.resolve(schema, root)
        if "anyOf" in schema:
            options = schema["anyOf"]
            non_null = [o for o in options if o.get("type") != "null"]
            pick = r.choice(non_null) if non_null and r.random() < 0.8 else r.choice(options)
            return self.valid(pick, root, name, depth)
        if "enum" in schema:
            return r.choice(schema["enum"])
        if "const" in schema:
            return schema["const"]
        typ = schema.get("type")
        if typ == "object" or "properties" in schema:
            out: dict[str, Any] = {}
            required = set(schema.get("required", []))
            for key, sub in schema.get("properties", {}).items():
                if key in required or r.random() < 0.5:
                    out[key] = self.valid(sub, root, key, depth + 1)
            for pattern, sub in schema.get("patternProperties", {}).items():
                for _ in range(r.randint(schema.get("minProperties", 0) or 1, 3)):
                    out[self.string({"pattern": pattern, "maxLength": 20}, "category")] = \
                        self.valid(sub, root, "", depth + 1)
            if not schema.get("properties") and not schema.get("patternProperties") \
                    and schema.get("additionalProperties", True) is not False:
                extra = self.any_json(depth + 1, 3)
                if isinstance(extra, dict):
                    out.update(extra)
            return out
        if typ == "array":
            lo = schema.get("minItems", 0)
            hi = min(schema.get("maxItems", 5), lo + 5)
            return [self.valid(schema.get("items", {}), root, name, depth + 1)
                    for _ in range(r.randint(lo, max(lo, hi)))]
        if typ == "string":
            return self.string(schema, name)
        if typ == "integer":
            lo, hi = schema.get("minimum", 0), schema.get("maximum", 1000)
            return r.randint(lo, min(hi, lo + 1000))
        if typ == "number":
            return r.uniform(schema.get("minimum", 0), schema.get("maximum", 1000))
        if typ == "boolean":
            return r.random() < 0.5
        if typ == "null":
            return None
        return self.any_json(depth, 2)  # no type: "any JSON value"

    def string(self, schema: dict[str, Any], name: str) -> Any:
        r = self.rng
        fmt = schema.get("format")
        if fmt == "binary":
            return r.randbytes(r.randint(0, 40))
        if fmt == "date-time":
            return r.choice(["2030-01-01T00:00:00Z", "2000-01-01T00:00:00+00:00"])
        if name == "client_msg_id" or fmt == "uuid":
            return str(uuid.uuid4())
        if name == "channel":
            return r.choice(["chat:general", "chat:fuzz", f"user:{self.ctx.user}", "live:news",
                             "chat:" + r.choice(self.ctx.ids.get("room_id", ["lobby"]))])
        if name in ("room_id", "message_id", "reply_to") and self.ctx.ids.get(name):
            return r.choice(self.ctx.ids[name])
        if name == "user_id":
            return r.choice([self.ctx.user, *self.ctx.peers])
        if name == "doc_id" and self.ctx.docs:
            return r.choice(self.ctx.docs)
        if name == "emoji":
            return r.choice(["\U0001f44d", ":tada:", "+1"])
        lo, hi = schema.get("minLength", 1), min(schema.get("maxLength", 24), 24)
        pattern = schema.get("pattern")
        for _ in range(20):
            s = "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789-_")
                        for _ in range(r.randint(max(lo, 1), max(lo, hi, 1))))
            if not pattern or re.search(pattern, s):
                return s
        return "a"

    def any_json(self, depth: int = 0, width: int = 3) -> Any:
        r = self.rng
        kind = r.randint(0, 7 if depth < 3 else 4)
        if kind == 0:
            return r.randint(-(2**40), 2**40)
        if kind == 1:
            return r.random() * 1e6
        if kind == 2:
            return r.choice([True, False, None])
        if kind in (3, 4):
            return r.choice(["hello", "", r.choice(UNICODE), "x" * r.randint(0, 200)])
        if kind in (5, 6):
            return {f"k{i}": self.any_json(depth + 1, width) for i in range(r.randint(0, width))}
        return [self.any_json(depth + 1, width) for _ in range(r.randint(0, width))]

    # -- invalid variants
    def wrong(self) -> Any:
        return self.rng.choice([None, 0, -1, 1.5, True, "", "x", [], {}, [1, 2], {"a": 1},
                                2**64, -(2**63) - 1, 1e308, "9" * 400, [[[]]]])


def deep_json(n: int, kind: str = "list") -> str:
    """``n`` levels of nesting as JSON text (built as text: encoders recurse)."""
    if kind == "list":
        return "[" * n + "]" * n
    return '{"a":' * n + "0" + "}" * n


def with_raw(event: str, data: dict[str, Any], key: str, raw_json: str) -> str:
    """The event array ``[event, data]`` with ``data[key]`` replaced by ``raw_json`` text."""
    marker = "__RAW_VALUE_MARKER__"
    return json.dumps([event, {**data, key: marker}], default=_hex).replace(
        json.dumps(marker), raw_json, 1)


def _hex(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else str(value)


class Fuzz:
    """Draws cases; ``ctx`` keeps ids seen in replies so that handlers get real ones."""

    def __init__(self, rng: random.Random, ctx: Context, events: dict[str, dict[str, Any] | None],
                 frame_limit: int = FRAME_LIMIT) -> None:
        self.rng = rng
        self.ctx = ctx
        self.events = events  # name -> JSON schema of its payload (None: no payload)
        self.gen = SchemaGen(rng, ctx)
        self.limit = frame_limit

    # -- schema-aware
    def schema_case(self) -> Case:
        r = self.rng
        name = r.choice(list(self.events))
        schema = self.events[name]
        base: Any = self.gen.valid(schema, schema) if schema else None
        how = r.choices(
            ["valid", "boundary", "wrong_type", "missing", "extra", "huge", "deep", "unicode",
             "bytes", "shape", "args", "unknown_event", "no_ack"],
            [20, 10, 10, 6, 6, 6, 5, 10, 5, 5, 4, 4, 4])[0]
        props = list((schema or {}).get("properties", {}))
        data = base
        label = how
        if how == "boundary" and schema:
            key = r.choice(props) if props else None
            sub = self.gen.resolve(schema["properties"][key], schema) if key else {}
            for alt in sub.get("anyOf", []):
                if alt.get("type") not in (None, "null"):
                    sub = self.gen.resolve(alt, schema)
            if isinstance(data, dict) and key:
                if sub.get("type") == "string":
                    n = r.choice([sub.get("maxLength", 64), sub.get("maxLength", 64) + 1,
                                  max(sub.get("minLength", 0) - 1, 0), 0])
                    data[key] = "a" * n
                elif sub.get("type") == "integer":
                    data[key] = r.choice([sub.get("minimum", 0) - 1, sub.get("maximum", 2**31) + 1,
                                          2**63, -(2**63) - 1, 2**64, 10**30, 0, -1])
                elif sub.get("type") == "array":
                    data[key] = [self.gen.valid(sub.get("items", {}), schema)
                                 for _ in range(sub.get("maxItems", 50) + r.choice([0, 1, 100]))]
                else:
                    data[key] = self.gen.wrong()
                label += f":{key}"
        elif how == "wrong_type":
            if isinstance(data, dict) and props:
                key = r.choice(props)
                data[key] = self.gen.wrong()
                label += f":{key}"
            else:
                data = self.gen.wrong()
        elif how == "missing" and isinstance(data, dict) and data:
            del data[r.choice(list(data))]
        elif how == "extra":
            if not isinstance(data, dict):
                data = {}
            for _ in range(r.choice([1, 3, 50, 500])):
                data[r.choice(ODD_NAMES) + str(r.randint(0, 10**6))] = self.gen.any_json(1)
        elif how == "huge":
            size = r.choice([self.limit // 2, self.limit - 200, self.limit - 20, self.limit,
                             self.limit + 10, self.limit * 2, 4 * 1024 * 1024])
            key = r.choice(props) if props else "x"
            if r.random() < 0.5:
                value: Any = "x" * size
            else:
                value = ["x" * 8] * (size // 11)
            data = data if isinstance(data, dict) else {}
            data[key] = value
            label += f":{key}:{size}"
            return Case("schema", f"{name} {label}", name, data,
                        expect_close=size > self.limit - 100)
        elif how == "deep":
            n = r.choice([32, 100, 500, 1000, 5000, 20000])
            key = r.choice(props) if props else "x"
            data = data if isinstance(data, dict) else {}
            body = with_raw(name, data, key, deep_json(n, r.choice(["list", "dict"])))
            label += f":{key}:{n}"
            return Case("schema", f"{name} {label}", name, body=body,
                        expect_close=len(body) > self.limit - 100)
        elif how == "unicode":
            if isinstance(data, dict) and props:
                key = r.choice(props)
                data[key] = "".join(r.choice(UNICODE) for _ in range(r.randint(1, 4)))
                label += f":{key}"
            else:
                data = r.choice(UNICODE)
        elif how == "bytes":
            if isinstance(data, dict) and props:
                key = r.choice(props)
                data[key] = r.randbytes(r.choice([0, 1, 16, 1024]))
                label += f":{key}"
            else:
                data = r.randbytes(8)
        elif how == "shape":
            data = r.choice([[], [data], "string", 42, None, True, {"": data}])
        elif how == "args":
            text = json.dumps([name, data, *([self.gen.any_json()] * r.randint(1, 5))],
                              default=_hex)
            return Case("schema", f"{name} args", name, body=text)
        elif how == "unknown_event":
            name = r.choice(EVENT_NAMES + [f"{name}x", name.upper()])
        return Case("schema", f"{name} {label}", name, data, ack=how != "no_ack")

    # -- raw frames
    def raw_case(self) -> Case:
        r = self.rng
        text_frames = [
            "", "9", "7abc", "6", "5", "4", "49", "42", "42[", "42{}", "42[1,2]", "42[null]",
            '42["whoami"', '4999999999999999999999999["whoami"]', '42-1["whoami"]', "43[]",
            '431["x"]', "40/admin,", "40/admin,{}", "40/nonexistent,{}", "40/\x00,",
            "44{}", '42/admin,1["whoami"]', "40", '40{"token":1}', '40{"token":"' + "a" * 9000
            + '"}', '40["token"]', "45-1-[]", '4599999999-["whoami"]',
            '451-1["whoami",{"_placeholder":true,"num":5}]',
            '451-1["whoami",{"_placeholder":true,"num":-1}]',
            '451-1["whoami",{"_placeholder":true,"num":"0"}]',
            '421["publish",{"channel":"chat:fuzz","data":{"_placeholder":true,"num":0}}]',
            '421["subscribe",{"channel":"chat:fuzz"},' + deep_json(50) + "]",
            "421" + deep_json(r.choice([100, 1000, 10000, 30000])),
            '421["whoami",NaN]', '421["whoami",Infinity]', '421["whoami",1e999]',
            '421["whoami",' + "1" * 5000 + "]", '421["\\ud800"]', '421["whoami",{"a":1,"a":2}]',
            "41", "4" + "2" * 100, "2probe", "3", "1", "0", "8", '42["whoami"]' + "\x00",
        ]
        choice = r.randint(0, 9)
        if choice < 5:
            t = r.choice(text_frames)
            return Case("raw", f"text {t[:40]!r}",
                        raw=[frame(1, t.encode("utf-8", "surrogatepass"))], ack=False,
                        expect_close=True)
        if choice == 5:  # invalid UTF-8
            bad = r.choice([b"42[\"whoami\",\"\xff\xfe\"]", b"\xc3\x28", b"42\xed\xa0\x80",
                            b"\xf8\x88\x80\x80\x80"])
            return Case("raw", "invalid utf-8", raw=[frame(1, bad)], ack=False, expect_close=True)
        if choice == 6:  # fragmentation
            msg = b'421["whoami"]'
            variants = {
                "fragmented text": [frame(1, msg[:3], fin=False), frame(0, msg[3:])],
                "continuation without start": [frame(0, msg)],
                "fragmented ping": [frame(9, b"x", fin=False)],
                "interleaved ping": [frame(1, msg[:3], fin=False), frame(9, b"p"),
                                     frame(0, msg[3:])],
                "many fragments": [frame(1, b"4", fin=False)]
                + [frame(0, b" ", fin=False) for _ in range(2000)] + [frame(0, b"2")],
                "never-ending fragments": [frame(1, b"4", fin=False)]
                + [frame(0, b"x" * 4096, fin=False) for _ in range(20)],
            }
            key = r.choice(list(variants))
            return Case("raw", key, raw=variants[key], ack=False, expect_close=True)
        if choice == 7:  # frame header lies
            variants = {
                "announced 100 MB text": frame(1, b"42", length=100 * 1024 * 1024),
                "announced 2^63 text": frame(1, b"42", length=2**63 - 1),
                "oversized text": frame(1, b"4" + b"2" * (self.limit + 1024)),
                "long ping": frame(9, b"p" * 200),
                "opcode 3": frame(3, b"x"),
                "opcode 11": frame(11, b"x"),
                "rsv bits": frame(1, b'421["whoami"]', rsv=7),
                "unmasked": frame(1, b'421["whoami"]', mask=False),
                "close 999": frame(8, struct.pack("!H", 999) + b"\xff"),
                "close 1-byte": frame(8, b"\x03"),
            }
            key = r.choice(list(variants))
            return Case("raw", key, raw=[variants[key]], ack=False, expect_close=True)
        # stray binary frames / bad binary announcements
        variants = {
            "stray binary": [frame(2, r.randbytes(64))],
            "announce 1 send 0": [frame(1, b'451-1["whoami",{"_placeholder":true,"num":0}]')],
            "announce 2 send 3": [frame(1, b'452-1["whoami",{"_placeholder":true,"num":0}]')]
            + [frame(2, b"abc")] * 3,
        }
        key = r.choice(list(variants))
        return Case("raw", key, raw=variants[key], ack=False, expect_close=True)

    # -- binary packets
    def binary_case(self) -> Case:
        r = self.rng
        pick = r.randint(0, 5)
        if pick == 0:
            n = r.choice([2, 100, 1000, 100000, 10**7])
            sent = min(n, r.choice([1, 50, 500]))
            size = r.choice([1, 1024, 16384])
            head = f'45{n}-1["publish",{{"channel":"chat:fuzz","data":' \
                   '{"_placeholder":true,"num":0}}]'
            return Case("binary", f"announce {n} attachments, send {sent} of {size} bytes",
                        raw=[frame(1, head.encode())] + [frame(2, b"\0" * size)] * sent,
                        ack=False, expect_close=True, timeout=0.5)
        if pick == 1:
            n = r.choice([10, 100, 300])
            refs = ",".join('{"_placeholder":true,"num":0}' for _ in range(n))
            head = f'451-1["publish",{{"channel":"chat:fuzz","data":[{refs}]}}]'
            return Case("binary", f"one attachment referenced {n} times",
                        raw=[frame(1, head.encode()), frame(2, b"z" * r.choice([10, 60000]))],
                        ack=False, expect_close=True)
        if pick == 2:
            k = r.choice([1, 5, 100])
            data = {"channel": "chat:fuzz", "data": [r.randbytes(r.choice([1, 1000, 60000]))
                                                     for _ in range(k)]}
            return Case("binary", f"publish with {k} binary values", "publish", data,
                        expect_close=True)
        if pick == 3:
            name = r.choice(list(self.events))
            return Case("binary", f"{name} with a binary argument", name, r.randbytes(32))
        if pick == 4:
            name = r.choice(list(self.events))
            head = f'451-1["{name}",{{"_placeholder":true,"num":0}},{{"_placeholder":true,' \
                   '"num":0}}]'
            return Case("binary", f"{name}: the same placeholder twice",
                        raw=[frame(1, head.encode()), frame(2, b"q")], ack=False)
        head = '451-1["whoami",{"_placeholder":true,"num":0}]'
        return Case("binary", "attachment sent as text frame",
                    raw=[frame(1, head.encode()), frame(1, b"not binary")], ack=False,
                    expect_close=True)


def fuzz_events() -> dict[str, dict[str, Any] | None]:
    """Every declared client event and its payload's JSON schema."""
    from dihya_realtime import app  # noqa: F401 - declares every event
    from dihya_realtime.kernel.registry import registry

    return {name: (spec.payload.model_json_schema() if spec.payload else None)
            for name, spec in registry.events.items()}
