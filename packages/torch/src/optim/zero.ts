// ZeRO stages 1 and 2 (Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training
// Trillion Parameter Models", §5.1-5.2) over a data-parallel group. Stage 1 shards the optimizer
// state, as PyTorch's torch.distributed.optim.ZeroRedundancyOptimizer; stage 2 the gradients too.
//
//   1. partition (PyTorch's _partition_parameters): per parameter group, its parameters sorted by
//      number of elements, largest first (a stable sort), each go to the rank that holds the fewest
//      elements so far over all groups (the lowest rank on a tie). Every rank computes the same
//      partition from the same parameter list.
//   2. each rank builds the wrapped optimizer (AdamW, SGD) on its partition alone, so it creates
//      state (exp_avg, exp_avg_sq, momentum_buffer, ...) for about 1/worldSize of the elements;
//   3. stage 2 only, reduceGradients() after backward (instead of DistributedDataParallel's
//      all-reduce): each parameter's gradient is averaged onto its owner alone, and every other
//      rank drops its copy (.grad = null), so each rank then holds ~1/worldSize of the gradients;
//   4. step(): the wrapped optimizer updates this rank's partition (stage 1: the gradients were
//      averaged by DistributedDataParallel), then every parameter is broadcast from the rank that
//      owns it, in buckets of consecutive parameters of one owner, dtype and device, so all
//      replicas hold the same weights again. The weights stay replicated (ZeRO-3 would shard them).
//
// Stage 2's reduction is a reduce-scatter per bucket: bucket b holds, for each rank r, a chunk of
// consecutive parameters of r's partition (one dtype and device), flattened and zero-padded to the
// bucket's common chunk length; reduceScatter(chunks, "avg") leaves on rank r the average of its
// own chunk. On NCCL that is a true reduce-scatter: each rank sends and receives (N-1)/N of the
// bucket once, half an all-reduce's traffic. Gloo (libtorch < 2.7) has none, and the addon runs an
// all-reduce of the stacked chunks (distributed.cc): DDP's all-reduce traffic plus the padding.
// c10d's reduce to each owner would cost what a true reduce-scatter costs, but it is not bound in
// the addon, and with synchronous collectives it takes one call per owner and bucket instead of
// one per bucket. Parameters are never split (each stays whole with its owner, as in ZeRO-1's
// partition), so a round's chunks are filled up to its longest chunk; the padding is what the
// shorter chunks lack (the last rounds of a partition, or a round set by one large parameter).
// As DistributedDataParallel: one small all-reduce first says which parameters got a gradient on
// some rank; a parameter without a local gradient enters its chunk as zeros, so every rank issues
// the same collectives and none waits forever; a bucket no rank has a gradient in is skipped, and
// a parameter no rank has a gradient for keeps .grad = null on its owner (the optimizer skips it,
// as in one process).
//
// Gradient accumulation: the micro-steps run plain loss.backward() (no communication) and
// reduceGradients() runs once, after the last. Until then each rank holds full-size local
// gradients, as DeepSpeed's stage 2 without contiguous partitioned accumulation; and since the
// backward here has no per-parameter hooks, the full gradients also exist for a moment at the end
// of every backward (the activations are freed by then). The sharding saves memory from the
// reduction on: through clipping, the optimizer step (with its temporaries) and until zeroGrad.
//
// Clipping: with sharded gradients, clipGradNorm() (a collective) gathers every rank's
// per-parameter norms of the gradients it owns (one all-reduce of 2 floats per parameter) and
// combines them in the global parameter order, so the norm and the clip coefficient are those
// clip.ts computes over the full averaged gradients, on every rank.
//
// The parameter groups (`paramGroups`) hold every parameter and are what a schedule sets: their
// hyperparameters reach the wrapped optimizer at each step. Checkpoints hold the full state in
// the plain optimizer's layout (the same keys and step counts as the wrapped optimizer over all
// parameters would save), so they load into a ZeRO (either stage) or a plain optimizer at any
// world size:
//
//   const opt = new ZeroRedundancyOptimizer(groups, AdamW, { lr: 3e-4 }, { stage: 2 });   // after initProcessGroup()
//   for (const micro of microBatches) lossOf(micro).backward();   // stage 1: ddp.backward / ddp.syncGradients()
//   opt.reduceGradients();                            // stage 2: every rank, once per step
//   opt.clipGradNorm(1.0); opt.step(); opt.zeroGrad();
//   opt.consolidateStateDict(0);                      // every rank: collective
//   if (rank === 0) save(opt.stateDict());            // rank 0: the full state
//   opt.loadStateDict(full);                          // every rank keeps its shard of a full state
import type { Tensor } from "../tensor.js";
import { cat, empty, stack, tensor } from "../creation.js";
import { noGrad } from "../autograd.js";
import { persist, scope } from "../scope.js";
import { defaultGroup, type ProcessGroup } from "../distributed.js";
import { fnv1a, flattenGrads, ranksWithGradient, writeBackGrads } from "../grad_buckets.js";
import { ELEMENT_SIZE, type DType } from "../dtype.js";
import { Optimizer, type GroupSpec, type OptimizerState } from "./optimizer.js";
import { clipGradNorm, jointNorm, scaleGrads } from "./clip.js";

