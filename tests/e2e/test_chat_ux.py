"""The demo's chat as two people use it, side by side in Chromium against a real server.

Each test is one thing a person got stuck on (issue 18): reactions after a reload, keystrokes
after Enter, sending offline or too fast, rooms others create, private rooms, a URL per room,
reading in one tab, and the message list's everyday comforts. Screenshots land in
``test-artifacts/e2e/``.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import ARTIFACTS, Browsers, ServerProcess, expect, feature_available
from tests.e2e.test_web_client import CONNECTION_REFUSED, create_room, send

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90),
              pytest.mark.skipif(not feature_available("chat:send"),
                                 reason="the chat feature is not on this branch")]


def join(page, room_id: str, name: str) -> None:
    page.fill("#join-room-id", room_id)
    page.click("#join-room button[type=submit]")
    expect(page.locator("#chat-title")).to_have_text(f"# {name}")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"chat-{name}.png"))


def message(page, text: str):
    return page.locator("#messages li.message", has_text=text)


def test_my_reaction_is_remembered_after_a_reload_so_a_click_takes_it_back(
        browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "reactions")
    join(bob, room_id, "reactions")
    send(alice, "ship it")
    message(bob, "ship it").get_by_role("button", name="React 🎉").click()
    expect(message(alice, "ship it").get_by_role("button", name="React 🎉, 1")).to_be_visible()

    bob.reload()
    expect(bob.locator("#chat-title")).to_have_text("# reactions")  # the URL kept the room
    chip = message(bob, "ship it").get_by_role("button", name="React 🎉, 1")
    expect(chip).to_have_attribute("aria-pressed", "true")
    chip.click()  # mine: the click takes it back (it used to add nothing)
    expect(message(alice, "ship it").locator(".reactions")).to_have_count(0)
    expect(message(bob, "ship it").locator(".reactions")).to_have_count(0)
    shot(bob, "reaction-after-reload")


def test_typing_right_after_enter_is_kept_and_the_message_shows_pending_at_once(
        browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    create_room(alice, "fast-typist")
    # the server's reply to a send takes half a second, as on a slow network
    alice.evaluate("""() => {
        const conn = window.dihya.conn, call = conn.call.bind(conn);
        conn.call = async (event, payload) => {
            const reply = await call(event, payload);
            if (event === "chat:send") await new Promise((r) => setTimeout(r, 500));
            return reply;
        };
    }""")
    alice.fill("#composer-text", "first")
    alice.press("#composer-text", "Enter")
    expect(alice.locator("#composer-text")).to_have_value("")
    expect(alice.locator("#messages li.pending", has_text="first")).to_contain_text("Sending")
    alice.keyboard.type("second thought")
    expect(message(alice, "first")).to_have_count(1)
    expect(alice.locator("#messages li.pending")).to_have_count(0)
    expect(alice.locator("#composer-text")).to_have_value("second thought")


def test_sends_made_offline_wait_and_go_out_once_on_reconnect(
        browsers: Browsers, server: ServerProcess) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    browsers.tolerate(alice, CONNECTION_REFUSED)
    browsers.tolerate(bob, CONNECTION_REFUSED)
    room_id = create_room(alice, "outage")
    join(bob, room_id, "outage")
    send(alice, "before")

    server.stop()
    expect(alice.locator("#conn-state")).to_have_text("reconnecting")
    expect(alice.locator("#composer-text")).to_be_enabled()  # usable: sends are queued
    for text in ("one offline", "two offline"):
        alice.fill("#composer-text", text)
        alice.press("#composer-text", "Enter")
    expect(alice.locator("#messages li.pending.waiting")).to_have_count(2)
    expect(alice.locator("#composer-status")).to_contain_text("Offline")
    expect(alice.locator("#composer-status")).to_contain_text("2 messages waiting")
    shot(alice, "offline-queued")

    server.start()
    expect(alice.locator("#conn-state")).to_have_text("connected", timeout=20_000)
    for page in (alice, bob):
        expect(page.locator("#messages li.message .text")).to_have_text(
            ["before", "one offline", "two offline"], timeout=15_000)
    expect(alice.locator("#messages li.pending")).to_have_count(0)
    expect(alice.locator("#composer-status")).to_have_text("")


def test_a_send_confirmed_by_its_push_or_left_unsent_by_a_reload_appears_once(
        browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "lost-acks")
    join(bob, room_id, "lost-acks")
    wrap = """(send) => {
        const conn = window.dihya.conn, call = conn.call.bind(conn);
        conn.call = (event, payload) => event !== "chat:send" ? call(event, payload)
            : (send && call(event, payload), new Promise(() => {}));
    }"""
    queued = "() => sessionStorage.getItem('dihya-chat-outbox:alice')"
    # the send reaches the server but its reply never comes: the push confirms it
    alice.evaluate(wrap, True)
    alice.fill("#composer-text", "exactly once")
    alice.press("#composer-text", "Enter")
    expect(message(bob, "exactly once")).to_have_count(1)
    expect(message(alice, "exactly once")).to_have_count(1)
    expect(alice.locator("#messages li.pending")).to_have_count(0)
    assert alice.evaluate(queued) is None

    # the send never leaves the page: the queue survives a reload and goes out then
    alice.reload()
    expect(alice.locator("#chat-title")).to_have_text("# lost-acks")
    alice.evaluate(wrap, False)
    alice.fill("#composer-text", "survives a reload")
    alice.press("#composer-text", "Enter")
    expect(alice.locator("#messages li.pending", has_text="survives a reload")).to_be_visible()
    assert "survives a reload" in alice.evaluate(queued)
    alice.reload()
    for page in (alice, bob):
        expect(page.locator("#messages li.message .text")).to_have_text(
            ["exactly once", "survives a reload"])
    expect(alice.locator("#messages li.pending")).to_have_count(0)
    assert alice.evaluate(queued) is None


def test_a_refused_send_shows_failed_with_retry_that_resends_it_once(
        browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "moderated")
    join(bob, room_id, "moderated")
    mute = """([room, until]) => window.dihya.conn.call("chat:mute",
        {room_id: room, user_id: "bob", until})"""
    assert alice.evaluate(mute, [room_id, "2099-01-01T00:00:00Z"])["ok"]
    bob.fill("#composer-text", "let me speak")
    bob.press("#composer-text", "Enter")
    failed = bob.locator("#messages li.pending.failed", has_text="let me speak")
    expect(failed).to_contain_text("forbidden")
    expect(bob.locator("#composer-status")).to_contain_text("1 message not sent")
    shot(bob, "send-failed")

    assert alice.evaluate(mute, [room_id, None])["ok"]
    failed.get_by_role("button", name="Retry").click()
    expect(message(alice, "let me speak")).to_have_count(1)
    expect(message(bob, "let me speak")).to_have_count(1)
    expect(bob.locator("#messages li.pending")).to_have_count(0)


def test_26_quick_sends_all_arrive_in_order_despite_the_rate_limit(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "burst")
    join(bob, room_id, "burst")
    alice.evaluate("""() => {
        const input = document.getElementById("composer-text");
        const form = document.getElementById("composer");
        for (let i = 1; i <= 26; i++) { input.value = `quick ${i}`; form.requestSubmit(); }
    }""")
    wanted = [f"quick {i}" for i in range(1, 27)]
    for page in (alice, bob):
        expect(page.locator("#messages li.message .text")).to_have_text(wanted, timeout=20_000)
    expect(alice.locator("#messages li.pending")).to_have_count(0)


def test_a_new_public_room_appears_for_others_without_a_reload(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    create_room(alice, "plaza")
    create_room(alice, "hideout", private=True)
    room = bob.locator("#room-list button[data-room-name=plaza]")
    expect(room).to_contain_text("(join)")
    expect(bob.locator("#room-list button[data-room-name=hideout]")).to_have_count(0)
    room.click()
    expect(bob.locator("#chat-title")).to_have_text("# plaza")
    alice.locator("#room-list button[data-room-name=plaza]").click()
    expect(alice.locator("#presence li[data-user-id=bob]")).to_be_visible()


def test_a_private_room_invite_brings_someone_in(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "war-room", private=True)
    expect(alice.locator("#room-id")).to_have_text(room_id)
    send(alice, "welcome")
    alice.fill("#invite-user", "bob")
    alice.click("#invite-form button[type=submit]")
    expect(alice.locator("#invite-status")).to_have_text("bob was added.")
    shot(alice, "invite")
    invited = bob.locator("#room-list button[data-room-name=war-room]")
    expect(invited).to_be_visible()
    invited.click()
    expect(bob.locator("#chat-title")).to_have_text("# war-room")
    expect(message(bob, "welcome")).to_have_count(1)
    expect(bob.locator("#invite-form")).to_be_hidden()  # a plain member does not invite
    send(bob, "thanks")
    expect(message(alice, "thanks")).to_have_count(1)


def test_a_room_link_opens_the_room_and_reload_and_back_keep_the_place(
        browsers: Browsers, server: ServerProcess) -> None:
    alice = browsers.sign_in("alice")
    first = create_room(alice, "first")
    second = create_room(alice, "second")
    assert alice.url.endswith(f"#room={second}")
    alice.reload()
    expect(alice.locator("#chat-title")).to_have_text("# second")
    alice.go_back()
    expect(alice.locator("#chat-title")).to_have_text("# first")
    assert alice.url.endswith(f"#room={first}")

    bob = browsers.sign_in("bob")
    bob.goto(f"{server.url}/#room={first}")  # the shared link: bob joins and lands there
    expect(bob.locator("#chat-title")).to_have_text("# first")
    expect(bob.locator("#room-list button[data-room-name=first]")).not_to_contain_text("(join)")
    bob.fill("#join-room-id", f"{server.url}/#room={second}")  # a link pasted as an id
    bob.click("#join-room button[type=submit]")
    expect(bob.locator("#chat-title")).to_have_text("# second")
    expect(bob.locator("#join-room-id")).to_have_value("")


def test_the_first_unread_message_has_a_new_messages_divider(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "standup")
    join(bob, room_id, "standup")
    send(alice, "seen already")
    expect(message(bob, "seen already")).to_have_count(1)
    create_room(bob, "elsewhere")
    send(alice, "missed one")
    send(alice, "missed two")
    expect(bob.locator("#room-list button[data-room-name=standup] .badge")).to_have_text("2")
    bob.locator("#room-list button[data-room-name=standup]").click()
    expect(bob.locator("#chat-title")).to_have_text("# standup")
    items = bob.locator("#messages > li")
    texts = [t.strip() for t in items.all_inner_texts()]
    divider = next(i for i, t in enumerate(texts) if t == "New messages")
    assert "seen already" in texts[divider - 1] and "missed one" in texts[divider + 1], texts
    expect(bob.locator("#messages .unread-divider")).to_have_count(1)
    shot(bob, "unread-divider")


def test_reading_a_dm_in_one_tab_clears_the_other_tabs_badge_and_the_bell(
        browsers: Browsers) -> None:
    bob_one = browsers.sign_in("bob")
    bob_two = browsers.open(bob_one.context)
    expect(bob_two.locator("#conn-state")).to_have_text("connected")
    alice = browsers.sign_in("alice")
    alice.fill("#dm-user", "bobb")  # a typo: nobody by that name ever signed in
    alice.click("#dm-form button[type=submit]")
    expect(alice.locator("#rooms-error")).to_contain_text("no such user")
    alice.fill("#dm-user", "bob")
    alice.click("#dm-form button[type=submit]")
    expect(alice.locator("#chat-title")).to_have_text("@ bob")
    expect(alice.locator("#rooms-error")).to_have_text("")
    send(alice, "are you there?")
    for tab in (bob_one, bob_two):
        expect(tab.locator("#room-list button[data-room-name='alice, bob'] .badge")
               ).to_have_text("1")
    bells = feature_available("notifications:list")
    if bells:
        for tab in (bob_one, bob_two):
            expect(tab.locator("#bell-badge")).to_have_text("1")
    bob_one.locator("#room-list button[data-room-name='alice, bob']").click()
    expect(message(bob_one, "are you there?")).to_have_count(1)
    for tab in (bob_one, bob_two):
        expect(tab.locator("#room-list button[data-room-name='alice, bob'] .badge")
               ).to_have_count(0)
    if bells:
        for tab in (bob_one, bob_two):
            expect(tab.locator("#bell-badge")).to_be_hidden()
    shot(bob_two, "other-tab-read")


def test_replies_mentions_links_and_multi_line_messages(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "features")
    join(bob, room_id, "features")
    send(alice, "the plan is ready")
    create_room(bob, "away")
    alice.fill("#composer-text", "@bob see https://example.com/plan?x=1 and javascript:alert(1)")
    alice.press("#composer-text", "Enter")
    expect(message(alice, "see")).to_have_count(1)
    expect(bob.locator("#room-list button[data-room-name=features] .mention-badge")
           ).to_have_text("@1")
    bob.locator("#room-list button[data-room-name=features]").click()
    mentioned = message(bob, "see")
    expect(mentioned).to_have_class(re.compile(r"\bmentions-me\b"))
    expect(mentioned.locator(".mention.me")).to_have_text("@bob")
    link = mentioned.locator(".text a")
    expect(link).to_have_count(1)
    expect(link).to_have_attribute("href", "https://example.com/plan?x=1")
    expect(link).to_have_attribute("rel", re.compile("noopener"))
    expect(mentioned.locator(".text")).to_contain_text("javascript:alert(1)")

    message(bob, "the plan is ready").get_by_role("button", name="Reply to").click()
    expect(bob.locator("#reply-to")).to_contain_text("the plan is ready")
    bob.fill("#composer-text", "first line")
    bob.press("#composer-text", "Shift+Enter")
    bob.keyboard.type("second line")
    bob.press("#composer-text", "Enter")
    reply = message(alice, "first line")
    expect(reply.locator(".text")).to_have_text("first line\nsecond line")
    expect(reply.locator(".reply-quote")).to_contain_text("the plan is ready")
    shot(bob, "reply-mention-link")
    bob.set_viewport_size({"width": 390, "height": 844})
    message(bob, "first line").hover()
    shot(bob, "reply-mention-link-phone")


def test_escape_cancels_an_edit_and_delete_asks_first(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "edits")
    join(bob, room_id, "edits")
    send(alice, "keep me")
    message(alice, "keep me").get_by_role("button", name="Edit").click()
    alice.fill("#messages .edit-form input", "changed my mind")
    alice.press("#messages .edit-form input", "Escape")
    expect(alice.locator("#messages .edit-form")).to_have_count(0)
    expect(message(alice, "keep me").locator(".text")).to_have_text("keep me")

    message(alice, "keep me").get_by_role("button", name="Delete").click()
    expect(alice.locator(".confirm-delete")).to_contain_text("Delete this message")
    alice.locator(".confirm-delete").get_by_role("button", name="Cancel").click()
    expect(message(bob, "keep me").locator(".text")).to_have_text("keep me")
    message(alice, "keep me").get_by_role("button", name="Delete").click()
    alice.get_by_role("button", name="Confirm delete").click()
    expect(bob.locator("#messages .text", has_text="message deleted")).to_be_visible()

    # the room's owner deletes anyone's message; a member only their own
    send(bob, "spam spam")
    expect(message(bob, "keep me")).to_have_count(0)
    expect(message(bob, "spam spam").get_by_role("button", name="Delete")).to_have_count(1)
    send(alice, "owner speaking")
    expect(message(bob, "owner speaking").get_by_role("button", name="Delete")).to_have_count(0)
    message(alice, "spam spam").get_by_role("button", name="Delete bob's message").click()
    alice.get_by_role("button", name="Confirm delete").click()
    expect(bob.locator("#messages .text", has_text="message deleted")).to_have_count(2)


def test_grouped_messages_one_receipt_and_arrow_keys_between_messages(
        browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "groups")
    join(bob, room_id, "groups")
    for text in ("one", "two", "three"):
        send(alice, text)
    expect(message(bob, "three")).to_have_count(1)
    expect(alice.locator("#messages .receipt")).to_have_count(1)
    expect(message(alice, "three").locator(".receipt")).to_contain_text("read by bob")
    expect(alice.locator("#messages li.message.grouped")).to_have_count(2)
    expect(alice.locator("#messages .date-separator")).to_have_text("Today")
    expect(message(alice, "one").locator("time")).to_have_attribute("title", re.compile(r"\d"))

    # one tab stop for the list, arrows between messages, Enter into a message's buttons
    last = message(bob, "three")
    expect(last).to_have_attribute("tabindex", "0")
    last.focus()
    bob.keyboard.press("ArrowUp")
    expect(message(bob, "two")).to_be_focused()
    bob.keyboard.press("Enter")
    focused = bob.locator(":focus")
    expect(focused).to_have_attribute("aria-label", re.compile(r"alice's message \"two\""))
    bob.keyboard.press("Escape")
    expect(message(bob, "two")).to_be_focused()
    shot(bob, "keyboard")
