// The chat's outbox: every message typed is kept here, with its client_msg_id, until the server
// has stored it. Nothing typed is lost or sent twice:
// - offline, messages wait (status "waiting") and go out, in order, once connected again;
// - a refusal by the rate limit (`rate_limited`, `retry_after`) waits that long and resends;
// - a timeout resends the same client_msg_id: the server returns the stored message
//   (`duplicate: true`) if the first attempt got through, so a resend never doubles a message;
// - any other refusal (not a member, muted, too long…) marks the message "failed": the page
//   shows why, with Retry (same client_msg_id) and Discard.
// One message is in flight at a time, so the room sees them in the order they were typed.
// The queue is kept in the tab's sessionStorage: a reload resends what was not confirmed, with
// the same client_msg_id (a message stored before the reload comes back as a duplicate).

const RETRY_TIMEOUT_MS = 1000;

export class Outbox {
  /**
   * @param conn the Connection (call, onConnect)
   * @param {{onChange: () => void, onSent: (item, message) => void, storageKey: string}} hooks
   */
  constructor(conn, { onChange, onSent, storageKey }) {
    this.conn = conn;
    this.onChange = () => {
      this.save();
      onChange();
    };
    this.onSent = onSent;
    this.storageKey = storageKey;
    this.items = this.load(); // {cmid, roomId, text, replyTo, status, error}
    this.running = false;
    conn.onConnect(() => this.pump());
  }

  load() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(this.storageKey) || "[]");
      return saved.filter((i) => i && typeof i.cmid === "string" && typeof i.text === "string")
        .map((i) => ({ ...i, status: i.status === "failed" ? "failed" : "waiting" }));
    } catch {
      return [];
    }
  }

  save() {
    try {
      if (this.items.length) sessionStorage.setItem(this.storageKey, JSON.stringify(this.items));
      else sessionStorage.removeItem(this.storageKey);
    } catch { /* storage full or disabled: the queue still lives in this page */ }
  }

  /** Queue a message; it is shown at once (pending) and sent as soon as possible. */
  add(roomId, text, replyTo = null) {
    const item = { cmid: crypto.randomUUID(), roomId, text, replyTo, status: "sending", error: null };
    this.items.push(item);
    this.onChange();
    this.pump();
    return item;
  }

  forRoom(roomId) {
    return this.items.filter((item) => item.roomId === roomId);
  }

  /** Resend a failed message with its own client_msg_id (idempotent on the server). */
  retry(cmid) {
    const item = this.items.find((i) => i.cmid === cmid);
    if (!item) return;
    Object.assign(item, { status: "sending", error: null });
    this.onChange();
    this.pump();
  }

  /** The server stored it (its push came before, or instead of, the reply): done with it. */
  confirm(cmid) {
    if (!this.items.some((i) => i.cmid === cmid)) return;
    this.items = this.items.filter((i) => i.cmid !== cmid);
    this.onChange();
  }

  discard(cmid) {
    this.items = this.items.filter((i) => i.cmid !== cmid);
    this.onChange();
  }

  /** The messages that wait for the connection (shown next to the composer). */
  get waiting() {
    return this.items.filter((i) => i.status === "waiting").length;
  }

  async pump() {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        const item = this.items.find((i) => i.status === "sending" || i.status === "waiting");
        if (!item) return;
        if (this.conn.state !== "connected") {
          this.mark("waiting");
          return; // onConnect pumps again
        }
        item.status = "sending";
        this.onChange();
        const reply = await this.conn.call("chat:send", {
          room_id: item.roomId, text: item.text, client_msg_id: item.cmid,
          ...(item.replyTo ? { reply_to: item.replyTo } : {}),
        });
        if (reply.ok) {
          this.items = this.items.filter((i) => i !== item);
          this.onSent(item, reply.data);
          this.onChange();
          continue;
        }
        const { code } = reply.error;
        if (code === "disconnected") {
          this.mark("waiting");
          return;
        }
        if (code === "rate_limited" || code === "timeout") {
          const wait = code === "rate_limited"
            ? Math.max(0.05, Number(reply.error.retry_after) || 1) * 1000 : RETRY_TIMEOUT_MS;
          item.status = "waiting";
          this.onChange();
          await new Promise((resolve) => setTimeout(resolve, wait));
          if (item.status === "waiting") item.status = "sending";
          continue;
        }
        Object.assign(item, { status: "failed", error: reply.error });
        this.onChange();
      }
    } finally {
      this.running = false;
    }
  }

  mark(status) {
    for (const item of this.items) if (item.status === "sending") item.status = status;
    this.onChange();
  }
}
