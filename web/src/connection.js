// One Socket.IO connection with the wire contract of dihya-realtime:
// - the token travels in the handshake `auth` (re-read at every reconnect);
// - every client event is emitted with an ack and answered {ok, data} | {ok: false, error};
// - the state (connecting / connected / reconnecting / offline) is published to listeners;
// - `auth:expiring` is answered with `auth:refresh` and a fresh token.
import { io } from "socket.io-client";

const ACK_TIMEOUT_MS = 10000;

export class Connection {
  /**
   * @param {() => Promise<string|null>} freshToken  returns a new token (dev mode mints one)
   */
  constructor(token, freshToken) {
    this.token = token;
    this.freshToken = freshToken;
    this.state = "offline";
    this.stateListeners = new Set();
    this.connectListeners = new Set();
    this.everConnected = false;
    this.socket = io({
      // a function, so a reconnect after a refresh presents the new token
      auth: (cb) => cb({ token: this.token }),
      autoConnect: false,
    });
    this.wire();
  }

  wire() {
    const socket = this.socket;
    socket.on("connect", () => {
      const reconnect = this.everConnected;
      this.everConnected = true;
      this.setState("connected");
      for (const fn of this.connectListeners) fn({ reconnect });
    });
    socket.on("disconnect", (reason) => {
      // "io client disconnect" is ours (sign out); anything else is retried by socket.io
      this.setState(reason === "io client disconnect" ? "offline" : "reconnecting");
      if (reason === "io server disconnect") socket.connect(); // the server kicked us: retry
    });
    socket.io.on("reconnect_attempt", () => this.setState("reconnecting"));
    socket.on("connect_error", async (err) => {
      // A refusal by the server (err.data set) is not retried by socket.io-client by itself.
      if (!err.data) {
        this.setState(navigator.onLine ? "reconnecting" : "offline");
        return;
      }
      if (err.data.code === "unauthenticated" && this.freshToken) {
        const token = await this.freshToken();
        if (token && token !== this.token) {
          this.token = token;
          socket.connect();
          return;
        }
      }
      this.setState("offline", `${err.data.code}: ${err.message}`);
    });
    socket.on("auth:expiring", () => this.refresh());
    // The server's broker links broke and are back: what it relayed meanwhile never came.
    // Re-read as after a reconnect (channels are caught up by the server itself).
    socket.on("resync", () => {
      for (const fn of this.connectListeners) fn({ reconnect: true, resync: true });
    });
    window.addEventListener("offline", () => this.setState("offline"));
    window.addEventListener("online", () => {
      if (!socket.connected) this.setState("reconnecting");
    });
  }

  async refresh() {
    const token = this.freshToken ? await this.freshToken() : null;
    if (!token) return;
    this.token = token;
    await this.call("auth:refresh", { token });
  }

  start() {
    this.setState("connecting");
    this.socket.connect();
  }

  stop() {
    this.socket.disconnect();
  }

  setState(state, detail = "") {
    this.state = state;
    for (const fn of this.stateListeners) fn(state, detail);
  }

  /** Calls fn(state, detail) now and at every change; returns a function that stops it. */
  onState(fn) {
    this.stateListeners.add(fn);
    fn(this.state, "");
    return () => this.stateListeners.delete(fn);
  }

  /**
   * Runs fn({reconnect, resync}) at every (re)connection, and with resync: true when the
   * server says `resync`: subscriptions are made again there, state re-read.
   * Returns a function that stops it.
   */
  onConnect(fn) {
    this.connectListeners.add(fn);
    return () => this.connectListeners.delete(fn);
  }

  on(event, fn) {
    this.socket.on(event, fn);
  }

  off(event, fn) {
    this.socket.off(event, fn);
  }

  /**
   * Emit with an ack; always resolves to an envelope: a timeout, or the connection lost
   * before the reply (code `disconnected`: the server may not have seen it), becomes an
   * error envelope at once rather than after the whole timeout.
   */
  async call(event, payload = {}) {
    let onLost;
    const lost = new Promise((resolve) => {
      onLost = () => resolve({ ok: false, error: {
        code: "disconnected", message: `the connection closed before the reply to ${event}` } });
    });
    const wasConnected = this.socket.connected;
    if (wasConnected) this.socket.once("disconnect", onLost);
    try {
      return await Promise.race([
        this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload), lost]);
    } catch {
      return { ok: false, error: { code: "timeout", message: `no reply to ${event}` } };
    } finally {
      if (wasConnected) this.socket.off("disconnect", onLost);
    }
  }
}
