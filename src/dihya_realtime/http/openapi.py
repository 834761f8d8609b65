"""The OpenAPI 3.1 document of the HTTP API, built from the Flask routes themselves.

Each view's docstring is its description; :func:`dihya_realtime.http.bodies.body` records the
pydantic model of its JSON body. Routes under ``/api/v1`` need an API key. Served at
``GET /openapi.json``.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from flask import Flask

from dihya_realtime.http.bodies import body_model
from dihya_realtime.version import __version__


def openapi_document(app: Flask, blueprint: str = "dihya_realtime") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(blueprint + "."):
            continue
        view = app.view_functions[rule.endpoint]
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        doc = inspect.getdoc(view) or ""
        summary, _, description = doc.partition("\n")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {"summary": summary.strip() or rule.endpoint,
                                  "operationId": rule.endpoint.split(".", 1)[1] + "_" +
                                  method.lower(),
                                  "responses": {"200": {"description": "OK"}}}
            if description.strip():
                op["description"] = description.strip()
            params = [{"name": arg, "in": "path", "required": True, "schema": {"type": "string"}}
                      for arg in rule.arguments]
            if params:
                op["parameters"] = params
            model = body_model(view)
            if model is not None:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
                op["requestBody"] = {"required": True, "content": {"application/json": {
                    "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
                op["responses"]["400"] = {"description": "invalid_payload, with field details"}
            if rule.rule.startswith("/api/"):
                op["security"] = [{"bearer": []}, {"apiKey": []}]
                op["responses"]["401"] = {"description": "no valid API key"}
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "dihya-realtime HTTP API", "version": __version__},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
