"""Outbound redaction: secrets never leave the server.

Every payload the server sends (acks and emits) passes :meth:`Redactor.redact`; values under
a sensitive key (any depth, case-insensitive) become ``"[redacted]"`` and the paths that were
redacted are reported so the caller can audit them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
# Leaves: nothing to walk into, so no path string is built for them (the walk runs on every
# outbound payload and every audit detail; most values are these).
_LEAVES = (str, int, float, bool, type(None))


class Redactor:
    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = frozenset(k.lower() for k in keys)

    def redact(self, value: Any) -> tuple[Any, list[str]]:
        """Return ``(clean_value, redacted_paths)``; ``value`` itself is never modified."""
        paths: list[str] = []
        clean = self._walk(value, "", paths)
        return clean, paths

    def _walk(self, value: Any, path: str, paths: list[str]) -> Any:
        if isinstance(value, dict):
            out: dict[Any, Any] | None = None
            for key, item in value.items():
                if isinstance(key, str) and key.lower() in self.keys:
                    new_item: Any = REDACTED
                    paths.append(f"{path}.{key}" if path else key)
                elif type(item) in _LEAVES:
                    new_item = item
                else:
                    new_item = self._walk(item, f"{path}.{key}" if path else str(key), paths)
                if new_item is not item and out is None:
                    out = dict(value)
                if out is not None:
                    out[key] = new_item
            return value if out is None else out
        if isinstance(value, list | tuple):
            items = [
                item if type(item) in _LEAVES else self._walk(item, f"{path}[{i}]", paths)
                for i, item in enumerate(value)
            ]
            if all(a is b for a, b in zip(items, value, strict=True)):
                return value
            return items
        return value
