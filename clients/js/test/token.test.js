// getToken at the handshake and on auth:expiring; the token is refreshed with auth:refresh and
// the connection stays up (DIHYA_RT_EXPIRY_WARNING_SECONDS, docs/configuration.md).
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "../dist/index.js";
import { FAST, sleep, startServer, token, waitUntil } from "./helpers.js";

test("auth:expiring asks getToken and refreshes without reconnecting", async () => {
  const server = await startServer({ EXPIRY_WARNING_SECONDS: "2", EXPIRY_GRACE_SECONDS: "1" });
  const asked = [];
  const rt = createClient(server.url, {
    ...FAST,
    getToken: async (reason) => {
      asked.push(reason);
      return token("alice", { ttl: asked.length === 1 ? 3 : 3600 });
    },
  });
  const expiring = [];
  rt.on("auth:expiring", (e) => expiring.push(e));
  const disconnects = [];
  rt.on("disconnect", (reason) => disconnects.push(reason));
  try {
    await waitUntil(() => rt.connected, "connected");
    const sid = rt.socket.id;
    await waitUntil(() => asked.length === 2, "getToken on auth:expiring", 5000);
    assert.deepEqual(asked, ["connect", "expiring"]);
    assert.equal(expiring.length, 1);
    await waitUntil(() => rt.token !== null, "token");
    let me = await rt.call("whoami");
    for (let i = 0; i < 50 && me.expires_at < Date.now() / 1000 + 3000; i += 1) {
      await sleep(100);
      me = await rt.call("whoami");
    }
    assert.ok(me.expires_at > Date.now() / 1000 + 3000, "the refreshed expiry");
    await sleep(2500); // past the first token's exp + grace + an expiry tick
    assert.equal(rt.connected, true);
    assert.equal(rt.socket.id, sid);
    assert.deepEqual(disconnects, []);
    assert.equal(asked.length, 2);
    assert.equal((await rt.call("whoami")).user_id, "alice");
  } finally {
    rt.close();
  }
});
