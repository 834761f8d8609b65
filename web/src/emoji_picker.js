// An emoji picker: a popover of emoji in groups, with a search by name, for reactions and for
// the composer. One is open at a time; it lives on <body> (the message list is redrawn under
// it), stays inside the viewport (a phone too), and is driven by the keyboard: the search
// field first, arrow keys in the grid, Enter picks, Escape or a click outside closes and gives
// focus back to the button that opened it.
//
// The set is ours and small on purpose (no emoji database to download, no CDN): the common
// emoji of chat reactions, each with the words a search matches.
import { h } from "./dom.js";

/** [group, [[emoji, "words to search"], …]] */
export const EMOJI_GROUPS = [
  ["Smileys", [
    ["😀", "grinning smile happy"], ["😄", "smile happy joy"], ["😂", "joy tears laugh lol"],
    ["🤣", "rofl laugh rolling"], ["😊", "blush smile"], ["😍", "love heart eyes"],
    ["🥰", "love hearts adore"], ["😘", "kiss"], ["😉", "wink"], ["😎", "cool sunglasses"],
    ["🤔", "thinking hmm"], ["🙃", "upside down silly"], ["😅", "sweat smile phew"],
    ["😬", "grimace awkward"], ["😢", "cry sad tear"], ["😭", "sob crying"],
    ["😮", "wow surprised open mouth"], ["😱", "scream shocked fear"], ["😴", "sleep tired zzz"],
    ["🤯", "mind blown exploding"], ["😡", "angry mad rage"], ["🥳", "party celebrate"],
    ["🤩", "star struck excited"], ["😇", "innocent angel halo"],
  ]],
  ["Gestures", [
    ["👍", "thumbs up yes ok like +1"], ["👎", "thumbs down no dislike -1"],
    ["👏", "clap applause bravo"], ["🙌", "raised hands hooray"], ["🙏", "pray thanks please"],
    ["👋", "wave hello bye"], ["🤝", "handshake deal agree"], ["💪", "muscle strong flex"],
    ["👀", "eyes look watching"], ["🤞", "fingers crossed luck hope"], ["✌️", "victory peace"],
    ["👌", "ok perfect"], ["🫡", "salute respect"], ["🤷", "shrug dunno"],
    ["🙋", "raising hand me question"], ["🤦", "facepalm"],
  ]],
  ["Hearts", [
    ["❤️", "red heart love"], ["🧡", "orange heart"], ["💛", "yellow heart"],
    ["💚", "green heart"], ["💙", "blue heart"], ["💜", "purple heart"], ["🖤", "black heart"],
    ["💔", "broken heart"], ["💯", "hundred perfect score"], ["✨", "sparkles shiny new"],
  ]],
  ["Things", [
    ["🎉", "tada party celebrate hooray"], ["🚀", "rocket ship launch deploy"],
    ["🔥", "fire hot lit"], ["✅", "check done yes ok"], ["❌", "cross no wrong"],
    ["⚠️", "warning caution"], ["🐛", "bug insect"], ["💡", "idea bulb light"],
    ["📌", "pin pushpin"], ["📎", "paperclip attach"], ["📝", "memo note write"],
    ["🔒", "lock secure private"], ["⏰", "alarm clock time"], ["☕", "coffee tea break"],
    ["🍕", "pizza food"], ["🎂", "cake birthday"], ["🏆", "trophy win"], ["⭐", "star favourite"],
    ["🌈", "rainbow"], ["☀️", "sun sunny"], ["🌧️", "rain cloud"], ["🐱", "cat"],
    ["🐶", "dog"], ["🦄", "unicorn"],
  ]],
];

const COLUMNS = 8;
let open = null; // {panel, anchor, onKey, onDown}

/** Close the open picker (focus back to its button unless told otherwise). */
export function closeEmojiPicker({ restoreFocus = true } = {}) {
  if (!open) return;
  const { panel, anchor, onDown } = open;
  open = null;
  document.removeEventListener("pointerdown", onDown, true);
  panel.remove();
  anchor.setAttribute("aria-expanded", "false");
  if (restoreFocus && anchor.isConnected) anchor.focus();
}

export function emojiPickerOpen() {
  return open !== null;
}

/** The emoji whose words (or the emoji itself) contain every word of the query. */
export function searchEmoji(query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const found = [];
  for (const [, items] of EMOJI_GROUPS) {
    for (const [emoji, names] of items) {
      if (words.every((w) => names.includes(w) || emoji === w)) found.push([emoji, names]);
    }
  }
  return found;
}

