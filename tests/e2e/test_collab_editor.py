"""The demo's collaborative editor (web/src/collab.js) in real browsers against a real server.

Two editors type into the same document at the same time and their textareas converge to the
text the server stores; a reader sees it live but cannot change it. The server here has one
more role, ``reader``: a ``user`` without ``doc:edit``.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dihya_realtime.kernel.settings import DEFAULT_ROLES
from tests.e2e.conftest import (
    API_KEY,
    ARTIFACTS,
    Browsers,
    ServerProcess,
    expect,
    feature_available,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30),
              pytest.mark.skipif(not feature_available("doc:join"),
                                 reason="the collab feature is not on this branch")]

READER = [p for p in DEFAULT_ROLES["user"] if p != "doc:edit"]
DOC = "demo"
# while the server is down the browser logs its failed connection attempts as errors
CONNECTION_REFUSED = r"ERR_CONNECTION_REFUSED|ERR_INTERNET_DISCONNECTED|WebSocket connection to"


@pytest.fixture
def server(tmp_path: Path, redis_prefix: str) -> Iterator[ServerProcess]:
    """The usual e2e server, plus a ``reader`` role that has ``doc:read`` only."""
    assert "doc:read" in READER and "doc:edit" not in READER
    proc = ServerProcess(tmp_path, redis_prefix)
    proc.env["DIHYA_RT_ROLES"] = json.dumps({**DEFAULT_ROLES, "reader": READER})
    proc.start()
    yield proc
    proc.stop()


def server_text(server: ServerProcess, doc_id: str) -> str:
    request = urllib.request.Request(f"{server.url}/api/v1/docs/{doc_id}?format=text",
                                     headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def wait_server_text(server: ServerProcess, doc_id: str, expected: str) -> str:
    deadline = time.monotonic() + 5
    text = server_text(server, doc_id)
    while text != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        text = server_text(server, doc_id)
    return text


def open_doc(page, doc_id: str = DOC) -> None:
    page.fill("#doc-id", doc_id)
    page.press("#doc-id", "Enter")  # the form submits from the keyboard
    expect(page.locator("#doc-mode")).not_to_contain_text("joining")


def forged_update() -> list[int]:
    """A well-formed Yjs update inserting text, as a reader's page could forge it."""
    from pycrdt import Doc, Text

    doc = Doc()
    doc["text"] = text = Text()
    text += "vandalism "
    return list(doc.get_update())


def test_two_editors_type_concurrently_and_converge_a_reader_cannot_edit(
        browsers: Browsers, server: ServerProcess) -> None:
    created = server.api("POST", "/api/v1/docs", {"doc_id": DOC, "text": "|"})
    assert created["doc_id"] == DOC and created["text"] == "|", created
    # access is explicit: every user edits it, every reader reads it
    assert server.api("PUT", f"/api/v1/docs/{DOC}/access", {"grants": [
        {"role": "user", "mode": "edit"}, {"role": "reader", "mode": "read"}]})["grants"]

    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    carol = browsers.sign_in("carol", roles=("reader",))
    for page in (alice, bob, carol):
        expect(page.locator("#doc-id")).to_have_value("demo")  # the default
        open_doc(page)
        expect(page.locator("#doc-text")).to_have_value("|")
    for page in (alice, bob):
        expect(page.locator("#doc-mode")).to_have_attribute("data-mode", "editing")
        expect(page.locator("#doc-text")).not_to_have_attribute("readonly", "")

    # alice writes before the bar, bob after it, one keystroke each in turn: every keystroke
    # is sent before the other's previous one has arrived, so the edits are concurrent, and
    # alice's caret must stay put while bob's text lands after it (and bob's move with hers)
    alice.click("#doc-text")
    alice.keyboard.press("Control+Home")
    bob.click("#doc-text")
    bob.keyboard.press("Control+End")
    a_text, b_text = "alice wrote this; ", " and bob wrote that"
    for i in range(max(len(a_text), len(b_text))):
        if i < len(a_text):
            alice.keyboard.type(a_text[i])
        if i < len(b_text):
            bob.keyboard.type(b_text[i])
    expected = a_text + "|" + b_text
    for page in (alice, bob, carol):
        expect(page.locator("#doc-text")).to_have_value(expected)
    assert wait_server_text(server, DOC, expected) == expected

    # a change in the middle by bob reaches alice while her caret stays where she types
    bob.keyboard.press("Control+Home")
    bob.keyboard.type(">> ")
    expect(alice.locator("#doc-text")).to_have_value(">> " + expected)
    alice.keyboard.type("!")
    expected = ">> " + a_text + "!|" + b_text
    for page in (alice, bob, carol):
        expect(page.locator("#doc-text")).to_have_value(expected)

    # the reader sees the text live, marked read-only, and cannot change it
    reader_text = carol.locator("#doc-text")
    expect(reader_text).to_have_attribute("readonly", "")
    expect(reader_text).to_have_attribute("aria-readonly", "true")
    expect(carol.locator("#doc-mode")).to_have_attribute("data-mode", "read-only")
    expect(carol.locator("#doc-mode")).to_contain_text("read-only")
    reader_text.click()
    carol.keyboard.press("Control+End")
    carol.keyboard.type("carol was here")
    carol.keyboard.press("Backspace")
    expect(reader_text).to_have_value(expected)
    reply = carol.evaluate("async (bytes) => window.dihya.conn.call('doc:update', "
                           "{doc_id: 'demo', update: new Uint8Array(bytes)})", forged_update())
    assert reply["ok"] is False and reply["error"]["code"] == "forbidden", reply
    time.sleep(0.3)  # had it been relayed, it would be on the editors' pages by now
    expect(alice.locator("#doc-text")).to_have_value(expected)
    assert server_text(server, DOC) == expected

    # presence: who else is in the document, by name, with a cursor
    peers = alice.locator("#doc-peers li")
    expect(peers.filter(has_text="bob")).to_have_count(1)
    expect(peers.filter(has_text="carol")).to_have_count(1)
    expect(peers.filter(has_text="bob")).to_contain_text("line 1, column")
    expect(peers.filter(has_text="alice")).to_have_count(0)  # not myself
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    carol.screenshot(path=str(ARTIFACTS / "collab-reader.png"), full_page=True)
    carol.close()
    expect(peers.filter(has_text="carol")).to_have_count(0)


