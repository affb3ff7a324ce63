// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_. The two halves (the joint
// norm of per-tensor norms, the scaling) are exported for sharded gradients: ZeRO-2
// (zero.ts) gathers its ranks' per-parameter norms, then combines and scales as here.
import type { Tensor } from "../tensor.js";
import { noGrad } from "../autograd.js";
import { scope } from "../scope.js";
import { stack } from "../creation.js";

/**
 * Scales all gradients so that their joint p-norm is at most maxNorm and returns the norm
 * before clipping. As PyTorch: a non-finite norm (a NaN or Inf gradient) makes every gradient
 * NaN unless errorIfNonfinite asks for an error instead.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number, opts: { normType?: number; errorIfNonfinite?: boolean } = {}): number {
  const p = opts.normType ?? 2;
  return noGrad(() => scope(() => {
    const grads = params.map((x) => x.grad).filter((g): g is Tensor => g !== null);
    if (grads.length === 0) return 0;
    const total = jointNorm(stack(grads.map((g) => g.norm(p))), p).item();
    scaleGrads(grads, total, maxNorm, p, opts.errorIfNonfinite ?? false);
    return total;
  }));
}

/** The p-norm of the concatenated gradients from their per-tensor p-norms `norms` (1-D). */
export function jointNorm(norms: Tensor, p: number): Tensor {
  return p === Infinity ? norms.amax() : norms.norm(p);
}

/** Multiplies grads by min(maxNorm / (total + 1e-6), 1), as PyTorch (multiplying by exactly 1 is skipped; NaN is not). */
export function scaleGrads(grads: Tensor[], total: number, maxNorm: number, p: number, errorIfNonfinite: boolean): void {
  if (errorIfNonfinite && !Number.isFinite(total)) {
    throw new Error(`clipGradNorm: the total norm of order ${p} of the gradients is non-finite (${total}); cannot clip`);
  }
  const coef = Math.min(maxNorm / (total + 1e-6), 1);
  if (!(coef >= 1)) noGrad(() => { for (const g of grads) g.mul_(coef); });
}
