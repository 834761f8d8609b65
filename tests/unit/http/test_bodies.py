"""@body: a route's JSON body is read, validated and passed to the view, or refused before it."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from flask import Flask, jsonify
from pydantic import BaseModel, Field

from dihya_realtime.http.api import error_response
from dihya_realtime.http.bodies import body, body_model
from dihya_realtime.kernel.auth import hash_api_key
from dihya_realtime.kernel.errors import RealtimeError

API_KEY = "bodies-test-key-" + "k" * 24


class Greeting(BaseModel):
    name: str = Field(min_length=1)
    times: int = 1


@pytest.fixture
def seen() -> list[Any]:
    """What the views received."""
    return []


@pytest.fixture
def client(seen):
    app = Flask("bodies")
    app.register_error_handler(RealtimeError, error_response)

    @app.post("/greet/<who>")
    @body(Greeting, message="invalid greeting")
    def greet(who: str, body: Greeting) -> Any:
        seen.append((who, body))
        return jsonify({"ok": True})

    @app.post("/maybe")
    @body(Greeting, optional=True)
    def maybe(body: Greeting) -> Any:
        seen.append(body)
        return jsonify({"ok": True})

    return app.test_client()


def test_the_view_receives_the_validated_model_beside_its_url_arguments(client, seen):
    assert client.post("/greet/bob", json={"name": "Ada", "times": 2}).status_code == 200
    assert seen == [("bob", Greeting(name="Ada", times=2))]


def test_a_body_that_is_not_a_json_object_is_refused_before_the_view(client, seen):
    for kwargs in ({"json": [1]}, {"data": "{nope", "content_type": "application/json"}, {}):
        reply = client.post("/greet/bob", **kwargs)
        assert reply.status_code == 400
        assert reply.json == {"ok": False, "error": {
            "code": "invalid_payload", "message": "the body must be a JSON object",
            "details": [{"field": "body", "message": "expected a JSON object"}]}}
    assert seen == []


def test_a_body_that_does_not_fit_names_each_field_with_the_routes_message(client, seen):
    reply = client.post("/greet/bob", json={"name": "", "times": "x"})
    assert reply.status_code == 400
    error = reply.json["error"]
    assert (error["code"], error["message"]) == ("invalid_payload", "invalid greeting")
    assert [d["field"] for d in error["details"]] == ["name", "times"]
    assert seen == []


def test_an_optional_body_may_be_absent_but_not_wrong(client):
    assert client.post("/maybe", json={"name": "Ada"}).status_code == 200
    reply = client.post("/maybe")
    assert reply.status_code == 400  # absent: {} then the model's rules (name is required)
    assert reply.json["error"]["message"] == "invalid request body"
    assert reply.json["error"]["details"][0]["field"] == "name"


def test_the_model_is_found_through_the_decorators_above_it():
    @body(Greeting)
    def view(body: Greeting) -> None:
        return None

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return view(*args, **kwargs)

    assert body_model(view) is Greeting
    assert body_model(guarded) is Greeting
    assert body_model(lambda: None) is None


def test_a_refused_body_is_audited_as_a_refused_api_call(make_rt):
    rt = make_rt(api_keys=hash_api_key(API_KEY))
    reply = rt.app.test_client().post("/api/v1/publish", json={"channel": 5},
                                      headers={"Authorization": f"Bearer {API_KEY}"})
    assert reply.status_code == 400
    assert reply.json["error"]["message"] == "invalid request body"
    rt.audit.flush()
    with open(rt.settings.audit_log) as fh:
        rows = [json.loads(line) for line in fh if '"api_call"' in line]
    assert [(r["outcome"], r["event"]) for r in rows] == [
        ("invalid_payload", "POST /api/v1/publish")]
