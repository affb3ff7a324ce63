// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_.
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
    const norms = grads.map((g) => g.norm(p));
    const total = p === Infinity ? stack(norms).amax() : stack(norms).norm(p);
    const totalValue = total.item();
    if (opts.errorIfNonfinite && !Number.isFinite(totalValue)) {
      throw new Error(`clipGradNorm: the total norm of order ${p} of the gradients is non-finite (${totalValue}); cannot clip`);
    }
    // As PyTorch: the coefficient is clamped to 1 (multiplying by exactly 1 is skipped; NaN is not).
    const coef = Math.min(maxNorm / (totalValue + 1e-6), 1);
    if (!(coef >= 1)) for (const g of grads) g.mul_(coef);
    return totalValue;
  }));
}
