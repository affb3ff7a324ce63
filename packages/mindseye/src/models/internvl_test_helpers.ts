// Test helper shared by the InternVL tests: a word-level tokenizer of the world's words with
// InternVL2.5's added tokens (<|im_start|>, <|im_end|>, <img>, </img>, <IMG_CONTEXT>) and no Qwen
// <|image_pad|>, so nothing can fall back to Qwen's ChatML; no chat template.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { torch } from "@mindseye/torch";
import { worldWords } from "../world/tokenizer_json.js";
import { InternVLChatModel, resolveInternVL, internVLPreset } from "./internvl.js";
import { internLM2Preset } from "./internlm2.js";

/** Writes tokenizer.json and tokenizer_config.json to `dir`; returns the added tokens' ids. */
export function writeInternVLTokenizer(dir: string): { imStart: number; imEnd: number; img: number; imgEnd: number; context: number; pad: number; vocabSize: number } {
  mkdirSync(dir, { recursive: true });
  const words = worldWords().filter((w) => !["user", "assistant", "system"].includes(w));
  const all = ["<unk>", ...words, "system", "user", "assistant", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<pad>"];
  const vocab: Record<string, number> = {};
  all.forEach((t, i) => (vocab[t] = i));
  const special = ["<unk>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<pad>"];
  const added = special.map((content) => ({ id: vocab[content]!, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const tokenizer = {
    version: "1.0", truncation: null, padding: null, added_tokens: added, normalizer: null, pre_tokenizer: { type: "Whitespace" },
    post_processor: null, decoder: null, model: { type: "WordLevel", vocab, unk_token: "<unk>" },
  };
  const config = {
    added_tokens_decoder: Object.fromEntries(added.map(({ id, ...rest }) => [String(id), rest])), eos_token: "<|im_end|>", pad_token: "<pad>",
    clean_up_tokenization_spaces: false, model_max_length: 1024, tokenizer_class: "PreTrainedTokenizerFast",
  };
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config, null, 2));
  const id = (t: string) => vocab[t]!;
  return { imStart: id("<|im_start|>"), imEnd: id("<|im_end|>"), img: id("<img>"), imgEnd: id("</img>"), context: id("<IMG_CONTEXT>"), pad: id("<pad>"), vocabSize: all.length };
}

/**
 * A tiny random InternVL2.5 (the tiny preset: 24-px tiles of 9 tokens, up to 4 tiles + thumbnail)
 * in the published layout over writeInternVLTokenizer's tokenizer, <IMG_CONTEXT> its added token.
 */
export function writeTinyInternVL(dir: string, o: { seed?: number } = {}): void {
  const ids = writeInternVLTokenizer(dir);
  const llm = internLM2Preset("tiny", { vocabSize: ids.vocabSize, hiddenSize: 48, padTokenId: ids.pad, eosTokenId: ids.imEnd });
  const model = new InternVLChatModel(resolveInternVL({ ...internVLPreset("tiny"), maxDynamicPatch: 4, imgContextTokenId: ids.context, llm: { architecture: "InternLM2ForCausalLM", config: llm } }),
    { generator: new torch.Generator(o.seed ?? 3) });
  model.savePretrained(dir);
  model.parameters().forEach((p) => p.dispose());
  // OpenGVLab's repos ship one (CLIPImageProcessor at the tile size, ImageNet normalisation); the tiles come from config.json
  writeFileSync(join(dir, "preprocessor_config.json"), JSON.stringify({
    image_processor_type: "CLIPImageProcessor", crop_size: 24, size: 24, do_center_crop: true, do_normalize: true, do_resize: true, resample: 3,
    image_mean: [0.485, 0.456, 0.406], image_std: [0.229, 0.224, 0.225],
  }));
}
