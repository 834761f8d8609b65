// The demo's connection: the dihya-realtime-client package (clients/js, docs/js-client.md),
// which holds the wire contract (token in the handshake at every reconnect, calls with an ack,
// `auth:expiring` → `auth:refresh`, `resync`), seen through the small surface the demo's
// panels use: `call` resolves to the envelope ({ok, data} | {ok: false, error}) so a panel
// shows a refusal instead of catching it; `state`/`onState`, `onConnect`, `on`/`off`.
import { createClient, RealtimeError } from "dihya-realtime-client";

export class Connection {
  /**
   * @param {string} token  the session's token, presented at every handshake
   * @param {() => Promise<string|null>} freshToken  a new token (dev mode mints one), asked on
   *   `auth:expiring` and when a handshake is refused as unauthenticated
   */
  constructor(token, freshToken) {
    this.token = token;
    this.freshToken = freshToken;
    this.rt = createClient(undefined, {
      autoConnect: false,
      getToken: async (reason) => {
        if (reason !== "connect" && this.freshToken) {
          const fresh = await this.freshToken();
          if (fresh) this.token = fresh;
        }
        return this.token;
      },
    });
  }

  get state() {
    return this.rt.state;
  }

  start() {
    this.rt.connect();
  }

  stop() {
    this.rt.close();
  }

  /** The banner's "Retry now": a new attempt at once instead of waiting for the backoff. */
  retry() {
    if (this.rt.connected) return;
    this.rt.socket.disconnect();
    this.rt.connect();
  }

  /** Calls fn(state, detail) now and at every change; returns a function that stops it. */
  onState(fn) {
    return this.rt.onState(fn);
  }

  /** fn({reconnect, resync}) at every (re)connection and on the server's `resync`. */
  onConnect(fn) {
    return this.rt.onConnect(fn);
  }

  on(event, fn) {
    this.rt.on(event, fn);
  }

  off(event, fn) {
    this.rt.off(event, fn);
  }

  /** Emit with an ack; always resolves to an envelope (timeouts and a lost connection
   *  included: codes `timeout`, `disconnected`). */
  call(event, payload = {}) {
    return envelope(this.rt.call(event, payload));
  }
}

/** A client call's promise as an envelope: `{ok: true, data}` or `{ok: false, error}` for a
 *  refusal, a timeout or a lost connection (anything else still throws). */
export async function envelope(pending) {
  try {
    return { ok: true, data: await pending };
  } catch (err) {
    if (err instanceof RealtimeError) return { ok: false, error: err.toJSON() };
    throw err;
  }
}
