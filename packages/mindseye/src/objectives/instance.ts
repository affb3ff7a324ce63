// Instance-level similarity S(ẑ, z) between predicted latents ẑ and targets z, both [B, K, D].
// Targets are detached here, so no gradient ever reaches them.
import { F, type Tensor } from "@mindseye/torch";

export type SimilarityKind = "cosine" | "l2" | "smooth_l1";
export type TargetNorm = "none" | "layernorm" | "l2";

/** Normalises targets per latent over D: LayerNorm without affine (as I-JEPA), unit L2, or none. */
export function normalizeTargets(z: Tensor, norm: TargetNorm): Tensor {
  const t = z.detach();
  if (norm === "none") return t;
  if (norm === "layernorm") return F.layerNorm(t, [t.shape[t.ndim - 1]!], null, null, 1e-6);
  return F.normalize(t, { dim: -1 });
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
