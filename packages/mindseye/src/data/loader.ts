// The data loader: seeded shuffling per epoch, sharding by rank, batching and collation,
// prefetching, bad-record accounting, and a cursor that checkpoints save so that a resumed run
// sees exactly the batches it would have seen.
//
//   const loader = new DataLoader(dataset, { batchSize: 32, seed: 0, collate });
//   for await (const batch of loader.epoch()) { ... ; ckpt.loader = loader.state(); }
//   // after a crash: loader.load(ckpt.loader) and the same loop continues where it stopped.
//
// Prefetching: the next `prefetch` batches' records are requested while the current batch is
// in use. Record loading is asynchronous (file reads, and image decoding on libuv's thread
// pool through sharp), so it proceeds off the main thread; collation (which makes tensors)
// runs on the main thread when a batch is taken.

import { mulberry32, shuffleInPlace } from "../util/random.js";

/** Random access to records; `get` may be async (reading and decoding). */
export interface Dataset<T> {
  readonly length: number;
  get(index: number): T | Promise<T>;
}

export interface LoaderOptions<T, B> {
  batchSize: number;
  /** Makes a batch (tensors, padding, masks) from the records that loaded. */
  collate: (records: T[], indices: number[]) => B;
  shuffle?: boolean;
  /** Base seed; epoch e uses an order derived from (seed, e). */
  seed?: number;
  /** Drop the last incomplete batch of an epoch (default true: every step sees batchSize records). */
  dropLast?: boolean;
  /** Distributed sharding: this process's rank and the world size. */
  rank?: number;
  worldSize?: number;
  /** Batches requested ahead of the one in use (default 2). */
  prefetch?: number;
  /**
   * The run stops when more than this fraction of the dataset's records fail to load (default
   * 0.01). Each record counts once however many epochs meet it, and the rate is over the whole
   * dataset, so the run stops as soon as the failures alone exceed it, wherever they sit.
   */
  maxErrorRate?: number;
  /**
   * Length-grouped batches (Hugging Face Trainer's group_by_length): each record's length in
   * tokens (what padding pads to: prompt + answer + image tokens), by index. When given, each
   * epoch's order is lengthGroupedOrder's, so a batch holds records of similar lengths and pads
   * little; absent, the plain seeded permutation.
   */
  lengths?: readonly number[];
}

/** Where the loader is: saved in checkpoints. */
export interface LoaderCursor {
  seed: number;
  epoch: number;
  /** Batches of this epoch already handed out. */
  batch: number;
  rank: number;
  worldSize: number;
}

export interface BadRecord {
  index: number;
  message: string;
}

export class LoaderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LoaderError";
  }
}

/**
 * An order of `lengths.length` records in which each run of `batchSize` consecutive indices holds
 * records of similar lengths, keeping some randomness (transformers' get_length_grouped_indices):
 *   1. a random permutation (`rand`; null keeps 0..n-1),
 *   2. cut into megabatches of mult × batchSize, mult = min(n / (4 × batchSize), 50) and at least 1
 *      (at most 50 batches mix, and an epoch has at least about 4 megabatches),
 *   3. each megabatch sorted by length, longest first (stable: ties keep the permutation's order),
 *   4. the longest record swapped to position 0, with the first of the first megabatch taking its
 *      place, so a batch too long for memory fails on the first step, not hours in.
 * LLaVA's group_by_modality_length also keeps text-only records (negative lengths) in batches of
 * their own; every fine-tuning record here has images, so there is one group.
 */
export function lengthGroupedOrder(lengths: readonly number[], batchSize: number, rand: (() => number) | null): number[] {
  const n = lengths.length;
  const perm = Array.from({ length: n }, (_, i) => i);
  if (rand !== null) shuffleInPlace(perm, rand);
  const size = Math.max(1, Math.min(Math.floor(n / (batchSize * 4)), 50)) * batchSize;
  const megabatches: number[][] = [];
  for (let i = 0; i < n; i += size) megabatches.push(perm.slice(i, i + size).sort((a, b) => lengths[b]! - lengths[a]!));
  let longest = 0;
  megabatches.forEach((m, k) => { if (lengths[m[0]!]! > lengths[megabatches[longest]![0]!]!) longest = k; });
  if (n > 0) [megabatches[0]![0], megabatches[longest]![0]] = [megabatches[longest]![0]!, megabatches[0]![0]!];
  return megabatches.flat();
}

