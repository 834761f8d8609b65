"""Reactions as people use them, in Chromium against a real server: who reacted (a tooltip
from ``chat:reactors``), the emoji picker for reactions and for the composer (search, arrow
keys, Escape, inside a phone's screen). Screenshots land in ``test-artifacts/e2e/``."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import Browsers, expect, feature_available
from tests.e2e.test_chat_ux import join, message, shot
from tests.e2e.test_shell_ux import PHONE, context, inside_viewport
from tests.e2e.test_web_client import create_room, send

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90),
              pytest.mark.skipif(not feature_available("chat:reactors"),
                                 reason="chat:reactors is not on this branch")]


def tooltip(page: Any) -> Any:
    return page.get_by_role("tooltip")


def test_hovering_or_focusing_a_reaction_shows_who_reacted(browsers: Browsers) -> None:
    alice, bob, carol = (browsers.sign_in(u) for u in ("alice", "bob", "carol"))
    room_id = create_room(alice, "votes")
    join(bob, room_id, "votes")
    join(carol, room_id, "votes")
    send(alice, "ship on friday?")
    for page in (bob, carol):
        message(page, "ship on friday?").get_by_role("button", name="React 👍").click()
    chip = message(alice, "ship on friday?").get_by_role("button", name="React 👍, 2")
    expect(chip).to_be_visible()

    chip.hover()
    expect(tooltip(alice)).to_have_text("👍 bob and carol")
    expect(chip).to_have_attribute("aria-describedby", "reactors-tip")
    shot(alice, "who-reacted")
    alice.mouse.move(5, 5)
    expect(tooltip(alice)).to_have_count(0)

    chip.click()  # alice adds hers: the answer she saw is stale, she is asked for again
    chip = message(alice, "ship on friday?").get_by_role("button", name="React 👍, 3")
    chip.focus()
    expect(tooltip(alice)).to_have_text("👍 You, bob and carol")
    message(carol, "ship on friday?").get_by_role("button", name="React 👍, 3").click()
    chip = message(alice, "ship on friday?").get_by_role("button", name="React 👍, 2")
    chip.focus()
    expect(tooltip(alice)).to_have_text("👍 You and bob")


def test_the_emoji_picker_finds_by_name_and_reacts(browsers: Browsers) -> None:
    alice, bob = browsers.sign_in("alice"), browsers.sign_in("bob")
    room_id = create_room(alice, "launch")
    join(bob, room_id, "launch")
    send(alice, "deploying now")
    opener = message(bob, "deploying now").get_by_role("button", name="Add a reaction")
    opener.click()
    picker = bob.get_by_role("dialog", name=re.compile("Add a reaction to"))
    expect(picker).to_be_visible()
    expect(opener).to_have_attribute("aria-expanded", "true")
    search = picker.get_by_role("searchbox", name="Search emoji")
    expect(search).to_be_focused()
    assert picker.locator("button.emoji").count() > 60  # every group, not the five quick ones
    shot(bob, "emoji-picker")
    search.fill("rocket")
    expect(picker.locator("button.emoji")).to_have_text(["🚀"])
    search.press("Enter")  # Enter takes the first match
    expect(picker).to_have_count(0)
    rocket = message(alice, "deploying now").get_by_role("button", name="React 🚀, 1")
    expect(rocket).to_be_visible()

    opener = message(bob, "deploying now").get_by_role("button", name="Add a reaction")
    opener.click()
    bob.get_by_role("searchbox", name="Search emoji").fill("no such emoji")
    expect(bob.get_by_role("dialog")).to_contain_text("No emoji for")
    bob.keyboard.press("Escape")
    expect(bob.get_by_role("dialog")).to_have_count(0)
    expect(opener).to_be_focused()  # Escape gives focus back to its button


def test_the_picker_is_driven_by_arrow_keys_and_closes_on_an_outside_click(
        browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    create_room(alice, "keys")
    send(alice, "pick with keys")
    message(alice, "pick with keys").get_by_role("button", name="Add a reaction").click()
    picker = alice.get_by_role("dialog")
    alice.keyboard.press("ArrowDown")  # from the search into the grid: its first emoji
    first = picker.locator("button.emoji").nth(0)
    expect(first).to_be_focused()
    alice.keyboard.press("ArrowRight")
    alice.keyboard.press("ArrowDown")  # one row down: 8 emoji per row
    ninth_plus_one = picker.locator("button.emoji").nth(9)
    expect(ninth_plus_one).to_be_focused()
    chosen = ninth_plus_one.get_attribute("data-emoji")
    alice.keyboard.press("Enter")
    expect(message(alice, "pick with keys").get_by_role(
        "button", name=f"React {chosen}, 1")).to_have_attribute("aria-pressed", "true")

    message(alice, "pick with keys").get_by_role("button", name="Add a reaction").click()
    expect(alice.get_by_role("dialog")).to_be_visible()
    alice.locator("#chat-title").click()
    expect(alice.get_by_role("dialog")).to_have_count(0)


def test_the_composer_emoji_goes_in_at_the_caret(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    create_room(alice, "composer-emoji")
    composer = alice.locator("#composer-text")
    composer.fill("we shipped it")
    composer.evaluate("(el) => el.setSelectionRange(3, 3)")  # after "we "
    alice.get_by_role("button", name="Insert an emoji").click()
    alice.get_by_role("searchbox", name="Search emoji").fill("tada")
    alice.get_by_role("dialog").locator("button.emoji", has_text="🎉").click()
    expect(composer).to_have_value("we 🎉shipped it")
    expect(composer).to_be_focused()
    composer.press("Enter")
    expect(message(alice, "we 🎉shipped it")).to_have_count(1)


def test_on_a_phone_the_picker_and_the_tooltip_stay_on_screen(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice", ctx=context(browsers, PHONE))
    bob = browsers.sign_in("bob")
    room_id = create_room(bob, "phone-reacts")
    send(bob, "tap to react")
    alice.get_by_role("button", name="Rooms", exact=True).click()
    join(alice, room_id, "phone-reacts")
    item = message(alice, "tap to react")
    item.click()  # a tap shows the message's actions
    item.get_by_role("button", name="Add a reaction").click()
    expect(alice.get_by_role("dialog")).to_be_visible()
    assert inside_viewport(alice, ".emoji-picker")
    shot(alice, "emoji-picker-phone")
    alice.get_by_role("dialog").locator("button.emoji", has_text="🎉").click()
    chip = item.get_by_role("button", name="React 🎉, 1")
    chip.focus()
    expect(tooltip(alice)).to_have_text("🎉 You")
    assert inside_viewport(alice, ".reactors-tip")



def test_a_tooltip_does_not_outlive_its_reaction_when_the_message_is_deleted(
        browsers: Browsers) -> None:
    alice, bob = browsers.sign_in("alice"), browsers.sign_in("bob")
    room_id = create_room(alice, "redrawn")
    join(bob, room_id, "redrawn")
    send(bob, "hover me")
    message(bob, "hover me").get_by_role("button", name="React 👀").click()
    message(alice, "hover me").get_by_role("button", name="React 👀, 1").hover()
    expect(tooltip(alice)).to_have_text("👀 bob")
    message(bob, "hover me").get_by_role("button", name="Delete").click()
    bob.get_by_role("button", name="Confirm delete").click()
    expect(alice.locator("#messages li.message", has_text="message deleted")).to_have_count(1)
    expect(tooltip(alice)).to_have_count(0)  # not left floating by a reaction that is gone
