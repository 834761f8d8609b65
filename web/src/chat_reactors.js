// Who reacted: hovering or focusing a reaction asks the server (`chat:reactors`, one page) and
// shows "You, Alice and 3 others" in a tooltip by the reaction; the answer is kept until the
// message's reactions change (`chat:reaction`), so moving the mouse back and forth asks once.
import { h } from "./dom.js";

const SHOWN = 8; // names in the tooltip; the rest are counted

export class Reactors {
  constructor(conn, me) {
    this.conn = conn;
    this.me = me;
    this.known = new Map(); // "message_id emoji" → {count, names}
    this.asking = new Map(); // same key → Promise
    this.generation = 0; // bumped when reactions change: older answers are not kept
    this.tip = null;
    this.tipFor = null;
  }

  /** Forget what is known of a message (its reactions changed): an answer on its way now
   * may predate the change, so it is shown once but not kept. */
  forget(messageId) {
    this.generation++;
    for (const map of [this.known, this.asking]) {
      for (const key of [...map.keys()]) if (key.startsWith(`${messageId} `)) map.delete(key);
    }
  }

  forgetAll() {
    this.generation++;
    this.known.clear();
    this.asking.clear();
  }

  /** "You, Alice and 3 others" for a message's emoji, once known (else null). */
  summary(messageId, emoji) {
    const known = this.known.get(`${messageId} ${emoji}`);
    return known ? describe(known) : null;
  }

  async fetch(messageId, emoji) {
    const key = `${messageId} ${emoji}`;
    if (this.known.has(key)) return this.known.get(key);
    if (!this.asking.has(key)) {
      const generation = this.generation;
      const asked = this.conn.call("chat:reactors", { message_id: messageId, emoji }).then((reply) => {
        if (this.asking.get(key) === asked) this.asking.delete(key);
        if (!reply.ok) return null;
        const names = reply.data.users.map((u) => (u.user_id === this.me ? "You" : u.name || u.user_id));
        // "You" first: it is what a person looks for
        names.sort((a, b) => (b === "You") - (a === "You"));
        const known = { count: reply.data.count, names, emoji };
        if (generation === this.generation) this.known.set(key, known);
        return known;
      });
      this.asking.set(key, asked);
    }
    return this.asking.get(key);
  }

  /** Show the tooltip by `chip` (a reaction button) once the server answered. */
  async show(chip, messageId, emoji) {
    this.tipFor = chip;
    let known = null;
    for (let tries = 0; tries < 3; tries++) { // reactions changed meanwhile: ask again
      const generation = this.generation;
      known = await this.fetch(messageId, emoji);
      if (generation === this.generation) break;
    }
    if (!known || this.tipFor !== chip || !chip.isConnected) return;
    this.hide();
    this.tipFor = chip;
    const text = `${emoji} ${describe(known)}`;
    this.tip = h("div", { class: "reactors-tip", role: "tooltip", id: "reactors-tip" }, text);
    document.body.append(this.tip);
    const r = chip.getBoundingClientRect();
    const width = Math.min(this.tip.offsetWidth, window.innerWidth - 16);
    this.tip.style.left = `${Math.max(8, Math.min(r.left, window.innerWidth - width - 8))}px`;
    const below = r.bottom + 4;
    this.tip.style.top = `${below + this.tip.offsetHeight > window.innerHeight ? r.top - this.tip.offsetHeight - 4 : below}px`;
    chip.setAttribute("aria-describedby", "reactors-tip");
    chip.title = describe(known);
  }

  hide() {
    this.tipFor?.removeAttribute?.("aria-describedby");
    this.tipFor = null;
    this.tip?.remove();
    this.tip = null;
  }
}

function describe({ count, names }) {
  if (!count) return "nobody yet";
  const shown = names.slice(0, Math.min(SHOWN, count));
  const others = count - shown.length;
  if (!others) return shown.length === 1 ? shown[0] : `${shown.slice(0, -1).join(", ")} and ${shown.at(-1)}`;
  return `${shown.join(", ")} and ${others} other${others > 1 ? "s" : ""}`;
}
