// Error envelopes reject with RealtimeError {code, message, details, retryAfter}; the client's
// own codes: timeout, disconnected; a refused handshake leaves the state offline with the code.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createClient, RealtimeError } from "../dist/index.js";
import { FAST, startServer, token, waitUntil } from "./helpers.js";

let server;
const clients = [];
const open = (options) => {
  const rt = createClient(server.url, { ...FAST, ...options });
  clients.push(rt);
  return rt;
};
const connected = (rt) => waitUntil(() => rt.connected, "connected");

before(async () => { server = await startServer(); });
after(() => { for (const rt of clients) rt.close(); });

test("a refusal rejects with the server's code, message and details", async () => {
  const rt = open({ token: token("alice") });
  await connected(rt);
  const notFound = await rt.call("subscribe", { channel: "nowhere:x" }).catch((e) => e);
  assert.ok(notFound instanceof RealtimeError);
  assert.equal(notFound.code, "not_found");
  assert.ok(notFound.message.length > 0);
  const invalid = await rt.call("subscribe", { channel: 42 }).catch((e) => e);
  assert.equal(invalid.code, "invalid_payload");
  assert.ok(invalid.details, "invalid_payload carries details");
  assert.deepEqual(invalid.toJSON().code, "invalid_payload");
});

test("a call resolves with the reply's data", async () => {
  const rt = open({ token: token("bob") });
  await connected(rt);
  const me = await rt.call("whoami");
  assert.equal(me.user_id, "bob");
  assert.ok(me.expires_at > Date.now() / 1000);
});

test("rate_limited carries retryAfter", async () => {
  const rt = open({ token: token("carol") });
  await connected(rt);
  const fresh = token("carol");
  let limited = null;
  for (let i = 0; i < 10 && !limited; i += 1) { // auth:refresh: 1/s, burst 5
    limited = await rt.call("auth:refresh", { token: fresh }).then(() => null, (e) => e);
  }
  assert.ok(limited, "rate limited within 10 calls");
  assert.equal(limited.code, "rate_limited");
  assert.ok(limited.retryAfter > 0);
});

test("no reply in time is `timeout`; a call after close is `disconnected`", async () => {
  const rt = open({ token: token("dave") });
  await connected(rt);
  const late = await rt.call("whoami", {}, { timeout: 1 }).catch((e) => e);
  assert.equal(late.code, "timeout");
  rt.close();
  const gone = await rt.call("whoami").catch((e) => e);
  assert.equal(gone.code, "disconnected");
  assert.equal(rt.state, "offline");
});

test("a refused subscription rejects sub.ready and is forgotten", async () => {
  const rt = open({ token: token("erin") });
  const sub = rt.subscribe("nowhere:y", { onPublication: () => {} });
  const refused = await sub.ready.catch((e) => e);
  assert.equal(refused.code, "not_found");
  assert.equal(rt.subscription("nowhere:y"), undefined);
  assert.equal(sub.active, false);
});

test("a handshake refused as unauthenticated asks getToken again, then goes offline", async () => {
  const reasons = [];
  const rt = open({ getToken: (reason) => { reasons.push(reason); return "not-a-token"; } });
  const states = [];
  rt.onState((state, detail) => states.push([state, detail]));
  await waitUntil(() => rt.state === "offline" && states.at(-1)[1] !== "",
    () => `offline; states ${JSON.stringify(states)}, reasons ${reasons}`, 10000);
  assert.equal(reasons[0], "connect");
  assert.ok(reasons.includes("refused"), `reasons: ${reasons}`);
  assert.ok(reasons.length <= 4, "bounded retries");
  assert.match(states.at(-1)[1], /^unauthenticated: /);
});
