// Recovery across a server restart on Redis: every publication made while the client was away
// arrives once, in order, in pages (`more: true`); a live offset gap is filled from history.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createClient } from "../dist/index.js";
import { FAST, publish, sleep, startServer, token, waitUntil } from "./helpers.js";

test("publications made while the server was down arrive after the reconnect, in order, once",
  async () => {
    // pages of two: the 5 missed publications need `history` after the subscribe reply
    const settings = { HISTORY_PAGE_MAX_COUNT: "2" };
    const server = await startServer(settings, { redis: true });
    const asked = [];
    const rt = createClient(server.url, {
      ...FAST, getToken: (reason) => { asked.push(reason); return token("alice"); },
    });
    const got = [];
    const failures = [];
    const connects = [];
    rt.onConnect((info) => connects.push(info));
    try {
      const sub = rt.subscribe("live:feed", {
        onPublication: (p) => got.push(p), onRecoveryFailed: (f) => failures.push(f),
      });
      const reply = await sub.ready;
      assert.equal(reply.channel, "live:feed");
      for (let n = 1; n <= 3; n += 1) await publish(server, "live:feed", { n });
      await waitUntil(() => got.length === 3, "3 live publications");

      await server.stop();
      await waitUntil(() => !rt.connected, "the client sees the server go");
      const publisher = await startServer(settings, { redis: true }); // same Redis
      for (let n = 4; n <= 8; n += 1) await publish(publisher, "live:feed", { n });
      await publisher.stop();
      await server.start(); // the same port: the client's reconnect finds it
      await waitUntil(() => got.length >= 8, "the 5 missed publications", 15000);
      for (let n = 9; n <= 10; n += 1) await publish(server, "live:feed", { n });
      await waitUntil(() => got.length >= 10, "live publications after the reconnect");
      await sleep(300); // nothing more may come

      assert.deepEqual(got.map((p) => p.data.n), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.deepEqual(got.map((p) => p.offset), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      assert.equal(new Set(got.map((p) => p.id)).size, 10);
      assert.deepEqual(failures, []);
      assert.deepEqual(connects, [{ reconnect: false, resync: false },
                                  { reconnect: true, resync: false }]);
      assert.deepEqual(sub.position, { offset: 10, epoch: got[0].epoch });
      assert.ok(asked.filter((r) => r === "connect").length >= 2, "getToken at every connect");
    } finally {
      rt.close();
    }
  });

test("a live offset gap is filled from history before later publications", async () => {
  const server = await startServer({}, { redis: true });
  const rt = createClient(server.url, { ...FAST, token: token("alice") });
  const got = [];
  try {
    const sub = rt.subscribe("live:gap", { onPublication: (p) => got.push(p) });
    await sub.ready;
    // lose offsets 2 and 3 on the way in, as a dropped fan-out message would
    const [listener] = rt.socket.listeners("publication");
    rt.socket.off("publication", listener);
    rt.socket.on("publication", (p) => { if (p.offset !== 2 && p.offset !== 3) listener(p); });
    for (let n = 1; n <= 5; n += 1) await publish(server, "live:gap", { n });
    await waitUntil(() => got.length >= 5, "5 publications, the lost ones from history");
    await sleep(200);
    assert.deepEqual(got.map((p) => p.data.n), [1, 2, 3, 4, 5]);
  } finally {
    rt.close();
  }
});

test("`unsubscribed` with reason recover subscribes again with since and reads what was missed",
  async () => {
    const server = await startServer({}, { redis: true });
    const rt = createClient(server.url, { ...FAST, token: token("alice") });
    const got = [];
    try {
      const sub = rt.subscribe("live:recover", { onPublication: (p) => got.push(p) });
      await sub.ready;
      await publish(server, "live:recover", { n: 1 });
      await waitUntil(() => got.length === 1, "the first publication");
      // the server's fan-out was away: 2 and 3 never came live, then it says `recover`
      const [listener] = rt.socket.listeners("publication");
      rt.socket.off("publication", listener);
      for (let n = 2; n <= 3; n += 1) await publish(server, "live:recover", { n });
      rt.socket.on("publication", listener);
      const [onUnsubscribed] = rt.socket.listeners("unsubscribed");
      onUnsubscribed({ channel: "live:recover", reason: "recover" });
      await waitUntil(() => got.length === 3, "2 and 3 from the subscribe with since");
      await publish(server, "live:recover", { n: 4 });
      await waitUntil(() => got.length === 4, "live again");
      assert.deepEqual(got.map((p) => p.data.n), [1, 2, 3, 4]);
      assert.equal(sub.active, true);
    } finally {
      rt.close();
    }
  });

test("`resync` reaches on('resync') and onConnect as {reconnect: true, resync: true}", async () => {
  const server = await startServer({}, { redis: true });
  const rt = createClient(server.url, { ...FAST, token: token("alice") });
  const infos = [];
  const resyncs = [];
  rt.onConnect((info) => infos.push(info));
  rt.on("resync", (e) => resyncs.push(e));
  try {
    await waitUntil(() => rt.connected, "connected");
    // as the server sends it when its broker links are back (docs/events.md)
    for (const fn of rt.socket.listeners("resync")) fn({ reason: "fanout_restored" });
    assert.deepEqual(infos, [{ reconnect: false, resync: false }, { reconnect: true, resync: true }]);
    assert.deepEqual(resyncs, [{ reason: "fanout_restored" }]);
  } finally {
    rt.close();
  }
});
