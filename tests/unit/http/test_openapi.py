"""/openapi.json documents the body of every HTTP route that takes one."""

from __future__ import annotations

import pytest

from dihya_realtime import create_app
from dihya_realtime.http.openapi import openapi_document

BODY_METHODS = {"POST", "PUT", "PATCH"}


@pytest.fixture
def app(tmp_path):
    app = create_app(jwt_secret="s" * 32, async_mode="threading", audit_log="off",
                     database_url=f"sqlite:///{tmp_path / 'openapi.db'}")
    yield app
    app.extensions["dihya_realtime"].close()


def test_every_route_with_a_body_has_its_schema_in_the_document(app):
    doc = openapi_document(app)
    schemas = doc["components"]["schemas"]
    checked = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("dihya_realtime."):
            continue
        path = rule.rule.replace("<path:", "<").replace("<", "{").replace(">", "}")
        for method in sorted((rule.methods or set()) & BODY_METHODS):
            op = doc["paths"][path][method.lower()]
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {}) \
                .get("schema", {}).get("$ref", "")
            assert ref.startswith("#/components/schemas/"), f"{method} {rule.rule}: no body"
            assert schemas[ref.rsplit("/", 1)[1]].get("properties"), f"{method} {rule.rule}"
            assert "400" in op["responses"]
            checked.append(f"{method} {rule.rule}")
    # every feature's routes are there (all features are on by default)
    assert {"POST /api/v1/publish", "POST /api/v1/chat/rooms/<room_id>/messages",
            "POST /api/v1/docs", "PUT /api/v1/docs/<doc_id>/access",
            "POST /api/v1/notifications"} <= set(checked)


def test_routes_without_a_body_declare_none(app):
    doc = openapi_document(app)
    assert "requestBody" not in doc["paths"]["/api/v1/channels/{channel}/presence"]["get"]
    assert "requestBody" not in doc["paths"]["/healthz"]["get"]
