// One connection to a dihya-realtime server with what makes the protocol worth having:
//
// - `call(event, payload)` resolves with the reply's `data` or rejects with RealtimeError
//   (also `timeout`, and `disconnected` when the connection was down or closed first);
// - `subscribe(channel, {onPublication})`: every publication once, in order. After any
//   reconnect each subscription is made again with `since` (its last offset and epoch) and the
//   missed publications arrive first, page after page (`more: true`); a live offset gap is
//   filled from `history`; when the server cannot recover, `onRecoveryFailed` is called
//   (never a silent gap); `unsubscribed` with reason `recover` subscribes again with `since`;
// - `getToken` is asked for the token at every (re)connect and on `auth:expiring` (then
//   `auth:refresh` is sent and the connection stays up);
// - `on(event, fn)` for server events, `resync` included; `onConnect(fn)` runs at every
//   (re)connect with `{reconnect, resync: false}` and on `resync` with `{reconnect: true,
//   resync: true}`: re-read what you hold (channels are caught up already).
//
// Each subscription's work (subscribe, history pages, gap fills) runs one task at a time;
// live publications of that channel arriving meanwhile are held (bounded) and released in
// offset order afterwards, so the application sees one ordered stream.
import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import { DISCONNECTED, RealtimeError, TIMEOUT, unwrap } from "./errors.js";
import type {
  ClientEvents, HistoryReply, PresenceMember, PublicationModel, ServerEvents, SubscribeReply,
  UnsubscribedEvent,
} from "./generated/events.js";
import { ChannelStream, HELD_KEPT, type Position, SEEN_IDS_KEPT } from "./stream.js";

export type Publication = PublicationModel;
/** Why the client asks for a token: a handshake, `auth:expiring`, or a handshake refused
 *  as `unauthenticated` (the token it had was not accepted: get a new one). */
export type TokenReason = "connect" | "expiring" | "refused";
export type TokenSource = (reason: TokenReason) => string | null | undefined
  | Promise<string | null | undefined>;
export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline";

export interface ConnectInfo {
  /** false at the first connect only */
  reconnect: boolean;
  /** true when the server said `resync` (the connection itself stayed up) */
  resync: boolean;
}

/** What `onRecoveryFailed` receives: publications after `since` may never reach
 *  `onPublication`; re-read the state the channel feeds. `reason`: `not_recovered` (the server
 *  answered `recovered: false`: a new epoch, or history no longer reaches back) or `history`
 *  (a gap could not be read from history). */
export interface RecoveryFailed {
  channel: string;
  since: Position | null;
  position: Position | null;
  reason: "not_recovered" | "history";
}

export interface ClientOptions {
  /** the token for the handshake when there is no `getToken` */
  token?: string | null;
  /** asked at every (re)connect and on `auth:expiring`; a throw keeps the previous token */
  getToken?: TokenSource;
  /** milliseconds a call waits for its reply (default 10000) */
  ackTimeout?: number;
  /** connect at once (default true); else call `connect()` */
  autoConnect?: boolean;
  /** socket.io-client's transports (default: its own, polling then WebSocket) */
  transports?: ("polling" | "websocket" | "webtransport")[];
  reconnectionDelay?: number;
  reconnectionDelayMax?: number;
  /** publication ids kept per channel to drop repeats across epochs (default 2000) */
  maxSeenIds?: number;
  /** live publications held per channel during a catch-up (default 10000; past it they are
   *  read back from history) */
  maxHeld?: number;
  /** after a recovery that failed, read up to this many recent publications from history
   *  (delivered unless already seen; default 100, 0 for none) */
  recoveryHistoryLimit?: number;
  /** anything else for socket.io-client's `io()` */
  socketOptions?: Partial<ManagerOptions & SocketOptions>;
}