/** An optimizer class to wrap: AdamW, SGD, or any Optimizer taking (groups, defaults). */
export type OptimizerClass<H extends { lr: number }> = new (params: GroupSpec<H>[], defaults: Partial<H>) => Optimizer<H>;

export interface ZeroOptions {
  /** Default: the default process group (initProcessGroup). */
  group: ProcessGroup;
  /** Largest broadcast bucket of step() and reduce-scatter bucket of reduceGradients(), in MiB (a parameter larger than this goes alone). */
  bucketCapMb: number;
  /** 1 (default): the optimizer state is sharded; 2: the gradients too (reduceGradients). */
  stage: 1 | 2;
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
/** A reduce-scatter bucket: chunks[r] are parameters rank r owns (index: their global positions), flattened and padded to `length`. */
interface GradBucket { chunks: { params: Tensor[]; index: number[] }[]; length: number }
/** One rank's state as every rank must know it to take part in consolidation: slots by global parameter index. */
interface ShardMeta { slots: [index: number, name: string, dtype: DType][]; steps: Record<string, number> }

export class ZeroRedundancyOptimizer<H extends { lr: number }> extends Optimizer<H> {
  readonly group: ProcessGroup;
  /** The wrapped optimizer over this rank's partition: its groups mirror paramGroups (some may be empty). */
  readonly optim: Optimizer<H>;
  /** `partition[r][g]`: the parameters of group g whose update and state rank r owns. */
  readonly partition: Tensor[][][];
  readonly stage: 1 | 2;
  private readonly buckets: Bucket[];
  /** Stage 2: the reduce-scatter buckets of reduceGradients. */
  private readonly gradBuckets: GradBucket[];
  /** Stage 2: whether reduceGradients ran since the last step (step and clipGradNorm need averaged shards). */
  private reduced = false;
  /** Global indices (over paramGroups' parameters, in order) of the parameters this rank owns. */
  private readonly ownedIndices: Set<number>;
  private consolidated: OptimizerState | null = null;

  constructor(params: Tensor[] | GroupSpec<H>[], optimizerClass: OptimizerClass<H>, defaults: Partial<H> = {}, o: Partial<ZeroOptions> = {}) {
    super(params, defaults as H); // full groups; the wrapped class's defaults are merged in below
    this.group = o.group ?? defaultGroup();
    this.stage = o.stage ?? 1;
    if (this.stage !== 1 && this.stage !== 2) throw new RangeError(`ZeroRedundancyOptimizer: stage must be 1 (optimizer state sharded) or 2 (gradients too), got ${String(this.stage)}`);
    this.checkSameParameters();
    this.partition = partitionParameters(this.paramGroups.map((g) => g.params), this.group.worldSize);
    const mine = this.partition[this.group.rank]!;
    const mineSet = new Set(mine.flat());
    this.ownedIndices = new Set(this.paramGroups.flatMap((g) => g.params).flatMap((p, i) => (mineSet.has(p) ? [i] : [])));
    this.optim = new optimizerClass(this.paramGroups.map((g, gi) => ({ ...hyperOf(g), params: mine[gi]! }) as GroupSpec<H>), defaults);
    // the full groups take the wrapped class's defaults (AdamW's betas, ...) and key order, so that
    // they read and save as the plain optimizer's (a checkpoint is then the same file)
    this.optim.paramGroups.forEach((g, gi) => {
      const full = this.paramGroups[gi]! as Record<string, unknown>;
      for (const k of Object.keys(full)) if (k !== "params") delete full[k];
      Object.assign(full, hyperOf(g));
    });
    const capBytes = (o.bucketCapMb ?? 25) * 1024 * 1024;
    this.buckets = makeBuckets(this.partition.map((groups) => groups.flat()), capBytes);
    const index = new Map(this.paramGroups.flatMap((g) => g.params).map((p, i) => [p, i]));
    this.gradBuckets = this.stage === 2 ? makeGradBuckets(this.partition.map((groups) => groups.flat()), index, capBytes) : [];
  }

