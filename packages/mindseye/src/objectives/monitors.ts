// Collapse monitors for predicted latents, logged at every logging step: if the head maps
// every caption to the same point, the spread per dimension falls, the effective rank drops
// towards 1 and the mean pairwise cosine rises towards 1.
import { torch, F, type Tensor } from "@mindseye/torch";

export interface CollapseStats {
  /** Mean over dimensions of the per-dimension standard deviation across samples. */
  stdMean: number;
  /** The smallest per-dimension standard deviation. */
  stdMin: number;
  /** exp(entropy of the normalised singular values of the centred [n, D] matrix) (Roy & Vetterli, 2007). */
  effectiveRank: number;
  /** Mean cosine similarity over distinct pairs of samples. */
  meanPairwiseCosine: number;
}

/** x [n, D] or [B, K, D] (flattened to samples of D). Needs n ≥ 2. */
export function collapseStats(x: Tensor): CollapseStats {
  return torch.noGrad(() => torch.scope(() => {
    const D = x.shape[x.ndim - 1]!;
    const samples = x.reshape(-1, D).float(); // [n, D]
    const n = samples.shape[0]!;
    if (n < 2) throw new Error(`collapse monitors need at least 2 samples, got ${n}`);
    const std = samples.std(0); // [D]
    const centred = samples.sub(samples.mean(0, { keepdim: true }));
    const s = torch.linalg.svdvals(centred); // [min(n, D)]
    const total = s.sum().item();
    let effectiveRank = 0;
    if (total > 0) {
      const p = s.div(total);
      const entropy = p.mul(p.clampMin(1e-30).log()).sum().neg().item();
      effectiveRank = Math.exp(entropy);
    }
    const unit = F.normalize(samples, { dim: 1 });
    const cos = unit.matmul(unit.t()); // [n, n], diagonal ≈ 1
    const offDiagonal = cos.sum().item() - torch.einsum("ii->", cos).item();
    return {
      stdMean: std.mean().item(),
      stdMin: std.amin().item(),
      effectiveRank,
      meanPairwiseCosine: offDiagonal / (n * (n - 1)),
    };
  }));
}
