"""The events reference and the AsyncAPI document are generated, and must be current."""

from __future__ import annotations

from pathlib import Path

import dihya_realtime.events  # noqa: F401 - declares every event
from dihya_realtime.docs import asyncapi_document, events_markdown, write_docs
from dihya_realtime.registry import registry

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
    assert (tmp_path / "docs" / "events.md").read_text() == "old"  # check never writes
