// The demo's channel subscriptions: the dihya-realtime-client package does the work (every
// publication once, in order, across reconnects: `since`, paged recovery, gap fill from
// history, dedupe by id across epochs; docs/js-client.md). This keeps the demo's surface:
// `subscribe` resolves to the subscribe reply envelope and reports a refusal to `onError`.

export class Channels {
  constructor(conn) {
    this.rt = conn.rt;
  }

  /**
   * Subscribe and receive each publication once, in order, through onPublication(pub),
   * after the `history` most recent ones. Resolves to the subscribe reply envelope.
   */
  async subscribe(channel, { onPublication, onError = () => {}, onPresence, history = 20 }) {
    if (this.rt.subscription(channel)) await this.unsubscribe(channel);
    const sub = this.rt.subscribe(channel, {
      onPublication,
      onPresence,
      history,
      onRecoveryFailed: ({ reason }) => console.warn(`${channel}: recovery failed (${reason}); `
        + "showing what history still holds"),
    });
    try {
      return { ok: true, data: await sub.ready };
    } catch (err) {
      const error = typeof err.toJSON === "function" ? err.toJSON() : { code: "internal", message: String(err) };
      onError(error);
      return { ok: false, error };
    }
  }

  async unsubscribe(channel) {
    try {
      await this.rt.unsubscribe(channel);
      return { ok: true, data: null };
    } catch (err) {
      return { ok: false, error: typeof err.toJSON === "function" ? err.toJSON() : { code: "internal", message: String(err) } };
    }
  }
}
