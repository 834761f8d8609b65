"""The page around the panels, as a person meets it: the app shell at phone and desktop width,
the bell panel, the connection banner, the live panel's numbering and the empty states.

Each test leaves screenshots of the screens it visits under ``test-artifacts/e2e/``
(``shell-<screen>-desktop.png`` / ``shell-<screen>-phone.png``).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS, Browsers, ServerProcess, expect, feature_available
from tests.e2e.test_web_client import CONNECTION_REFUSED, create_room, needs_chat, send

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

needs_notifications = pytest.mark.skipif(
    not feature_available("notifications:list"),
    reason="the notifications feature is not on this branch")

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def context(browsers: Browsers, viewport: dict[str, int]) -> Any:
    ctx = browsers.browser.new_context(viewport=viewport)
    ctx.set_default_timeout(10_000)
    browsers.contexts.append(ctx)
    return ctx


def shot(page: Any, screen: str) -> None:
    width = page.viewport_size["width"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    size = "phone" if width < 600 else "desktop"
    page.screenshot(path=str(ARTIFACTS / f"shell-{screen}-{size}.png"))


def scroll_size(page: Any) -> dict[str, int]:
    return page.evaluate("""() => ({
        width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
        innerWidth: innerWidth, innerHeight: innerHeight})""")


def inside_viewport(page: Any, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return (box is not None and box["x"] >= 0 and box["y"] >= 0
            and box["x"] + box["width"] <= size["width"]
            and box["y"] + box["height"] <= size["height"])


def focused_id(page: Any) -> str:
    return page.evaluate("() => document.activeElement && document.activeElement.id")


@needs_chat
@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_page_fits_the_screen_with_the_composer_in_view(
        browsers: Browsers, server: ServerProcess, viewport: dict[str, int]) -> None:
    page = browsers.sign_in("alice", ctx=context(browsers, viewport))
    phone = viewport is PHONE
    expect(page.locator("#panel-tabs")).to_be_visible() if phone else expect(
        page.locator("#panel-tabs")).to_be_hidden()
    if phone:
        page.get_by_role("button", name="Rooms", exact=True).click()
        shot(page, "rooms")
    room_id = create_room(page, "standup")
    for i in range(39):  # more messages than the screen holds: the list scrolls, not the page
        assert server.api("POST", f"/api/v1/chat/rooms/{room_id}/messages",
                          {"text": f"line {i}"})["ok"]
    send(page, "and mine")
    expect(page.locator("#messages li.message")).to_have_count(40)
    size = scroll_size(page)
    assert size["width"] <= size["innerWidth"], size
    assert size["height"] <= size["innerHeight"], size
    assert inside_viewport(page, "#composer-text")
    assert inside_viewport(page, "#composer-send")
    shot(page, "chat")
    if phone:
        for view, screen in (("People & live", "side"), ("Document", "doc")):
            page.get_by_role("button", name=view, exact=True).click()
            size = scroll_size(page)
            assert size["width"] <= size["innerWidth"] and size["height"] <= size["innerHeight"]
            shot(page, screen)
        page.get_by_role("button", name="Chat", exact=True).click()
    if feature_available("notifications:list"):  # a long list scrolls inside the panel
        for i in range(12):
            assert server.api("POST", "/api/v1/notifications", {
                "user_id": "alice", "title": f"Build {i} finished", "body": "all green"})["ok"]
        expect(page.locator("#bell-badge")).to_have_text("12")
    page.click("#bell")
    expect(page.locator("#notif-panel")).to_be_visible()
    if feature_available("notifications:list"):
        expect(page.locator("#notif-list li.notif")).to_have_count(12)
    assert inside_viewport(page, "#notif-panel")
    shot(page, "bell")


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_events_page_does_not_scroll_sideways(
        browsers: Browsers, viewport: dict[str, int]) -> None:
    page = browsers.open(context(browsers, viewport), "/docs/events")
    expect(page.locator("h1")).to_be_visible()
    size = scroll_size(page)
    assert size["width"] <= size["innerWidth"], size
    shot(page, "events")
    page.close()  # too tall for the fixture's full-page screenshot


@needs_notifications
def test_the_bell_panel_closes_on_escape_and_outside_click_and_gives_focus_back(
        browsers: Browsers, server: ServerProcess) -> None:
    page = browsers.sign_in("dora")
    page.click("#bell")
    expect(page.locator("#notif-panel")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#notif-panel")).to_be_hidden()
    assert focused_id(page) == "bell"
    expect(page.locator("#bell")).to_have_attribute("aria-expanded", "false")

    page.click("#bell")
    expect(page.locator("#notif-panel")).to_be_visible()
    page.click("#presence-title")  # nothing there to focus
    expect(page.locator("#notif-panel")).to_be_hidden()
    assert focused_id(page) == "bell"


@needs_notifications
def test_opening_the_bell_marks_items_seen_in_every_tab(
        browsers: Browsers, server: ServerProcess) -> None:
    first = browsers.sign_in("dora")
    second = browsers.open(first.context)
    expect(second.locator("#conn-state")).to_have_text("connected")
    for title in ("Build 41 finished", "Build 42 finished"):
        assert server.api("POST", "/api/v1/notifications",
                          {"user_id": "dora", "title": title})["ok"]
    expect(first.locator("#bell-badge")).to_have_text("2")
    first.click("#bell")
    expect(first.locator("#notif-list li.notif")).to_have_count(2)
    for page in (first, second):
        expect(page.locator("#bell-badge")).to_be_hidden()
    # seen is not read: both stay unread until opened or marked
    expect(first.locator("#notif-list li.unread")).to_have_count(2)


@needs_notifications
def test_notifications_show_relative_times_and_unread_all_archived_tabs(
        browsers: Browsers, server: ServerProcess) -> None:
    page = browsers.sign_in("dora")
    for title in ("old news", "fresh news", "put away"):
        assert server.api("POST", "/api/v1/notifications",
                          {"user_id": "dora", "title": title})["ok"]
    page.click("#bell")
    expect(page.locator("#notif-list li.notif")).to_have_count(3)
    time = page.locator("#notif-list li", has_text="fresh news").locator("time")
    expect(time).to_have_text("just now")
    assert time.get_attribute("title")  # the full date and time on hover
    assert time.get_attribute("datetime")

    page.locator("#notif-list li", has_text="old news").get_by_role(
        "button", name="Mark read").click()
    page.locator("#notif-list li", has_text="put away").get_by_role(
        "button", name="Archive").click()
    expect(page.locator("#notif-list li.notif")).to_have_count(2)

    page.get_by_role("tab", name="Unread").click()
    expect(page.locator("#notif-list li.notif")).to_have_count(1)
    expect(page.locator("#notif-list li.notif")).to_contain_text("fresh news")
    page.get_by_role("tab", name="Archived").click()
    expect(page.locator("#notif-list li.notif")).to_have_count(1)
    expect(page.locator("#notif-list li.notif")).to_contain_text("put away")
    page.locator("#notif-list li").get_by_role("button", name="Restore").click()
    expect(page.locator("#notif-list li.notif")).to_have_count(0)
    expect(page.locator("#notif-empty")).to_contain_text("Nothing archived")
    page.get_by_role("tab", name="All").click()
    expect(page.locator("#notif-list li.notif")).to_have_count(3)
    shot(page, "bell-tabs")


@needs_notifications
def test_a_click_on_a_notification_leads_to_its_room_or_page(
        browsers: Browsers, server: ServerProcess) -> None:
    page = browsers.sign_in("dora")
    assert server.api("POST", "/api/v1/notifications", {
        "user_id": "dora", "title": "You were mentioned", "data": {"room_id": "r-42"}})["ok"]
    page.click("#bell")
    item = page.locator("#notif-list li", has_text="You were mentioned")
    item.get_by_role("button", name="Open: You were mentioned").click()  # its accessible name
    page.wait_for_function("() => location.hash === '#room=r-42'")
    expect(page.locator("#notif-panel")).to_be_hidden()
    expect(page.locator("#bell-badge")).to_be_hidden()

    assert server.api("POST", "/api/v1/notifications", {
        "user_id": "dora", "title": "Read the reference", "action_url": "/docs/events"})["ok"]
    page.click("#bell")
    page.get_by_role("button", name="Open: Read the reference").click()
    page.wait_for_url("**/docs/events")
    # the item was marked read before leaving
    back = browsers.open(page.context)
    back.click("#bell")
    expect(back.locator("#notif-list li.unread", has_text="Read the reference")).to_have_count(0)


@needs_chat
@needs_notifications
def test_a_direct_message_notification_names_its_sender_and_opens_the_conversation(
        browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    alice.fill("#dm-user", "bob")
    alice.click("#dm-form button[type=submit]")
    send(alice, "are you there?")
    expect(bob.locator("#bell-badge")).to_have_text("1")
    bob.click("#bell")
    item = bob.locator("#notif-list li", has_text="alice sent you a message")
    expect(item).to_contain_text("Direct message")
    expect(item).to_contain_text("are you there?")
    item.get_by_role("button", name="Open: Direct message alice sent you a message").click()
    bob.wait_for_function("() => location.hash.startsWith('#room=')")
    shot(bob, "dm-opened")


def test_the_banner_shows_the_connection_state_and_retries(
        browsers: Browsers, server: ServerProcess) -> None:
    page = browsers.sign_in("alice")
    browsers.tolerate(page, CONNECTION_REFUSED)
    banner = page.locator("#conn-banner")
    expect(banner).to_be_hidden()
    server.stop()
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Reconnecting")
    expect(page.get_by_role("button", name="Retry now")).to_be_visible()
    shot(page, "reconnecting")
    page.context.set_offline(True)
    expect(banner).to_contain_text("Offline")
    shot(page, "offline")
    server.start()
    page.context.set_offline(False)
    page.get_by_role("button", name="Retry now").click()
    expect(page.locator("#conn-state")).to_have_text("connected", timeout=15_000)
    expect(banner).to_be_hidden()


def test_the_live_panel_does_not_renumber_after_a_server_restart(
        browsers: Browsers, server: ServerProcess) -> None:
    """The in-memory broker loses its history at a restart: the stream starts again at
    offset 1 in a new epoch, which the panel must not show as the same #1 again."""
    server.stop()
    server.env.pop("DIHYA_RT_REDIS_URL")
    server.start()
    page = browsers.sign_in("alice")
    browsers.tolerate(page, CONNECTION_REFUSED)
    for text in ("first", "second"):
        assert server.api("POST", "/api/v1/publish",
                          {"channel": "live:demo", "data": {"text": text}})["ok"]
    rows = page.locator("#live-list li[data-offset]")
    expect(rows).to_have_count(2)
    server.stop()
    expect(page.locator("#conn-state")).to_have_text("reconnecting")
    server.start()
    expect(page.locator("#conn-state")).to_have_text("connected", timeout=15_000)
    assert server.api("POST", "/api/v1/publish",
                      {"channel": "live:demo", "data": {"text": "after the restart"}})["ok"]
    expect(rows).to_have_count(3)
    keys = [(rows.nth(i).get_attribute("data-epoch"), rows.nth(i).get_attribute("data-offset"))
            for i in range(3)]
    assert len(set(keys)) == 3, keys
    expect(page.locator("#live-list li.epoch-break")).to_have_count(1)
    expect(page.locator("#live-list li.epoch-break")).to_contain_text("history restarted")
    shot(page, "live-restart")


