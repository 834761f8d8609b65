"""The Yjs and y-protocols bytes the server handles: framing, applying, merging, reading.

Everything else in the feature treats updates as opaque bytes; what must know their shape is
here. A stored update that will not apply is never retried forever (see :mod:`.quarantine`),
so :func:`apply_update` reports failure instead of raising, whatever pycrdt raises.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Doc, Map, Text, XmlFragment, YMessageType, YSyncMessageType, merge_updates

from dihya_realtime.kernel.errors import invalid

EMPTY_UPDATE = b"\x00\x00"
"""The Yjs update that changes nothing (what a client with nothing new sends as sync step 2)."""

_ROOT_TYPES: dict[str, type] = {"text": Text, "map": Map, "array": Array, "xml": XmlFragment}


def var_uint(num: int) -> bytes:
    """``num`` as lib0's variable-length unsigned integer (the Yjs and y-protocols framing)."""
    out = bytearray()
    while num > 127:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    out.append(num)
    return bytes(out)


def read_var_uint(buf: bytes, pos: int) -> tuple[int, int]:
    """The lib0 varuint at ``buf[pos:]`` and the position after it; ``ValueError`` if cut."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varuint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def parse_sync_message(message: bytes) -> tuple[YSyncMessageType, bytes]:
    """Split a y-protocols sync message (``[0, type, varuint len, payload]``).

    Raises ``invalid_payload`` on anything else, including an awareness message (type 1).
    """
    try:
        if len(message) < 3 or message[0] != YMessageType.SYNC:
            raise ValueError("not a y-protocols sync message")
        kind = YSyncMessageType(message[1])
        length, pos = read_var_uint(message, 2)
        if pos + length != len(message):
            raise ValueError("length does not match the payload")
        return kind, message[pos:]
    except ValueError as exc:
        raise invalid(f"malformed sync message: {exc}", [{"field": "message"}]) from None


def sync_step2_message(update: bytes) -> bytes:
    """A y-protocols sync step 2 message carrying ``update``."""
    return bytes([YMessageType.SYNC, YSyncMessageType.SYNC_STEP2]) + var_uint(len(update)) \
        + update


def apply_update(doc: Doc, update: bytes) -> bool:
    """Apply ``update``; ``False`` (``doc`` unchanged) if it does not apply."""
    try:
        doc.apply_update(update)
    except Exception:
        return False
    except BaseException as exc:  # a Rust panic surfaces as pyo3's PanicException
        if type(exc).__name__ != "PanicException":
            raise
        return False
    return True


def merged(parts: list[bytes]) -> bytes:
    """``parts`` as one update (lossless), or ``b""`` if they do not merge (the caller then
    looks for the culprits)."""
    if len(parts) == 1:
        return parts[0]
    try:
        return merge_updates(*parts)
    except Exception:
        return b""


def root_value(doc: Doc, name: str, kind: str) -> Any:
    """The JSON value of root ``name`` read as ``kind`` (text, map, array, xml)."""
    if kind not in _ROOT_TYPES:
        raise invalid(f"unknown root kind {kind!r} (text, map, array, xml)")
    if name not in set(doc.keys()):
        return {"text": "", "xml": "", "map": {}, "array": []}[kind]  # fresh: callers own it
    value = doc.get(name, type=_ROOT_TYPES[kind])
    if kind in ("text", "xml"):
        return str(value)
    return value.to_py()
