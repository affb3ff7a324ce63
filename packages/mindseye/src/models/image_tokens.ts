// Splicing image features into a prompt's token embeddings, as LLaVA-style VLMs do (HF's
// masked_scatter over the image token's positions). Shared by MindsEyeVLM and LLaVA.
import { torch, type Tensor } from "@mindseye/torch";

/**
 * Token embeddings [B, T, D] of inputIds (int64 [B, T]) with the rows of every `imageTokenId`
 * replaced, in order, by the features of the images: `imageFeatures(pixelValues)` gives
 * [n, N, D], one row of N per image, and the prompt must hold n·N image tokens.
 * ```ts
 * const embeds = embedWithImages(lm.model.embed_tokens, inputIds, 32000, pixels, (px) => vlm.imageFeatures(px));
 * ```
 */
export function embedWithImages(
  embedTokens: { forward(ids: Tensor): Tensor }, inputIds: Tensor, imageTokenId: number,
  pixelValues: Tensor | undefined, imageFeatures: (pixelValues: Tensor) => Tensor,
): Tensor {
  const embeds = embedTokens.forward(inputIds);
  const isPad = inputIds.eq(imageTokenId);
  const nPads = isPad.sum().item();
  if (pixelValues === undefined) {
    if (nPads > 0) throw new Error(`the prompt has ${nPads} image tokens but no pixelValues were given`);
    return embeds;
  }
  const feats = imageFeatures(pixelValues); // [n, N, D]
  const [n, N, D] = feats.shape as [number, number, number];
  if (nPads !== n * N) throw new Error(`the prompt has ${nPads} image tokens but ${n} image(s) give ${n * N} features (${N} per image)`);
  const [B, T] = inputIds.shape as [number, number];
  const where = torch.nonzero(isPad.reshape(-1)).reshape(-1); // flat positions of the pads, in order
  return embeds.reshape(B * T, D).indexPut([where], feats.reshape(n * N, D).to({ dtype: embeds.dtype })).reshape(B, T, D);
}
