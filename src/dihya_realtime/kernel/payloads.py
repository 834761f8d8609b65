"""Payload types shared by the event schemas.

``JsonValue`` is "any JSON value" for fields such as ``publish.data``. Two bounds:

- depth: without one, a payload nested a thousand levels deep fits in the frame limit, is
  stored in history, and then breaks the encoding of every later reply that carries it
  (``RecursionError``);
- JSON types only: a Socket.IO binary packet turns placeholders into ``bytes``, which would
  otherwise be stored and fanned out as attachments (a 6 MB publication from one ``publish``).
  Only events declared ``binary=True`` take bytes, in fields typed as such.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator

MAX_JSON_DEPTH = 64

_SCALARS = (str, int, float, bool, type(None))


def _json_problem(value: Any, limit: int) -> str | None:
    """Why ``value`` is not a JSON value nested at most ``limit`` levels (``None``: it is)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, _SCALARS):
            continue
        if isinstance(item, dict | list):
            if depth > limit:
                return f"nested deeper than {limit} levels"
            if isinstance(item, dict):
                if not all(isinstance(key, str) for key in item):
                    return "object keys must be strings"
                children: Any = item.values()
            else:
                children = item
            stack.extend((child, depth + 1) for child in children)
            continue
        kind = "binary data" if isinstance(item, bytes | bytearray | memoryview) else \
            type(item).__name__
        return f"not a JSON value: {kind}"
    return None


def check_json_value(value: Any) -> Any:
    problem = _json_problem(value, MAX_JSON_DEPTH)
    if problem is not None:
        raise ValueError(problem)
    return value


JsonValue = Annotated[Any, AfterValidator(check_json_value)]
"""Any JSON value (no bytes) nested at most ``MAX_JSON_DEPTH`` levels."""
