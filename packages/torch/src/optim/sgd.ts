// SGD with momentum, dampening, Nesterov and (coupled) weight decay, as torch.optim.SGD.
import type { Tensor } from "../tensor.js";
import { noGrad } from "../autograd.js";
import { scope } from "../scope.js";
import { Optimizer, type GroupSpec } from "./optimizer.js";

export interface SGDOptions {
  lr: number;
  momentum: number;
  dampening: number;
  weightDecay: number;
  nesterov: boolean;
}
export const SGD_DEFAULTS: SGDOptions = { lr: 1e-3, momentum: 0, dampening: 0, weightDecay: 0, nesterov: false };

export class SGD extends Optimizer<SGDOptions> {
  constructor(params: Tensor[] | GroupSpec<SGDOptions>[], opts: Partial<SGDOptions> = {}) {
    super(params, { ...SGD_DEFAULTS, ...opts });
    for (const g of this.paramGroups) {
      if (g.nesterov && (g.momentum <= 0 || g.dampening !== 0)) throw new Error("SGD: Nesterov momentum requires momentum > 0 and dampening = 0");
    }
  }

  step(): void {
    noGrad(() => scope(() => {
      for (const g of this.paramGroups) {
        for (const p of g.params) {
          const grad = p.grad;
          if (grad === null) continue;
          const first = this.nextStep(p) === 1;
          // d = g + wd·p
          let d = g.weightDecay !== 0 ? grad.add(p, g.weightDecay) : grad;
          if (g.momentum !== 0) {
            const buf = this.slot(p, "momentum_buffer");
            // first step: buf = d ; then buf = μ buf + (1 - dampening) d
            if (first) buf.copy_(d);
            else buf.mul_(g.momentum).add_(d, 1 - g.dampening);
            d = g.nesterov ? d.add(buf, g.momentum) : buf;
          }
          p.add_(d, -g.lr);
        }
      }
    }));
  }
}
