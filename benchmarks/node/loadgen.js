// The load generator of `make bench`: one Node process driving thousands of Socket.IO
// (WebSocket-only) clients, so that the generator is not the bottleneck of the figure.
//
// Usage: node loadgen.js '<json config>'   (benchmarks/run.py builds the config)
// It prints JSON lines on stdout: {"phase": ...} progress lines, then {"result": {...}}.
// Every result carries `gen_cpu`: the generator's own CPU time over the measured window, as a
// fraction of one core; run.py marks the figure invalid when it passes 0.9.
//
// Flavors: "dihya" (JWT auth; subscribe/publish/publication), "bare" (Flask-SocketIO and
// Node reference servers; join/broadcast/message and echo).
"use strict";
const crypto = require("crypto");
const readline = require("readline");
const { performance } = require("perf_hooks");
const { io } = require("socket.io-client");
const WebSocket = require("ws");

const cfg = JSON.parse(process.argv[2]);
const ACK_TIMEOUT_MS = cfg.ackTimeoutMs || 10000;
const CONNECT_TIMEOUT_MS = cfg.connectTimeoutMs || 20000;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function b64url(buf) {
  return Buffer.from(buf).toString("base64").replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
}

// HS256 JWT with sub/roles/exp, like `dihya-realtime token`.
function token(user) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const now = Math.floor(Date.now() / 1000);
  const body = b64url(JSON.stringify({ sub: user, roles: ["user"], name: user, iat: now, exp: now + 3600 }));
  const sig = b64url(crypto.createHmac("sha256", cfg.secret).update(`${header}.${body}`).digest());
  return `${header}.${body}.${sig}`;
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round(sorted[Math.max(0, i)] * 1000) / 1000;
}

function latencyStats(lat) {
  const s = Float64Array.from(lat).sort();
  return { p50_ms: percentile(s, 50), p99_ms: percentile(s, 99), max_ms: s.length ? Math.round(s[s.length - 1] * 1000) / 1000 : null, samples: s.length };
}

// CPU of this process over a window, as a fraction of one core.
function cpuMeter() {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  return () => {
    const c = process.cpuUsage(c0);
    const wall = (performance.now() - t0) * 1000;
    return Math.round(((c.user + c.system) / wall) * 1000) / 1000;
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Open one client; resolves to the socket or rejects with the connect error.
function connectOne(url, i) {
  return new Promise((resolve, reject) => {
    const opts = { transports: ["websocket"], reconnection: false, forceNew: true, timeout: CONNECT_TIMEOUT_MS };
    if (cfg.flavor === "dihya") opts.auth = { token: token(`bench-${i}`) };
    const sock = io(url, opts);
    const timer = setTimeout(() => { sock.close(); reject(new Error("connect timeout")); }, CONNECT_TIMEOUT_MS);
    sock.once("connect", () => { clearTimeout(timer); resolve(sock); });
    sock.once("connect_error", (err) => { clearTimeout(timer); sock.close(); reject(err); });
  });
}

// A minimal Socket.IO 4 client on one `ws` WebSocket (EIO=4, default namespace, text only),
// for the many receive-mostly clients of fan-out and idle: socket.io-client's machinery per
// delivery (engine.io-client, the packet decoder, emitters) made the one generator process
// the bottleneck near 85k deliveries/s. Same protocol on the wire: open "0", connect "40"
// (auth in the packet), event "42", ack "43<id>", ping "2" answered "3".
class LiteSocket {
  constructor(url, auth) {
    this.connected = false;
    this.handlers = new Map();
    this.acks = new Map();
    this.nextId = 1;
    this.auth = auth;
    this.ws = new WebSocket(url.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket",
      { perMessageDeflate: false });
  }

  open() {
    return new Promise((resolve, reject) => {
      const fail = (err) => { clearTimeout(timer); this.ws.terminate(); reject(err); };
      const timer = setTimeout(() => fail(new Error("connect timeout")), CONNECT_TIMEOUT_MS);
      this.ws.on("error", (err) => { if (!this.connected) fail(err); });
      this.ws.on("close", () => { this.connected = false; });
      this.ws.on("message", (data) => {
        const m = data.toString();
        if (m === "2") { this.ws.send("3"); return; }
        const kind = m.charCodeAt(0) === 52 ? m.charCodeAt(1) : -1; // "4x": a Socket.IO packet
        if (kind === 50) { // "42": event
          const [event, payload] = JSON.parse(m.slice(2));
          const handler = this.handlers.get(event);
          if (handler) handler(payload);
        } else if (kind === 51) { // "43<id>[...]": ack
          const open = m.indexOf("[");
          const id = Number(m.slice(2, open));
          const done = this.acks.get(id);
          if (done) { this.acks.delete(id); done(JSON.parse(m.slice(open))[0]); }
        } else if (kind === 48) { // "40": connected
          this.connected = true; clearTimeout(timer); resolve(this);
        } else if (kind === 52) { // "44": connect_error
          const err = JSON.parse(m.slice(2));
          fail(new Error((err && err.message) || "connect_error"));
        } else if (m.charCodeAt(0) === 48) { // engine.io open: now the Socket.IO connect
          this.ws.send(this.auth ? "40" + JSON.stringify(this.auth) : "40");
        }
      });
    });
  }

  on(event, handler) { this.handlers.set(event, handler); }

  call(event, payload) {
    return new Promise((resolve) => {
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.acks.delete(id); resolve({ ok: false, error: { code: "timeout" } });
      }, ACK_TIMEOUT_MS);
      this.acks.set(id, (reply) => { clearTimeout(timer); resolve(reply || { ok: false, error: { code: "no_reply" } }); });
      this.ws.send("42" + id + JSON.stringify([event, payload]));
    });
  }

  close() { this.connected = false; this.ws.close(); }
}

