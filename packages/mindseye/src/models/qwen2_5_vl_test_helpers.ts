// Test helper shared by the family tests: a tiny random Qwen2.5-VL written in its published
// layout (config.json fields, the original release's weight names, Qwen2VLImageProcessor).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { torch, io, type Tensor } from "@mindseye/torch";
import { Tokenizer } from "../data/tokenizer.js";
import { Qwen2_5_VLForConditionalGeneration, resolveQwen2_5_VL, QWEN2_5_VL_PRESETS } from "./qwen2_5_vl.js";
import { CLIP_MEAN, CLIP_STD } from "./processors.js";

/**
 * A tiny random Qwen2.5-VL in the published layout, over the world's tokenizer grown by
 * <|vision_pad|> and <|video_pad|> (Qwen2-VL's vision tokens).
 */
export function writeTinyQwen(dir: string, tokenizerDir: string): void {
  mkdirSync(dir, { recursive: true });
  const tok = Tokenizer.fromPretrained(tokenizerDir);
  const [, videoPad] = tok.addTokens(["<|vision_pad|>", "<|video_pad|>"], { special: true });
  tok.save(dir);
  const ids = tok.specialTokenIds;
  const t = QWEN2_5_VL_PRESETS.tiny!.config;
  const config = {
    architectures: ["Qwen2_5_VLForConditionalGeneration"], model_type: "qwen2_5_vl", torch_dtype: "float32",
    vocab_size: tok.vocabSize, hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2,
    hidden_act: "silu", rms_norm_eps: 1e-6, rope_theta: 1000000.0, max_position_embeddings: 4096, tie_word_embeddings: false,
    sliding_window: 4096, use_sliding_window: false, max_window_layers: 2, attention_dropout: 0.0, initializer_range: 0.02,
    rope_scaling: { type: "mrope", mrope_section: [2, 3, 3] },
    bos_token_id: ids.pad, eos_token_id: ids.imEnd,
    vision_start_token_id: ids.visionStart, vision_end_token_id: ids.visionEnd, vision_token_id: tok.tokenToId("<|vision_pad|>"),
    image_token_id: ids.imagePad, video_token_id: videoPad,
    vision_config: {
      depth: 3, hidden_size: 32, intermediate_size: 48, num_heads: 2, in_chans: 3, out_hidden_size: 64, patch_size: 4, spatial_patch_size: 4,
      temporal_patch_size: 2, spatial_merge_size: 2, window_size: 16, fullatt_block_indexes: [1], hidden_act: "silu", tokens_per_second: 2,
    },
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  const model = new Qwen2_5_VLForConditionalGeneration(resolveQwen2_5_VL({
    ...t, text: { ...t.text, vocabSize: tok.vocabSize, bosTokenId: ids.pad!, eosTokenId: ids.imEnd! },
    imageTokenId: ids.imagePad!, videoTokenId: videoPad!, visionStartTokenId: ids.visionStart!, visionEndTokenId: ids.visionEnd!,
  }), { generator: new torch.Generator(0) });
  // The original release's names: visual.*, model.* (the LM), lm_head.
  const original = new Map<string, Tensor>();
  for (const [name, p] of model.stateDict()) original.set(name.replace(/^model\.visual\./, "visual.").replace(/^model\.language_model\./, "model."), p);
  io.saveFile(join(dir, "model.safetensors"), original);
  model.parameters().forEach((p) => p.dispose());
  writeFileSync(join(dir, "preprocessor_config.json"), JSON.stringify({
    image_processor_type: "Qwen2VLImageProcessor", do_resize: true, resample: 3, do_rescale: true, rescale_factor: 1 / 255, do_normalize: true,
    image_mean: [...CLIP_MEAN], image_std: [...CLIP_STD], min_pixels: 16 * 16, max_pixels: 32 * 32, patch_size: 4, temporal_patch_size: 2, merge_size: 2,
  }));
}
