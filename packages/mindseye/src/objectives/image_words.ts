// The base VLM's auxiliary objective that makes image tokens speak the LM's vocabulary: each
// projected image token, read through the LM's (tied) word embeddings, predicts the words that
// describe what it shows. LLaVA gets this for free: its projector is first trained alone against
// a pretrained LM, so visual tokens land among the words. A LM trained from scratch together with
// its projector has nothing pulling a red circle's token towards "red" and "circle", and without
// that a question's words have nothing to match when the model looks an object up by what it is
// (`npm run bench:grounding -- --kind where`).
import { F, type Tensor } from "@mindseye/torch";

/**
 * tokens [B, K, D] (the projected image tokens, as the LM reads them), embedding [V, D] (the LM's
 * word embeddings), words [B, K, W] int64 (W word ids per token). Returns the mean over tokens of
 * −(1/W) Σ_w log softmax(tokens · embeddingᵀ)[word_w]: the cross-entropy against a target that
 * puts 1/W on each of the token's words.
 */
export function imageWordLoss(tokens: Tensor, embedding: Tensor, words: Tensor): Tensor {
  const [B, K, D] = tokens.shape as [number, number, number];
  const W = words.shape[2]!;
  if (words.shape[0] !== B || words.shape[1] !== K) throw new Error(`image-word loss: ${B}×${K} image tokens, words for ${words.shape[0]}×${words.shape[1]}`);
  if (embedding.shape[1] !== D) throw new Error(`image-word loss: image tokens of width ${D}, word embeddings of width ${embedding.shape[1]}`);
  const logits = tokens.reshape(-1, D).matmul(embedding.transpose(0, 1)); // [B*K, V]
  let sum: Tensor | null = null;
  for (let w = 0; w < W; w++) {
    const ce = F.crossEntropy(logits, words.narrow(2, w, 1).reshape(-1)); // mean over the B*K tokens
    sum = sum === null ? ce : sum.add(ce);
  }
  return sum!.div(W);
}
