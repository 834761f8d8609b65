"""The format of the audit hash chain: which fields are hashed, how, and what starts the chain.

Why a module of its own: the writer (:mod:`.append`) and the verifier (:mod:`.verification`) must
agree on these bytes exactly, and any change here breaks every stored trail. So the format is
written once, here, and nothing else in it.

``hash = sha256(prev_hash + canonical_json(row))`` in hex, where canonical_json is the row's
``ts`` (the ISO string of the JSON line, :func:`iso_ms`), ``type``, ``user_id``, ``sid``,
``remote_addr``, ``origin``, ``user_agent``, ``event``, ``outcome`` and ``details``
(:data:`FIELDS`), with sorted keys and no whitespace; the first row's ``prev_hash`` is
:data:`GENESIS_HASH` (64 zeros). Where a writer lost records, a row of type :data:`GAP_TYPE`
stands in their place, chained like any other.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS_HASH = "0" * 64

FIELDS = (
    "ts",
    "type",
    "user_id",
    "sid",
    "remote_addr",
    "origin",
    "user_agent",
    "event",
    "outcome",
    "details",
)

GAP_TYPE = "audit_gap"
"""The type of the row the writer adds where records were lost (see :mod:`.verification`)."""


def iso_ms(ts: datetime) -> str:
    """``2026-11-24T08:00:00.123Z``: the one textual form of an audit timestamp."""
    # isoformat is C; strftime + an f-string cost three times as much on every event
    return ts.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def canonical_json(fields: dict[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the bytes the chain hashes."""
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(fields)).hexdigest()
