// ZeRO stage 1 (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion
// Parameter Models", §5.1): the optimizer state is sharded over the ranks of a data-parallel group,
// as PyTorch's torch.distributed.optim.ZeroRedundancyOptimizer.
//
//   1. partition (PyTorch's _partition_parameters): per parameter group, its parameters sorted by
//      number of elements, largest first (a stable sort), each go to the rank that holds the fewest
//      elements so far over all groups (the lowest rank on a tie). Every rank computes the same
//      partition from the same parameter list.
//   2. each rank builds the wrapped optimizer (AdamW, SGD) on its partition alone, so it creates
//      state (exp_avg, exp_avg_sq, momentum_buffer, ...) for about 1/worldSize of the elements;
//   3. step(): the wrapped optimizer updates this rank's partition (the gradients are already
//      averaged, by DistributedDataParallel), then every parameter is broadcast from the rank
//      that owns it, in buckets of consecutive parameters of one owner, dtype and device, so all
//      replicas hold the same weights again. The weights and gradients stay replicated (ZeRO-2
//      and -3 would shard those too).
//
// The parameter groups (`paramGroups`) hold every parameter and are what a schedule sets: their
// hyperparameters reach the wrapped optimizer at each step. Checkpoints hold the full state in
// the plain optimizer's layout (the same keys and step counts as the wrapped optimizer over all
// parameters would save), so they load into a ZeRO or a plain optimizer at any world size:
//
//   const opt = new ZeroRedundancyOptimizer(groups, AdamW, { lr: 3e-4 });   // after initProcessGroup()
//   ddp.backward(loss); opt.step(); opt.zeroGrad();
//   opt.consolidateStateDict(0);                      // every rank: collective
//   if (rank === 0) save(opt.stateDict());            // rank 0: the full state
//   opt.loadStateDict(full);                          // every rank keeps its shard of a full state
import type { Tensor } from "../tensor.js";
import { cat, empty, tensor } from "../creation.js";
import { noGrad } from "../autograd.js";
import { persist, scope } from "../scope.js";
import { defaultGroup, type ProcessGroup } from "../distributed.js";
import { ELEMENT_SIZE, type DType } from "../dtype.js";
import { Optimizer, type GroupSpec, type OptimizerState } from "./optimizer.js";

/** An optimizer class to wrap: AdamW, SGD, or any Optimizer taking (groups, defaults). */
export type OptimizerClass<H extends { lr: number }> = new (params: GroupSpec<H>[], defaults: Partial<H>) => Optimizer<H>;

export interface ZeroOptions {
  /** Default: the default process group (initProcessGroup). */
  group: ProcessGroup;
  /** Largest broadcast bucket of step(), in MiB (a parameter larger than this goes alone). */
  bucketCapMb: number;
}

/**
 * PyTorch's greedy partition: `partition[r][g]` are the parameters of group g that rank r updates,
 * largest first. `sizes` carries over groups, so the ranks end with about equal element counts.
 */
export function partitionParameters(groups: Tensor[][], worldSize: number): Tensor[][][] {
  const partition = Array.from({ length: worldSize }, () => groups.map((): Tensor[] => []));
  const sizes = new Array<number>(worldSize).fill(0);
  groups.forEach((params, gi) => {
    const sorted = [...params].sort((a, b) => b.numel() - a.numel());
    for (const p of sorted) {
      const r = sizes.indexOf(Math.min(...sizes));
      partition[r]![gi]!.push(p);
      sizes[r]! += p.numel();
    }
  });
  return partition;
}

interface Bucket { owner: number; params: Tensor[]; numel: number }
/** One rank's state as every rank must know it to take part in consolidation: slots by global parameter index. */
interface ShardMeta { slots: [index: number, name: string, dtype: DType][]; steps: Record<string, number> }

export class ZeroRedundancyOptimizer<H extends { lr: number }> extends Optimizer<H> {
  readonly group: ProcessGroup;
  /** The wrapped optimizer over this rank's partition: its groups mirror paramGroups (some may be empty). */
  readonly optim: Optimizer<H>;
  /** `partition[r][g]`: the parameters of group g whose update and state rank r owns. */
  readonly partition: Tensor[][][];
  private readonly buckets: Bucket[];
  private consolidated: OptimizerState | null = null;

  constructor(params: Tensor[] | GroupSpec<H>[], optimizerClass: OptimizerClass<H>, defaults: Partial<H> = {}, o: Partial<ZeroOptions> = {}) {
    super(params, defaults as H); // full groups; the wrapped class's defaults are merged in below
    this.group = o.group ?? defaultGroup();
    this.checkSameParameters();
    this.partition = partitionParameters(this.paramGroups.map((g) => g.params), this.group.worldSize);
    const mine = this.partition[this.group.rank]!;
    this.optim = new optimizerClass(this.paramGroups.map((g, gi) => ({ ...hyperOf(g), params: mine[gi]! }) as GroupSpec<H>), defaults);
    // the full groups take the wrapped class's defaults (AdamW's betas, ...) and key order, so that
    // they read and save as the plain optimizer's (a checkpoint is then the same file)
    this.optim.paramGroups.forEach((g, gi) => {
      const full = this.paramGroups[gi]! as Record<string, unknown>;
      for (const k of Object.keys(full)) if (k !== "params") delete full[k];
      Object.assign(full, hyperOf(g));
    });
    this.buckets = makeBuckets(this.partition.map((groups) => groups.flat()), (o.bucketCapMb ?? 25) * 1024 * 1024);
  }

