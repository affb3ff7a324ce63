// Shared by the Qwen2 and generation tests (not a test file itself).
import { torch, nn } from "@mindseye/torch";
import { Qwen2ForCausalLM, type ResolvedQwen2Config } from "./qwen2.js";

/**
 * A tiny Qwen2 whose weights have O(1) effect (norm weights near 1, embeddings N(0, 1), linear
 * weights scaled by 1/√fan-in), so greedy paths are far from ties and masking errors show.
 */
export function wellConditionedQwen2(cfg: ResolvedQwen2Config, seed = 0): Qwen2ForCausalLM {
  const generator = new torch.Generator(seed);
  const model = new Qwen2ForCausalLM(cfg, { generator }).eval();
  for (const [name, p] of model.namedParameters()) {
    if (name.endsWith("norm.weight")) nn.init.normal_(p, 1, 0.2, generator);
    else if (name.endsWith("bias")) nn.init.normal_(p, 0, 0.2, generator);
    else if (name.includes("embed_tokens")) nn.init.normal_(p, 0, 1, generator);
    else nn.init.normal_(p, 0, 1 / Math.sqrt(p.shape[1]!), generator);
  }
  return model;
}