def test_empty_states_guide_a_new_user(browsers: Browsers) -> None:
    page = browsers.sign_in("newcomer")
    expect(page.locator("#live-empty")).to_be_visible()
    if feature_available("chat:send"):
        expect(page.locator("#room-list")).to_contain_text("No rooms yet")
    if feature_available("notifications:list"):
        page.click("#bell")
        expect(page.locator("#notif-empty")).to_be_visible()
        expect(page.locator("#notif-empty")).to_contain_text("No notifications yet")
    shot(page, "empty")


CONTRAST = r"""() => {
  const lum = (css) => {
    const [r, g, b] = css.match(/[\d.]+/g).slice(0, 3).map(Number).map((v) => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const bgOf = (el) => {
    for (let e = el.parentElement; e; e = e.parentElement) {
      const bg = getComputedStyle(e).backgroundColor;
      if (bg && !bg.startsWith("rgba(0, 0, 0, 0)") && bg !== "transparent") return bg;
    }
    return "rgb(255, 255, 255)";
  };
  const low = [];
  for (const el of document.querySelectorAll("input:not([type=checkbox]), textarea, button")) {
    if (!el.offsetParent) continue;
    const style = getComputedStyle(el);
    if (style.borderTopStyle === "none" || parseFloat(style.borderTopWidth) === 0) continue;
    if (/rgba\(.*, 0\)$/.test(style.borderTopColor)) continue; // no border drawn
    const a = lum(style.borderTopColor), b = lum(bgOf(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 3) low.push(`${el.id || el.textContent.trim().slice(0, 20)}: ${ratio.toFixed(2)}`);
  }
  return low;
}"""


def test_control_borders_have_at_least_3_to_1_contrast(browsers: Browsers) -> None:
    page = browsers.sign_in("alice")
    assert page.evaluate(CONTRAST) == []