  /** The inner step on this rank's partition, then every parameter from its owner (collective). */
  step(): void {
    this.clearConsolidatedState(); // it described the state before this step
    // 1. what a schedule set on paramGroups reaches the wrapped optimizer
    this.paramGroups.forEach((g, gi) => Object.assign(this.optim.paramGroups[gi]!, hyperOf(g)));
    // 2. update the local partition
    this.optim.step();
    // 3. every replica gets every parameter: one broadcast per bucket, from its owner
    this.broadcastParameters();
  }

  private broadcastParameters(): void {
    const rank = this.group.rank;
    noGrad(() => {
      for (const b of this.buckets) {
        if (b.params.length === 1) {
          this.group.broadcast(b.params[0]!, b.owner); // in place
          continue;
        }
        scope(() => {
          const p0 = b.params[0]!;
          const flat = rank === b.owner ? cat(b.params.map((p) => p.flatten())) : empty([b.numel], { dtype: p0.dtype, device: p0.device });
          this.group.broadcast(flat, b.owner);
          if (rank === b.owner) return;
          let offset = 0;
          for (const p of b.params) {
            p.copy_(flat.narrow(0, offset, p.numel()).view(...p.shape));
            offset += p.numel();
          }
        });
      }
    });
  }

  /**
   * Gathers the full state on rank `to` (collective: every rank calls it), in the plain
   * optimizer's layout; stateDict() on `to` then returns it, until the next step() or
   * clearConsolidatedState(). Slot tensors travel one broadcast each, from their owner.
   */
  consolidateStateDict(to = 0): void {
    const { rank, worldSize } = this.group;
    if (!(Number.isInteger(to) && to >= 0 && to < worldSize)) throw new RangeError(`ZeroRedundancyOptimizer.consolidateStateDict: rank ${to} is not in the group of ${worldSize}`);
    this.clearConsolidatedState();
    const params = this.paramGroups.flatMap((g) => g.params);
    const index = new Map(params.map((p, i) => [p, i]));
    // 1. every rank's slots and step counts, by global parameter index
    const local = this.optim.stateDict();
    const inner = this.optim.paramGroups.flatMap((g) => g.params);
    const own = new Map<string, Tensor>();
    const meta: ShardMeta = { slots: [], steps: {} };
    for (const [key, t] of local.tensors) {
      const m = /^state\.(\d+)\.(\w+)$/.exec(key)!;
      const i = index.get(inner[Number(m[1])]!)!;
      own.set(`state.${i}.${m[2]}`, t);
      meta.slots.push([i, m[2]!, t.dtype]);
    }
    for (const [j, n] of Object.entries(local.meta.steps)) meta.steps[String(index.get(inner[Number(j)]!)!)] = n;
    const shards = this.gatherJson(meta);
    // 2. each slot from its owner to `to`, in the same order on every rank
    const tensors = new Map<string, Tensor>();
    noGrad(() => shards.forEach((s, owner) => {
      for (const [i, name, dtype] of s.slots) {
        const key = `state.${i}.${name}`;
        if (owner === to) {
          if (rank === to) tensors.set(key, persist(own.get(key)!.clone()));
          continue;
        }
        if (rank === owner) {
          this.group.broadcast(own.get(key)!, owner);
          continue;
        }
        const p = params[i]!;
        const buf = empty(p.shape, { dtype, device: p.device });
        this.group.broadcast(buf, owner);
        if (rank === to) tensors.set(key, persist(buf));
        else buf.dispose();
      }
    }));
    if (rank !== to) return;
    const steps = Object.assign({}, ...shards.map((s) => s.steps)) as Record<string, number>;
    this.consolidated = { tensors, meta: { groups: super.stateDict().meta.groups, steps } };
  }

  /** The full state gathered by consolidateStateDict (on its `to` rank only); the tensors are this optimizer's copies. */
  override stateDict(): OptimizerState {
    if (this.consolidated === null) {
      throw new Error(`ZeroRedundancyOptimizer.stateDict: rank ${this.group.rank} holds no consolidated state; the state is sharded: call consolidateStateDict(to) on every rank first, then stateDict() on rank to (it is dropped at the next step)`);
    }
    return this.consolidated;
  }

  /** Frees the state consolidateStateDict gathered (after it is saved). */
  clearConsolidatedState(): void {
    if (this.consolidated === null) return;
    for (const t of this.consolidated.tensors.values()) t.dispose();
    this.consolidated = null;
  }