function connectLite(url, i) {
  return new LiteSocket(url, cfg.flavor === "dihya" ? { token: token(`bench-${i}`) } : null).open();
}

// Open n clients over the target URLs (round robin), at most `concurrency` handshakes at once.
// `lite`: LiteSocket instead of socket.io-client (see above).
async function connectMany(n, offset = 0, lite = false) {
  const urls = cfg.urls;
  const socks = new Array(n);
  const errors = {};
  let failures = 0;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      const k = next++;
      try {
        socks[k] = await (lite ? connectLite : connectOne)(urls[k % urls.length], offset + k);
      } catch (err) {
        failures++;
        const msg = String((err && err.message) || err).slice(0, 120);
        errors[msg] = (errors[msg] || 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency || 100, n) }, worker));
  const seconds = (performance.now() - t0) / 1000;
  return { socks: socks.filter(Boolean), failures, errors, seconds };
}

function call(sock, event, payload) {
  if (sock instanceof LiteSocket) return sock.call(event, payload);
  return new Promise((resolve) => {
    sock.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, reply) => {
      if (err) resolve({ ok: false, error: { code: "timeout" } });
      else resolve(reply || { ok: false, error: { code: "no_reply" } });
    });
  });
}

function closeAll(socks) {
  for (const s of socks) s.close();
}

function countError(errors, reply) {
  const code = (reply && reply.error && reply.error.code) || "unknown";
  errors[code] = (errors[code] || 0) + 1;
}

// -- scenarios --------------------------------------------------------------------------

async function idle() {
  const meter = cpuMeter();
  const c = await connectMany(cfg.clients, 0, cfg.lite !== false);
  const genCpu = meter();
  out({ phase: "connected", ok: c.socks.length, failures: c.failures });
  // run.py samples the server's RSS now, then writes a line on stdin to release us.
  await new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin });
    const timer = setTimeout(resolve, cfg.holdMs || 30000);
    rl.once("line", () => { clearTimeout(timer); resolve(); });
  });
  const alive = c.socks.filter((s) => s.connected).length;
  closeAll(c.socks);
  return {
    clients: cfg.clients, connected: c.socks.length, failures: c.failures, still_connected: alive,
    connect_seconds: Math.round(c.seconds * 1000) / 1000,
    connects_per_s: Math.round(c.socks.length / c.seconds), errors: c.errors, gen_cpu: genCpu,
  };
}

function eventsFor(flavor) {
  return flavor === "dihya"
    ? { join: (room) => ["subscribe", { channel: room }], pub: (room, data) => ["publish", { channel: room, data }], msg: "publication", unwrap: (p) => p.data }
    : { join: (room) => ["join", { room }], pub: (room, data) => ["broadcast", { room, data }], msg: "message", unwrap: (p) => p };
}