export interface SubscribeOptions {
  onPublication: (pub: Publication) => void;
  onRecoveryFailed?: (info: RecoveryFailed) => void;
  /** the server ended the subscription (`unsubscribed`, or a refusal after a reconnect) */
  onUnsubscribed?: (event: UnsubscribedEvent) => void;
  /** the subscribe reply's presence members, when the channel has presence */
  onPresence?: (members: PresenceMember[]) => void;
  /** continue after a position the application already has */
  since?: Position;
  /** read this many recent publications first, then subscribe after them (default 0) */
  history?: number;
}

export interface CallOptions {
  /** milliseconds (default: the client's `ackTimeout`) */
  timeout?: number;
}

type EventMap = { [event: string]: { payload: unknown; reply: unknown } };
type PayloadOf<C, E extends keyof C> = C[E] extends { payload: infer P } ? P : unknown;
type ReplyOf<C, E extends keyof C> = C[E] extends { reply: infer R } ? R : unknown;
/** A client event without a payload may be called without one. */
type CallArgs<C, E extends keyof C> = {} extends PayloadOf<C, E>
  ? [payload?: PayloadOf<C, E>, options?: CallOptions]
  : [payload: PayloadOf<C, E>, options?: CallOptions];
/** Events socket.io-client emits itself. */
interface LifecycleEvents {
  connect: void;
  disconnect: string;
  connect_error: Error & { data?: unknown };
}

const ACK_TIMEOUT_MS = 10000;
const RECOVERY_HISTORY_LIMIT = 100;
const REFUSED_RETRIES = 3;
const GAP_FILL_ROUNDS = 3;
// not a refusal: the connection went away first; the next (re)connect subscribes again
const RETRY_AT_NEXT_CONNECT = new Set([DISCONNECTED, TIMEOUT]);

export class Subscription {
  readonly channel: string;
  /** resolves with the first subscribe reply's `data`, rejects with RealtimeError */
  readonly ready: Promise<SubscribeReply>;
  active = true;
  /** why it ended: "client", or the server's reason / refusal code */
  closedReason: string | null = null;
  /** @internal */ readonly stream: ChannelStream<Publication>;
  /** @internal */ chain: Promise<void> = Promise.resolve();
  /** @internal */ historyFirst: number;
  private settled = false;
  private resolveReady!: (data: SubscribeReply) => void;
  private rejectReady!: (err: RealtimeError) => void;

  /** @internal */
  constructor(private readonly client: RealtimeClient<any, any>, channel: string,
              readonly options: SubscribeOptions, maxSeen: number, maxHeld: number) {
    this.channel = channel;
    this.stream = new ChannelStream(options.since ?? null, maxSeen, maxHeld);
    this.historyFirst = options.since ? 0 : Math.max(0, options.history ?? 0);
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {}); // a refusal nobody awaits is not an unhandled rejection
  }

  /** The last publication delivered (what `since` will be after a reconnect). */
  get position(): Position | null {
    return this.stream.position;
  }

  unsubscribe(): Promise<void> {
    return this.client.unsubscribe(this.channel);
  }

  /** @internal */
  settle(data: SubscribeReply | null, error?: RealtimeError): void {
    if (this.settled) return;
    this.settled = true;
    if (error) this.rejectReady(error);
    else this.resolveReady(data as SubscribeReply);
  }

  /** @internal */
  get isSettled(): boolean {
    return this.settled;
  }
}

export class RealtimeClient<C extends object = ClientEvents, S extends object = ServerEvents> {
  readonly socket: Socket;
  state: ConnectionState = "offline";
  /** the token the last handshake or `auth:refresh` presented */
  token: string | null;
  private readonly getToken: TokenSource | null;
  private readonly ackTimeout: number;
  private readonly maxSeen: number;
  private readonly maxHeld: number;
  private readonly recoveryHistoryLimit: number;
  private readonly subs = new Map<string, Subscription>();
  private readonly stateListeners = new Set<(state: ConnectionState, detail: string) => void>();
  private readonly connectListeners = new Set<(info: ConnectInfo) => void>();
  private everConnected = false;
  private closed = false;
  private refusals = 0;
  private nextReason: TokenReason = "connect";

