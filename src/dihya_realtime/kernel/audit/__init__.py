"""The audit trail: one JSON line per event, now, and a hash-chained database row, soon.

:class:`AuditLog` records an event without ever waiting for the database; :func:`verify` walks
the stored chain and says whether it is intact and complete. One module per job:

- :mod:`.chain`: the chain's format (hashed fields, ``canonical_json``, ``chain_hash``, the
  genesis hash, the gap row's type), shared by the writer and the verifier;
- :mod:`.fields`: cleaning what a client sent (redaction, escaping, column limits);
- :mod:`.log`: the writer (JSON lines, the queue, the batching thread, gap rows);
- :mod:`.append`: one batch appended to the chain in one serialized transaction;
- :mod:`.verification`: :func:`verify` and what it cannot see.

**A crash can lose at most what's queued: the database rows of at most 100,000 events (in
normal operation, at most the last 100 ms or 200 events); their JSON lines are already written.**
"""

from __future__ import annotations

from dihya_realtime.kernel.audit.append import AUDIT_LOCK_KEY
from dihya_realtime.kernel.audit.chain import (
    FIELDS,
    GAP_TYPE,
    GENESIS_HASH,
    canonical_json,
    chain_hash,
    iso_ms,
)
from dihya_realtime.kernel.audit.fields import (
    MAX_DEEP_TEXT,
    MAX_DETAILS_DEPTH,
    REDACT_KEYS,
    escape_text,
)
from dihya_realtime.kernel.audit.log import (
    BACKLOG_BATCHES,
    BATCH_INTERVAL,
    BATCH_SIZE,
    MAX_QUEUE,
    AuditLog,
)
from dihya_realtime.kernel.audit.verification import VerifyResult, row_fields, verify

__all__ = [
    "AUDIT_LOCK_KEY",
    "BACKLOG_BATCHES",
    "BATCH_INTERVAL",
    "BATCH_SIZE",
    "FIELDS",
    "GAP_TYPE",
    "GENESIS_HASH",
    "MAX_DEEP_TEXT",
    "MAX_DETAILS_DEPTH",
    "MAX_QUEUE",
    "REDACT_KEYS",
    "AuditLog",
    "VerifyResult",
    "canonical_json",
    "chain_hash",
    "escape_text",
    "iso_ms",
    "row_fields",
    "verify",
]