  /**
   * Loads a full state (stateDict() of this or of a plain optimizer over the same parameters, in
   * the same order): each rank keeps the slots and step counts of its own partition. No collective.
   */
  override loadStateDict(state: OptimizerState): void {
    const params = this.paramGroups.flatMap((g) => g.params);
    const { groups, steps } = state.meta;
    // 1. check against the full parameter list, so that errors name the checkpoint's indices
    this.checkGroupSizes(groups);
    const inner = this.optim.paramGroups.flatMap((g) => g.params);
    const innerIndex = new Map(inner.map((p, j) => [p, j]));
    const tensors = new Map<string, Tensor>();
    for (const [key, t] of state.tensors) {
      const m = /^state\.(\d+)\.(\w+)$/.exec(key);
      const p = m ? params[Number(m[1])] : undefined;
      if (!m || p === undefined) throw new Error(`optimizer loadStateDict: unexpected tensor '${key}'`);
      if (p.shape.join(",") !== t.shape.join(",")) throw new Error(`optimizer loadStateDict: '${key}' has shape [${t.shape}] but parameter ${m[1]} has shape [${p.shape}]`);
      const j = innerIndex.get(p);
      if (j !== undefined) tensors.set(`state.${j}.${m[2]}`, t);
    }
    const innerSteps: Record<string, number> = {};
    for (const [i, n] of Object.entries(steps)) {
      const p = params[Number(i)];
      if (p === undefined) throw new Error(`optimizer loadStateDict: step count for parameter ${i}, but this optimizer has ${params.length} parameters`);
      const j = innerIndex.get(p);
      if (j !== undefined) innerSteps[String(j)] = n;
    }
    // 2. this rank's shard into the wrapped optimizer; the hyperparameters into both
    let offset = 0;
    const innerGroups = this.optim.paramGroups.map((g, gi) => {
      const indices = g.params.map((_, k) => offset + k);
      offset += g.params.length;
      return { ...groups[gi]!, params: indices };
    });
    this.clearConsolidatedState();
    this.optim.loadStateDict({ tensors, meta: { groups: innerGroups, steps: innerSteps } });
    groups.forEach((g, gi) => {
      const { params: _ignored, ...hyper } = g;
      Object.assign(this.paramGroups[gi]!, hyper);
    });
  }

  /** Every rank's JSON value, in rank order (two all-gathers: the lengths, then the padded bytes). */
  private gatherJson<T>(value: T): T[] {
    const device = this.paramGroups.flatMap((g) => g.params)[0]!.device; // NCCL gathers CUDA tensors only
    const bytes = new TextEncoder().encode(JSON.stringify(value));
    return scope(() => {
      const lengths = this.group.allGather(tensor([bytes.length], { dtype: "int64", device })).map((t) => Number(t.item()));
      const padded = new Uint8Array(Math.max(...lengths));
      padded.set(bytes);
      const all = this.group.allGather(tensor(padded, { dtype: "uint8", device }));
      return all.map((t, r) => JSON.parse(new TextDecoder().decode(t.toBytes().subarray(0, lengths[r]!))) as T);
    });
  }

  // Every rank must partition the same parameter list (count, shapes, dtypes, grouping), or the
  // owners and broadcasts would not pair up: one all-gather of a summary.
  private checkSameParameters(): void {
    const shapes = this.paramGroups.map((g) => g.params.map((p) => `${p.shape.join("x")}:${p.dtype}`).join(",")).join(";");
    const numel = this.paramGroups.reduce((a, g) => a + g.params.reduce((b, p) => b + p.numel(), 0), 0);
    const mine = [this.paramGroups.reduce((a, g) => a + g.params.length, 0), numel, fnv1a(shapes)];
    const all = this.gatherJson(mine);
    all.forEach((theirs, r) => {
      if (theirs.join() !== mine.join()) {
        throw new Error(`ZeroRedundancyOptimizer: rank ${r} has ${theirs[0]} parameters (${theirs[1]} elements), rank ${this.group.rank} has ${mine[0]} (${mine[1]} elements)${theirs[0] === mine[0] && theirs[1] === mine[1] ? " in other groups, shapes or dtypes" : ""}; every rank must pass the same parameter groups`);
      }
    });
  }
}

/** A group's hyperparameters (everything but its parameters). */
function hyperOf<G extends { params: Tensor[] }>(g: G): Omit<G, "params"> {
  const { params: _ignored, ...hyper } = g;
  return hyper;
}

// Per owner, consecutive parameters of its partition of one dtype and device, up to capBytes a bucket.
function makeBuckets(owned: Tensor[][], capBytes: number): Bucket[] {
  const buckets: Bucket[] = [];
  owned.forEach((params, owner) => {
    let cur: (Bucket & { key: string; bytes: number }) | null = null;
    for (const p of params) {
      const key = `${p.dtype}@${p.device}`, bytes = p.numel() * ELEMENT_SIZE[p.dtype];
      if (cur === null || cur.key !== key || (cur.bytes > 0 && cur.bytes + bytes > capBytes)) {
        cur = { owner, params: [], numel: 0, key, bytes: 0 };
        buckets.push(cur);
      }
      cur.params.push(p);
      cur.numel += p.numel();
      cur.bytes += bytes;
    }
  });
  return buckets.map(({ owner, params, numel }) => ({ owner, params, numel }));
}

// 32-bit FNV-1a: exact in a float64, enough to tell two parameter lists apart.
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
