"""Payload types shared by the event schemas.

``JsonValue`` is "any JSON value" for fields such as ``publish.data``: without a bound, a
payload nested a thousand levels deep fits in the frame limit, is stored in history, and then
breaks the encoding of every later reply that carries it (``RecursionError``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator

MAX_JSON_DEPTH = 64


def _depth_ok(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return True


def check_json_value(value: Any) -> Any:
    if not _depth_ok(value, MAX_JSON_DEPTH):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


JsonValue = Annotated[Any, AfterValidator(check_json_value)]
"""Any JSON value nested at most ``MAX_JSON_DEPTH`` levels."""
