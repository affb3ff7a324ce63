// The model, data and loss of the DDP equivalence test, shared by the test (one process, the
// whole batch) and dist_child.ts (each rank, its share).
import { torch, nn, F, type Tensor } from "../index.js";

/** A frozen input layer, a branch only flagged samples use, and a layer no sample uses. */
export class DdpNet extends nn.Module {
  frozen: nn.Linear;
  fc1: nn.Linear;
  fc2: nn.Linear;
  aux: nn.Linear;
  unused: nn.Linear;
  constructor() {
    super();
    const o = { dtype: "float64" as const };
    this.frozen = new nn.Linear(4, 8, o);
    this.fc1 = new nn.Linear(8, 16, o);
    this.fc2 = new nn.Linear(16, 1, o);
    this.aux = new nn.Linear(8, 1, o);
    this.unused = new nn.Linear(8, 2, o);
    this.frozen.requiresGrad_(false);
  }
}

export function ddpModel(seed: number): DdpNet {
  torch.manualSeed(seed);
  return new DdpNet();
}

/** Step s's global batch: x [n, 4], y [n, 1], flag [n] (only the first quarter flagged, i.e. only on rank 0 for 2 ranks). */
export function ddpBatch(s: number, n: number): { x: Tensor; y: Tensor; flag: Tensor } {
  const g = new torch.Generator(1000 + s);
  const x = torch.randn([n, 4], { dtype: "float64", generator: g });
  const y = torch.randn([n, 1], { dtype: "float64", generator: g });
  const flag = torch.arange(n, undefined, 1, { dtype: "float64" }).lt(n / 4).double();
  return { x, y, flag };
}

/** Mean over the batch of (fc2(tanh(fc1(frozen(x)))) - y)² + flag·aux(frozen(x))²; aux runs only when some sample is flagged. */
export function ddpLoss(m: DdpNet, x: Tensor, y: Tensor, flag: Tensor): Tensor {
  const h = m.frozen.forward(x); // (B, 8)
  let per = m.fc2.forward(F.tanh(m.fc1.forward(h))).sub(y).square().squeeze(1); // (B,)
  if (flag.sum().item() > 0) per = per.add(m.aux.forward(h).square().squeeze(1).mul(flag));
  return per.mean();
}