async function fanout() {
  const ev = eventsFor(cfg.flavor);
  const room = cfg.channel || "chat:bench-fanout";
  const subs = await connectMany(cfg.clients, 0, cfg.lite !== false);
  const pubs = await connectMany(cfg.publishers || 10, 1000000);
  if (!subs.socks.length || !pubs.socks.length) throw new Error(`could not connect: ${JSON.stringify(subs.errors)} ${JSON.stringify(pubs.errors)}`);
  const joinErrors = {};
  await Promise.all(subs.socks.map(async (s) => {
    const r = await call(s, ...ev.join(room));
    if (!r || !r.ok) countError(joinErrors, r);
  }));
  const nsubs = subs.socks.length - Object.values(joinErrors).reduce((a, b) => a + b, 0);
  out({ phase: "subscribed", subscribers: nsubs, failures: subs.failures });

  let record = null; // (latency_ms, seq) during a measured phase
  const pending = new Map(); // seq -> {left, done}
  for (const s of subs.socks) {
    s.on(ev.msg, (p) => {
      const d = ev.unwrap(p);
      if (record) record(performance.now() - d.t, d.seq);
    });
  }
  let seq = 0;
  let pubIdx = 0;
  const pubErrors = {};
  const publish = () => {
    const sock = pubs.socks[pubIdx++ % pubs.socks.length];
    const my = seq++;
    const entry = { left: nsubs, resolve: null, sent: performance.now() };
    const done = new Promise((r) => { entry.resolve = r; });
    pending.set(my, entry);
    call(sock, ...ev.pub(room, { t: performance.now(), seq: my })).then((r) => {
      if (!r || !r.ok) { countError(pubErrors, r); pending.delete(my); entry.resolve(); }
    });
    return done;
  };
  const onDelivery = (lat, s, bucket) => {
    bucket.push(lat);
    const e = pending.get(s);
    if (e && --e.left <= 0) { pending.delete(s); e.resolve(); }
  };

  // Warm-up: a few publications, each awaited, so that first-use costs (imports, caches,
  // JIT) are not in the figures.
  const warm = [];
  record = (lat, s) => onDelivery(lat, s, warm);
  for (let k = 0; k < (cfg.warmup ?? 3); k++) await Promise.race([publish(), sleep(5000)]);

  // Phase 1: a fixed rate; latency from the timestamp in the payload.
  const rate = cfg.rate || 5;
  const fixedLat = [];
  record = (lat, s) => onDelivery(lat, s, fixedLat);
  let meter = cpuMeter();
  const count = Math.max(1, Math.round(rate * (cfg.fixedSeconds || 5)));
  out({ phase: "fixed_start" }); // run.py may sample the servers' CPU between these two
  const t0 = performance.now();
  const waits = [];
  for (let k = 0; k < count; k++) {
    const due = t0 + (k * 1000) / rate;
    const now = performance.now();
    if (due > now) await sleep(due - now);
    waits.push(publish());
  }
  const sendSeconds = (performance.now() - t0) / 1000;
  out({ phase: "fixed_end", seconds: sendSeconds });
  await Promise.race([Promise.all(waits), sleep(5000)]);
  const fixed = {
    rate, published: count, expected: count * nsubs, delivered: fixedLat.length,
    send_seconds: Math.round(sendSeconds * 1000) / 1000, ...latencyStats(fixedLat),
    gen_cpu: meter(),
  };
  pending.clear();
  if (cfg.maxSeconds === 0) { // the fixed rate only (the cluster scenario's foreign traffic)
    record = null;
    const errorsSeen = { ...pubErrors };
    closeAll(subs.socks);
    closeAll(pubs.socks);
    return { subscribers: nsubs, connect_failures: subs.failures + pubs.failures, join_errors: joinErrors, publish_errors: errorsSeen, fixed, gen_cpu: fixed.gen_cpu };
  }

  // Phase 2: the maximum rate, closed loop: at most `window` publications not yet delivered
  // to every subscriber (or 5 s old) — what the server sustains, without an unbounded queue.
  const maxLat = [];
  let delivered = 0;
  let published = 0;
  record = (lat, s) => { delivered++; onDelivery(lat, s, maxLat); };
  const windowSize = cfg.window || 4;
  const seconds = cfg.maxSeconds ?? 5;
  meter = cpuMeter();
  const tm = performance.now();
  const end = tm + seconds * 1000;
  const lane = async () => {
    while (performance.now() < end) {
      published++;
      await Promise.race([publish(), sleep(5000)]);
    }
  };
  await Promise.all(Array.from({ length: windowSize }, lane));
  const elapsed = (performance.now() - tm) / 1000;
  const max = {
    seconds: Math.round(elapsed * 1000) / 1000, published, delivered,
    deliveries_per_s: Math.round(delivered / elapsed), publishes_per_s: Math.round(published / elapsed),
    ...latencyStats(maxLat), gen_cpu: meter(),
  };
  record = null;
  const errorsSeen = { ...pubErrors }; // closing fails the acks still in flight: not counted
  closeAll(subs.socks);
  closeAll(pubs.socks);
  return { subscribers: nsubs, connect_failures: subs.failures + pubs.failures, join_errors: joinErrors, publish_errors: errorsSeen, fixed, max, gen_cpu: Math.max(fixed.gen_cpu, max.gen_cpu) };
}

