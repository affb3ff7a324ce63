// Shared by the Llama and LLaVA tests (not a test file itself).
import { torch, nn } from "@mindseye/torch";

/**
 * Redraws a model's weights so each has an O(1) effect, as the golden fixtures do (HF's std-0.02
 * initialisation gives near-zero logits, which would let mask, cache and position tests pass for the
 * wrong reason): vectors ending in "bias" N(0, 0.2), other vectors (norm weights) N(1, 0.2), token
 * embeddings N(0, 1), other matrices N(0, 1/fan-in).
 */
export function wellConditioned<M extends nn.Module>(model: M, seed = 0): M {
  const generator = new torch.Generator(seed);
  for (const [name, p] of model.namedParameters()) {
    if (p.ndim === 1) nn.init.normal_(p, name.endsWith("bias") ? 0 : 1, 0.2, generator);
    else if (name.endsWith("embed_tokens.weight")) nn.init.normal_(p, 0, 1, generator);
    else nn.init.normal_(p, 0, 1 / Math.sqrt(p.shape.slice(1).reduce((a, b) => a * b, 1)), generator);
  }
  return model;
}
