"""The events reference and the AsyncAPI document are generated, and must be current."""

from __future__ import annotations

from pathlib import Path

import dihya_realtime.app  # noqa: F401 - declares every event
from dihya_realtime.docs import asyncapi_document, events_markdown, write_docs
from dihya_realtime.docs_typescript import ts_type, typescript_events
from dihya_realtime.kernel.registry import registry

ROOT = Path(__file__).resolve().parents[2]


def test_generated_docs_are_current():
    stale = write_docs(registry, ROOT, check=True)
    assert stale == [], f"run `dihya-realtime docs`: stale {stale}"


def test_every_event_is_documented_with_its_schema():
    md = events_markdown(registry)
    doc = asyncapi_document(registry)
    for name, spec in registry.events.items():
        assert f"`{name}`" in md
        assert spec.summary, f"{name} has no docstring summary"
        key = name.replace(":", "_")
        assert doc["components"]["messages"][key]["name"] == name
    for name in registry.server_events:
        assert f"`{name}` (server → client)" in md


def test_stale_docs_are_detected(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "events.md").write_text("old")
    stale = write_docs(registry, tmp_path, check=True)
    assert "docs/events.md" in stale and "docs/asyncapi.json" in stale
    assert "clients/js/src/generated/events.ts" in stale
    assert (tmp_path / "docs" / "events.md").read_text() == "old"  # check never writes


def test_every_test_the_readme_security_table_names_exists():
    """The security table says which test proves each control: a renamed test must not
    leave it pointing at nothing."""
    import re

    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Security: every control", 1)[1].split("\n## ", 1)[0]
    layers = {"u": ROOT / "tests" / "unit", "i": ROOT / "tests" / "integration"}
    named, missing = 0, []
    current = None
    named_tests = r"`(?:([ui])/((?:\w+/)*test_\w+\.py))?(::test_\w+)?`"
    for layer, file, test in re.findall(named_tests, table):
        if file:
            current = layers[layer] / file
        if not (file or test):
            continue
        named += 1
        if current is None or not current.exists():
            missing.append(str(current))
        elif test and f"def {test[2:]}(" not in current.read_text():
            missing.append(f"{current.name}{test}")
    assert named >= 30
    assert missing == []


def test_the_anonymous_rule_is_in_the_reference_where_declared():
    md = events_markdown(registry)
    doc = asyncapi_document(registry)
    rule = "- anonymous users: not allowed (`forbidden`)"
    for name, spec in registry.events.items():
        section = md.split(f"#### `{name}` (client → server)", 1)[1].split("####", 1)[0]
        assert (rule in section) is (not spec.allow_anonymous), name
        message = doc["components"]["messages"][name.replace(":", "_")]
        assert message["x-allow-anonymous"] is spec.allow_anonymous
    assert not registry.events["notifications:counts"].allow_anonymous


def test_the_typescript_event_map_names_every_event_with_its_types():
    ts = typescript_events(asyncapi_document(registry))
    client = ts.split("export interface ClientEvents {", 1)[1].split("}\n", 1)[0]
    server = ts.split("export interface ServerEvents {", 1)[1].split("}\n", 1)[0]
    for name in registry.events:
        assert f'"{name}": {{ payload: ' in client, name
    for name in registry.server_events:
        assert f'"{name}": ' in server, name
    assert '"chat:send": { payload: SendPayload; reply: SendReply };' in client
    assert '"whoami": { payload: EmptyPayload; reply: WhoAmIReply };' in client
    assert "export type SubscribeReply = {" in ts and "  recovered: boolean;" in ts


def test_json_schema_becomes_the_typescript_type_it_means():
    assert ts_type({"anyOf": [{"type": "integer"}, {"type": "null"}]}) == "number | null"
    assert ts_type({"const": "fanout_restored"}) == '"fanout_restored"'
    assert ts_type({"enum": ["a", "b"]}) == '"a" | "b"'
    assert ts_type({"type": "array", "items": {"$ref": "#/components/schemas/Room"}}) == (
        "Array<Room>")
    assert ts_type({"type": "object", "patternProperties": {"^x$": {"type": "boolean"}}}) == (
        "{ [key: string]: boolean }")
    assert ts_type({"type": "object", "properties": {"a-b": {"type": "string"}},
                    "required": ["a-b"], "additionalProperties": False}) == (
        '{\n  "a-b": string;\n}')
    assert ts_type({"title": "Data"}) == "unknown"  # any JSON
    assert ts_type({"$ref": "https://elsewhere/x"}) == "unknown"
