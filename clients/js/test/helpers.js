// What the node tests share: servers through the test control endpoint, tokens, publishing.
import { createHmac } from "node:crypto";

const CONTROL = process.env.DIHYA_RT_TEST_CONTROL;
const SECRET = process.env.DIHYA_RT_TEST_JWT_SECRET;
const API_KEY = process.env.DIHYA_RT_TEST_API_KEY;

async function control(path, body = {}) {
  if (!CONTROL) throw new Error("DIHYA_RT_TEST_CONTROL is not set: run through pytest "
    + "tests/integration/test_js_client.py");
  const response = await fetch(CONTROL + path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const reply = await response.json();
  if (!response.ok) throw new Error(`control ${path}: ${reply.error}`);
  return reply;
}

/** A `dihya-realtime serve` process; `settings` without the DIHYA_RT_ prefix. */
export async function startServer(settings = {}, { redis = false } = {}) {
  const { id, url } = await control("/servers", { settings, redis });
  return {
    url,
    stop: () => control(`/servers/${id}/stop`),
    start: () => control(`/servers/${id}/start`),
    restart: () => control(`/servers/${id}/restart`),
  };
}

const b64url = (value) => Buffer.from(value).toString("base64url");

/** An HS256 JWT the test servers accept. */
export function token(user = "alice", { ttl = 3600, roles = ["user"] } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub: user, roles, iat: now, exp: now + ttl }));
  const sig = createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** POST /api/v1/publish with the test API key; the reply's data. */
export async function publish(server, channel, data) {
  const response = await fetch(`${server.url}/api/v1/publish`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify({ channel, data }),
  });
  const reply = await response.json();
  if (!reply.ok) throw new Error(`publish: ${JSON.stringify(reply)}`);
  return reply.data;
}

export async function waitUntil(predicate, what = "condition", timeout = 10000) {
  const deadline = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > deadline) {
      throw new Error(`not within ${timeout} ms: ${typeof what === "function" ? what() : what}`);
    }
    await sleep(20);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Client options for tests: WebSocket only, quick reconnects. */
export const FAST = { transports: ["websocket"], reconnectionDelay: 100, reconnectionDelayMax: 300 };
