// The message list of the open room, drawn from its state: date separators, a "New messages"
// divider at the first unread message, consecutive messages of one author grouped, replies
// quoted, links clickable, mentions highlighted, reactions (yours pressed), read receipts once
// (under the last message of mine someone read), pending / failed sends with Retry.
//
// User text only ever becomes text nodes and <a> elements built here (never innerHTML); a link
// is made only of an http(s) URL and opens with rel="noopener noreferrer".
import { h } from "./dom.js";

export const EMOJIS = ["👍", "🎉", "❤️", "😄", "👀"];
const GROUP_WITHIN_MS = 5 * 60 * 1000;
const SNIPPET = 40;
const TOKENS = /(https?:\/\/[^\s<>"']+)|(@[A-Za-z0-9_.:-]+)/g;

const dateOf = (iso) => new Date(iso);
const dayKey = (iso) => dateOf(iso).toDateString();
const authorName = (m) => (m.author ? m.author.name || m.author.user_id : "system");

export const snippet = (text) => {
  const flat = (text || "").replace(/\s+/g, " ").trim();
  return flat.length > SNIPPET ? `${flat.slice(0, SNIPPET)}…` : flat;
};

/** "Today", "Yesterday" or the date, for a separator. */
function dayLabel(iso) {
  const d = dateOf(iso);
  const today = new Date();
  const yesterday = new Date(today.getTime() - 86400000);
  if (d.toDateString() === today.toDateString()) return "Today";
  if (d.toDateString() === yesterday.toDateString()) return "Yesterday";
  return d.toLocaleDateString(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" });
}

/** Text → text nodes, safe links and highlighted mentions. */
export function richText(text, mentions, me) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(TOKENS)) {
    if (match.index > last) parts.push(text.slice(last, match.index));
    const [token, url, mention] = match;
    if (url) {
      const trimmed = url.replace(/[.,;:!?)\]]+$/, "");
      let safe = null;
      try {
        const parsed = new URL(trimmed);
        if (parsed.protocol === "http:" || parsed.protocol === "https:") safe = parsed.href;
      } catch { /* not a URL: plain text */ }
      if (safe) {
        parts.push(h("a", { href: safe, target: "_blank", rel: "noopener noreferrer nofollow" }, trimmed));
        if (trimmed.length < url.length) parts.push(url.slice(trimmed.length));
      } else parts.push(token);
    } else if (mention) {
      const user = mention.slice(1);
      const known = mentions.includes(user);
      parts.push(known
        ? h("span", { class: user === me ? "mention me" : "mention" }, mention)
        : mention);
    }
    last = match.index + token.length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

/**
 * Draw the room into `list`.
 * @param state {me, moderates, messages: Map seq→message, members: Map, myReactions: Map id→Set,
 *   unreadFrom: seq|null, editing: {id, draft}|null, confirming: id|null,
 *   pending: [outbox items], focusSeq}
 * @param act {react(m, emoji), pickReaction(button, m, about), reactorsSummary(m, emoji),
 *   showReactors(chip, m, emoji), hideReactors(), reply(m), edit(m), cancelEdit(), saveEdit(m, text),
 *   askDelete(m), confirmDelete(m), cancelDelete(), retry(cmid), discard(cmid), draft(text)}
 */
export function renderMessages(list, state, act) {
  const { me } = state;
  const sorted = [...state.messages.values()].sort((a, b) => a.seq - b.seq);
  const byId = new Map(sorted.map((m) => [m.id, m]));
  const storedCmids = new Set(sorted.filter((m) => m.author?.user_id === me).map((m) => m.client_msg_id));
  const receiptSeq = lastReadOwnSeq(sorted, state);
  const items = [];
  let prev = null;
  for (const m of sorted) {
    if (!prev || dayKey(prev.created_at) !== dayKey(m.created_at)) {
      items.push(h("li", { class: "date-separator" }, h("span", {}, dayLabel(m.created_at))));
      prev = null;
    }
    if (state.unreadFrom !== null && m.seq === state.unreadFrom) {
      items.push(h("li", { class: "unread-divider", id: "unread-divider" },
        h("span", {}, "New messages")));
      prev = null;
    }
    const grouped = prev && prev.kind === m.kind && prev.author?.user_id === m.author?.user_id
      && !prev.deleted && dateOf(m.created_at) - dateOf(prev.created_at) < GROUP_WITHIN_MS;
    items.push(messageItem(m, { state, act, grouped, byId, receipt: m.seq === receiptSeq }));
    prev = m;
  }
  for (const item of state.pending) {
    if (!storedCmids.has(item.cmid)) items.push(pendingItem(item, act));
  }
  list.replaceChildren(...items);
  // roving focus: one message is the list's tab stop
  const messages = [...list.querySelectorAll("li.message[data-seq]")];
  const focusable = messages.find((li) => Number(li.dataset.seq) === state.focusSeq) || messages.at(-1);
  if (focusable) focusable.tabIndex = 0;
}

/** The seq of the last message of mine that another member has read (receipts shown once). */
function lastReadOwnSeq(sorted, state) {
  for (let i = sorted.length - 1; i >= 0; i--) {
    const m = sorted[i];
    if (m.author?.user_id !== state.me || m.deleted) continue;
    if (readersOf(m, state).length) return m.seq;
  }
  return null;
}

function readersOf(message, state) {
  return [...state.members.values()]
    .filter((member) => member.user_id !== state.me && member.last_read_seq >= message.seq)
    .map((member) => member.name || member.user_id);
}

function messageItem(m, { state, act, grouped, byId, receipt }) {
  const { me } = state;
  const own = m.author?.user_id === me;
  const who = own ? "your message" : `${authorName(m)}'s message`;
  const about = `${who} "${snippet(m.text)}"`;
  const mentionsMe = (m.mentions || []).includes(me) && !own;
  const created = dateOf(m.created_at);
  const li = h("li", {
    class: ["message", own && "own", m.kind === "system" && "system", grouped && "grouped",
      mentionsMe && "mentions-me"].filter(Boolean).join(" "),
    dataset: { seq: m.seq, id: m.id },
    tabindex: "-1",
    "aria-label": `${authorName(m)}, ${created.toLocaleString()}: ${m.deleted ? "message deleted" : snippet(m.text)}`,
  },
  h("div", { class: "meta" },
    h("strong", { class: "author" }, authorName(m)), " ",
    h("time", { class: "muted", datetime: m.created_at, title: created.toLocaleString() },
      created.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })),
    m.edited_at && !m.deleted ? h("span", { class: "muted" }, " (edited)") : null));

  const parent = m.reply_to ? byId.get(m.reply_to) : null;
  if (m.reply_to) {
    li.append(h("div", { class: "reply-quote" }, "↪ ",
      parent ? h("strong", {}, authorName(parent)) : "an earlier message",
      parent ? `: ${parent.deleted ? "message deleted" : snippet(parent.text)}` : null));
  }

  if (state.editing && state.editing.id === m.id) {
    li.append(editForm(m, state, act));
  } else {
    li.append(h("div", { class: "text" }, m.deleted
      ? h("em", { class: "muted" }, "message deleted")
      : richText(m.text || "", m.mentions || [], me)));
  }

  if (!m.deleted && m.kind !== "system") {
    const mine = state.myReactions.get(m.id) || new Set();
    const counts = m.reactions || {};
    const chips = Object.entries(counts).filter(([, n]) => n > 0);
    if (chips.length) {
      li.append(h("div", { class: "reactions" }, chips.map(([emoji, n]) => {
        const who = act.reactorsSummary(m, emoji); // known once hovered or focused
        return h("button", {
          type: "button", class: "reaction has", tabindex: "-1",
          "aria-pressed": String(mine.has(emoji)),
          "aria-label": `React ${emoji}, ${n}${who ? ` (${who})` : ""}${mine.has(emoji) ? ", yours: click to take it back" : ""} on ${about}`,
          title: who || (mine.has(emoji) ? "You reacted: click to take it back" : "React"),
          dataset: { emoji, focusKey: `reaction ${emoji}` },
          onclick: () => act.react(m, emoji),
          onmouseenter: (e) => act.showReactors(e.currentTarget, m, emoji),
          onfocus: (e) => act.showReactors(e.currentTarget, m, emoji),
          onmouseleave: () => act.hideReactors(),
          onblur: () => act.hideReactors(),
        }, `${emoji} ${n}`);
      })));
    }
    if (state.confirming === m.id) {
      li.append(h("div", { class: "confirm-delete", role: "group", "aria-label": "Confirm delete" },
        h("span", {}, "Delete this message for everyone?"), " ",
        h("button", { type: "button", class: "danger", tabindex: "-1", dataset: { focusKey: "confirm" },
          "aria-label": `Confirm delete of ${about}`, onclick: () => act.confirmDelete(m) }, "Delete"),
        h("button", { type: "button", tabindex: "-1", onclick: () => act.cancelDelete() }, "Cancel")));
    } else {
      const actions = h("div", { class: "actions", role: "toolbar", "aria-label": `Actions on ${about}` });
      for (const emoji of EMOJIS) {
        if (counts[emoji]) continue;
        actions.append(h("button", { type: "button", class: "reaction", tabindex: "-1",
          "aria-label": `React ${emoji} to ${about}`, title: `React ${emoji}`,
          onclick: () => act.react(m, emoji) }, emoji));
      }
      actions.append(h("button", { type: "button", class: "add-reaction", tabindex: "-1",
        "aria-haspopup": "dialog", "aria-expanded": "false", dataset: { focusKey: "add-reaction" },
        "aria-label": `Add a reaction to ${about}`, title: "Add a reaction",
        onclick: (e) => act.pickReaction(e.currentTarget, m, about) }, "😊+"));
      actions.append(h("button", { type: "button", class: "reply", tabindex: "-1",
        "aria-label": `Reply to ${about}`, onclick: () => act.reply(m) }, "Reply"));
      if (own) {
        actions.append(h("button", { type: "button", class: "edit", tabindex: "-1",
          "aria-label": `Edit ${about}`, onclick: () => act.edit(m) }, "Edit"));
      }
      if (own || state.moderates) { // a room's owner and moderators delete any message
        actions.append(h("button", { type: "button", class: "delete", tabindex: "-1",
          "aria-label": `Delete ${about}`, onclick: () => act.askDelete(m) }, "Delete"));
      }
      li.append(actions);
    }
  }
  if (receipt) {
    li.append(h("span", { class: "receipt" }, `✓ read by ${readersOf(m, state).join(", ")}`));
  }
  return li;
}