  constructor(url: string | undefined, options: ClientOptions = {}) {
    this.token = options.token ?? null;
    this.getToken = options.getToken ?? null;
    this.ackTimeout = options.ackTimeout ?? ACK_TIMEOUT_MS;
    this.maxSeen = options.maxSeenIds ?? SEEN_IDS_KEPT;
    this.maxHeld = options.maxHeld ?? HELD_KEPT;
    this.recoveryHistoryLimit = options.recoveryHistoryLimit ?? RECOVERY_HISTORY_LIMIT;
    const socketOptions: Partial<ManagerOptions & SocketOptions> = {
      forceNew: true,
      ...options.socketOptions,
      autoConnect: false,
      // a function: every (re)connect presents the token getToken gives then
      auth: (cb) => {
        this.handshakeToken().then((token) => cb(token ? { token } : {}));
      },
    };
    if (options.transports) socketOptions.transports = options.transports;
    if (options.reconnectionDelay !== undefined) {
      socketOptions.reconnectionDelay = options.reconnectionDelay;
    }
    if (options.reconnectionDelayMax !== undefined) {
      socketOptions.reconnectionDelayMax = options.reconnectionDelayMax;
    }
    this.socket = url === undefined ? io(socketOptions) : io(url, socketOptions);
    this.wire();
    if (options.autoConnect ?? true) this.connect();
  }

  // -- lifetime
  connect(): this {
    this.closed = false;
    this.setState("connecting");
    this.socket.connect();
    return this;
  }

