// ChannelStream: the bookkeeping that decides deliver / repeat / gap, and its memory bounds.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ChannelStream } from "../dist/index.js";

const pub = (offset, epoch = "e1", id = `${epoch}-${offset}`) => ({ id, offset, epoch });

test("a publication at or before the position is a repeat, past it by more than one a gap", () => {
  const stream = new ChannelStream({ offset: 5, epoch: "e1" });
  assert.equal(stream.accept(pub(5)), false);
  assert.equal(stream.isGap(pub(6)), false);
  assert.equal(stream.isGap(pub(8)), true);
  assert.equal(stream.accept(pub(6)), true);
  assert.deepEqual(stream.position, { offset: 6, epoch: "e1" });
});

test("across epochs only the id tells a repeat, and a new epoch replaces the position", () => {
  const stream = new ChannelStream({ offset: 9, epoch: "e1" });
  assert.equal(stream.accept(pub(1, "e2", "x")), true);
  assert.deepEqual(stream.position, { offset: 1, epoch: "e2" });
  assert.equal(stream.accept(pub(7, "e3", "x"), true), false);
  assert.equal(stream.isGap(pub(5, "e1")), false);
});

test("the ids kept to drop repeats are bounded, oldest forgotten first", () => {
  const stream = new ChannelStream(null, 3);
  for (let i = 1; i <= 5; i += 1) stream.accept(pub(i));
  assert.equal(stream.seenCount, 3);
  assert.equal(stream.accept(pub(1, "e9", "e1-1"), true), true); // forgotten
  assert.equal(stream.accept(pub(9, "e9", "e1-5"), true), false); // kept
});

test("held publications are bounded and released in offset order, current epoch first", () => {
  const stream = new ChannelStream({ offset: 1, epoch: "e1" }, 100, 3);
  stream.startHolding();
  for (const p of [pub(4), pub(2, "e0"), pub(3), pub(5)]) stream.hold(p);
  assert.equal(stream.heldCount, 3);
  assert.equal(stream.heldOverflowed, true);
  assert.deepEqual(stream.release().map((p) => [p.epoch, p.offset]), [["e1", 3], ["e1", 4], ["e0", 2]]);
  assert.equal(stream.holding, false);
});
