"""The others in a document, in real browsers: listed as soon as they open it, each in a colour
of their own, their carets and selections drawn over the text where they are.

The overlay (web/src/collab_cursors.js) mirrors the textarea; these tests check it against the
textarea itself: a caret's bar must stand where the textarea draws that character, measured
independently with the textarea's font (a canvas) on short monospace lines.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ARTIFACTS, Browsers, ServerProcess, expect, feature_available
from tests.e2e.test_accessibility import blocking_violations, scanning_context
from tests.e2e.test_collab_editor import open_doc

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(40),
              pytest.mark.skipif(not feature_available("doc:join"),
                                 reason="the collab feature is not on this branch")]

DOC = "cursors"
TEXT = "hello world\nsecond line here\nthird"
PHONE = {"width": 390, "height": 844}
CURSORS_JS = Path(__file__).resolve().parents[2] / "web" / "src" / "collab_cursors.js"

# Where the textarea draws the character at `index` (its left edge), from its own box, font,
# scroll and line height; and where the overlay drew this user's caret.
CARET_GEOMETRY = """([userId, index]) => {
  const ta = document.getElementById("doc-text");
  const caret = document.querySelector(`.doc-cursors .doc-caret[data-user-id="${userId}"]`);
  if (!caret) return null;
  const style = getComputedStyle(ta);
  const lines = ta.value.slice(0, index).split("\\n");
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const box = ta.getBoundingClientRect();
  const lineHeight = parseFloat(style.lineHeight);
  const x = box.left + parseFloat(style.borderLeftWidth) + parseFloat(style.paddingLeft)
    + ctx.measureText(lines[lines.length - 1]).width - ta.scrollLeft;
  const top = box.top + parseFloat(style.borderTopWidth) + parseFloat(style.paddingTop)
    + (lines.length - 1) * lineHeight - ta.scrollTop;
  const bar = caret.getBoundingClientRect();
  return {dx: bar.left - x, dy: (bar.top + bar.bottom) / 2 - top, lineHeight};
}"""

# The overlay's text before this user's caret (a Range from the overlay's start to the caret).
TEXT_BEFORE_CARET = """(userId) => {
  const overlay = document.querySelector(".doc-cursors");
  const caret = overlay && overlay.querySelector(`.doc-caret[data-user-id="${userId}"]`);
  if (!caret) return null;
  const range = document.createRange();
  range.setStart(overlay, 0);
  range.setEndBefore(caret);
  const labels = [...overlay.querySelectorAll(".doc-caret-label")]
    .filter((label) => range.intersectsNode(label)).map((label) => label.textContent);
  let text = range.toString();
  for (const label of labels) text = text.replace(label, "");  // earlier carets' names
  return text;
}"""


def palette() -> list[str]:
    source = CURSORS_JS.read_text()
    block = re.search(r"CURSOR_COLORS = \[(.*?)\]", source, re.S)
    assert block, "CURSOR_COLORS not found"
    return re.findall(r'"(#[0-9a-fA-F]{6})"', block.group(1))


def rgb(hex_color: str) -> str:
    n = int(hex_color[1:], 16)
    return f"rgb({n >> 16}, {(n >> 8) & 255}, {n & 255})"


def contrast(a: str, b: str) -> float:
    def luminance(color: str) -> float:
        channels = [int(v) / 255 for v in re.findall(r"\d+", color)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def shared_doc(server: ServerProcess, text: str = TEXT) -> None:
    created = server.api("POST", "/api/v1/docs", {"doc_id": DOC, "text": text})
    assert created.get("doc_id") == DOC, created
    assert server.api("PUT", f"/api/v1/docs/{DOC}/access", {"grants": [
        {"role": "user", "mode": "edit"}]})["grants"]


def place_caret(page: Any, index: int, select: int = 0) -> None:
    """Put the caret at ``index`` from the keyboard (then select ``select`` characters)."""
    page.click("#doc-text")
    page.keyboard.press("Control+Home")
    for _ in range(index):
        page.keyboard.press("ArrowRight")
    for _ in range(select):
        page.keyboard.press("Shift+ArrowRight")


def caret(page: Any, user: str) -> Any:
    return page.locator(f".doc-cursors .doc-caret[data-user-id='{user}']")


def peer(page: Any, user: str) -> Any:
    return page.locator(f"#doc-peers li[data-user-id='{user}']")


def wait_text_before_caret(page: Any, user: str, expected: str) -> None:
    page.wait_for_function(f"(user) => ({TEXT_BEFORE_CARET})(user) === {expected!r}", arg=user)


def assert_caret_at(page: Any, user: str, index: int) -> None:
    geometry = page.evaluate(CARET_GEOMETRY, [user, index])
    assert geometry is not None, f"no caret for {user}"
    assert abs(geometry["dx"]) <= 2, geometry
    assert 0 < geometry["dy"] < geometry["lineHeight"], geometry


def colors(page: Any, user: str) -> tuple[str, str]:
    """(swatch in the list, caret bar) background colours of ``user`` on ``page``."""
    # read in one go: the list and the overlay are redrawn as the others move
    swatch, bar = page.evaluate("""(user) => [
        getComputedStyle(document.querySelector(
            `#doc-peers li[data-user-id="${user}"] .doc-swatch`)).backgroundColor,
        getComputedStyle(document.querySelector(
            `.doc-cursors .doc-caret[data-user-id="${user}"]`), "::before").backgroundColor]""",
        user)
    return swatch, bar


def test_the_palette_has_enough_contrast() -> None:
    colours = palette()
    assert len(colours) >= 8 and len(set(colours)) == len(colours)
    for colour in colours:
        for background in ("rgb(255, 255, 255)", "rgb(243, 243, 245)"):  # editor, read-only
            assert contrast(rgb(colour), background) >= 3, (colour, background)
        assert contrast(rgb(colour), "rgb(255, 255, 255)") >= 4.5, colour  # label text


def test_participants_are_listed_as_soon_as_they_open_the_document(
        browsers: Browsers, server: ServerProcess) -> None:
    shared_doc(server)
    alice = browsers.sign_in("alice")
    open_doc(alice, DOC)  # from the keyboard: her caret is never placed
    bob = browsers.sign_in("bob")
    open_doc(bob, DOC)
    expect(peer(bob, "alice")).to_have_count(1)  # from the join reply
    expect(peer(alice, "bob")).to_have_count(1)  # announced on joining
    # no caret yet: listed without a position, nothing drawn
    expect(peer(bob, "alice")).not_to_contain_text("line")
    expect(bob.locator(".doc-cursors .doc-caret")).to_have_count(0)
    expect(bob.locator(".doc-cursors")).to_have_attribute("aria-hidden", "true")


def test_remote_carets_and_selections_are_drawn_in_the_users_colours(
        browsers: Browsers, server: ServerProcess) -> None:
    shared_doc(server)
    alice, carol = browsers.sign_in("alice"), browsers.sign_in("carol")
    bob = browsers.sign_in("bob", ctx=scanning_context(browsers))  # axe needs no CSP
    for page in (alice, bob, carol):
        open_doc(page, DOC)
    for page, others in ((alice, ("bob", "carol")), (bob, ("alice", "carol"))):
        for other in others:
            expect(peer(page, other)).to_have_count(1)

    # a caret on the second line, at "second l|ine"
    index = TEXT.index("line here") + 1
    place_caret(alice, index)
    expect(caret(bob, "alice")).to_have_count(1)
    expect(caret(bob, "alice")).to_contain_text("alice")  # its name label
    wait_text_before_caret(bob, "alice", TEXT[:index])
    assert_caret_at(bob, "alice", index)
    expect(peer(bob, "alice")).to_contain_text("line 2, column 9")

    # a selection: "world", made from the keyboard, highlighted exactly
    start = TEXT.index("world")
    place_caret(carol, start, select=len("world"))
    expect(caret(bob, "carol")).to_have_count(1)
    wait_text_before_caret(bob, "carol", TEXT[:start + len("world")])
    highlight = bob.locator(".doc-cursors .doc-selection")
    expect(highlight).to_have_count(1)
    assert "".join(highlight.all_text_contents()) == "world"
    assert_caret_at(bob, "carol", start + len("world"))
    bob_carol_swatch, bob_carol_bar = colors(bob, "carol")
    selection_colour = bob.evaluate(
        "() => getComputedStyle(document.querySelector('.doc-selection')).backgroundColor")
    assert selection_colour.startswith("rgba(") and \
        re.findall(r"\d+", selection_colour)[:3] == re.findall(r"\d+", bob_carol_bar)[:3]

    # a colour per user from the palette; the same in every page, in the list and on the caret
    place_caret(bob, 3)
    expect(caret(alice, "bob")).to_have_count(1)
    expect(caret(alice, "carol")).to_have_count(1)
    alice_bob_swatch, alice_bob_bar = colors(alice, "bob")
    alice_carol_swatch, alice_carol_bar = colors(alice, "carol")
    bob_alice_swatch, bob_alice_bar = colors(bob, "alice")
    assert alice_bob_swatch == alice_bob_bar and bob_alice_swatch == bob_alice_bar
    assert alice_carol_swatch == alice_carol_bar == bob_carol_swatch == bob_carol_bar
    assert len({alice_bob_bar, bob_alice_bar, bob_carol_bar}) == 3
    assert {alice_bob_bar, bob_alice_bar, bob_carol_bar} <= {rgb(c) for c in palette()}

    # contrast as drawn: the bar on the editor's background, the name on its label
    text_bg = bob.locator("#doc-text").evaluate("(el) => getComputedStyle(el).backgroundColor")
    assert contrast(bob_alice_bar, text_bg) >= 3
    label_fg, label_bg = bob.evaluate("""() => {
        const label = document.querySelector('.doc-caret[data-user-id="alice"] .doc-caret-label');
        return [getComputedStyle(label).color, getComputedStyle(label).backgroundColor]; }""")
    assert label_bg == bob_alice_bar and contrast(label_fg, label_bg) >= 4.5

    # bob types before alice's caret: on bob's screen her caret stays after the same character
    bob.keyboard.press("Control+Home")
    bob.keyboard.type("XY ")
    wait_text_before_caret(bob, "alice", "XY " + TEXT[:index])
    assert_caret_at(bob, "alice", index + 3)
    wait_text_before_caret(carol, "alice", "XY " + TEXT[:index])  # and on everyone's

    # the drawn cursors add no serious accessibility problem (the overlay is aria-hidden)
    violations = blocking_violations(bob, set())
    assert not violations, violations

    # screenshots of two coloured cursors and a selection, on a desktop and on a phone
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    bob.locator("#doc-panel").screenshot(path=str(ARTIFACTS / "collab-cursors-desktop.png"))
    bob.set_viewport_size(PHONE)
    bob.click("#panel-tabs button[data-view='doc']")
    expect(bob.locator("#doc-text")).to_be_visible()
    # the textarea is narrower now: the overlay follows (resize) and the caret is still right
    bob.wait_for_function("""() => {
        const ta = document.getElementById("doc-text"), o = document.querySelector(".doc-cursors");
        return o.offsetWidth === ta.offsetWidth && o.offsetHeight === ta.offsetHeight; }""")
    assert_caret_at(bob, "alice", index + 3)
    width = bob.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    bob.locator("#doc-panel").screenshot(path=str(ARTIFACTS / "collab-cursors-phone.png"))


def test_a_caret_far_down_follows_the_textarea_scroll(
        browsers: Browsers, server: ServerProcess) -> None:
    text = "".join(f"line {i}\n" for i in range(60))
    shared_doc(server, text)
    alice, bob = browsers.sign_in("alice"), browsers.sign_in("bob")
    for page in (alice, bob):
        open_doc(page, DOC)
    index = text.index("line 50") + 5
    alice.click("#doc-text")
    alice.evaluate(f"""() => {{ const ta = document.getElementById("doc-text");
        ta.setSelectionRange({index}, {index}); }}""")
    alice.keyboard.press("ArrowRight")
    alice.keyboard.press("ArrowLeft")  # keys: the caret is reported as the user moves it
    wait_text_before_caret(bob, "alice", text[:index])
    bob.locator("#doc-text").evaluate("(el) => { el.scrollTop = el.scrollHeight; }")
    bob.wait_for_function("""() => {
        const ta = document.getElementById("doc-text"), o = document.querySelector(".doc-cursors");
        return ta.scrollTop > 0 && o.scrollTop === ta.scrollTop; }""")
    assert_caret_at(bob, "alice", index)


def test_a_participant_who_leaves_is_removed(browsers: Browsers, server: ServerProcess) -> None:
    shared_doc(server)
    alice, bob = browsers.sign_in("alice"), browsers.sign_in("bob")
    for page in (alice, bob):
        open_doc(page, DOC)
    place_caret(alice, 4)
    expect(caret(bob, "alice")).to_have_count(1)
    expect(peer(bob, "alice")).to_have_count(1)

    open_doc(alice, "elsewhere")  # another document: she leaves this one
    expect(caret(bob, "alice")).to_have_count(0)
    expect(peer(bob, "alice")).to_have_count(0)

    open_doc(alice, DOC)  # back: listed at once, her caret not placed in this copy yet
    expect(peer(bob, "alice")).to_have_count(1)
    place_caret(alice, 2)
    expect(caret(bob, "alice")).to_have_count(1)
    alice.close()
    expect(caret(bob, "alice")).to_have_count(0)
    expect(peer(bob, "alice")).to_have_count(0)


def test_at_most_twenty_cursors_are_drawn_the_list_says_how_many_more(
        browsers: Browsers, server: ServerProcess) -> None:
    shared_doc(server)
    bob = browsers.sign_in("bob")
    open_doc(bob, DOC)
    # 25 participants, as the server would relay them (fed to the provider's own handler)
    bob.evaluate("""() => {
        const editor = window.dihya.editor;
        for (let i = 0; i < 25; i++) editor.onRemoteAwareness({
            doc_id: editor.docId, client_id: 1000 + i, user: {user_id: `u${i}`, name: `user ${i}`},
            state: {cursor: {anchor: i, head: i}}});
    }""")
    expect(bob.locator(".doc-cursors .doc-caret")).to_have_count(20)
    expect(bob.locator("#doc-peers li[data-user-id]")).to_have_count(20)
    expect(bob.locator("#doc-peers .doc-more")).to_have_text("+5 more")


def test_a_caret_in_a_wrapped_line_of_a_scrolling_text(
        browsers: Browsers, server: ServerProcess) -> None:
    """One long word wraps anywhere: the mirror must wrap it at the same place as the textarea.

    (Headless Chromium hides scrollbars, so the room a visible scrollbar takes is not tested.)"""
    text = "x" * 4000
    shared_doc(server, text)
    alice, bob = browsers.sign_in("alice"), browsers.sign_in("bob")
    for page in (alice, bob):
        open_doc(page, DOC)
    # characters per row in bob's textarea, from its content width and its font
    per_row = bob.evaluate("""() => {
        const ta = document.getElementById("doc-text"), style = getComputedStyle(ta);
        const ctx = document.createElement("canvas").getContext("2d");
        ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
        const width = ta.clientWidth - parseFloat(style.paddingLeft)
          - parseFloat(style.paddingRight);
        return Math.floor(width / ctx.measureText("x").width); }""")
    index = 2 * per_row + 5  # third row, sixth column
    alice.click("#doc-text")
    alice.evaluate(f"() => document.getElementById('doc-text').setSelectionRange({index}, {index})")
    alice.keyboard.press("ArrowRight")
    alice.keyboard.press("ArrowLeft")
    wait_text_before_caret(bob, "alice", text[:index])
    geometry = bob.evaluate("""(user) => {
        const ta = document.getElementById("doc-text"), style = getComputedStyle(ta);
        const caret = document.querySelector(`.doc-caret[data-user-id="${user}"]`);
        const ctx = document.createElement("canvas").getContext("2d");
        ctx.font = `${style.fontStyle} ${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
        const box = ta.getBoundingClientRect(), bar = caret.getBoundingClientRect();
        const left = box.left + parseFloat(style.borderLeftWidth) + parseFloat(style.paddingLeft);
        const top = box.top + parseFloat(style.borderTopWidth) + parseFloat(style.paddingTop);
        const lineHeight = parseFloat(style.lineHeight);
        return {column: (bar.left - left) / ctx.measureText("x").width,
                row: ((bar.top + bar.bottom) / 2 - top + ta.scrollTop) / lineHeight}; }""", "alice")
    assert abs(geometry["column"] - 5) < 0.2, geometry
    assert 2 < geometry["row"] < 3, geometry


def test_no_copy_of_the_text_is_laid_out_until_someone_elses_caret_is_there(
        browsers: Browsers, server: ServerProcess) -> None:
    """The mirror costs a layout of the whole text per frame: alone, it holds nothing."""
    shared_doc(server)
    alice = browsers.sign_in("alice")
    open_doc(alice, DOC)
    place_caret(alice, 5)
    alice.keyboard.type(" there")
    mirror_length = "() => document.querySelector('.doc-cursors').textContent.length"
    assert alice.evaluate(mirror_length) == 0
    bob = browsers.sign_in("bob")
    open_doc(bob, DOC)
    expect(peer(alice, "bob")).to_have_count(1)
    assert alice.evaluate(mirror_length) == 0  # bob is here, his caret is not placed
    place_caret(bob, 3)
    expect(caret(alice, "bob")).to_have_count(1)
    wait_text_before_caret(alice, "bob", "hel")
    bob.close()
    expect(caret(alice, "bob")).to_have_count(0)
    alice.wait_for_function(f"() => ({mirror_length})() === 0")
