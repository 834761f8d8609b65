"""The admin console (``/admin``) in a real browser, against a real server process.

An administrator sees the users connected to the server, by user and by process, and
disconnects one: that user's page is told (``disconnecting``) and drops its connection, the
other user's page is untouched, and the audit trail names the administrator. A user without
the admin role is refused by the server and the page says so.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS, Browsers, ServerProcess, expect, feature_available

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90),
              pytest.mark.skipif(not feature_available("admin:connections"),
                                 reason="the admin feature is not on this branch")]


def open_admin(browsers: Browsers, user: str, roles: tuple[str, ...] = ("admin",),
               ctx: Any = None) -> Any:
    """``/admin`` signed in through its dev form as ``user`` with ``roles``."""
    page = browsers.open(ctx or browsers.context(), "/admin")
    page.fill("#signin-user", user)
    for box in page.locator("#signin-form input[name=roles]").all():
        box.set_checked(box.get_attribute("value") in roles)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#conn-state")).to_have_text("connected")
    return page


def watch_frames(ctx: Any) -> list[str]:
    """Every text frame the pages of ``ctx`` receive on their WebSockets (from now on)."""
    frames: list[str] = []
    ctx.on("page", lambda page: page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda payload: frames.append(payload) if isinstance(payload, str)
        else None)))
    return frames


def record_states(page: Any) -> None:
    """Keep every text the connection badge shows in ``window.__states``."""
    page.evaluate("""() => {
        const el = document.getElementById("conn-state");
        window.__states = [el.textContent];
        new MutationObserver(() => window.__states.push(el.textContent))
            .observe(el, {childList: true, characterData: true, subtree: true});
    }""")


def audit_rows(server: ServerProcess, type_: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(server.workdir / "e2e.db") as db:
        return db.execute("SELECT user_id, event, outcome, details FROM audit_events "
                          "WHERE type = ? ORDER BY id", (type_,)).fetchall()


def audit_lines(server: ServerProcess, type_: str, timeout: float = 5.0) -> list[dict]:
    """The JSON lines of ``type_`` in the server's audit log (written at once), waiting for one."""
    deadline = time.monotonic() + timeout
    while True:
        text = (server.workdir / "audit.log").read_text()
        lines = [json.loads(line) for line in text.splitlines() if f'"{type_}"' in line]
        lines = [line for line in lines if line["type"] == type_]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_an_admin_sees_two_users_and_disconnects_one(
        browsers: Browsers, server: ServerProcess) -> None:
    alice_ctx, bob_ctx = browsers.context(), browsers.context()
    alice_frames, bob_frames = watch_frames(alice_ctx), watch_frames(bob_ctx)
    alice = browsers.sign_in("alice", ctx=alice_ctx)
    browsers.sign_in("bob", ctx=bob_ctx)
    record_states(alice)

    admin = open_admin(browsers, "root")
    users = admin.locator("#users-table tbody tr")
    expect(users.filter(has_text="alice")).to_have_count(1)
    expect(users.filter(has_text="bob")).to_have_count(1)
    expect(admin.locator("#conns-summary")).to_contain_text("3 users")
    process_rows = admin.locator("#processes table.process tbody tr")
    old_sid = process_rows.filter(has_text="alice").first.get_attribute("data-sid")
    assert old_sid
    expect(admin.locator("#metrics-process")).to_contain_text("serving this page")

    admin.get_by_role("button", name="Disconnect alice").click()

    expect(admin.locator("#action-status")).to_have_text("Disconnected alice on every process.")
    expect(admin.locator(f"#processes tr[data-sid='{old_sid}']")).to_have_count(0)
    deadline = time.monotonic() + 5
    while not any('"disconnecting"' in f for f in alice_frames) and time.monotonic() < deadline:
        time.sleep(0.05)
    told = [f for f in alice_frames if '"disconnecting"' in f]
    assert told and "disconnected by an administrator" in told[0]
    assert not any('"disconnecting"' in f for f in bob_frames)
    states = alice.evaluate("window.__states")
    assert "reconnecting" in states, states  # the page showed it lost its connection

    admin.fill("#audit-type", "admin_disconnect_user")
    admin.click("#audit-filter button[type=submit]")
    expect(admin.locator("#audit-table tbody tr")).to_have_count(1)
    expect(admin.locator("#audit-table tbody tr")).to_contain_text("root")
    [row] = audit_rows(server, "admin_disconnect_user")  # the page's read wrote it
    assert row[:3] == ("root", "admin:disconnect_user", "ok")
    assert json.loads(row[3])["target"] == "alice"

    admin.click("#audit-verify")
    expect(admin.locator("#verify-status")).to_contain_text("Intact and complete")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    admin.screenshot(path=str(ARTIFACTS / "admin-desktop.png"), full_page=True)
    admin.set_viewport_size({"width": 390, "height": 844})
    expect(admin.locator("#users-table")).to_be_visible()
    assert admin.evaluate("document.documentElement.scrollWidth") <= 390
    admin.screenshot(path=str(ARTIFACTS / "admin-phone.png"), full_page=True)


def test_a_user_without_the_admin_role_is_refused_and_the_page_says_so(
        browsers: Browsers, server: ServerProcess) -> None:
    page = open_admin(browsers, "mallory", roles=("user", "moderator"))

    expect(page.locator("#refused")).to_be_visible()
    expect(page.locator("#refused-text")).to_contain_text("may not use the admin console")
    expect(page.locator("#console")).to_be_hidden()
    denied = audit_lines(server, "permission_denied")
    assert ("mallory", "admin:metrics", "forbidden") in [
        (d["user_id"], d["event"], d["outcome"]) for d in denied]
    page.screenshot(path=str(ARTIFACTS / "admin-refused.png"))
