import { test } from "node:test";
import assert from "node:assert/strict";
import { DataLoader, LoaderError, type Dataset } from "./loader.js";

const range = (n: number): Dataset<number> => ({ length: n, get: (i) => i });
const ids = (records: number[]) => records;

async function collect<B>(gen: AsyncGenerator<B>): Promise<B[]> {
  const out: B[] = [];
  for await (const b of gen) out.push(b);
  return out;
}

test("an epoch is a seeded permutation in batches; the same seed gives the same order, another epoch another", async () => {
  const a = new DataLoader(range(10), { batchSize: 3, seed: 5, collate: ids });
  const e0 = await collect(a.epoch());
  assert.equal(e0.length, 3, "dropLast: 10 records make 3 batches of 3");
  assert.ok(e0.every((b) => b.length === 3));
  const flat = e0.flat();
  assert.equal(new Set(flat).size, 9);
  const b = new DataLoader(range(10), { batchSize: 3, seed: 5, collate: ids });
  assert.deepEqual(await collect(b.epoch()), e0);
  const e1 = await collect(a.epoch());
  assert.notDeepEqual(e1, e0);
  const c = new DataLoader(range(10), { batchSize: 3, seed: 6, collate: ids });
  assert.notDeepEqual(await collect(c.epoch()), e0);
  const ordered = new DataLoader(range(5), { batchSize: 2, shuffle: false, dropLast: false, collate: ids });
  assert.deepEqual(await collect(ordered.epoch()), [[0, 1], [2, 3], [4]]);
});

test("a resumed loader hands out exactly the batches an uninterrupted one would", async () => {
  const full = new DataLoader(range(50), { batchSize: 4, seed: 1, collate: ids });
  const expected = [...(await collect(full.epoch())), ...(await collect(full.epoch()))];

  const first = new DataLoader(range(50), { batchSize: 4, seed: 1, collate: ids });
  const got: number[][] = [];
  let saved = first.state();
  for await (const b of first.epoch()) {
    got.push(b);
    saved = first.state(); // a checkpoint after each step
    if (got.length === 7) break; // the run is killed here
  }
  const resumed = new DataLoader(range(50), { batchSize: 4, seed: 1, collate: ids });
  resumed.load(JSON.parse(JSON.stringify(saved)));
  got.push(...(await collect(resumed.epoch())), ...(await collect(resumed.epoch())));
  assert.deepEqual(got, expected);
});

test("ranks see disjoint shards that together cover the data (padded as DistributedSampler)", async () => {
  const shards = await Promise.all([0, 1, 2].map((rank) =>
    collect(new DataLoader(range(10), { batchSize: 1, seed: 3, rank, worldSize: 3, collate: ids }).epoch()).then((b) => b.flat())));
  assert.deepEqual(shards.map((s) => s.length), [4, 4, 4]);
  assert.deepEqual([...new Set(shards.flat())].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(shards.flat().length - 10, 2, "two records repeat to pad 10 to 12");
});

test("bad records are skipped and counted once across epochs; past the rate over the whole dataset the run stops with the first failures", async () => {
  const flaky: Dataset<number> = { length: 20, get: (i) => { if (i === 7) throw new Error("truncated image 7.png"); return i; } };
  const loader = new DataLoader(flaky, { batchSize: 5, seed: 0, collate: ids, maxErrorRate: 0.05 });
  for (let epoch = 0; epoch < 3; epoch++) assert.equal((await collect(loader.epoch())).flat().length, 19);
  assert.deepEqual(loader.badRecords(), { count: 1, seen: 20, first: [{ index: 7, message: "truncated image 7.png" }] }, "one bad record, met in three epochs, counts once");

  const broken: Dataset<number> = { length: 20, get: async (i) => { if (i % 2) throw new Error(`bad record ${i}`); return i; } };
  const strict = new DataLoader(broken, { batchSize: 5, seed: 0, collate: ids });
  await assert.rejects(collect(strict.epoch()), (e: Error) => e instanceof LoaderError && /records failed to load/.test(e.message) && /bad record \d+/.test(e.message) && /the recipe key max_error_rate/.test(e.message));
});

test("where the bad records sit does not decide: 4 bad of 200 (2%) first in the order pass a 3% limit", async () => {
  const early: Dataset<number> = { length: 200, get: (i) => { if (i < 4) throw new Error(`bad ${i}`); return i; } };
  const loader = new DataLoader(early, { batchSize: 10, shuffle: false, collate: ids, maxErrorRate: 0.03 });
  assert.equal((await collect(loader.epoch())).flat().length, 196);
  assert.equal(loader.badRecords().count, 4);
});

test("the run stops as soon as the failures alone exceed the rate over the dataset", async () => {
  const bad: Dataset<number> = { length: 20, get: (i) => { if (i < 3) throw new Error(`corrupt ${i}.png`); return i; } };
  const loader = new DataLoader(bad, { batchSize: 1, shuffle: false, prefetch: 0, collate: ids, maxErrorRate: 0.1 });
  const got: number[][] = [];
  await assert.rejects(async () => { for await (const b of loader.epoch()) got.push(b); },
    /3 of the dataset's 20 records failed to load \(15\.0%, even if every other record loads\), above the maximum error rate 10\.0%/);
  assert.deepEqual(got, [], "stopped at the third record, before any good one");
});

test("invalid options and mismatched cursors are clear errors", () => {
  assert.throws(() => new DataLoader(range(3), { batchSize: 0, collate: ids }), /batchSize must be a positive integer/);
  assert.throws(() => new DataLoader(range(3), { batchSize: 4, collate: ids }),
    /the batch size 4 is larger than the 3 training records, so an epoch makes no full batch; lower the recipe's train\.batch_size to at most 3 \(e\.g\. --set train\.batch_size=3\)/);
  assert.throws(() => new DataLoader(range(3), { batchSize: 1, collate: ids, maxErrorRate: 2 }), /max_error_rate/);
  assert.throws(() => new DataLoader(range(3), { batchSize: 1, rank: 2, worldSize: 2, collate: ids }), /need 0 <= rank < worldSize/);
  const l = new DataLoader(range(10), { batchSize: 2, seed: 1, collate: ids });
  assert.throws(() => l.load({ seed: 2, epoch: 0, batch: 0, rank: 0, worldSize: 1 }), /checkpoint's loader had seed 2/);
  assert.throws(() => l.load({ seed: 1, epoch: 0, batch: 99, rank: 0, worldSize: 1 }), /outside an epoch of 5 batches/);
});
