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

test("bad records are skipped and counted; past the error rate the run stops with the first failures", async () => {
  const flaky: Dataset<number> = { length: 20, get: (i) => { if (i === 7) throw new Error("truncated image 7.png"); return i; } };
  const loader = new DataLoader(flaky, { batchSize: 5, seed: 0, collate: ids, maxErrorRate: 0.1, minRecordsForRate: 5 });
  const batches = await collect(loader.epoch());
  assert.equal(batches.flat().length, 19);
  assert.deepEqual(loader.badRecords().first, [{ index: 7, message: "truncated image 7.png" }]);

  const broken: Dataset<number> = { length: 20, get: async (i) => { if (i % 2) throw new Error(`bad record ${i}`); return i; } };
  const strict = new DataLoader(broken, { batchSize: 5, seed: 0, collate: ids, minRecordsForRate: 5 });
  await assert.rejects(collect(strict.epoch()), (e: Error) => e instanceof LoaderError && /records failed to load/.test(e.message) && /bad record \d+/.test(e.message));
});

test("invalid options and mismatched cursors are clear errors", () => {
  assert.throws(() => new DataLoader(range(3), { batchSize: 0, collate: ids }), /batchSize must be a positive integer/);
  assert.throws(() => new DataLoader(range(3), { batchSize: 4, collate: ids }), /make no batch of 4/);
  assert.throws(() => new DataLoader(range(3), { batchSize: 1, rank: 2, worldSize: 2, collate: ids }), /need 0 <= rank < worldSize/);
  const l = new DataLoader(range(10), { batchSize: 2, seed: 1, collate: ids });
  assert.throws(() => l.load({ seed: 2, epoch: 0, batch: 0, rank: 0, worldSize: 1 }), /checkpoint's loader had seed 2/);
  assert.throws(() => l.load({ seed: 1, epoch: 0, batch: 99, rank: 0, worldSize: 1 }), /outside an epoch of 5 batches/);
});