  /** Number of reduce-scatter buckets (one collective each per reduceGradients); 0 under stage 1. */
  get numGradBuckets(): number { return this.gradBuckets.length; }

  /**
   * Stage 2, every rank, once per optimizer step after the last backward: averages each
   * parameter's gradient onto its owner and drops the other ranks' copies (.grad = null).
   */
  reduceGradients(): void {
    if (this.stage !== 2) throw new Error("ZeroRedundancyOptimizer.reduceGradients: gradients are sharded at stage 2; at stage 1 DistributedDataParallel averages them (ddp.backward / ddp.syncGradients)");
    const params = this.paramGroups.flatMap((g) => g.params);
    const rank = this.group.rank;
    noGrad(() => scope(() => {
      // 1. which parameters got a gradient on at least one rank (one small all-reduce)
      const usedAnywhere = ranksWithGradient(this.group, params, params[0]!.device);
      // 2. per bucket: each rank's chunk flattened (zeros for a missing gradient) and padded, the
      //    local copies of other ranks' gradients dropped, then the average of its own chunk back
      for (const b of this.gradBuckets) {
        if (b.chunks.every((c) => c.index.every((i) => usedAnywhere[i] === 0))) continue;
        scope(() => {
          const p0 = b.chunks.find((c) => c.params.length > 0)!.params[0]!;
          const like = { dtype: p0.dtype, device: p0.device };
          const inputs = b.chunks.map((c) => flattenGrads(c.params, like, b.length));
          b.chunks.forEach((c, r) => { if (r !== rank) for (const p of c.params) p.grad = null; });
          const avg = this.group.reduceScatter(inputs, "avg");
          const mine = b.chunks[rank]!;
          writeBackGrads(mine.params, avg, (j) => usedAnywhere[mine.index[j]!] !== 0);
        });
      }
    }));
    this.reduced = true;
  }

  /**
   * clip.ts's clipGradNorm over every parameter of this optimizer: at stage 2 a collective over
   * the sharded gradients (after reduceGradients) that returns the norm of the full averaged
   * gradient on every rank and scales each rank's shard; at stage 1 the local clipGradNorm.
   */
  clipGradNorm(maxNorm: number, opts: { normType?: number; errorIfNonfinite?: boolean } = {}): number {
    const params = this.paramGroups.flatMap((g) => g.params);
    if (this.stage === 1) return clipGradNorm(params, maxNorm, opts);
    this.requireReduced("clipGradNorm");
    const p = opts.normType ?? 2;
    return noGrad(() => scope(() => {
      // 1. [norms | has-gradient flags] by global index: each rank fills the parameters it holds a gradient of, one all-reduce sums them
      const n = params.length;
      const held = params.flatMap((q, i) => (q.grad === null ? [] : [[i, q.grad] as const]));
      const values = new Float64Array(2 * n);
      if (held.length > 0) {
        const norms = stack(held.map(([, g]) => g.norm(p).double())).toTypedArray();
        held.forEach(([i], k) => { values[i] = Number(norms[k]); values[n + i] = 1; });
      }
      const all = this.group.allReduce(tensor(values, { dtype: "float64", device: params[0]!.device }), "sum").toTypedArray();
      // 2. the joint norm of the held ones, in global order and in the gradients' dtype: clip.ts's value exactly
      const used = params.flatMap((_, i) => (Number(all[n + i]) > 0 ? [i] : []));
      if (used.length === 0) return 0;
      const dtype = promoted(used.map((i) => params[i]!.dtype));
      const total = jointNorm(tensor(used.map((i) => Number(all[i])), { dtype, device: params[0]!.device }), p).item();
      scaleGrads(held.map(([, g]) => g), total, maxNorm, p, opts.errorIfNonfinite ?? false);
      return total;
    }));
  }

  /** Sets every .grad to none (the next step needs reduceGradients again). */
  override zeroGrad(): void {
    super.zeroGrad();
    this.reduced = false;
  }

