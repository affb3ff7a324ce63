// AdamW with PyTorch's semantics (torch.optim.AdamW, single-tensor path): decoupled weight decay
// applied to the parameter before the Adam update, bias-corrected moments, optional AMSGrad.
import type { Tensor } from "../tensor.js";
import { noGrad } from "../autograd.js";
import { scope } from "../scope.js";
import { Optimizer, type GroupSpec } from "./optimizer.js";

export interface AdamWOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  amsgrad: boolean;
}
export const ADAMW_DEFAULTS: AdamWOptions = { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 1e-2, amsgrad: false };

/**
 * ```ts
 * const opt = new AdamW([{ params: decay, weightDecay: 0.1 }, { params: noDecay, weightDecay: 0 }], { lr: 3e-4 });
 * loss.backward(); opt.step(); opt.zeroGrad();
 * ```
 */
export class AdamW extends Optimizer<AdamWOptions> {
  constructor(params: Tensor[] | GroupSpec<AdamWOptions>[], opts: Partial<AdamWOptions> = {}) {
    super(params, { ...ADAMW_DEFAULTS, ...opts });
  }

  step(): void {
    noGrad(() => scope(() => {
      for (const g of this.paramGroups) {
        const [beta1, beta2] = g.betas;
        for (const p of g.params) {
          const grad = p.grad;
          if (grad === null) continue;
          const step = this.nextStep(p);
          const expAvg = this.slot(p, "exp_avg");
          const expAvgSq = this.slot(p, "exp_avg_sq");
          // 1. decoupled weight decay
          if (g.weightDecay !== 0) p.mul_(1 - g.lr * g.weightDecay);
          // 2. moments: m = β1 m + (1-β1) g ; v = β2 v + (1-β2) g²
          expAvg.lerp_(grad, 1 - beta1);
          expAvgSq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
          // 3. bias-corrected step: p -= lr/(1-β1^t) · m / (√v/√(1-β2^t) + eps)
          const bc1 = 1 - beta1 ** step;
          const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
          let second = expAvgSq;
          if (g.amsgrad) {
            const maxSq = this.slot(p, "max_exp_avg_sq");
            maxSq.copy_(maxSq.maximum(expAvgSq));
            second = maxSq;
          }
          const denom = second.sqrt().div_(bc2Sqrt).add_(g.eps);
          p.addcdiv_(expAvg, denom, -g.lr / bc1);
        }
      }
    }));
  }
}
