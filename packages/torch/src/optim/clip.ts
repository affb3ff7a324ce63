// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_.
import type { Tensor } from "../tensor.js";
import { noGrad } from "../autograd.js";
import { scope } from "../scope.js";
import { stack } from "../creation.js";

/**
 * Scales all gradients so that their joint p-norm is at most maxNorm; returns the norm before
 * clipping (a number; Infinity or NaN when a gradient is not finite, and then nothing is scaled
 * only if errorIfNonfinite asks to throw).
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
    // As PyTorch: coefficient clamped to 1, applied unconditionally (a no-op when below max).
    const coef = Math.min(maxNorm / (totalValue + 1e-6), 1);
    if (coef < 1) for (const g of grads) g.mul_(coef);
    return totalValue;
  }));
}
