"""``/docs/events`` as a developer reads it: code blocks with a copy button, no leftover
reStructuredText, nested types defined and linked, each event's error codes and limits, a
sidebar with search, and a JavaScript and a Python snippet per event that are valid code."""

from __future__ import annotations

import ast
from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS, Browsers, expect, feature_available

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

needs_chat = pytest.mark.skipif(not feature_available("chat:send"),
                                reason="the chat feature is not on this branch")


@pytest.fixture(autouse=True)
def close_pages(browsers: Browsers) -> Any:
    """The page is tens of thousands of pixels tall: too tall for the fixture's full-page
    screenshot, so each test takes its own and closes its pages (errors are still checked)."""
    yield
    for watched in browsers.pages:
        if not watched.page.is_closed():
            watched.page.close()


def open_page(browsers: Browsers, **options: Any) -> Any:
    ctx = browsers.browser.new_context(viewport={"width": 1280, "height": 860}, **options)
    ctx.set_default_timeout(10_000)
    browsers.contexts.append(ctx)
    return browsers.open(ctx, "/docs/events")


def test_no_restructuredtext_is_left_on_the_page(browsers: Browsers) -> None:
    page = open_page(browsers)
    text = page.locator("main").inner_text()
    assert "``" not in text
    assert "example::" not in text
    # a docstring's "Reply example::" block is a code block now
    block = page.locator("#ev-notifications_list .code-block pre", has_text='"next_cursor"')
    expect(block).to_have_count(1)
    expect(page.locator("#ev-notifications_list")).to_contain_text("Reply example:")
    # double-backtick spans are inline code
    expect(page.locator("#ev-notifications_list p code", has_text="archived").first).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "events-desktop.png"))


def test_a_code_block_copies_its_text(browsers: Browsers) -> None:
    page = open_page(browsers, permissions=["clipboard-read", "clipboard-write"])
    article = page.locator("#ev-subscribe")
    block = article.locator(".snippets .code-block").first
    block.get_by_role("button", name="Copy").click()
    expect(block.get_by_role("button")).to_have_text("Copied")
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert 'rt.call("subscribe", {' in copied
    assert copied == block.locator("code").inner_text()


def test_nested_types_are_defined_and_every_type_link_lands(browsers: Browsers) -> None:
    page = open_page(browsers)
    targets = page.eval_on_selector_all("a[href^='#t-']", "els => els.map(a => a.hash)")
    assert len(targets) > 10
    missing = [t for t in set(targets) if page.locator(t).count() != 1]
    assert missing == []
    # a nested type (a field's type, not a payload) has its own definition
    expect(page.locator("#types article.type")).not_to_have_count(0)


@needs_chat
def test_each_client_event_states_its_errors_and_limits(browsers: Browsers) -> None:
    page = open_page(browsers)
    send = page.locator("#ev-chat_send")
    expect(send.locator(".facts")).to_contain_text("Rate limit")
    expect(send.locator(".facts")).to_contain_text("calls/s")
    expect(send.locator(".facts")).to_contain_text("65536 bytes")
    expect(send.locator("table").first).to_contain_text("chars")  # the text's bound
    send.locator(".errors summary").click()
    for code in ("forbidden", "invalid_payload", "rate_limited"):
        expect(send.locator(".errors li", has_text=code)).to_have_count(1)
    for article in page.locator("article.event[data-event]").all():
        if "client → server" in article.locator(".dir").inner_text():
            expect(article.locator(".errors")).to_have_count(1)


def test_every_event_has_a_valid_javascript_and_python_snippet(browsers: Browsers) -> None:
    page = open_page(browsers)
    articles = page.locator("article.event[data-event]").all()
    assert len(articles) > 20
    for article in articles:
        name = article.get_attribute("data-event")
        js = article.locator("code.lang-js").inner_text()
        python = article.locator("code.lang-python").inner_text()
        assert f'"{name}"' in js and f'"{name}"' in python
        ast.parse(python)
        syntax = page.evaluate("""(code) => {
            const body = code.replace(/^import .*$/m, "");
            try { new (Object.getPrototypeOf(async function () {}).constructor)(body); return ""; }
            catch (err) { return String(err); }
        }""", js)
        assert syntax == "", (name, syntax, js)
    subscribe = page.locator("#ev-subscribe")
    expect(subscribe.locator("code.lang-js")).to_contain_text('await rt.call("subscribe", {')
    expect(subscribe.locator("code.lang-python")).to_contain_text(
        "from dihya_realtime.client import Client")


def test_the_sidebar_search_narrows_the_events(browsers: Browsers) -> None:
    page = open_page(browsers)
    nav = page.get_by_role("navigation", name="Events")
    expect(nav.locator("li[data-event='subscribe']")).to_be_visible()
    page.fill("#event-search", "mark_read")
    expect(page.locator("#ev-subscribe")).to_be_hidden()
    expect(nav.locator("li[data-event='subscribe']")).to_be_hidden()
    if feature_available("notifications:mark_read"):
        expect(page.locator("#ev-notifications_mark_read")).to_be_visible()
        expect(nav.locator("li[data-event='notifications:mark_read']")).to_be_visible()
    expect(page.locator("#event-search-count")).to_contain_text("of")
    page.fill("#event-search", "no such event at all")
    expect(page.locator("#search-empty")).to_be_visible()
    page.fill("#event-search", "")
    expect(page.locator("#ev-subscribe")).to_be_visible()