/** A seed for (base, epoch) so that consecutive epochs get unrelated orders. */
function epochSeed(seed: number, epoch: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (epoch + 0x85ebca6b), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export class DataLoader<T, B> {
  private readonly o: Required<Omit<LoaderOptions<T, B>, "collate" | "lengths">> & Pick<LoaderOptions<T, B>, "collate" | "lengths">;
  private cursor: LoaderCursor;
  /** Records attempted (1) so far, by index; each counts once across epochs. */
  private readonly attempted: Uint8Array;
  private seen = 0;
  private readonly bad: BadRecord[] = [];
  private readonly badIndices = new Set<number>();

  constructor(private readonly dataset: Dataset<T>, opts: LoaderOptions<T, B>) {
    this.o = {
      shuffle: true, seed: 0, dropLast: true, rank: 0, worldSize: 1, prefetch: 2, maxErrorRate: 0.01,
      ...opts,
    };
    this.attempted = new Uint8Array(dataset.length);
    const { batchSize, rank, worldSize, prefetch } = this.o;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new LoaderError(`batchSize must be a positive integer, got ${batchSize}`);
    if (!Number.isInteger(worldSize) || worldSize < 1 || !Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
      throw new LoaderError(`rank ${rank} / worldSize ${worldSize}: need 0 <= rank < worldSize`);
    }
    if (!Number.isInteger(prefetch) || prefetch < 0) throw new LoaderError(`prefetch must be a non-negative integer, got ${prefetch}`);
    if (!(this.o.maxErrorRate >= 0 && this.o.maxErrorRate <= 1)) throw new LoaderError(`maxErrorRate (the recipe's max_error_rate) must be a fraction in [0, 1], got ${this.o.maxErrorRate}`);
    const lengths = opts.lengths;
    if (lengths !== undefined && (lengths.length !== dataset.length || !lengths.every((l) => Number.isFinite(l) && l >= 0))) {
      throw new LoaderError(`lengths must give each of the dataset's ${dataset.length} records a finite length >= 0 (got ${lengths.length} lengths)`);
    }
    if (dataset.length < worldSize) throw new LoaderError(`the dataset has ${dataset.length} records, fewer than the ${worldSize} ranks`);
    this.cursor = { seed: this.o.seed, epoch: 0, batch: 0, rank, worldSize };
    if (this.batchesPerEpoch() === 0) {
      const n = this.shardSize(), perRank = worldSize > 1 ? ` per rank (${dataset.length} over ${worldSize} ranks)` : "";
      throw new LoaderError(
        `the batch size ${batchSize} is larger than the ${n} training records${perRank}, so an epoch makes no full batch; ` +
          `lower the recipe's train.batch_size to at most ${n} (e.g. --set train.batch_size=${n}) or train on more data`,
      );
    }
  }

  /** Records this rank sees per epoch (the order is padded to a multiple of worldSize, as PyTorch's DistributedSampler). */
  shardSize(): number {
    return Math.ceil(this.dataset.length / this.o.worldSize);
  }

  batchesPerEpoch(): number {
    const n = this.shardSize();
    return this.o.dropLast ? Math.floor(n / this.o.batchSize) : Math.ceil(n / this.o.batchSize);
  }

  /**
   * This rank's record indices for an epoch, in order. With `lengths`, the whole dataset's order is
   * length-grouped for the global batch (batchSize × worldSize) and then dealt out by rank, as
   * transformers' DistributedLengthGroupedSampler does: the shards stay disjoint and equal, and at
   * each step every rank's batch comes from the same sorted run, so no rank waits long on another's
   * longer batch. The order depends only on (seed, epoch), so a cursor resumes it exactly.
   */
  order(epoch: number): number[] {
    const n = this.dataset.length, { worldSize, rank, lengths } = this.o;
    const rand = this.o.shuffle ? mulberry32(epochSeed(this.o.seed, epoch)) : null;
    let all = Array.from({ length: n }, (_, i) => i);
    if (lengths !== undefined) all = lengthGroupedOrder(lengths, this.o.batchSize * worldSize, rand);
    else if (rand !== null) shuffleInPlace(all, rand);
    const total = Math.ceil(n / worldSize) * worldSize;
    for (let i = n; i < total; i++) all.push(all[i - n]!);
    return all.filter((_, i) => i % worldSize === rank);
  }

  state(): LoaderCursor {
    return { ...this.cursor };
  }

  /** Restores a cursor saved by state(); the dataset size, seed and sharding must match. */
  load(c: LoaderCursor): void {
    if (c.seed !== this.o.seed || c.rank !== this.o.rank || c.worldSize !== this.o.worldSize) {
      throw new LoaderError(`cannot resume: the checkpoint's loader had seed ${c.seed}, rank ${c.rank}/${c.worldSize}; this one has seed ${this.o.seed}, rank ${this.o.rank}/${this.o.worldSize}`);
    }
    if (!Number.isInteger(c.batch) || c.batch < 0 || c.batch > this.batchesPerEpoch()) {
      throw new LoaderError(`cannot resume: batch ${c.batch} is outside an epoch of ${this.batchesPerEpoch()} batches (did the dataset change?)`);
    }
    this.cursor = { ...c };
  }

  /** Records that failed to load so far, each once (the first 100 are kept with their messages), of the records attempted. */
  badRecords(): { count: number; seen: number; first: BadRecord[] } {
    return { count: this.badIndices.size, seen: this.seen, first: [...this.bad] };
  }

  /** The remaining batches of the current epoch; the cursor advances as each is handed out. */
  async *epoch(): AsyncGenerator<B> {
    const order = this.order(this.cursor.epoch);
    const nBatches = this.batchesPerEpoch(), bs = this.o.batchSize;
    const request = (b: number) => {
      const indices = order.slice(b * bs, Math.min((b + 1) * bs, order.length));
      return Promise.all(indices.map((i) => this.fetch(i))).then((records) => ({ indices, records }));
    };
    const queue: Promise<{ indices: number[]; records: ({ ok: true; value: T } | { ok: false })[] }>[] = [];
    let next = this.cursor.batch;
    while (next < nBatches && queue.length <= this.o.prefetch) queue.push(request(next++));
    while (queue.length > 0) {
      const { indices, records } = await queue.shift()!;
      if (next < nBatches) queue.push(request(next++));
      const kept: T[] = [], keptIdx: number[] = [];
      records.forEach((r, k) => {
        if (r.ok) { kept.push(r.value); keptIdx.push(indices[k]!); }
      });
      this.checkErrorRate();
      this.cursor.batch += 1;
      if (kept.length > 0) yield this.o.collate(kept, keptIdx);
    }
    this.cursor = { ...this.cursor, epoch: this.cursor.epoch + 1, batch: 0 };
  }

  private async fetch(index: number): Promise<{ ok: true; value: T } | { ok: false }> {
    if (this.attempted[index] === 0) {
      this.attempted[index] = 1;
      this.seen += 1;
    }
    try {
      return { ok: true, value: await this.dataset.get(index) };
    } catch (e) {
      if (!this.badIndices.has(index)) {
        this.badIndices.add(index);
        if (this.bad.length < 100) this.bad.push({ index, message: e instanceof Error ? e.message : String(e) });
      }
      return { ok: false };
    }
  }

  /** Stops once the distinct failed records exceed the rate over the whole dataset, whatever the others hold. */
  private checkErrorRate(): void {
    const n = this.badIndices.size, total = this.dataset.length;
    if (n / total <= this.o.maxErrorRate) return;
    const first = this.bad.slice(0, 5).map((b) => `    record ${b.index}: ${b.message}`).join("\n");
    throw new LoaderError(
      `${n} of the dataset's ${total} records failed to load (${((100 * n) / total).toFixed(1)}%, even if every other record loads), ` +
        `above the maximum error rate ${(100 * this.o.maxErrorRate).toFixed(1)}%; the first:\n${first}\n` +
        "fix or remove the bad records, or allow a higher rate with the recipe key max_error_rate",
    );
  }
}
