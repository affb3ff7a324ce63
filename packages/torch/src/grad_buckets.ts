// What DistributedDataParallel (nn/ddp.ts: all-reduce) and ZeRO-2 (optim/zero.ts: reduce-scatter)
// share when they average gradients in buckets: which parameters some rank gave a gradient (so a
// parameter no rank used keeps .grad = null, as in one process), a bucket's gradients flattened
// with zeros for the ones a rank lacks (so every rank issues the same collectives), and the
// averaged slices written back. Also the hash both use to check that the ranks hold the same
// parameter list.
import type { Tensor } from "./tensor.js";
import { cat, tensor, zeros } from "./creation.js";
import type { ProcessGroup } from "./distributed.js";
import type { Device, DType } from "./dtype.js";

/** Per parameter, how many ranks hold a gradient for it (one small all-reduce of 0/1 flags; collective). */
export function ranksWithGradient(group: ProcessGroup, params: readonly Tensor[], device: Device): Float32Array {
  return group.allReduce(tensor(params.map((p) => (p.grad === null ? 0 : 1)), { dtype: "float32", device }), "sum").toTypedArray() as Float32Array;
}

/** The gradients of `params` as one 1-D tensor (zeros for a missing one), padded with zeros to `length`. */
export function flattenGrads(params: readonly Tensor[], like: { dtype: DType; device: Device }, length?: number): Tensor {
  const parts = params.map((p) => (p.grad ?? zeros([p.numel()], like)).flatten());
  const n = params.reduce((a, p) => a + p.numel(), 0);
  if (length !== undefined && n < length) parts.push(zeros([length - n], like));
  return cat(parts);
}

/** Copies consecutive slices of `flat` into the gradients of `params`, skipping those for which `used(j)` is false. */
export function writeBackGrads(params: readonly Tensor[], flat: Tensor, used: (j: number) => boolean): void {
  let offset = 0;
  params.forEach((p, j) => {
    const n = p.numel();
    const g = flat.narrow(0, offset, n).view(...p.shape);
    offset += n;
    if (!used(j)) return;
    if (p.grad === null) p.grad = g.clone();
    else p.grad.copy_(g);
  });
}

/** 32-bit FNV-1a: exact in a float64, enough to tell two parameter lists apart. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
