// DistributedDataParallel: one replica of the model per rank, gradients averaged after backward.
// libtorch ships no C++ DDP (PyTorch's Reducer lives in its Python extension), so this is the
// explicit form of PyTorch's C++ examples:
//   1. at construction, every rank checks it holds the same trainable parameters, then takes
//      rank 0's parameters and buffers (one broadcast each);
//   2. after backward, gradients are all-reduced (averaged) in buckets of ~25 MB: each bucket is
//      the flattened gradients of consecutive parameters of one dtype, one collective per bucket.
// A parameter that got no gradient on a rank (a branch that rank's batch did not take) enters
// its bucket as zeros, so every rank issues the same collectives and none waits forever; one
// that got no gradient on any rank keeps .grad = null, so the optimizer skips it as it would in
// one process. Frozen parameters (requiresGrad false) are never communicated. Under ZeRO-2
// (optim/zero.ts, ZeroRedundancyOptimizer with stage 2) the optimizer's reduceGradients() takes the
// place of syncGradients: gradients are reduce-scattered onto their owners instead of all-reduced;
// this wrapper then only gives every rank rank 0's weights at construction.
//
//   const ddp = new DistributedDataParallel(model);          // after initProcessGroup()
//   for (const micro of microBatches.slice(0, -1)) ddp.noSync(() => ddp.backward(lossOf(micro)));
//   ddp.backward(lossOf(microBatches.at(-1)));                // communicates once, here
//   opt.step(); opt.zeroGrad();
import type { Tensor } from "../tensor.js";
import { tensor } from "../creation.js";
import { fnv1a, flattenGrads, ranksWithGradient, writeBackGrads } from "../grad_buckets.js";
import { noGrad } from "../autograd.js";
import { scope } from "../scope.js";
import { defaultGroup, type ProcessGroup } from "../distributed.js";
import { ELEMENT_SIZE, type Device } from "../dtype.js";
import type { Module, Parameter } from "./module.js";

export interface DDPOptions {
  /** Default: the default process group (initProcessGroup). */
  group: ProcessGroup;
  /** Bucket size in MiB, as PyTorch's bucket_cap_mb. */
  bucketCapMb: number;
}

interface Bucket {
  params: Parameter[];
  /** Indices of params in DistributedDataParallel.params (for the used-anywhere flags). */
  index: number[];
}

export class DistributedDataParallel<M extends Module> {
  readonly module: M;
  readonly group: ProcessGroup;
  /** Trainable parameters, in the module's order. */
  private readonly params: Parameter[];
  private readonly buckets: Bucket[];
  /** Where the small bookkeeping tensors go: the parameters' device (NCCL reduces CUDA tensors only). */
  private readonly device: Device;
  private syncEnabled = true;

  constructor(module: M, o: Partial<DDPOptions> = {}) {
    this.module = module;
    this.group = o.group ?? defaultGroup();
    const named = module.namedParameters().filter(([, p]) => p.requiresGrad);
    this.params = named.map(([, p]) => p);
    const first = module.parameters()[0];
    this.device = first === undefined ? "cpu" : first.device;
    this.checkSameParameters(named);
    noGrad(() => {
      for (const p of module.parameters()) this.group.broadcast(p, 0);
      for (const [, b] of module.namedBuffers()) this.group.broadcast(b, 0);
    });
    this.buckets = makeBuckets(this.params, (o.bucketCapMb ?? 25) * 1024 * 1024);
  }

  /** Number of gradient buckets (one all-reduce each per synchronisation). */
  get numBuckets(): number { return this.buckets.length; }

  /** loss.backward(), then the gradient all-reduce unless inside noSync. */
  backward(loss: Tensor): void {
    loss.backward();
    if (this.syncEnabled) this.syncGradients();
  }

  /**
   * Runs fn with gradient synchronisation off, for the micro-steps of gradient accumulation that
   * are not the last: gradients accumulate locally and are averaged once, on the last backward.
   */
  noSync<T>(fn: () => T): T {
    const before = this.syncEnabled;
    this.syncEnabled = false;
    try {
      return fn();
    } finally {
      this.syncEnabled = before;
    }
  }

  /** Averages every trainable parameter's gradient over the ranks (what backward does after loss.backward()). */
  syncGradients(): void {
    if (this.params.length === 0) return;
    noGrad(() => scope(() => {
      // 1. which parameters got a gradient on at least one rank (one small all-reduce)
      const usedAnywhere = ranksWithGradient(this.group, this.params, this.device);
      // 2. per bucket: flatten (zeros for a missing gradient), average, copy back
      for (const b of this.buckets) {
        if (b.index.every((i) => usedAnywhere[i] === 0)) continue;
        const p0 = b.params[0]!;
        const flat = flattenGrads(b.params, { dtype: p0.dtype, device: p0.device });
        this.group.allReduce(flat, "avg");
        writeBackGrads(b.params, flat, (j) => usedAnywhere[b.index[j]!] !== 0);
      }
    }));
  }

  // Every rank must hold the same trainable parameters: same count, elements, names and shapes
  // (summarised as a hash); otherwise the bucketed all-reduces would pair up the wrong tensors.
  private checkSameParameters(named: [string, Parameter][]): void {
    const numel = named.reduce((a, [, p]) => a + p.numel(), 0);
    const hash = fnv1a(named.map(([n, p]) => `${n}:${p.shape.join("x")}:${p.dtype}`).join(";"));
    const mine = tensor([named.length, numel, hash], { dtype: "float64", device: this.device });
    const all = scope(() => this.group.allGather(mine).map((t) => [...t.toTypedArray()].map(Number)));
    mine.dispose();
    const [n0, e0, h0] = all[0]!;
    all.forEach(([n, e, h], r) => {
      if (n !== n0 || e !== e0 || h !== h0) {
        throw new Error(
          `DistributedDataParallel: rank ${r} has ${n} trainable parameters (${e} elements), rank 0 has ${n0} (${e0} elements)` +
            `${n === n0 && e === e0 ? " with different names, shapes or dtypes" : ""}; every rank must build the same model and freeze the same parameters`,
        );
      }
    });
  }
}

// Consecutive parameters of one dtype and device, up to capBytes each (a larger parameter gets
// a bucket of its own).
function makeBuckets(params: Parameter[], capBytes: number): Bucket[] {
  const buckets: Bucket[] = [];
  const open = new Map<string, { bucket: Bucket; bytes: number }>();
  params.forEach((p, i) => {
    const key = `${p.dtype}@${p.device}`;
    const bytes = p.numel() * ELEMENT_SIZE[p.dtype];
    let cur = open.get(key);
    if (cur === undefined || (cur.bytes > 0 && cur.bytes + bytes > capBytes)) {
      cur = { bucket: { params: [], index: [] }, bytes: 0 };
      buckets.push(cur.bucket);
      open.set(key, cur);
    }
    cur.bucket.params.push(p);
    cur.bucket.index.push(i);
    cur.bytes += bytes;
  });
  return buckets;
}
