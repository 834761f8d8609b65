"""The events page's rendering of docstrings and schemas (``demo/events_page.py``)."""

from __future__ import annotations

import ast

from dihya_realtime.demo.events_page import (
    doc_html,
    error_codes,
    example_payload,
    limits_of,
    snippets,
    type_html,
)


def test_a_literal_block_becomes_a_code_block_and_its_colons_one() -> None:
    html = str(doc_html('Read one page.\n\nReply example::\n\n    {"ok": true,\n'
                        '     "data": {"items": []}}\n\nAfter the block.'))
    assert "Reply example:</p>" in html and "example::" not in html
    assert ('<pre tabindex="0"><code class="lang-json">{"ok": true,\n "data": {"items": []}}'
            '</code></pre>') in html
    assert html.endswith("<p>After the block.</p>")


def test_double_backticks_roles_and_lists_are_rendered_not_left_as_text() -> None:
    html = str(doc_html("Uses ``since`` and :class:`Client`.\n\n- one ``a``\n- two\n  more"))
    assert "``" not in html and ":class:" not in html
    assert "<code>since</code>" in html and "<code>Client</code>" in html
    assert "<ul><li>one <code>a</code></li><li>two more</li></ul>" in html


def test_a_docstring_is_escaped() -> None:
    assert "&lt;script&gt;" in str(doc_html("A <script> in ``<b>``"))


def test_field_bounds_read_as_words() -> None:
    assert limits_of({"type": "string", "minLength": 1, "maxLength": 80}) == "1–80 chars"
    assert limits_of({"type": "array", "maxItems": 50}) == "≤ 50 items"
    assert limits_of({"anyOf": [{"type": "integer", "minimum": 1, "maximum": 50},
                                {"type": "null"}]}) == "1 ≤ n ≤ 50"
    assert limits_of({"type": "integer", "minimum": 0, "maximum": 2**62}) == "0 ≤ n"


def test_a_named_type_links_to_its_definition() -> None:
    html = str(type_html({"type": "array", "items": {"$ref": "#/components/schemas/Pub"}}))
    assert html == 'list[<a href="#t-Pub"><code>Pub</code></a>]'


def test_an_example_payload_fills_required_fields_and_examples() -> None:
    schema = {"required": ["room_id", "n"], "properties": {
        "room_id": {"type": "string"}, "n": {"type": "integer"},
        "text": {"type": "string", "examples": ["hi"]}, "skipped": {"type": "string"}}}
    assert example_payload(schema, {}) == {"room_id": "…", "n": 1, "text": "hi"}


def test_snippets_are_valid_python_and_name_the_event() -> None:
    code = snippets("chat:send", True, {"room_id": "…", "ok": True, "x": None})
    ast.parse(code["python"])
    assert 'client.call("chat:send", {' in code["python"]
    assert 'await rt.call("chat:send", {"room_id": "…", "ok": true, "x": null})' in code["js"]


def test_error_codes_follow_the_event_checks_and_its_text() -> None:
    codes = [e["code"] for e in error_codes("Not a member → ``not_found``.", "chat:write",
                                            False, True)]
    assert codes[:4] == ["unauthenticated", "forbidden", "invalid_payload", "not_found"]
    assert "rate_limited" in codes and "conflict" not in codes


def test_the_docstring_payload_example_is_the_snippet_payload() -> None:
    from dihya_realtime.demo.events_page import documented_payload

    block = ('Send one.\n\nPayload example::\n\n    {"room_id": "r1", "text": "hi",\n'
             '     "mentions": []}\n\nThen more.')
    assert documented_payload(block) == {"room_id": "r1", "text": "hi", "mentions": []}
    two = 'Payload example::\n\n    {"status": "unread"}\n    {"before": "x"}\n'
    assert documented_payload(two) == {"status": "unread"}
    inline = 'Payload example: ``{"channel": "c", "limit": 50}`` (the latest 50).'
    assert documented_payload(inline) == {"channel": "c", "limit": 50}
    assert documented_payload("Payload: none.") is None
