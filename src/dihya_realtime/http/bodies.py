"""Request bodies of HTTP routes: read, validated and documented by one decorator.

A route with a JSON body declares its model beside the handler, as an event does::

    @bp.post("/api/v1/publish")
    @api_key
    @body(HttpPublish)
    def http_publish(body: HttpPublish) -> Any:
        ...

The view receives the validated model as the keyword argument ``body``; a body that is not a
JSON object, or does not fit the model, never reaches it: ``invalid_payload`` (400) names each
bad field, capped as the socket pipeline caps them
(:func:`dihya_realtime.kernel.payloads.validate`). Put ``@body`` under ``require_api_key``
so that a refused body is audited as an API call. The model is recorded for ``/openapi.json``
(:func:`body_model`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

from flask import request
from pydantic import BaseModel

from dihya_realtime.kernel.errors import ErrorCode, RealtimeError
from dihya_realtime.kernel.payloads import validate

_models: weakref.WeakKeyDictionary[Callable[..., Any], type[BaseModel]] = \
    weakref.WeakKeyDictionary()
"""The body model of each decorated view. Weak: the views of an app that is gone (one per
test) go with it."""


def request_json() -> Any:
    """The request's JSON document, or ``None`` if it is not JSON, malformed, or nested
    deeper than the parser goes (the standard library raised ``RecursionError`` there: a
    500 with a traceback in the log, before any authentication on ``/dev/token``)."""
    try:
        return request.get_json(silent=True)
    except RecursionError:
        return None


def json_body() -> dict:
    """The request's JSON object, or a 400 ``invalid_payload`` naming the problem."""
    data = request_json()
    if not isinstance(data, dict):
        raise RealtimeError(ErrorCode.INVALID_PAYLOAD, "the body must be a JSON object",
                            [{"field": "body", "message": "expected a JSON object"}])
    return data


def body(model: type[BaseModel], *, message: str = "invalid request body",
         optional: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Validate the route's JSON body against ``model`` and pass it as ``body=``.

    ``message`` is the error's message when the body does not fit the model. ``optional``:
    a missing or unparsable body counts as ``{}`` (the model's defaults) instead of a 400
    "the body must be a JSON object".
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def validated(*args: Any, **kwargs: Any) -> Any:
            data = (request_json() or {}) if optional else json_body()
            return view(*args, body=validate(model, data, message), **kwargs)

        _models[validated] = model
        return validated

    return decorate


def body_model(view: Callable[..., Any]) -> type[BaseModel] | None:
    """The model ``@body`` declared on ``view``, looked up through the decorators above it
    (those that keep ``__wrapped__``, as :func:`functools.wraps` does); ``None`` if none."""
    fn: Any = view
    while callable(fn):
        try:
            model = _models.get(fn)
        except TypeError:  # a callable that takes no weak reference was never decorated
            model = None
        if model is not None:
            return model
        fn = getattr(fn, "__wrapped__", None)
    return None
