"""The demo pages and the dev-only endpoints, through the Flask test client."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from dihya_realtime.app import create_app
from dihya_realtime.demo.web import doc_html
from dihya_realtime.kernel.devmode import DEV_SECRET_PREFIX


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator:
    apps: list[Flask] = []

    def make(**overrides) -> Flask:
        # dev mode signs with the generated dev secret only (test_dev_token_guard.py)
        secret = DEV_SECRET_PREFIX + "x" * 40 if overrides.get("dev") else "x" * 40
        settings = {"jwt_secret": secret, "async_mode": "threading", "audit_log": "off",
                    "database_url": f"sqlite:///{tmp_path / 'web.db'}", **overrides}
        app = create_app(**settings)
        app.extensions["dihya_realtime"].db.migrate()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["dihya_realtime"].close()


def test_production_mode_has_no_dev_endpoints(make_app) -> None:
    client = make_app(dev=False).test_client()
    assert client.post("/dev/token", json={"user_id": "eve"}).status_code == 404
    assert client.post("/dev/publish", json={}).status_code == 404
    page = client.get("/")
    assert page.status_code == 200
    assert b"Paste a token" in page.data and b"Quick pick" not in page.data


def test_dev_token_is_short_lived_and_verifies(make_app) -> None:
    app = make_app(dev=True)
    reply = app.test_client().post("/dev/token", json={"user_id": "alice",
                                                       "roles": ["user", "moderator"]})
    assert reply.status_code == 200
    data = reply.get_json()["data"]
    principal = app.extensions["dihya_realtime"].verifier.verify(data["token"])
    assert principal.user_id == "alice"
    assert set(principal.roles) == {"user", "moderator"}
    assert 0 < principal.expires_at - time.time() <= 15 * 60


def test_dev_token_refuses_bad_names_and_unknown_roles(make_app) -> None:
    client = make_app(dev=True).test_client()
    bad_name = client.post("/dev/token", json={"user_id": "a b<script>"})
    assert bad_name.status_code == 400
    assert bad_name.get_json()["error"]["details"][0]["field"] == "user_id"
    bad_role = client.post("/dev/token", json={"user_id": "eve", "roles": ["root"]})
    assert bad_role.status_code == 400
    assert "unknown roles: root" in bad_role.get_json()["error"]["message"]


def test_dev_publish_only_reaches_live_channels(make_app) -> None:
    app = make_app(dev=True)
    client = app.test_client()
    ok = client.post("/dev/publish", json={"data": {"text": "hi"}})
    assert ok.status_code == 200 and ok.get_json()["data"]["channel"] == "live:demo"
    history = app.extensions["dihya_realtime"].history("live:demo")
    assert [p.data for p in history.publications] == [{"text": "hi"}]
    refused = client.post("/dev/publish", json={"channel": "user:#bob", "data": {}})
    assert refused.status_code == 400


def test_pages_carry_a_strict_content_security_policy(make_app) -> None:
    client = make_app(dev=True).test_client()
    for path in ("/", "/docs/events"):
        response = client.get(path)
        assert response.status_code == 200
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert b"https://" not in response.data  # nothing from another origin


def test_events_page_lists_every_declared_event(make_app) -> None:
    app = make_app(dev=True)
    registry = app.extensions["dihya_realtime"].registry
    body = app.test_client().get("/docs/events").get_data(as_text=True)
    for name in list(registry.events) + list(registry.server_events):
        assert f"<code>{name}</code>" in body, name


def test_doc_html_escapes_and_keeps_code_spans() -> None:
    html = str(doc_html("Send ``{\"a\": 1}`` <b>now</b>.\n\nSecond."))
    assert "<code>{&quot;a&quot;: 1}</code>" in html or '<code>{"a": 1}</code>' in html
    assert "&lt;b&gt;now&lt;/b&gt;" in html
    assert html.count("<p>") == 2


def test_page_offers_the_document_editor_when_collab_is_installed(make_app) -> None:
    body = make_app(dev=True).test_client().get("/").get_data(as_text=True)
    config = json.loads(re.search(
        r'<script type="application/json" id="dihya-config">(.*?)</script>', body, re.S)[1])
    assert config["features"]["docs"] is True  # the collab feature is on this server
    assert 'id="doc-panel"' in body
    # the editor is labelled, starts read-only until the server says otherwise, and the
    # document id defaults to the demo document
    assert '<label for="doc-text">' in body and '<label for="doc-id">' in body
    assert re.search(r'<textarea id="doc-text"[^>]*\breadonly\b', body)
    assert re.search(r'<input id="doc-id" value="demo"', body)