async function acked() {
  const c = await connectMany(cfg.clients);
  if (!c.socks.length) throw new Error(`could not connect: ${JSON.stringify(c.errors)}`);
  const lat = [];
  const errors = {};
  let acks = 0;
  const seconds = cfg.seconds || 5;
  const meter = cpuMeter();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const payloadOf = cfg.flavor === "dihya"
    ? (i, n) => ["publish", { channel: cfg.channel || "chat:bench-acked", data: { text: "hello", n } }]
    : (i, n) => ["echo", { text: "hello", n }];
  await Promise.all(c.socks.map(async (s, i) => {
    let n = 0;
    while (performance.now() < end) {
      const ts = performance.now();
      const r = await call(s, ...payloadOf(i, n++));
      if (r && r.ok) { acks++; lat.push(performance.now() - ts); } else countError(errors, r);
    }
  }));
  const elapsed = (performance.now() - t0) / 1000;
  const genCpu = meter();
  const alive = c.socks.filter((s) => s.connected).length;
  closeAll(c.socks);
  return { clients: c.socks.length, still_connected: alive, connect_failures: c.failures, seconds: Math.round(elapsed * 1000) / 1000, acks, acks_per_s: Math.round(acks / elapsed), errors, ...latencyStats(lat), gen_cpu: genCpu };
}

// A fixed aggregate rate of one event with an ack, round robin over the clients.
// With `createRoom` ([event, payload]), client r (r < rooms) first creates room r and every
// client then calls each `prepare` step for its room (client k is in room k % rooms); in
// payloads, "__ROOM__" becomes that room's id (the create reply's `data.id`), "__UUID__" a
// fresh UUID and "__N__" the message's sequence number.
function fill(template, vars) {
  return JSON.parse(JSON.stringify(template).replace(/__(ROOM|UUID|N)__/g, (m, name) => (
    name === "UUID" ? crypto.randomUUID() : String(vars[name]))));
}

// With `hold`, a scenario stops at named points ({"phase": ...} on stdout) until run.py
// writes a line on stdin (it samples Redis's counters there), or `holdMs` passes.
let stdinLines = null;
function held(phase, extra = {}) {
  if (!cfg.hold) return Promise.resolve();
  if (!stdinLines) {
    stdinLines = { queue: [], waiters: [] };
    readline.createInterface({ input: process.stdin }).on("line", (line) => {
      const w = stdinLines.waiters.shift();
      if (w) w(line); else stdinLines.queue.push(line);
    });
  }
  out({ phase, ...extra });
  if (stdinLines.queue.length) { stdinLines.queue.shift(); return Promise.resolve(); }
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, cfg.holdMs || 30000);
    stdinLines.waiters.push(() => { clearTimeout(timer); resolve(); });
  });
}

