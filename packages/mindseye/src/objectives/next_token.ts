// Next-token cross-entropy with label masks (HF's causal-LM convention).
import { F, type Tensor } from "@mindseye/torch";

export const IGNORE_INDEX = -100;

/**
 * logits [B, T, V] predict labels shifted by one: position t is scored on labels[:, t+1].
 * Labels equal to IGNORE_INDEX (padding, prompts, image and latent tokens) contribute nothing;
 * the mean is over the tokens that count.
 */
export function nextTokenCrossEntropy(logits: Tensor, labels: Tensor, opts: { labelSmoothing?: number } = {}): Tensor {
  const [, T, V] = logits.shape as [number, number, number];
  if (labels.shape[1] !== T) throw new Error(`next-token loss: logits have ${T} positions, labels ${labels.shape[1]}`);
  const shiftedLogits = logits.narrow(1, 0, T - 1).reshape(-1, V); // [B*(T-1), V]
  const shiftedLabels = labels.narrow(1, 1, T - 1).reshape(-1); // [B*(T-1)]
  return F.crossEntropy(shiftedLogits, shiftedLabels, { ignoreIndex: IGNORE_INDEX, labelSmoothing: opts.labelSmoothing ?? 0 });
}
