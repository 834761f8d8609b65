"""Payload types shared by the event schemas, and the one way a payload is validated.

:func:`validate` is the step every entry point shares (the socket pipeline, the HTTP body
decorator, ``rt.notify``): check data against a pydantic model and turn a ``ValidationError``
into ``invalid_payload`` naming each bad field, capped (:func:`validation_details`), so a
hostile payload cannot make the reply or its audit row large.

``JsonValue`` is "any JSON value" for fields such as ``publish.data``. Two bounds:

- depth: without one, a payload nested a thousand levels deep fits in the frame limit, is
  stored in history, and then breaks the encoding of every later reply that carries it
  (``RecursionError``);
- JSON types only: a Socket.IO binary packet turns placeholders into ``bytes``, which would
  otherwise be stored and fanned out as attachments (a 6 MB publication from one ``publish``).
  Only events declared ``binary=True`` take bytes, in fields typed as such.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError

from dihya_realtime.kernel.errors import invalid

MAX_JSON_DEPTH = 64

MAX_ERROR_DETAILS = 20
"""A validation error names at most this many bad fields; past it, a last entry
``{"field": "*", "type": "truncated", "truncated": true, "message": "N more errors"}``
says how many were left out. The reply and its audit row stay small whatever the input."""

MAX_ERROR_TEXT = 200
"""Characters kept of each field name and message in a validation error (then ``…``)."""

M = TypeVar("M", bound=BaseModel)

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


def clip_text(text: str) -> str:
    """``text`` cut to :data:`MAX_ERROR_TEXT` characters (the last one then ``…``)."""
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT - 1] + "…"


def validation_details(exc: ValidationError) -> list[dict[str, Any]]:
    """Name each bad field: ``[{"field": "since.offset", "message": …, "type": …}]``.

    At most :data:`MAX_ERROR_DETAILS` entries of at most :data:`MAX_ERROR_TEXT` characters
    each, plus a ``truncated`` marker when some were left out.
    """
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    details: list[dict[str, Any]] = []
    for err in errors[:MAX_ERROR_DETAILS]:
        field = ".".join(str(p) for p in err["loc"]) or "payload"
        details.append({"field": clip_text(field), "message": clip_text(err["msg"]),
                        "type": clip_text(err["type"])})
    if len(errors) > MAX_ERROR_DETAILS:
        details.append({"field": "*", "type": "truncated", "truncated": True,
                        "message": f"{len(errors) - MAX_ERROR_DETAILS} more errors not shown"})
    return details


def validate(model: type[M], data: Any, message: str) -> M:
    """``data`` as a ``model``, or ``invalid_payload`` with ``message`` and the capped
    :func:`validation_details` (the pydantic error is not chained: its input stays out of
    logs and tracebacks)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(message, validation_details(exc)) from None
