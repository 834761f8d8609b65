// A recovery that is impossible (a restart without Redis: a new epoch) calls onRecoveryFailed:
// never a silent gap. What history still holds is delivered, repeats dropped by id.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "../dist/index.js";
import { FAST, publish, startServer, token, waitUntil } from "./helpers.js";

test("a restart without Redis calls onRecoveryFailed with the old and new positions", async () => {
  const server = await startServer(); // memory broker: a restart is a new epoch
  const rt = createClient(server.url, { ...FAST, token: token("alice") });
  const got = [];
  const failures = [];
  const connects = [];
  rt.onConnect((info) => connects.push(info));
  try {
    const sub = rt.subscribe("live:feed", {
      onPublication: (p) => got.push(p), onRecoveryFailed: (f) => failures.push(f),
    });
    await sub.ready;
    const first = await publish(server, "live:feed", { n: 1 });
    await waitUntil(() => got.length === 1, "the first publication");
    await server.restart();

    await waitUntil(() => failures.length === 1, "onRecoveryFailed", 15000);
    const info = failures[0];
    assert.equal(info.channel, "live:feed");
    assert.equal(info.reason, "not_recovered");
    assert.equal(info.since.epoch, first.epoch);
    assert.notEqual(info.position.epoch, first.epoch);
    assert.deepEqual(connects.at(-1), { reconnect: true, resync: false });
    const second = await publish(server, "live:feed", { n: 2 });
    await waitUntil(() => got.length === 2, "live after the failed recovery");
    assert.equal(got[1].epoch, second.epoch);
    assert.deepEqual(got.map((p) => p.data.n), [1, 2]);
  } finally {
    rt.close();
  }
});