def test_an_editor_reloading_the_page_gets_the_stored_text_a_reader_cannot_create(
        browsers: Browsers, server: ServerProcess) -> None:
    alice = browsers.sign_in("alice")
    open_doc(alice, "notes")  # an editor creates it by joining
    alice.click("#doc-text")
    alice.keyboard.type("line one\nline two")
    assert wait_server_text(server, "notes", "line one\nline two") == "line one\nline two"
    alice.reload()
    expect(alice.locator("#conn-state")).to_have_text("connected")
    open_doc(alice, "notes")
    expect(alice.locator("#doc-text")).to_have_value("line one\nline two")
    expect(alice.locator("#doc-mode")).to_have_attribute("data-mode", "editing")

    # a reader cannot create a document by opening it: the panel says why
    dave = browsers.sign_in("dave", roles=("reader",))
    open_doc(dave, "nope")
    expect(dave.locator("#doc-error")).to_contain_text("not_found")
    expect(dave.locator("#doc-mode")).to_have_attribute("data-mode", "refused")
    expect(dave.locator("#doc-text")).to_have_attribute("readonly", "")
    assert server.api("PUT", "/api/v1/docs/notes/access", {"grants": [
        {"role": "reader", "mode": "read"}]})["grants"]  # alice, its creator, shares it
    open_doc(dave, "notes")
    expect(dave.locator("#doc-text")).to_have_value("line one\nline two")
    expect(dave.locator("#doc-error")).to_have_text("")


def test_edits_made_while_the_server_is_down_are_sent_on_reconnect(
        browsers: Browsers, server: ServerProcess) -> None:
    server.api("POST", "/api/v1/docs", {"doc_id": DOC})  # (or it exists: 409)
    assert server.api("PUT", f"/api/v1/docs/{DOC}/access", {"grants": [
        {"role": "user", "mode": "edit"}]})["grants"]  # access is explicit
    alice = browsers.sign_in("alice")
    bob = browsers.sign_in("bob")
    for page in (alice, bob):
        browsers.tolerate(page, CONNECTION_REFUSED)
        open_doc(page)
    alice.click("#doc-text")
    alice.keyboard.type("online. ")
    expect(bob.locator("#doc-text")).to_have_value("online. ")

    server.stop()
    expect(alice.locator("#conn-state")).to_have_text("reconnecting")
    expect(alice.locator("#doc-mode")).to_contain_text("offline")
    alice.keyboard.type("offline alice. ")  # kept in her Y.Doc meanwhile
    bob.click("#doc-text")
    bob.keyboard.press("Control+Home")
    bob.keyboard.type("bob: ")
    server.start()

    # each rejoin answers the server's state vector with what it lacks: both offline edits
    expected = "bob: online. offline alice. "
    for page in (alice, bob):
        expect(page.locator("#conn-state")).to_have_text("connected", timeout=15_000)
        expect(page.locator("#doc-text")).to_have_value(expected)
        expect(page.locator("#doc-mode")).to_have_attribute("data-mode", "editing")
    assert wait_server_text(server, DOC, expected) == expected
