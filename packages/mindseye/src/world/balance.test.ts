import { test } from "node:test";
import assert from "node:assert/strict";
import { Balancer } from "./balance.js";
import { Rng } from "./rng.js";

test("choose takes the least-used available answer, so answers even out", () => {
  const b = new Balancer(), rng = new Rng(0);
  const tally = { yes: 0, no: 0 };
  for (let i = 0; i < 100; i++) {
    // "no" is only sometimes possible; "yes" catches up whenever it is behind.
    const a = b.choose("k", i % 3 === 0 ? ["yes", "no"] : ["yes"], rng) as "yes" | "no";
    tally[a]++;
  }
  assert.deepEqual(tally, { yes: 66, no: 34 });
  assert.equal(b.choose("other", ["x"], rng), "x");
  assert.throws(() => b.choose("k", [], rng), /no available answer/);
});

test("chooseStrict skips when every available answer is ahead of the set's least-used", () => {
  const b = new Balancer(), rng = new Rng(0);
  const set = ["0", "1", "2", "3"];
  const got = Array.from({ length: 20 }, () => b.chooseStrict("count", ["0", "1"], set, rng));
  assert.equal(got.filter((a) => a === null).length, 16, "0 and 1 get two ahead of 2 and 3, then are skipped");
  assert.equal(b.chooseStrict("count", ["3"], set, rng), "3");
  assert.equal(b.chooseStrict("count", ["2"], set, rng), "2");
});
