// Test helper shared by the LLaVA tests: a tiny random LLaVA-1.5 in the llava-hf layout over a
// Llama-style word-level tokenizer of the world's words: <unk> 0, <s> 1, </s> 2 (eos_token), the
// words, then <image> and <pad> as added special tokens; the post-processor prepends <s>, as
// Llama's does. No Qwen tokens (<|im_end|>, <|image_pad|>), so nothing can fall back to ChatML.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { torch } from "@mindseye/torch";
import { worldWords } from "../world/tokenizer_json.js";
import { CLIP_MEAN, CLIP_STD } from "./processors.js";
import { LlavaForConditionalGeneration, resolveLlava, LLAVA_PRESETS } from "./llava.js";
import { llamaPreset } from "./llama.js";

/** llava-hf/llava-1.5-7b-hf's chat_template.json (the processor's Vicuna v1 template). */
export const LLAVA_HF_CHAT_TEMPLATE =
  "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
  + "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
  + "{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
  + "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
  + "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

/**
 * Writes tokenizer.json and tokenizer_config.json (no chat template) to `dir`, plus llava-hf's
 * chat_template.json when `template`. Returns the ids of <image>, </s> and <pad>.
 */
export function writeLlavaTokenizer(dir: string, o: { template: boolean }): { image: number; eos: number; pad: number; vocabSize: number } {
  mkdirSync(dir, { recursive: true });
  const words = worldWords().filter((w) => !["USER", "ASSISTANT", ":"].includes(w));
  const all = ["<unk>", "<s>", "</s>", ...words, "USER", "ASSISTANT", ":", "<image>", "<pad>"];
  const vocab: Record<string, number> = {};
  all.forEach((t, i) => (vocab[t] = i));
  const special = ["<unk>", "<s>", "</s>", "<image>", "<pad>"];
  const added = special.map((content) => ({ id: vocab[content]!, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  const tokenizer = {
    version: "1.0", truncation: null, padding: null, added_tokens: added, normalizer: null, pre_tokenizer: { type: "Whitespace" },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }, { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [vocab["<s>"]!], tokens: ["<s>"] } },
    },
    decoder: null, model: { type: "WordLevel", vocab, unk_token: "<unk>" },
  };
  const decoder = Object.fromEntries(added.map(({ id, ...rest }) => [String(id), rest]));
  const config = {
    added_tokens_decoder: decoder, bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", pad_token: "<pad>",
    clean_up_tokenization_spaces: false, model_max_length: 1024, tokenizer_class: "PreTrainedTokenizerFast",
  };
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config, null, 2));
  if (o.template) writeFileSync(join(dir, "chat_template.json"), JSON.stringify({ chat_template: LLAVA_HF_CHAT_TEMPLATE }, null, 2));
  return { image: vocab["<image>"]!, eos: vocab["</s>"]!, pad: vocab["<pad>"]!, vocabSize: all.length };
}

/**
 * A tiny random LLaVA (the tiny preset's clip-tiny tower: 16-px images, 16 tokens each) in the
 * llava-hf layout over writeLlavaTokenizer's tokenizer, with a 16-px CLIPImageProcessor.
 */
export function writeTinyLlava(dir: string, o: { template: boolean; seed?: number }): void {
  const ids = writeLlavaTokenizer(dir, o);
  const t = LLAVA_PRESETS.tiny!.config();
  const text = llamaPreset("tiny", { vocabSize: ids.vocabSize, hiddenSize: 48, padTokenId: ids.pad, bosTokenId: 1, eosTokenId: ids.eos });
  const model = new LlavaForConditionalGeneration(resolveLlava({ ...t, text: { modelType: "llama", config: text }, imageTokenIndex: ids.image, padTokenId: ids.pad }),
    { generator: new torch.Generator(o.seed ?? 3) });
  model.savePretrained(dir);
  model.parameters().forEach((p) => p.dispose());
  writeFileSync(join(dir, "preprocessor_config.json"), JSON.stringify({
    image_processor_type: "CLIPImageProcessor", size: { shortest_edge: 16 }, crop_size: { height: 16, width: 16 }, do_center_crop: true, resample: 3,
    image_mean: [...CLIP_MEAN], image_std: [...CLIP_STD],
  }));
}
