"""Health, readiness, metrics and the AsyncAPI document over HTTP."""

from __future__ import annotations


def test_healthz_is_ok(rt):
    assert rt.app.test_client().get("/healthz").json == {"status": "ok"}


def test_readyz_is_ok_when_database_and_broker_answer(rt):
    response = rt.app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_names_the_dependency_that_is_down(make_rt):
    rt = make_rt()
    rt.db.dispose()
    from dihya_realtime.store import Database

    rt.db = Database("postgresql://nobody@127.0.0.1:1/none")
    response = rt.app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["down"] == ["database"]


def test_metrics_count_events_by_name_and_outcome(rt, connect):
    client = connect(rt)
    client.call("whoami")
    client.call("nope")
    connect(rt, user=None)
    text = rt.app.test_client().get("/metrics").get_data(as_text=True)
    assert 'dihya_rt_events_total{event="whoami",outcome="ok"} 1.0' in text
    assert 'dihya_rt_events_total{event="<unknown>",outcome="not_found"} 1.0' in text
    assert 'dihya_rt_auth_failures_total{reason="missing_token"} 1.0' in text
    assert "dihya_rt_connections 1.0" in text


def test_asyncapi_document_lists_every_declared_event(rt):
    doc = rt.app.test_client().get("/asyncapi.json").json
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert set(rt.registry.events) <= addresses
    assert set(rt.registry.server_events) <= addresses
    assert doc["operations"]["auth_refresh"]["action"] == "receive"


def test_openapi_document_lists_the_http_api_with_body_schemas(rt):
    doc = rt.app.test_client().get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    publish = doc["paths"]["/api/v1/publish"]["post"]
    assert publish["security"] and "requestBody" in publish
    assert "channel" in doc["components"]["schemas"]["HttpPublish"]["properties"]
    assert "/api/v1/channels/{channel}/presence" in doc["paths"]
    assert "/healthz" in doc["paths"]


def test_published_documents_keep_their_token_fields(rt):
    """Redaction is for data on the wire, not for the schemas that describe ``auth:refresh``."""
    doc = rt.app.test_client().get("/asyncapi.json").json
    props = doc["components"]["schemas"]["RefreshPayload"]["properties"]
    assert props["token"]["type"] == "string"