function editForm(m, state, act) {
  const field = h("input", { "aria-label": `Edit your message "${snippet(m.text)}"`, maxlength: 4000,
    value: state.editing.draft ?? m.text, dataset: { focusKey: "edit" },
    oninput: (e) => act.draft(e.target.value),
    onkeydown: (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        act.cancelEdit();
      }
    } });
  return h("form", { class: "edit-form", onsubmit: (e) => {
    e.preventDefault();
    act.saveEdit(m, field.value);
  } }, field, h("button", { type: "submit" }, "Save"),
  h("button", { type: "button", onclick: () => act.cancelEdit() }, "Cancel"),
  h("span", { class: "muted hint" }, "Esc to cancel"));
}

function pendingItem(item, act) {
  const status = {
    sending: "Sending…",
    waiting: "Waiting for the connection…",
    failed: `Not sent: ${item.error ? `${item.error.code}: ${item.error.message}` : "error"}`,
  }[item.status];
  return h("li", { class: `pending ${item.status}`, dataset: { cmid: item.cmid } },
    h("div", { class: "text" }, item.text),
    h("div", { class: "send-status", role: item.status === "failed" ? "alert" : null }, status,
      item.status === "failed" ? [" ",
        h("button", { type: "button", class: "retry", "aria-label": `Retry sending "${snippet(item.text)}"`,
          onclick: () => act.retry(item.cmid) }, "Retry"), " ",
        h("button", { type: "button", class: "discard", "aria-label": `Discard "${snippet(item.text)}"`,
          onclick: () => act.discard(item.cmid) }, "Discard")] : null));
}
