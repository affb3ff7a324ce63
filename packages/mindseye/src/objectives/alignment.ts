// Batch-level alignment A between pooled predictions p and pooled targets t, both [B, D]:
// matched pairs (p_i, t_i) against every other pairing in the batch.
import { torch, F, type Tensor } from "@mindseye/torch";

export type AlignmentKind = "infonce" | "siglip" | "none";

/**
 * Symmetric InfoNCE (CLIP's loss): logits_ij = cos(p_i, t_j) / τ, cross-entropy towards the
 * diagonal in both directions, averaged. τ is a number or a tensor (a learned temperature).
 */
export function infonce(p: Tensor, t: Tensor, temperature: number | Tensor): Tensor {
  const logits = F.normalize(p, { dim: -1 }).matmul(F.normalize(t.detach(), { dim: -1 }).t()); // [B, B]
  const scaled = logits.div(temperature);
  const labels = torch.arange(p.shape[0]!, undefined, 1, { device: p.device });
  return F.crossEntropy(scaled, labels).add(F.crossEntropy(scaled.t(), labels)).div(2);
}

/**
 * SigLIP's pairwise sigmoid loss: logits_ij = scale · cos(p_i, t_j) + bias, label +1 on the
 * diagonal and −1 elsewhere; −Σ_j log σ(label_ij · logits_ij), averaged over i.
 * scale and bias are numbers or tensors (learned, as SigLIP's t' = exp(log t) and b).
 */
export function siglip(p: Tensor, t: Tensor, scale: number | Tensor, bias: number | Tensor): Tensor {
  const B = p.shape[0]!;
  const logits = F.normalize(p, { dim: -1 }).matmul(F.normalize(t.detach(), { dim: -1 }).t()).mul(scale).add(bias); // [B, B]
  const labels = torch.eye(B, B, { device: p.device }).mul(2).sub(1); // +1 diagonal, −1 elsewhere
  return F.logSigmoid(labels.mul(logits)).sum().neg().div(B);
}
