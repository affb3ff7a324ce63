import { test } from "node:test";
import assert from "node:assert/strict";
import { DataLoader, LoaderError, lengthGroupedOrder, type Dataset } from "./loader.js";
import { mulberry32 } from "../util/random.js";

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

// A skewed length distribution, as real VLM fine-tuning data: most prompts short (a GQA question
// and one image's tokens), one in ten long (many dynamic-resolution image tokens, InternVL tiles).
const skewed = (n: number): number[] => {
  const rand = mulberry32(42);
  return Array.from({ length: n }, () => (rand() < 0.1 ? 300 + Math.floor(rand() * 1700) : 20 + Math.floor(rand() * 80)));
};
/** Padded tokens over real tokens when each batch is right-padded to its longest record. */
const paddingRatio = (batches: number[][], lengths: readonly number[]): number => {
  let real = 0, padded = 0;
  for (const b of batches) {
    const max = Math.max(...b.map((i) => lengths[i]!));
    for (const i of b) { real += lengths[i]!; padded += max - lengths[i]!; }
  }
  return padded / real;
};

test("lengthGroupedOrder: megabatches of mult × batch size sorted longest first, the longest record at position 0", () => {
  const lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 0, 11, 10];
  // 12 records, batch 2: mult = min(floor(12 / 8), 50) = 1, so megabatches of 2 from the identity
  // order, each longest first: [0 1] [2 3] [4 5] [6 7] [8 9] [10 11]; then 10 (length 11) and 0 swap
  assert.deepEqual(lengthGroupedOrder(lengths, 2, null), [10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 11]);
  // batch 1: mult = 3, megabatches of 3: [2 0 1] [4 3 5] [6 8 7] [10 11 9], then 10 (length 11) swapped to the front
  assert.deepEqual(lengthGroupedOrder(lengths, 1, null), [10, 0, 1, 4, 3, 5, 6, 8, 7, 2, 11, 9]);
  const big = skewed(5000), order = lengthGroupedOrder(big, 8, mulberry32(1));
  assert.deepEqual([...order].sort((a, b) => a - b), big.map((_, i) => i), "a permutation");
  assert.equal(big[order[0]!], Math.max(...big));
  // mult is capped at 50: megabatches of 400, each sorted (but the first element of the first and of the longest's)
  for (let m = 0; m < 5000; m += 400) {
    const run = order.slice(m + 1, m + 400).map((i) => big[i]!);
    assert.ok(run.every((l, k) => k === 0 || l <= run[k - 1]!), `megabatch at ${m} sorted longest first`);
  }
});

test("group by length: each epoch the same records, far less padding than a random order, the longest first, seeded", async () => {
  const n = 2000, bs = 8, lengths = skewed(n);
  const grouped = new DataLoader(range(n), { batchSize: bs, seed: 7, lengths, collate: ids });
  const plain = new DataLoader(range(n), { batchSize: bs, seed: 7, collate: ids });
  const [g0, p0] = [await collect(grouped.epoch()), await collect(plain.epoch())];
  assert.deepEqual(g0.flat().sort((a, b) => a - b), p0.flat().sort((a, b) => a - b), "the same records each epoch");
  assert.equal(g0.length, p0.length);
  const [rg, rp] = [paddingRatio(g0, lengths), paddingRatio(p0, lengths)];
  assert.ok(rg < rp / 10, `padded / real tokens: ${rg.toFixed(3)} grouped against ${rp.toFixed(3)} random`);
  assert.equal(lengths[g0[0]![0]!], Math.max(...lengths), "the longest record is in the first batch (out of memory at once, not later)");
  const g1 = await collect(grouped.epoch());
  assert.notDeepEqual(g1, g0, "another epoch, another order");
  assert.equal(lengths[g1[0]![0]!], Math.max(...lengths));
  assert.deepEqual(await collect(new DataLoader(range(n), { batchSize: bs, seed: 7, lengths, collate: ids }).epoch()), g0, "the same seed, the same batches");
  assert.notDeepEqual(await collect(new DataLoader(range(n), { batchSize: bs, seed: 8, lengths, collate: ids }).epoch()), g0);
  assert.throws(() => new DataLoader(range(n), { batchSize: bs, lengths: lengths.slice(1), collate: ids }), /lengths must give each of the dataset's 2000 records a finite length >= 0 \(got 1999 lengths\)/);
});

test("group by length: a resumed loader hands out exactly the remaining batches", async () => {
  const lengths = skewed(300), opts = { batchSize: 4, seed: 3, lengths, collate: ids };
  const full = new DataLoader(range(300), opts);
  const expected = [...(await collect(full.epoch())), ...(await collect(full.epoch()))];
  const first = new DataLoader(range(300), opts);
  const got: number[][] = [];
  let saved = first.state();
  for await (const b of first.epoch()) {
    got.push(b);
    saved = first.state();
    if (got.length === 30) break;
  }
  const resumed = new DataLoader(range(300), opts);
  resumed.load(JSON.parse(JSON.stringify(saved)));
  got.push(...(await collect(resumed.epoch())), ...(await collect(resumed.epoch())));
  assert.deepEqual(got, expected);
});

test("group by length with two ranks: disjoint shards of as many batches, each step's batches alike in length", async () => {
  const n = 1000, bs = 4, lengths = skewed(n);
  const [a, b] = await Promise.all([0, 1].map((rank) => collect(new DataLoader(range(n), { batchSize: bs, seed: 5, rank, worldSize: 2, lengths, collate: ids }).epoch())));
  assert.equal(a!.length, b!.length);
  assert.equal(a!.length, 125);
  const [fa, fb] = [a!.flat(), b!.flat()];
  assert.equal(new Set([...fa, ...fb]).size, n, "disjoint, and together every record");
  assert.equal(lengths[a![0]![0]!], Math.max(...lengths), "rank 0 meets the longest record first");
  // both ranks' k-th batches come from one sorted run of the global batch: their padded widths are close
  const width = (batch: number[]) => Math.max(...batch.map((i) => lengths[i]!));
  const plain = await Promise.all([0, 1].map((rank) => collect(new DataLoader(range(n), { batchSize: bs, seed: 5, rank, worldSize: 2, collate: ids }).epoch())));
  const gap = (x: number[][], y: number[][]) => x.reduce((s, batch, k) => s + Math.abs(width(batch) - width(y[k]!)), 0);
  assert.ok(gap(a!, b!) < gap(plain[0]!, plain[1]!) / 10, `ranks' step widths differ by ${gap(a!, b!)} tokens in all, against ${gap(plain[0]!, plain[1]!)} unsorted`);
  assert.ok(paddingRatio([...a!, ...b!], lengths) < paddingRatio([...plain[0]!, ...plain[1]!], lengths) / 10);
});