/**
 * Open the picker by `anchor` (a button). `label` names it ("Add a reaction to …");
 * `onPick(emoji)` is called with the chosen emoji, then the picker closes.
 */
export function openEmojiPicker(anchor, { label, onPick }) {
  if (open && open.anchor === anchor) return closeEmojiPicker();
  closeEmojiPicker({ restoreFocus: false });
  const search = h("input", { type: "search", class: "emoji-search", placeholder: "Search emoji",
    "aria-label": "Search emoji", autocomplete: "off", maxlength: 40 });
  const body = h("div", { class: "emoji-body" });
  const status = h("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  const panel = h("div", { class: "emoji-picker", role: "dialog", "aria-label": label },
    search, body, status);

  const pick = (emoji) => {
    closeEmojiPicker();
    onPick(emoji);
  };
  const button = ([emoji, names]) => h("button", { type: "button", class: "emoji", tabindex: "-1",
    title: names.split(" ")[0], "aria-label": `${emoji} ${names.split(" ")[0]}`,
    dataset: { emoji }, onclick: () => pick(emoji) }, emoji);
  const grid = (items, name) => h("div", { class: "emoji-grid", role: "group", "aria-label": name },
    items.map(button));

  const draw = () => {
    const query = search.value.trim();
    if (query) {
      const found = searchEmoji(query);
      body.replaceChildren(found.length ? grid(found, `Results for ${query}`)
        : h("p", { class: "muted emoji-none" }, `No emoji for “${query}”`));
      status.textContent = `${found.length} emoji found`;
    } else {
      body.replaceChildren(...EMOJI_GROUPS.map(([name, items]) =>
        h("section", {}, h("h3", { class: "emoji-group" }, name), grid(items, name))));
      status.textContent = "";
    }
    const first = body.querySelector("button.emoji");
    if (first) first.tabIndex = 0; // the grid is one tab stop: arrows move inside it
  };
  search.addEventListener("input", draw);

  panel.addEventListener("keydown", (e) => {
    const buttons = [...body.querySelectorAll("button.emoji")];
    const i = buttons.indexOf(document.activeElement);
    const go = (j) => {
      const target = buttons[Math.max(0, Math.min(buttons.length - 1, j))];
      if (!target) return;
      e.preventDefault();
      for (const b of buttons) b.tabIndex = -1;
      target.tabIndex = 0;
      target.focus();
    };
    if (e.key === "Escape") {
      e.preventDefault();
      e.stopPropagation();
      closeEmojiPicker();
    } else if (e.target === search && (e.key === "ArrowDown" || e.key === "Enter")) {
      if (e.key === "Enter" && buttons.length) {
        e.preventDefault();
        pick(buttons[0].dataset.emoji); // Enter in the search takes the first match
      } else go(0);
    } else if (i >= 0) {
      if (e.key === "ArrowRight") go(i + 1);
      else if (e.key === "ArrowLeft") go(i - 1);
      else if (e.key === "ArrowDown") go(i + COLUMNS);
      else if (e.key === "ArrowUp") {
        if (i < COLUMNS) {
          e.preventDefault();
          search.focus();
        } else go(i - COLUMNS);
      } else if (e.key === "Home") go(0);
      else if (e.key === "End") go(buttons.length - 1);
    }
  });
  const onDown = (e) => {
    if (!panel.contains(e.target) && !anchor.contains(e.target)) closeEmojiPicker({ restoreFocus: false });
  };
  document.addEventListener("pointerdown", onDown, true);

  draw();
  document.body.append(panel);
  place(panel, anchor);
  anchor.setAttribute("aria-expanded", "true");
  open = { panel, anchor, onDown };
  search.focus();
}

/** Below the anchor (above when there is no room), kept inside the viewport. */
function place(panel, anchor) {
  const margin = 8;
  const a = anchor.getBoundingClientRect();
  const width = Math.min(panel.offsetWidth, window.innerWidth - 2 * margin);
  const height = panel.offsetHeight;
  let left = Math.min(a.left, window.innerWidth - width - margin);
  left = Math.max(margin, left);
  let top = a.bottom + 4;
  if (top + height > window.innerHeight - margin) top = Math.max(margin, a.top - height - 4);
  panel.style.left = `${left}px`;
  panel.style.top = `${top}px`;
}