async function chat() {
  const c = await connectMany(cfg.clients, 0, !!cfg.lite);
  if (!c.socks.length) throw new Error(`could not connect: ${JSON.stringify(c.errors)}`);
  const prepErrors = {};
  const nrooms = Math.max(1, Math.min(cfg.rooms || 1, c.socks.length));
  const roomIds = new Array(nrooms).fill("bench");
  if (cfg.createRoom) {
    const [event, payload] = cfg.createRoom;
    for (let r = 0; r < nrooms; r++) {
      const reply = await call(c.socks[r], event, fill(payload, { N: r }));
      if (!reply || !reply.ok) throw new Error(`${event} failed: ${JSON.stringify(reply)}`);
      roomIds[r] = reply.data.id;
    }
  }
  const roomOf = (k) => roomIds[k % nrooms];
  for (const [event, payload] of cfg.prepare || []) {
    await Promise.all(c.socks.map(async (s, k) => {
      const r = await call(s, event, fill(payload, { ROOM: roomOf(k), N: k }));
      if (!r || !r.ok) countError(prepErrors, r);
    }));
  }
  let received = 0; // pushes of the sent event's broadcast (e.g. chat:message) seen by clients
  if (cfg.pushEvent) for (const s of c.socks) s.on(cfg.pushEvent, () => { received++; });
  await sleep(cfg.settleMs ?? 300); // let the join broadcasts drain before the clock starts
  await held("prepared", { rooms: roomIds, prepare_errors: prepErrors });
  const rate = cfg.rate || 1000;
  // `count` sends at `rate`, round robin over the clients; onReply(reply, ms, sentAfterMs) for
  // each (sentAfterMs: when it was sent, from the start of this call).
  // Resolves when every reply is in, with the start time and the sends issued > 5 ms late.
  const sendAtRate = async (count, n0, onReply) => {
    const t0 = performance.now();
    const waits = [];
    let late = 0;
    for (let k = 0; k < count; k++) {
      const due = t0 + (k * 1000) / rate;
      const now = performance.now();
      if (due > now + 1) await sleep(due - now);
      else if (now - due > 5) late++;
      const i = k % c.socks.length;
      const ts = performance.now();
      waits.push(call(c.socks[i], cfg.event, fill(cfg.payload, { ROOM: roomOf(i), N: n0 + k }))
        .then((r) => onReply(r, performance.now() - ts, ts - t0)));
    }
    await Promise.all(waits);
    return { t0, late };
  };
  // Warm-up at the same rate, not measured: the first second otherwise measures the
  // generator's JIT and the server's first compiles/prepares (p99 50-150 ms, then 3-8 ms).
  const warmupCount = Math.round(rate * (cfg.warmupSeconds ?? 1));
  const warm = { sent: warmupCount, acked: 0, errors: {} };
  const warmLat = [];
  await sendAtRate(warmupCount, -warmupCount, (r, ms) => {
    if (r && r.ok) { warm.acked++; warmLat.push(ms); } else countError(warm.errors, r);
  });
  Object.assign(warm, latencyStats(warmLat)); // reported, not part of the measured figure
  received = 0;
  const lat = [];
  const errors = {};
  const count = Math.round(rate * (cfg.seconds || 5));
  const meter = cpuMeter();
  const bySecond = [];
  let lastError = null;
  const { t0, late } = await sendAtRate(count, 0, (r, ms, after) => {
    if (r && r.ok) { lat.push(ms); (bySecond[Math.floor(after / 1000)] ||= []).push(ms); }
    else { countError(errors, r); lastError = r; }
  });
  const elapsed = (performance.now() - t0) / 1000;
  const genCpu = meter();
  await sleep(cfg.settleMs ?? 200);
  await held("measured", { sent: count, pushes_received: received });
  closeAll(c.socks);
  // send→ack p50/p99 of the sends issued in each second: shows a stall rather than a slope
  const timeline = bySecond.map((l) => { const v = latencyStats(l || []); return [v.p50_ms, v.p99_ms]; });
  return { clients: c.socks.length, connect_failures: c.failures, rooms: nrooms, rate, warmup: warm, sent: count, acked: lat.length, achieved_per_s: Math.round(lat.length / elapsed), late_sends: late, pushes_received: received, errors, prepare_errors: prepErrors, last_error: lastError, ...latencyStats(lat), p50_p99_by_second: timeline, gen_cpu: genCpu };
}

const scenarios = { idle, fanout, acked, chat };

(async () => {
  const killer = setTimeout(() => { out({ error: "loadgen timeout" }); process.exit(2); }, (cfg.timeoutS || 300) * 1000);
  try {
    const result = await scenarios[cfg.scenario]();
    out({ result });
  } catch (err) {
    out({ error: String((err && err.stack) || err) });
    process.exitCode = 1;
  }
  clearTimeout(killer);
  // Sockets may hold the loop open for a moment after close.
  setTimeout(() => process.exit(process.exitCode || 0), 200);
})();
