// torch.distributed over libtorch's own c10d (native/distributed.cc): a TCPStore rendezvous, then
// Gloo on CPU or NCCL on CUDA. Collectives are synchronous (PyTorch's async_op=False) and in place
// where PyTorch's are; a peer that dies or a collective that outlives the timeout throws an Error
// naming the rank, the operation and c10d's message, so a run fails instead of hanging.
//
//   import { distributed as dist } from "@mindseye/torch";
//   const pg = dist.initProcessGroup();          // RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT from the launcher
//   dist.allReduce(grad, "avg");
//   dist.destroyProcessGroup();
import { native } from "./native.js";
import { Tensor } from "./tensor.js";

export type Backend = "gloo" | "nccl";
/** "avg" is a sum divided by the world size (Gloo has no native average). */
export type ReduceOp = "sum" | "avg" | "product" | "min" | "max";

export interface InitOptions {
  /** Default: "nccl" when CUDA is available and this build has NCCL, else "gloo". */
  backend: Backend;
  /** Default: RANK. */
  rank: number;
  /** Default: WORLD_SIZE. */
  worldSize: number;
  /** Which GPU this process drives under NCCL. Default: LOCAL_RANK, else rank. */
  localRank: number;
  /** Default: MASTER_ADDR. */
  masterAddr: string;
  /** Default: MASTER_PORT. */
  masterPort: number;
  /** Rendezvous and every collective fail after this long. Default: 30 minutes, as PyTorch. */
  timeoutMs: number;
}

/** PyTorch's default process-group timeout (datetime.timedelta(minutes=30)). */
export const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;

/** Backends compiled into this build of the addon. */
export function availableBackends(): Backend[] {
  return native.distBackends() as Backend[];
}

/** A c10d process group: one per process per group of ranks, joined collectively. */
export class ProcessGroup {
  private id: number | null;

  /** @internal Use initProcessGroup. */
  constructor(
    id: number,
    readonly backend: Backend,
    readonly rank: number,
    readonly worldSize: number,
    readonly localRank: number,
    readonly timeoutMs: number,
  ) {
    this.id = id;
  }

  private get handle(): number {
    if (this.id === null) throw new Error(`torch.distributed: the ${this.backend} process group of rank ${this.rank} was destroyed`);
    return this.id;
  }

  /** Reduces `t` over all ranks, in place; returns `t`. */
  allReduce(t: Tensor, op: ReduceOp = "sum"): Tensor {
    native.distAllReduce(this.handle, t._h, op);
    return t;
  }

  /** Overwrites `t` with rank `src`'s tensor, in place; returns `t`. */
  broadcast(t: Tensor, src = 0): Tensor {
    native.distBroadcast(this.handle, t._h, src);
    return t;
  }

  /** Every rank's `t` (same shape and dtype on all ranks), in rank order. */
  allGather(t: Tensor): Tensor[] {
    return native.distAllGather(this.handle, t._h).map((h) => new Tensor(h));
  }

  /** `inputs[r]` reduced over all ranks lands on rank r: returns this rank's reduced tensor. */
  reduceScatter(inputs: Tensor[], op: ReduceOp = "sum"): Tensor {
    return new Tensor(native.distReduceScatter(this.handle, inputs.map((t) => t._h), op));
  }

  /** Returns once every rank has reached it. */
  barrier(): void {
    native.distBarrier(this.handle);
  }

  destroy(): void {
    if (this.id === null) return;
    native.distDestroy(this.id);
    this.id = null;
  }
}

let world: ProcessGroup | null = null;

// A launcher's variable (torchrun and `mindseye launch` set RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR and MASTER_PORT); an explicit option wins.
function envVar(name: string, what: string): string {
  const v = process.env[name];
  if (v === undefined || v === "") {
    throw new Error(`initProcessGroup: ${what} was not given and ${name} is not set (start the processes with \`mindseye launch\` or torchrun, which set it, or pass ${what})`);
  }
  return v;
}
function envInt(name: string, what: string): number {
  const v = envVar(name, what), n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`initProcessGroup: ${name}=${v} is not a non-negative integer`);
  return n;
}

/**
 * Joins the default process group (PyTorch's init_process_group with env://): blocks until all
 * `worldSize` ranks have reached the store at masterAddr:masterPort, or throws after timeoutMs.
 * ```ts
 * const pg = initProcessGroup({ backend: "gloo", timeoutMs: 60_000 });   // the rest from the launcher's env
 * ```
 */
export function initProcessGroup(o: Partial<InitOptions> = {}): ProcessGroup {
  if (world !== null) throw new Error(`initProcessGroup: the default process group is already initialized (rank ${world.rank} of ${world.worldSize}); call destroyProcessGroup() first`);
  const rank = o.rank ?? envInt("RANK", "rank");
  const worldSize = o.worldSize ?? envInt("WORLD_SIZE", "worldSize");
  const localRank = o.localRank ?? (process.env.LOCAL_RANK === undefined ? rank : envInt("LOCAL_RANK", "localRank"));
  const masterAddr = o.masterAddr ?? envVar("MASTER_ADDR", "masterAddr");
  const masterPort = o.masterPort ?? envInt("MASTER_PORT", "masterPort");
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const backend = o.backend ?? (native.buildInfo().cudaAvailable && availableBackends().includes("nccl") ? "nccl" : "gloo");
  if (worldSize < 1 || rank >= worldSize) throw new Error(`initProcessGroup: rank ${rank} is outside world size ${worldSize} (need 0 <= rank < worldSize)`);
  if (masterPort < 1 || masterPort > 65535) throw new Error(`initProcessGroup: masterPort ${masterPort} is not a TCP port (1-65535)`);
  if (!(timeoutMs > 0)) throw new Error(`initProcessGroup: timeoutMs must be positive, got ${timeoutMs}`);
  // torchrun's agent serves the store itself and tells its workers so (torch's _create_c10d_store):
  // every rank joins it as a client, under a prefix per restart attempt.
  const agentStorePrefix = o.masterPort === undefined && process.env.TORCHELASTIC_USE_AGENT_STORE === "True"
    ? `/worker/attempt_${process.env.TORCHELASTIC_RESTART_COUNT ?? "0"}` : "";
  const id = native.distInit(backend, masterAddr, masterPort, rank, worldSize, timeoutMs, localRank, agentStorePrefix);
  world = new ProcessGroup(id, backend, rank, worldSize, localRank, timeoutMs);
  return world;
}

/** Leaves and frees the default process group (a no-op when there is none). */
export function destroyProcessGroup(): void {
  if (world === null) return;
  world.destroy();
  world = null;
}

export function isInitialized(): boolean {
  return world !== null;
}

/** The default process group; throws when initProcessGroup has not run. */
export function defaultGroup(): ProcessGroup {
  if (world === null) throw new Error("torch.distributed: the default process group is not initialized; call initProcessGroup() first");
  return world;
}

export function getRank(): number { return defaultGroup().rank; }
export function getWorldSize(): number { return defaultGroup().worldSize; }
export function allReduce(t: Tensor, op: ReduceOp = "sum"): Tensor { return defaultGroup().allReduce(t, op); }
export function broadcast(t: Tensor, src = 0): Tensor { return defaultGroup().broadcast(t, src); }
export function allGather(t: Tensor): Tensor[] { return defaultGroup().allGather(t); }
export function reduceScatter(inputs: Tensor[], op: ReduceOp = "sum"): Tensor { return defaultGroup().reduceScatter(inputs, op); }
export function barrier(): void { defaultGroup().barrier(); }