  /** Disconnect for good: no reconnect; pending calls reject with `disconnected`. */
  close(): void {
    this.closed = true;
    this.socket.disconnect();
    this.setState("offline");
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  // -- calls
  /** Emit with an ack: the reply's `data`, or a RealtimeError. */
  call<E extends keyof C & string>(event: E, ...args: CallArgs<C, E>): Promise<ReplyOf<C, E>> {
    const [payload, options] = args;
    return this.request(event, payload, options?.timeout) as Promise<ReplyOf<C, E>>;
  }

  /** Send without waiting (a failure comes back as the `error` server event). */
  emit<E extends keyof C & string>(event: E, payload: PayloadOf<C, E>): void {
    this.socket.emit(event, payload ?? {});
  }

  private request(event: string, payload: unknown, timeout?: number): Promise<unknown> {
    if (!this.socket.connected) {
      return Promise.reject(new RealtimeError(DISCONNECTED, `not connected: ${event} was not sent`));
    }
    return new Promise((resolve, reject) => {
      this.socket.timeout(timeout ?? this.ackTimeout).emit(event, payload ?? {},
        (err: Error | null, reply: unknown) => {
          if (err) {
            reject(this.socket.connected
              ? new RealtimeError(TIMEOUT, `no reply to ${event}`)
              : new RealtimeError(DISCONNECTED, `the connection closed before the reply to ${event}`));
            return;
          }
          try {
            resolve(unwrap(event, reply));
          } catch (e) {
            reject(e);
          }
        });
    });
  }

  // -- events
  /** `fn(payload)` for each server event `event`; returns a function that stops it. */
  on<E extends keyof S & string>(event: E, fn: (payload: S[E]) => void): () => void;
  on<E extends keyof LifecycleEvents>(event: E, fn: (payload: LifecycleEvents[E]) => void):
    () => void;
  on(event: string, fn: (payload: any) => void): () => void {
    this.socket.on(event, fn);
    return () => this.socket.off(event, fn);
  }

  off(event: string, fn: (payload: any) => void): void {
    this.socket.off(event, fn);
  }

  /** `fn(state, detail)` now and at every change; returns a function that stops it. */
  onState(fn: (state: ConnectionState, detail: string) => void): () => void {
    this.stateListeners.add(fn);
    fn(this.state, "");
    return () => this.stateListeners.delete(fn);
  }

  /** `fn({reconnect, resync})` at every (re)connect (the subscriptions are being made again)
   *  and with `{reconnect: true, resync: true}` on the server's `resync`. */
  onConnect(fn: (info: ConnectInfo) => void): () => void {
    this.connectListeners.add(fn);
    return () => this.connectListeners.delete(fn);
  }

  // -- channels
  /** Subscribe (now if connected, else at connect); `sub.ready` has the reply. */
  subscribe(channel: string, options: SubscribeOptions): Subscription {
    if (this.subs.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const sub = new Subscription(this, channel, options, this.maxSeen, this.maxHeld);
    this.subs.set(channel, sub);
    if (this.socket.connected) this.enqueue(sub, () => this.doSubscribe(sub));
    return sub;
  }

  subscription(channel: string): Subscription | undefined {
    return this.subs.get(channel);
  }

  async unsubscribe(channel: string): Promise<void> {
    const sub = this.subs.get(channel);
    if (sub) this.drop(sub, "client");
    if (this.socket.connected) await this.request("unsubscribe", { channel });
  }

  // -- the socket's side
  private wire(): void {
    const socket = this.socket;
    socket.on("connect", () => {
      const reconnect = this.everConnected;
      this.everConnected = true;
      this.refusals = 0;
      this.nextReason = "connect";
      this.setState("connected");
      for (const sub of this.subs.values()) this.enqueue(sub, () => this.doSubscribe(sub));
      this.notifyConnect({ reconnect, resync: false });
    });
    socket.on("disconnect", (reason) => {
      if (reason === "io client disconnect") {
        this.setState("offline");
        return;
      }
      this.setState("reconnecting");
      if (reason === "io server disconnect" && !this.closed) socket.connect(); // kicked: retry
    });
    socket.io.on("reconnect_attempt", () => this.setState("reconnecting"));
    socket.on("connect_error", (err: Error & { data?: unknown }) => {
      // A refusal by the server (err.data set) is not retried by socket.io-client itself.
      if (!err.data) {
        this.setState(isOffline() ? "offline" : "reconnecting");
        return;
      }
      const refusal = RealtimeError.from(err.data);
      if (refusal.code === "unauthenticated" && this.getToken && !this.closed
          && this.refusals < REFUSED_RETRIES) {
        this.refusals += 1;
        this.nextReason = "refused";
        setTimeout(() => { if (!this.closed) socket.connect(); }, 200 * this.refusals);
        return;
      }
      this.setState("offline", `${refusal.code}: ${refusal.message}`);
    });
    socket.on("publication", (pub: Publication) => this.onPublicationEvent(pub));
    socket.on("unsubscribed", (event: UnsubscribedEvent) => this.onUnsubscribedEvent(event));
    socket.on("auth:expiring", () => { void this.refreshToken(); });
    // The server's broker links broke and are back: what it relayed meanwhile never came.
    socket.on("resync", () => this.notifyConnect({ reconnect: true, resync: true }));
    if (typeof window !== "undefined" && typeof window.addEventListener === "function") {
      window.addEventListener("offline", () => this.setState("offline"));
      window.addEventListener("online", () => {
        if (!socket.connected && !this.closed) this.setState("reconnecting");
      });
    }
  }

  private async handshakeToken(): Promise<string | null> {
    const reason = this.nextReason;
    this.nextReason = "connect";
    if (this.getToken) {
      try {
        const token = await this.getToken(reason);
        if (token) this.token = token;
      } catch (err) {
        console.error("dihya-realtime-client: getToken failed; using the previous token", err);
      }
    }
    return this.token;
  }

  private async refreshToken(): Promise<void> {
    if (!this.getToken) return;
    let token: string | null | undefined;
    try {
      token = await this.getToken("expiring");
    } catch (err) {
      console.error("dihya-realtime-client: getToken failed on auth:expiring", err);
      return;
    }
    if (!token) return;
    this.token = token;
    try {
      await this.request("auth:refresh", { token });
    } catch (err) {
      console.warn("dihya-realtime-client: auth:refresh refused", err);
    }
  }

  private setState(state: ConnectionState, detail = ""): void {
    this.state = state;
    for (const fn of this.stateListeners) fn(state, detail);
  }

  private notifyConnect(info: ConnectInfo): void {
    for (const fn of this.connectListeners) {
      try {
        fn(info);
      } catch (err) {
        console.error("dihya-realtime-client: onConnect listener failed", err);
      }
    }
  }

  // -- one channel's work, one task at a time
  private enqueue(sub: Subscription, task: () => Promise<void>): void {
    sub.chain = sub.chain
      .then(() => this.exclusive(sub, task))
      .catch((err) => console.error(`dihya-realtime-client: ${sub.channel} failed`, err));
  }

  private async exclusive(sub: Subscription, task: () => Promise<void>): Promise<void> {
    if (!sub.active) return;
    sub.stream.startHolding();
    try {
      await task();
    } finally {
      await this.releaseHeld(sub);
    }
  }

  /** Deliver what was held meanwhile, in order; a gap among it is filled from history. */
  private async releaseHeld(sub: Subscription): Promise<void> {
    for (let round = 0; ; round += 1) {
      const lastRound = round >= GAP_FILL_ROUNDS || !sub.active;
      const overflowed = sub.stream.heldOverflowed;
      const held = sub.stream.release();
      let i = 0;
      while (i < held.length && (lastRound || !sub.stream.isGap(held[i]))) {
        this.deliver(sub, held[i]);
        i += 1;
      }
      if (lastRound || (i === held.length && !overflowed)) return;
      sub.stream.startHolding();
      for (const pub of held.slice(i)) sub.stream.hold(pub);
      await this.readHistory(sub);
    }
  }

  /** Subscribe, with `since` once there is a position; deliver what was missed. */
  private async doSubscribe(sub: Subscription): Promise<void> {
    if (!this.socket.connected || !sub.active) return; // the next connect subscribes
    try {
      if (sub.historyFirst > 0) {
        const past = await this.request("history",
          { channel: sub.channel, limit: sub.historyFirst }) as HistoryReply;
        for (const pub of past.publications) this.deliver(sub, pub);
        sub.stream.advance(past.offset, past.epoch);
        sub.historyFirst = 0;
      }
      const since = sub.stream.position;
      const data = await this.request("subscribe",
        since ? { channel: sub.channel, since } : { channel: sub.channel }) as SubscribeReply;
      if (since && !data.recovered) {
        await this.readRecent(sub);
        sub.stream.advance(data.offset, data.epoch);
        this.recoveryFailed(sub, since, "not_recovered");
      } else {
        for (const pub of data.publications ?? []) this.deliver(sub, pub);
        if (data.more) await this.readHistory(sub);
        sub.stream.advance(data.offset, data.epoch);
      }
      if (data.presence && sub.options.onPresence) sub.options.onPresence(data.presence.members);
      sub.settle(data);
    } catch (err) {
      if (!(err instanceof RealtimeError)) throw err;
      if (err.code === TIMEOUT && this.socket.connected) {
        this.enqueue(sub, () => this.doSubscribe(sub));
      } else if (!RETRY_AT_NEXT_CONNECT.has(err.code)) {
        const wasSettled = sub.isSettled;
        this.drop(sub, err.code);
        sub.settle(null, err);
        if (wasSettled) sub.options.onUnsubscribed?.({ channel: sub.channel, reason: err.code });
      }
    }
  }

  /** After a failed recovery: what history still holds, repeats dropped by id. */
  private async readRecent(sub: Subscription): Promise<void> {
    if (this.recoveryHistoryLimit <= 0) return;
    try {
      const past = await this.request("history",
        { channel: sub.channel, limit: this.recoveryHistoryLimit }) as HistoryReply;
      for (const pub of past.publications) this.deliver(sub, pub, true);
    } catch (err) {
      if (!(err instanceof RealtimeError)) throw err;
    }
  }

  /** Read `history` after the position, page by page, until it is caught up. */
  private async readHistory(sub: Subscription): Promise<void> {
    while (sub.active && sub.stream.position !== null) {
      const since = sub.stream.position;
      let page: HistoryReply;
      try {
        page = await this.request("history", { channel: sub.channel, since }) as HistoryReply;
      } catch (err) {
        if (!(err instanceof RealtimeError)) throw err;
        // disconnected or timed out: the reconnect subscribes with since
        if (!RETRY_AT_NEXT_CONNECT.has(err.code)) this.recoveryFailed(sub, since, "history");
        return;
      }
      if (!page.recovered) {
        await this.readRecent(sub);
        if (!sub.stream.holding) sub.stream.advance(page.offset, page.epoch);
        this.recoveryFailed(sub, since, "history");
        return;
      }
      for (const pub of page.publications) this.deliver(sub, pub);
      if (!page.more || page.publications.length === 0) return;
    }
  }

  private onPublicationEvent(pub: Publication): void {
    if (!pub || typeof pub !== "object" || typeof pub.offset !== "number"
        || typeof pub.epoch !== "string" || typeof pub.id !== "string") return;
    const sub = this.subs.get(pub.channel);
    if (!sub || !sub.active) return;
    const stream = sub.stream;
    if (stream.holding) {
      stream.hold(pub);
    } else if (stream.isGap(pub)) {
      stream.startHolding();
      stream.hold(pub);
      this.enqueue(sub, () => this.readHistory(sub));
    } else {
      this.deliver(sub, pub);
    }
  }

  private onUnsubscribedEvent(event: UnsubscribedEvent): void {
    const sub = event && this.subs.get(event.channel);
    if (!sub) return;
    if (event.reason === "recover") {
      this.enqueue(sub, () => this.doSubscribe(sub)); // with since; not recovered → onRecoveryFailed
      return;
    }
    this.drop(sub, String(event.reason));
    sub.options.onUnsubscribed?.(event);
  }

  private deliver(sub: Subscription, pub: Publication, anyEpoch = false): void {
    if (!sub.active || !sub.stream.accept(pub, anyEpoch)) return;
    try {
      sub.options.onPublication(pub);
    } catch (err) {
      console.error(`dihya-realtime-client: onPublication of ${sub.channel} failed`, err);
    }
  }

  private recoveryFailed(sub: Subscription, since: Position | null,
                         reason: RecoveryFailed["reason"]): void {
    const info: RecoveryFailed = { channel: sub.channel, since, position: sub.stream.position,
                                   reason };
    if (!sub.options.onRecoveryFailed) {
      console.warn(`dihya-realtime-client: recovery failed on ${sub.channel} (${reason}): `
        + "publications may be missing");
      return;
    }
    try {
      sub.options.onRecoveryFailed(info);
    } catch (err) {
      console.error(`dihya-realtime-client: onRecoveryFailed of ${sub.channel} failed`, err);
    }
  }

  private drop(sub: Subscription, reason: string): void {
    sub.active = false;
    sub.closedReason = reason;
    if (this.subs.get(sub.channel) === sub) this.subs.delete(sub.channel);
  }
}

function isOffline(): boolean {
  return typeof navigator !== "undefined" && navigator.onLine === false;
}

/** `createClient(url, {getToken})`; `url` undefined: the page's own origin. */
export function createClient<C extends object = ClientEvents, S extends object = ServerEvents>(
  url?: string, options: ClientOptions = {}): RealtimeClient<C, S> {
  return new RealtimeClient<C, S>(url, options);
}

export type { EventMap };