  private requireReduced(what: string): void {
    if (this.stage === 2 && !this.reduced) {
      throw new Error(`ZeroRedundancyOptimizer.${what}: at stage 2 the gradients must be reduced first: call reduceGradients() on every rank after the last backward of the step (it replaces DistributedDataParallel's all-reduce)`);
    }
  }

  /** The inner step on this rank's partition, then every parameter from its owner (collective). */
  step(): void {
    this.requireReduced("step");
    this.clearConsolidatedState(); // it described the state before this step
    // 1. what a schedule set on paramGroups reaches the wrapped optimizer
    this.paramGroups.forEach((g, gi) => Object.assign(this.optim.paramGroups[gi]!, hyperOf(g)));
    // 2. update the local partition
    this.optim.step();
    // 3. every replica gets every parameter: one broadcast per bucket, from its owner
    this.broadcastParameters();
    this.reduced = false;
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
   * clearConsolidatedState(). Slot tensors travel one broadcast each, from their owner, and are
   * kept in host memory: rank `to` holds the whole state there (AdamW: 8 bytes per trained
   * parameter, 61 GB at 7.6 B), its device one slot at a time.
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
          if (rank === to) tensors.set(key, persist(own.get(key)!.to({ device: "cpu", copy: true })));
          continue;
        }
        if (rank === owner) {
          this.group.broadcast(own.get(key)!, owner);
          continue;
        }
        const p = params[i]!;
        const buf = empty(p.shape, { dtype, device: p.device });
        this.group.broadcast(buf, owner);
        if (rank === to && p.device === "cpu") {
          tensors.set(key, persist(buf));
          continue;
        }
        if (rank === to) tensors.set(key, persist(buf.cpu()));
        buf.dispose();
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
   * Whether a full state's tensor (`state.<i>.<slot>`, i over every parameter) belongs to this
   * rank's partition: the only ones loadStateDict keeps, so a rank may read just those from a
   * checkpoint (io.loadFile's `names`) instead of the whole state.
   */
  ownsStateKey(key: string): boolean {
    const m = /^state\.(\d+)\./.exec(key);
    return m !== null && this.ownedIndices.has(Number(m[1]));
  }

  /**
   * Loads a full state (stateDict() of this or of a plain optimizer over the same parameters, in
   * the same order), or just the tensors ownsStateKey selects of it: each rank keeps the slots and
   * step counts of its own partition. No collective.
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

// Per dtype and device, rounds of one chunk per rank: each chunk takes the next parameters of its
// rank's partition while it stays within the round's length, which is capBytes / worldSize or the
// largest next parameter, whichever is longer; the round then pads every chunk to its longest.
function makeGradBuckets(owned: Tensor[][], index: Map<Tensor, number>, capBytes: number): GradBucket[] {
  const queues = new Map<string, Tensor[][]>();
  owned.forEach((params, r) => {
    for (const p of params) {
      const key = `${p.dtype}@${p.device}`;
      if (!queues.has(key)) queues.set(key, owned.map((): Tensor[] => []));
      queues.get(key)![r]!.push(p);
    }
  });
  const buckets: GradBucket[] = [];
  for (const qs of queues.values()) {
    const elementSize = ELEMENT_SIZE[qs.find((q) => q.length > 0)![0]!.dtype];
    const heads = qs.map(() => 0);
    while (qs.some((q, r) => heads[r]! < q.length)) {
      const cap = Math.max(Math.floor(capBytes / (owned.length * elementSize)), ...qs.map((q, r) => q[heads[r]!]?.numel() ?? 0));
      const chunks = qs.map((q, r) => {
        const chunk = { params: [] as Tensor[], index: [] as number[] };
        let n = 0;
        while (heads[r]! < q.length && n + q[heads[r]!]!.numel() <= cap) {
          const p = q[heads[r]!]!;
          chunk.params.push(p);
          chunk.index.push(index.get(p)!);
          n += p.numel();
          heads[r]! += 1;
        }
        return { chunk, n };
      });
      buckets.push({ chunks: chunks.map((c) => c.chunk), length: Math.max(...chunks.map((c) => c.n)) });
    }
  }
  return buckets;
}

// The dtype torch.stack gives norms of these dtypes (clip.ts stacks them): float64 over float32
// over the 16-bit types, and float32 for bfloat16 with float16.
function promoted(dtypes: DType[]): DType {
  const set = new Set(dtypes);
  if (set.size === 1) return dtypes[0]!;
  if (set.has("float64")) return "float64";
  return "float32";
}
