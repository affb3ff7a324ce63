// The trainer's side of data parallelism: which rank this process is, the process group, and
// collectives that every rank runs together so that no rank is left waiting in one.
//
//   mindseye launch --nproc-per-node 2 -- train --config recipe.yaml   (or torchrun --no-python)
//
// sets RANK and WORLD_SIZE; with WORLD_SIZE > 1 the trainer joins the group (Gloo on CPU, NCCL
// when the model is on CUDA and the build has it), wraps the model in DistributedDataParallel
// and agrees with the other ranks on every decision that ends a run.
//
// Data: each rank's DataLoader takes its shard of every epoch, as PyTorch's DistributedSampler
// (data/loader.ts): the epoch's shuffled order is padded with its own first records to a multiple
// of the world size, and rank r takes positions r, r + W, r + 2W, ...; each rank then drops its
// last incomplete batch (dropLast). So every rank runs the same number of steps, a few records
// may be seen twice in an epoch (the padding) and at most batchSize - 1 per rank are left out.
// With the same per-rank batch b, step k of W ranks sees exactly the records of step k of one
// process with batch W·b. Build the loader with `{ ...dataShard() }` (stages/common.ts).
import { torch, distributed as dist, type Device } from "@mindseye/torch";

export type ProcessGroup = dist.ProcessGroup;

export interface Shard {
  rank: number;
  worldSize: number;
}

/** This process's rank and world size from the launcher's variables (RANK, WORLD_SIZE); rank 0 of 1 when none are set. */
export function launchShard(env: NodeJS.ProcessEnv = process.env): Shard {
  if (env.WORLD_SIZE === undefined || env.WORLD_SIZE === "") return { rank: 0, worldSize: 1 };
  const worldSize = Number(env.WORLD_SIZE), rank = Number(env.RANK ?? "");
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new Error(`WORLD_SIZE=${env.WORLD_SIZE} is not a positive integer (set by mindseye launch or torchrun)`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new Error(`RANK=${env.RANK ?? "(unset)"} is not a rank of WORLD_SIZE=${worldSize} (start ranks with mindseye launch or torchrun, which set both)`);
  return { rank, worldSize };
}

/**
 * The default process group when the launcher started more than one rank (joined on first use,
 * then reused by later stages in the same process), or null for a single process.
 */
export function trainerGroup(device: Device, timeoutMs: number): ProcessGroup | null {
  const { worldSize } = launchShard();
  if (worldSize === 1) return null;
  if (dist.isInitialized()) return dist.defaultGroup();
  const backend = device.startsWith("cuda") && dist.availableBackends().includes("nccl") ? "nccl" : "gloo";
  return dist.initProcessGroup({ backend, timeoutMs });
}

/** A collective with the other ranks failed: one of them died, stalled past the timeout, or left. */
export class PeerFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PeerFailure";
  }
}

/** Another rank failed in a step every rank runs together; its own error is in its log. */
export class OtherRankFailed extends Error {
  constructor(readonly ranks: number[], what: string) {
    super(`rank ${ranks.join(", ")} failed ${what}; see that rank's error above (this rank stopped with it)`);
    this.name = "OtherRankFailed";
  }
}

/**
 * The process group with the device its small bookkeeping tensors go to (NCCL reduces CUDA
 * tensors only), and the collectives the trainer makes: each turns a c10d error into a
 * PeerFailure that says what was being done.
 */
export class Ranks {
  constructor(readonly pg: ProcessGroup, readonly device: Device) {}

  get rank(): number { return this.pg.rank; }
  get worldSize(): number { return this.pg.worldSize; }

  comm<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw new PeerFailure(`rank ${this.rank} of ${this.worldSize}: ${what} failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * Runs fn on every rank and agrees on its outcome (one all-reduce of a failure flag per rank):
   * if fn threw on any rank, every rank throws — its own error, or OtherRankFailed naming the
   * ranks — so that none goes on to a collective the failed rank will never join.
   */
  collectively<T>(what: string, fn: () => T): T {
    let result: { ok: true; value: T } | { ok: false; error: unknown };
    try {
      result = { ok: true, value: fn() };
    } catch (error) {
      result = { ok: false, error };
    }
    const flags = new Array<number>(this.worldSize).fill(0);
    if (!result.ok) flags[this.rank] = 1;
    const failed = this.sum(`agreeing on ${what}`, flags);
    if (!result.ok) throw result.error;
    const others = failed.flatMap((f, r) => (f > 0 ? [r] : []));
    if (others.length > 0) throw new OtherRankFailed(others, what);
    return result.value;
  }

  /** Each value summed over the ranks (one all-reduce, float64). */
  sum(what: string, values: number[]): number[] {
    return this.reduce(what, values, "sum");
  }

  /** The mean of each value over the ranks (one all-reduce, float64). */
  mean(what: string, values: number[]): number[] {
    return this.reduce(what, values, "avg");
  }

  /** Every rank's bytes, in rank order (every rank passes the same length). */
  gatherBytes(what: string, bytes: Uint8Array): Uint8Array[] {
    return this.comm(what, () => torch.scope(() => this.pg.allGather(torch.tensor(bytes, { dtype: "uint8", device: this.device })).map((t) => new Uint8Array(t.toBytes()))));
  }

  private reduce(what: string, values: number[], op: "sum" | "avg"): number[] {
    return this.comm(what, () => torch.scope(() => [...this.pg.allReduce(torch.tensor(values, { dtype: "float64", device: this.device }), op).toTypedArray()].map(Number)));
  }
}
