// Instance-level similarity S(ẑ, z) between predicted latents ẑ and targets z, both [B, K, D].
// Targets are detached here, so no gradient ever reaches them.
import { torch, F, type Tensor } from "@mindseye/torch";

export type SimilarityKind = "cosine" | "l2" | "smooth_l1";
export type TargetNorm = "none" | "layernorm" | "l2" | "standardize";
export const TARGET_NORMS: readonly TargetNorm[] = ["none", "layernorm", "l2", "standardize"];

/** Dataset-level statistics of the targets, per latent and dimension: mean and std [K, D]. */
export interface TargetStats { mean: Tensor; std: Tensor }

/**
 * Normalises targets z [..., K, D]:
 * - layernorm: per latent over D, without affine (as I-JEPA);
 * - l2: unit length per latent;
 * - standardize: per latent and dimension with the training set's mean and std (`stats`), so
 *   a direction every image shares — which dominates a frozen encoder's features and lets a
 *   constant prediction score a cosine near 1 — is removed and every dimension weighs the same;
 * - none.
 */
export function normalizeTargets(z: Tensor, norm: TargetNorm, stats?: TargetStats): Tensor {
  const t = z.detach();
  if (norm === "none") return t;
  if (norm === "layernorm") return F.layerNorm(t, [t.shape[t.ndim - 1]!], null, null, 1e-6);
  if (norm === "standardize") {
    if (!stats) throw new Error("target_norm standardize needs the training targets' mean and std");
    return t.sub(stats.mean).div(stats.std);
  }
  return F.normalize(t, { dim: -1 });
}

/** Mean and std [K, D] over the first dimension of targets [n, K, D]; std floored at 1e-6 of its mean. */
export function targetStats(z: Tensor): TargetStats {
  return torch.noGrad(() => torch.scope(() => {
    const mean = z.mean([0]);
    const std = z.sub(mean).pow(2).mean([0]).sqrt();
    return { mean, std: std.clamp(std.mean().item() * 1e-6 + 1e-12) };
  }));
}

/**
 * - cosine: 1 − cos(ẑ_k, z_k), averaged over batch and latents;
 * - l2: mean squared error over all elements;
 * - smooth_l1: Huber loss (beta) averaged over all elements.
 */
export function instanceSimilarity(pred: Tensor, target: Tensor, kind: SimilarityKind, opts: { beta?: number } = {}): Tensor {
  const z = target.detach();
  if (pred.shape.join(",") !== z.shape.join(",")) {
    throw new Error(`instance similarity: predictions [${pred.shape}] and targets [${z.shape}] differ in shape`);
  }
  if (kind === "cosine") return F.cosineSimilarity(pred, z, -1).neg().add(1).mean();
  if (kind === "l2") return F.mseLoss(pred, z);
  return F.smoothL1Loss(pred, z, { beta: opts.beta ?? 1 });
}
