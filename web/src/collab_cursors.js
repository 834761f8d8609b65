// The others' cursors over the Document panel's <textarea>: a colour per user, and an overlay
// that draws each remote caret (a bar with the name) and selection (a translucent highlight).
//
// A <textarea> cannot style parts of its text, so the overlay is a *mirror*: a div laid over
// it with the same box (font, padding, border widths, line height, wrapping, size, scroll),
// holding the same text in transparent ink. An inline marker placed in that text at a
// character index lands exactly where the textarea draws that character. The overlay is
// aria-hidden and ignores the pointer: the list of participants is the accessible account.
import * as Y from "yjs";

/**
 * Cursor colours: each has at least 4.5:1 against white (the name label's text) and so more
 * than 3:1 against the editor's backgrounds (#fff, read-only #f3f3f5) for the caret bar.
 * tests/e2e/test_collab_cursors.py checks both ratios for every entry.
 */
export const CURSOR_COLORS = [
  "#c0262d", "#1f5fbf", "#1d7a3a", "#8a4f00", "#7b2fa8",
  "#0b6e79", "#b0246e", "#4b5b00", "#3f45c0", "#a63d00",
];
export const LABEL_TEXT_COLOR = "#ffffff";
export const MAX_DRAWN = 20; // peers drawn (and listed); the list says "+N more"

/** The same colour for a user in every page: FNV-1a of the user id picks from the palette. */
export function colorOf(userId) {
  let hash = 0x811c9dc5;
  for (const ch of String(userId)) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return CURSOR_COLORS[hash % CURSOR_COLORS.length];
}

/** "#1f5fbf" → "rgba(31, 95, 191, a)" for the selection highlight. */
function translucent(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

/**
 * What my awareness state says about my caret: the indices (the documented wire format) and
 * the same positions as Yjs relative positions, which a peer resolves against its own copy,
 * so my caret stays after the same character whatever order edits and cursors arrive in.
 * Left-associated, as bindTextarea's own caret: what is typed at my caret goes after it.
 */
export function cursorState(ytext, anchor, head) {
  const rel = (index) => Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(ytext, index, -1));
  return { cursor: { anchor, head }, rel: { anchor: rel(anchor), head: rel(head) } };
}

/** A peer's cursor as indices into my text now: its relative positions if I hold them. */
export function resolveCursor(state, ytext) {
  const at = state?.cursor;
  if (!at || !Number.isInteger(at.anchor) || !Number.isInteger(at.head)) return null;
  const length = ytext.length;
  const resolve = (json, index) => {
    if (json && typeof json === "object") {
      try {
        const pos = Y.createAbsolutePositionFromRelativePosition(Y.createRelativePositionFromJSON(json), ytext.doc);
        if (pos && pos.type === ytext) return pos.index; // null: its character has not reached me yet
      } catch { /* malformed: fall back to the index */ }
    }
    return index;
  };
  const clamp = (i) => Math.max(0, Math.min(length, i));
  return { anchor: clamp(resolve(state.rel?.anchor, at.anchor)), head: clamp(resolve(state.rel?.head, at.head)) };
}

// The textarea's properties the mirror copies so its text wraps and scrolls the same way.
const MIRRORED = [
  "boxSizing", "fontFamily", "fontSize", "fontWeight", "fontStyle", "fontVariant", "fontStretch",
  "lineHeight", "letterSpacing", "wordSpacing", "textTransform", "textIndent", "textAlign",
  "tabSize", "direction", "whiteSpace", "overflowWrap", "wordBreak", "paddingTop", "paddingLeft", "paddingBottom",
  "borderTopWidth", "borderRightWidth", "borderBottomWidth", "borderLeftWidth",
  "borderTopStyle", "borderRightStyle", "borderBottomStyle", "borderLeftStyle",
];

/**
 * Draw the peers' cursors over `textarea`. Returns {render(peers), destroy()}; render takes the
 * provider's Map client_id → {user, state} and redraws on the next animation frame.
 */
