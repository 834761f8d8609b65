// Channel subscriptions that lose nothing across reconnects.
//
// For each channel we keep the last {offset, epoch} seen. The first subscription reads the
// recent history, then subscribes with `since` = the history's position (no gap between the
// two). After a reconnect we subscribe again with `since`: the reply's `publications` are
// exactly what was missed. When the server cannot recover (`recovered: false`: a new epoch
// after a restart without Redis, or history too short) we read the history again. Every
// publication is delivered once: by offset within an epoch, and by id across epochs.
//
// A long recovery comes in pages (`more: true`): we continue with `history` from the last
// offset received, holding back live publications of that channel until the pages are in,
// so they arrive in order. `unsubscribed` with reason `recover` (the server's fan-out was
// away and it cannot fill the gap itself) is answered by subscribing again with `since`.

const SEEN_IDS_KEPT = 2000;
// not a refusal: the connection went away first; the next (re)connect subscribes again
const RETRY_AT_NEXT_CONNECT = new Set(["disconnected", "timeout"]);

export class Channels {
  constructor(conn) {
    this.conn = conn;
    this.subs = new Map();
    conn.on("publication", (pub) => this.deliver(pub));
    conn.on("unsubscribed", ({ channel, reason }) => {
      const sub = this.subs.get(channel);
      if (sub && reason === "recover") this.resubscribe(sub);
    });
    conn.onConnect(({ reconnect, resync }) => {
      // after a resync the server has caught channel subscriptions up itself
      if (reconnect && !resync) for (const sub of this.subs.values()) this.resubscribe(sub);
    });
  }

  /**
   * Subscribe and receive each publication once, in order, through onPublication(pub).
   * Resolves to the subscribe reply envelope (an error envelope when refused).
   */
  async subscribe(channel, { onPublication, onError = () => {}, onPresence, history = 20 }) {
    const sub = { channel, onPublication, onError, onPresence, position: null, seen: new Set(),
                  held: null };
    this.subs.set(channel, sub);
    if (history > 0) {
      const past = await this.conn.call("history", { channel, limit: history });
      if (!past.ok) return this.refused(sub, past);
      for (const pub of past.data.publications) this.accept(sub, pub);
      sub.position = { offset: past.data.offset, epoch: past.data.epoch };
    }
    return this.resubscribe(sub);
  }

  async resubscribe(sub) {
    const payload = { channel: sub.channel };
    if (sub.position) payload.since = sub.position;
    const reply = await this.conn.call("subscribe", payload);
    if (!reply.ok && RETRY_AT_NEXT_CONNECT.has(reply.error.code)) return reply;
    if (!reply.ok) return this.refused(sub, reply);
    const data = reply.data;
    if (sub.position && !data.recovered) {
      // a gap we cannot fill from `since`: take what history still holds, deduplicated by id
      const past = await this.conn.call("history", { channel: sub.channel, limit: 100 });
      if (past.ok) for (const pub of past.data.publications) this.accept(sub, pub, true);
      advance(sub, data);
    } else {
      sub.held = [];  // live publications wait while the pages come in
      for (const pub of data.publications) this.accept(sub, pub);
      if (data.more) await this.readPages(sub);
      const held = sub.held;
      sub.held = null;
      for (const pub of held) this.accept(sub, pub);
      advance(sub, data);
    }
    if (data.presence && sub.onPresence) sub.onPresence(data.presence.members);
    return reply;
  }

  /** Continue a paged recovery with `history` from the last offset received. */
  async readPages(sub) {
    for (;;) {
      const page = await this.conn.call("history", { channel: sub.channel, since: sub.position });
      if (!page.ok || !page.data.recovered) {
        // gone meanwhile: take what history still holds, deduplicated by id
        const past = await this.conn.call("history", { channel: sub.channel, limit: 100 });
        if (past.ok) for (const pub of past.data.publications) this.accept(sub, pub, true);
        return;
      }
      for (const pub of page.data.publications) this.accept(sub, pub);
      if (!page.data.more || page.data.publications.length === 0) return;
    }
  }

  refused(sub, reply) {
    this.subs.delete(sub.channel);
    sub.onError(reply.error);
    return reply;
  }

  async unsubscribe(channel) {
    this.subs.delete(channel);
    return this.conn.call("unsubscribe", { channel });
  }

  deliver(pub) {
    const sub = this.subs.get(pub.channel);
    if (sub && sub.held) sub.held.push(pub);
    else if (sub) this.accept(sub, pub);
  }

  accept(sub, pub, anyEpoch = false) {
    const pos = sub.position;
    if (!anyEpoch && pos && pub.epoch === pos.epoch && pub.offset <= pos.offset) return;
    if (sub.seen.has(pub.id)) return;
    sub.seen.add(pub.id);
    if (sub.seen.size > SEEN_IDS_KEPT) sub.seen.delete(sub.seen.values().next().value);
    advance(sub, pub);
    sub.onPublication(pub);
  }
}

/** Move the channel's position forward (a new epoch replaces the old one). */
function advance(sub, { offset, epoch }) {
  const pos = sub.position;
  if (!pos || pos.epoch !== epoch || offset > pos.offset) sub.position = { offset, epoch };
}
