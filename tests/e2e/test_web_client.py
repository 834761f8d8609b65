"""The demo web client in a real browser, against a real server process.

Each test is what a person would do in the demo; the page is the only client (the HTTP API
stands in for a back-end worker). Chat and notification scenarios are skipped on a server
without those features.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Browsers, ServerProcess, expect, feature_available

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

needs_chat = pytest.mark.skipif(not feature_available("chat:send"),
                                reason="the chat feature (issue 4) is not on this branch")
needs_notifications = pytest.mark.skipif(
    not feature_available("notifications:list"),
    reason="the notifications feature (issue 5) is not on this branch")

# While the server is down the browser reports the failed connection attempts as console
# errors; those (and only those) are expected during a restart.
CONNECTION_REFUSED = r"ERR_CONNECTION_REFUSED|ERR_INTERNET_DISCONNECTED|WebSocket connection to"


def create_room(page, name: str, private: bool = False) -> str:
    page.fill("#new-room-name", name)
    page.locator("#new-room-private").set_checked(private)
    page.click("#create-room button[type=submit]")
    expect(page.locator("#chat-title")).to_have_text(f"# {name}")
    room = page.locator(f"#room-list button[data-room-name='{name}']")
    return room.get_attribute("data-room-id")


def send(page, text: str) -> None:
    page.fill("#composer-text", text)
    page.press("#composer-text", "Enter")
    expect(page.locator("#messages li.message .text", has_text=text)).to_have_count(1)


def test_live_panel_shows_what_the_button_and_the_http_api_publish(
        browsers: Browsers, server: ServerProcess) -> None:
    page = browsers.sign_in("alice")
    expect(page.locator("#live-channel")).to_have_text("live:demo")
    page.click("#live-publish")
    expect(page.locator("#live-list li")).to_have_count(1)
    reply = server.api("POST", "/api/v1/publish",
                       {"channel": "live:demo", "data": {"text": "deployed build 42"}})
    assert reply["ok"], reply
    expect(page.locator("#live-list li").first).to_contain_text("deployed build 42")
    expect(page.locator("#live-list li")).to_have_count(2)


def test_a_second_page_loads_the_live_history_once(
        browsers: Browsers, server: ServerProcess) -> None:
    for i in range(3):
        server.api("POST", "/api/v1/publish", {"channel": "live:demo", "data": {"text": f"n{i}"}})
    page = browsers.sign_in("bob")
    expect(page.locator("#live-list li")).to_have_count(3)
    server.api("POST", "/api/v1/publish", {"channel": "live:demo", "data": {"text": "n3"}})
    expect(page.locator("#live-list li")).to_have_count(4)
    texts = page.locator("#live-list .live-text").all_inner_texts()
    assert texts == ["n3", "n2", "n1", "n0"]


def test_a_recovery_longer_than_one_page_shows_every_missed_publication_once_in_order(
        browsers: Browsers, server: ServerProcess) -> None:
    """Recovery comes in pages (``more: true``, issue 12): the page must read them all, not
    jump to the top offset of the first reply."""
    server.stop()
    server.env["DIHYA_RT_HISTORY_PAGE_MAX_COUNT"] = "4"
    server.start()
    page = browsers.sign_in("alice")
    browsers.tolerate(page, CONNECTION_REFUSED)
    server.api("POST", "/api/v1/publish", {"channel": "live:demo", "data": {"text": "before"}})
    expect(page.locator("#live-list li")).to_have_count(1)

    server.stop()
    expect(page.locator("#conn-state")).to_have_text("reconnecting")
    page.context.set_offline(True)
    server.start()
    for i in range(11):  # three pages of four
        reply = server.api("POST", "/api/v1/publish",
                           {"channel": "live:demo", "data": {"text": f"missed {i}"}})
        assert reply["ok"], reply
    page.context.set_offline(False)

    expect(page.locator("#conn-state")).to_have_text("connected", timeout=15_000)
    expect(page.locator("#live-list li")).to_have_count(12)
    assert page.locator("#live-list .live-text").all_inner_texts() == [
        *(f"missed {i}" for i in reversed(range(11))), "before"]
    server.api("POST", "/api/v1/publish", {"channel": "live:demo", "data": {"text": "live"}})
    expect(page.locator("#live-list li")).to_have_count(13)


def test_restarted_server_page_reconnects_and_shows_missed_messages_once(
        browsers: Browsers, server: ServerProcess) -> None:
    page = browsers.sign_in("alice")
    browsers.tolerate(page, CONNECTION_REFUSED)
    chat = feature_available("chat:send")
    if chat:
        room_id = create_room(page, "ops")
        send(page, "before the restart")
    server.api("POST", "/api/v1/publish", {"channel": "live:demo", "data": {"text": "before"}})
    expect(page.locator("#live-list li")).to_have_count(1)

    server.stop()
    expect(page.locator("#conn-state")).to_have_text("reconnecting")
    # keep the page away until the missed messages exist, so they can only come by recovery
    page.context.set_offline(True)
    server.start()
    for i in range(3):
        reply = server.api("POST", "/api/v1/publish",
                           {"channel": "live:demo", "data": {"text": f"missed {i}"}})
        assert reply["ok"], reply
        if chat:
            reply = server.api("POST", f"/api/v1/chat/rooms/{room_id}/messages",
                               {"text": f"while away {i}"})
            assert reply["ok"], reply
    page.context.set_offline(False)

    expect(page.locator("#conn-state")).to_have_text("connected", timeout=15_000)
    expect(page.locator("#live-list li")).to_have_count(4)
    assert page.locator("#live-list .live-text").all_inner_texts() == [
        "missed 2", "missed 1", "missed 0", "before"]
    if chat:
        expect(page.locator("#messages li.message")).to_have_count(4)
        texts = page.locator("#messages li.message .text").all_inner_texts()
        assert texts == ["before the restart", "while away 0", "while away 1", "while away 2"]


def test_events_page_renders_the_asyncapi_document_offline(
        browsers: Browsers, server: ServerProcess) -> None:
    ctx = browsers.context()
    outside: list[str] = []
    ctx.route(lambda url: not url.startswith(server.url),
              lambda route: (outside.append(route.request.url), route.abort()))
    page = browsers.open(ctx, "/docs/events")
    expect(page.locator("h1")).to_contain_text("dihya-realtime")
    expect(page.locator("#f-core")).to_be_visible()
    expect(page.locator("article.event", has_text="subscribe").first).to_be_visible()
    expect(page.locator("#ev-publication")).to_contain_text("server → client")
    assert outside == []


def test_dev_sign_in_refuses_an_unknown_role(browsers: Browsers) -> None:
    page = browsers.open(browsers.context())
    request = page.request.post(browsers.server.url + "/dev/token",
                                data={"user_id": "eve", "roles": ["root"]})
    assert request.status == 400
    assert request.json()["error"]["code"] == "invalid_payload"


@needs_chat
def test_two_users_chat_with_typing_receipts_and_reactions(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice", ("user", "moderator"))
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "release")

    bob.fill("#join-room-id", room_id)
    bob.click("#join-room button[type=submit]")
    expect(bob.locator("#chat-title")).to_have_text("# release")
    expect(alice.locator("#presence li[data-user-id=bob]")).to_be_visible()

    send(alice, "hello bob")
    expect(bob.locator("#messages .text", has_text="hello bob")).to_be_visible()
    # bob has the room open: his read marker moves, alice sees the receipt
    expect(alice.locator("#messages li.own .receipt")).to_contain_text("read by bob")

    bob.type("#composer-text", "hi al")
    expect(alice.locator("#typing")).to_have_text("bob is typing…")
    bob.fill("#composer-text", "hi alice")
    bob.press("#composer-text", "Enter")
    expect(alice.locator("#messages .text", has_text="hi alice")).to_be_visible()
    expect(alice.locator("#typing")).to_have_text("")

    bob_msg = bob.locator("#messages li.message", has_text="hello bob")
    bob_msg.get_by_role("button", name="React 🎉").click()
    expect(alice.locator("#messages li.message", has_text="hello bob")
           .get_by_role("button", name="React 🎉, 1")).to_be_visible()

    # edit and delete of one's own message reach the other user
    mine = alice.locator("#messages li.own", has_text="hello bob")
    mine.get_by_role("button", name="Edit").click()
    alice.fill("#messages .edit-form input", "hello bob (edited)")
    alice.press("#messages .edit-form input", "Enter")
    expect(bob.locator("#messages .text", has_text="hello bob (edited)")).to_be_visible()
    alice.locator("#messages li.own", has_text="(edited)").get_by_role(
        "button", name="Delete").click()
    alice.get_by_role("button", name="Confirm delete").click()  # asked first
    expect(bob.locator("#messages .text", has_text="message deleted")).to_be_visible()


@needs_chat
def test_a_room_not_open_shows_an_unread_badge(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "news")
    bob.fill("#join-room-id", room_id)
    bob.click("#join-room button[type=submit]")
    expect(bob.locator("#chat-title")).to_have_text("# news")
    create_room(bob, "elsewhere")  # bob now looks at another room
    send(alice, "one")
    send(alice, "two")
    expect(bob.locator("#room-list button[data-room-name=news] .badge")).to_have_text("2")


@needs_chat
def test_closing_a_page_shows_the_user_leaving(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    room_id = create_room(alice, "lobby")
    bob.fill("#join-room-id", room_id)
    bob.click("#join-room button[type=submit]")
    expect(alice.locator("#presence li[data-user-id=bob]")).to_be_visible()
    expect(bob.locator("#presence li[data-user-id=alice]")).to_be_visible()
    bob.close()
    expect(alice.locator("#presence li[data-user-id=bob]")).to_have_count(0)
    expect(alice.locator("#presence li[data-user-id=alice]")).to_be_visible()


@needs_chat
def test_a_private_room_refuses_a_non_member(browsers: Browsers) -> None:
    alice = browsers.sign_in("alice")
    room_id = create_room(alice, "secret", private=True)
    send(alice, "the launch code")
    carol = browsers.sign_in("carol")
    carol.fill("#join-room-id", room_id)
    carol.click("#join-room button[type=submit]")
    expect(carol.locator("#chat-error")).to_contain_text("forbidden")
    expect(carol.locator("#chat-title")).to_have_text("Cannot open this room")
    expect(carol.locator("#messages li")).to_have_count(0)
    assert "launch code" not in carol.content()


@needs_notifications
def test_notification_badge_follows_in_both_tabs(browsers: Browsers,
                                                 server: ServerProcess) -> None:
    first = browsers.sign_in("dora")
    second = browsers.open(first.context)  # same browser, same user: signed in already
    expect(second.locator("#conn-state")).to_have_text("connected")
    reply = server.api("POST", "/api/v1/notifications",
                       {"user_id": "dora", "title": "Build 42 finished", "body": "all green"})
    assert reply["ok"], reply
    for page in (first, second):
        expect(page.locator("#bell-badge")).to_have_text("1")
    first.click("#bell")
    item = first.locator("#notif-list li", has_text="Build 42 finished")
    item.get_by_role("button", name="Mark read").click()
    expect(second.locator("#bell-badge")).to_be_hidden()
    expect(first.locator("#bell-badge")).to_be_hidden()
    second.click("#bell")
    expect(second.locator("#notif-list li.notif")).to_have_count(1)
    expect(second.locator("#notif-list li.unread")).to_have_count(0)
    second.locator("#notif-list li").get_by_role("button", name="Archive").click()
    expect(first.locator("#notif-list li.notif")).to_have_count(0)



@needs_chat
@needs_notifications
def test_a_page_that_stayed_connected_shows_what_a_broker_break_kept_from_it(
        browser, tmp_path, redis_prefix) -> None:
    """The server's own Redis links break while the page stays connected to it: a chat
    message and a notification made meanwhile are never relayed live. The server's
    ``resync`` makes the page read them, with no reload and no reconnect."""
    from tests.e2e.conftest import wait_ready_status
    from tests.integration.test_hostile_fanout_gap import PrivateRedis

    redis = PrivateRedis(tmp_path, persistent=False)
    redis.start()
    workdir = tmp_path / "server"
    workdir.mkdir()
    server = ServerProcess(workdir, redis_prefix)
    server.env["DIHYA_RT_REDIS_URL"] = redis.url
    server.start()
    browsers = Browsers(browser, server, "resync")
    try:
        page = browsers.sign_in("alice")
        room_id = create_room(page, "ops")
        send(page, "before the break")
        admin = redis.admin()
        admin.execute_command("ACL", "SETUSER", "default", "-subscribe", "-ssubscribe")
        admin.client_kill_filter(_type="pubsub")
        assert wait_ready_status(server, 503)
        reply = server.api("POST", f"/api/v1/chat/rooms/{room_id}/messages",
                           {"text": "during the break"})
        assert reply["ok"], reply
        reply = server.api("POST", "/api/v1/notifications",
                           {"user_id": "alice", "category": "builds", "title": "missed"})
        assert reply["ok"], reply
        page.wait_for_timeout(300)
        expect(page.locator("#messages li.message")).to_have_count(1)  # the gap is real
        admin.execute_command("ACL", "SETUSER", "default", "+subscribe", "+ssubscribe")
        assert wait_ready_status(server, 200)
        expect(page.locator("#messages li.message")).to_have_count(2)
        assert page.locator("#messages li.message .text").all_inner_texts() == [
            "before the break", "during the break"]
        expect(page.locator("#bell-badge")).to_have_text("1")
        expect(page.locator("#conn-state")).to_have_text("connected")
    finally:
        problems = browsers.finish()
        server.stop()
        redis.kill()
    assert not problems, "errors in the browser:\n" + "\n".join(problems)