export function cursorOverlay(textarea, ytext) {
  const overlay = document.createElement("div");
  overlay.className = "doc-cursors";
  overlay.setAttribute("aria-hidden", "true");
  textarea.after(overlay);
  let peers = new Map();
  let frame = 0;

  // a label that would leave the box goes below its caret, or ends at it
  const placeLabels = () => {
    for (const caret of overlay.querySelectorAll(".doc-caret")) {
      const label = caret.firstChild;
      const top = caret.offsetTop - overlay.scrollTop;
      caret.classList.toggle("label-below", top < label.offsetHeight);
      caret.classList.toggle("label-left", caret.offsetLeft + label.offsetWidth > overlay.clientWidth);
    }
  };

  const syncScroll = () => {
    overlay.scrollTop = textarea.scrollTop;
    overlay.scrollLeft = textarea.scrollLeft;
    placeLabels();
  };

  const syncBox = () => {
    const style = getComputedStyle(textarea);
    for (const name of MIRRORED) overlay.style[name] = style[name];
    overlay.style.borderColor = "transparent";
    // the textarea's scrollbar narrows its text; the mirror has none, so pad for it
    const scrollbar = textarea.offsetWidth - textarea.clientWidth
      - parseFloat(style.borderLeftWidth) - parseFloat(style.borderRightWidth);
    overlay.style.paddingRight = `${parseFloat(style.paddingRight) + Math.max(0, scrollbar)}px`;
    overlay.style.left = `${textarea.offsetLeft}px`;
    overlay.style.top = `${textarea.offsetTop}px`;
    overlay.style.width = `${textarea.offsetWidth}px`;
    overlay.style.height = `${textarea.offsetHeight}px`;
  };

  const draw = () => {
    frame = 0;
    syncBox();
    const text = ytext.toString();
    const drawn = [];
    for (const [clientId, peer] of peers) {
      if (drawn.length >= MAX_DRAWN) break;
      const at = resolveCursor(peer.state, ytext);
      if (at) drawn.push({ clientId, user: peer.user, color: colorOf(peer.user.user_id), ...at });
    }
    if (!drawn.length) { // alone (or nobody's caret placed): no copy of the text to lay out
      overlay.replaceChildren();
      return;
    }
    // boundaries where a selection starts or ends or a caret sits, in text order
    const cuts = new Set([0, text.length]);
    for (const c of drawn) { cuts.add(c.anchor); cuts.add(c.head); }
    const points = [...cuts].sort((a, b) => a - b);
    const content = document.createDocumentFragment();
    for (let i = 0; i < points.length; i++) {
      const at = points[i];
      for (const c of drawn) {
        if (c.head !== at) continue;
        const caret = document.createElement("span");
        caret.className = "doc-caret";
        caret.dataset.clientId = c.clientId;
        caret.dataset.userId = c.user.user_id;
        caret.style.setProperty("--cursor-color", c.color);
        const label = document.createElement("span");
        label.className = "doc-caret-label";
        label.textContent = c.user.name || c.user.user_id;
        caret.append(label);
        content.append(caret);
      }
      if (i + 1 >= points.length) break;
      let node = document.createTextNode(text.slice(at, points[i + 1]));
      for (const c of drawn) {
        if (Math.min(c.anchor, c.head) > at || Math.max(c.anchor, c.head) <= at) continue;
        const mark = document.createElement("span");
        mark.className = "doc-selection";
        mark.dataset.clientId = c.clientId;
        mark.style.background = translucent(c.color, 0.25);
        mark.append(node);
        node = mark;
      }
      content.append(node);
    }
    // a final newline opens a line in the textarea, not in a div: keep the heights equal
    if (text.endsWith("\n")) content.append(" ");
    overlay.replaceChildren(content);
    syncScroll();
  };

  const schedule = () => { if (!frame) frame = requestAnimationFrame(draw); };
  const resize = new ResizeObserver(schedule);
  resize.observe(textarea);
  textarea.addEventListener("scroll", syncScroll);
  ytext.observe(schedule); // local typing and remote edits move the others' cursors

  return {
    render(next) { peers = next; schedule(); },
    destroy() {
      cancelAnimationFrame(frame);
      resize.disconnect();
      textarea.removeEventListener("scroll", syncScroll);
      ytext.unobserve(schedule);
      overlay.remove();
    },
  };
}
