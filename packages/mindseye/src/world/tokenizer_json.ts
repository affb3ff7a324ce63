// A word-level Hugging Face tokenizer for the world: tokenizer.json (WordLevel model, Whitespace
// pre-tokenizer, no normaliser) and tokenizer_config.json (special tokens, a Qwen2-VL-style chat
// template). The vocabulary is every word of every template and phrase table the world writes
// from (so it does not depend on the seed or the number of scenes), the texts evaluation
// harnesses wrap around questions, each word also capitalised, then the special tokens and K
// latent query tokens. Ids: special tokens 0–6, words, then <|latent_0|>… last, so word ids
// do not move when K changes. Decoding joins tokens with spaces and `clean_up_tokenization_spaces`
// removes the space before . , ? ! — so the world's captions and questions round-trip exactly.
import { CAPTION_TEMPLATES } from "./captions.js";
import { QUESTION_TEMPLATES } from "./questions.js";
import { PROPERTIES, SCIENCE_TEMPLATES } from "./science.js";
import { JIGSAW_TEXT } from "./jigsaw.js";
import { GROUNDING_TEMPLATES } from "./grounding.js";
import { COLORS, MATERIALS, SHAPES, SIZES } from "./scene.js";
import {
  FUNCTION_WORDS, GENERIC_NOUNS, MATERIAL_ADJECTIVES, NUMBER_WORDS, POSITION_PHRASES, RELATION_FROM_OBJECT, RELATION_PHRASES,
  SIZE_WORDS, capitalize, plural, templateText, words,
} from "./language.js";

export const UNK = "<|unk|>";
/** Qwen2-VL's special tokens that a VLM prompt uses, plus an unknown-word token. */
export const SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", UNK] as const;
export const DEFAULT_LATENTS = 16;

export function latentTokens(k: number): string[] {
  return Array.from({ length: k }, (_, i) => `<|latent_${i}|>`);
}

/** What lmms-eval, VLMEvalKit and BLINK put around questions (reference/formats.md §2), and the chat template's text. */
export const HARNESS_TEXTS = [
  "\nAnswer the question using a single word or phrase.",
  " Answer:",
  "Context: N/A\nQuestion: Options:\nAnswer:",
  "\nAnswer with the option's letter from the given choices directly.",
  "Hint: \nQuestion: \nOptions:\nA. B. C. D. E. \nPlease select the correct answer from the options above. \n",
  "The answer is (A) (B) (C) (D) (E).",
  "Note: You only need to respond with A, B without providing any additional information.\n",
  "system user assistant You are a helpful assistant. Picture 1: Picture 2: Picture 3:",
] as const;

/** Qwen2-VL's chat format: a default system message, images as <|vision_start|><|image_pad|><|vision_end|>. */
export const CHAT_TEMPLATE =
  "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
  + "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}{% else %}"
  + "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
  + "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
  + "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

function strings(x: unknown): string[] {
  if (typeof x === "string") return [x];
  if (Array.isArray(x)) return x.flatMap(strings);
  if (x !== null && typeof x === "object") return Object.values(x).flatMap(strings);
  return [];
}

/** Every word the world can write, each also capitalised, sorted (code-point order). */
export function worldWords(): string[] {
  const texts = [
    ...strings(CAPTION_TEMPLATES), ...strings(QUESTION_TEMPLATES), ...strings(GROUNDING_TEMPLATES), ...strings(PROPERTIES), ...strings(SCIENCE_TEMPLATES),
    ...strings(JIGSAW_TEXT), ...HARNESS_TEXTS,
    ...SHAPES, ...SHAPES.map(plural), ...GENERIC_NOUNS, ...GENERIC_NOUNS.map(plural), ...COLORS, ...SIZES, ...MATERIALS,
    ...strings(SIZE_WORDS), ...strings(MATERIAL_ADJECTIVES), ...NUMBER_WORDS, "0 1 2 3 4 5 6 7 8 9",
    ...strings(POSITION_PHRASES), ...strings(RELATION_PHRASES), ...strings(RELATION_FROM_OBJECT), ...FUNCTION_WORDS,
    "yes no",
  ];
  const set = new Set<string>();
  for (const t of texts) for (const w of words(templateText(t))) {
    set.add(w);
    set.add(capitalize(w));
  }
  return [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

interface AddedToken { id: number; content: string; single_word: boolean; lstrip: boolean; rstrip: boolean; normalized: boolean; special: boolean }

/**
 * tokenizer.json and tokenizer_config.json for `latents` latent query tokens.
 * ```ts
 * const { tokenizer, config } = buildTokenizer(16);
 * new Tokenizer(tokenizer, config).encode("Is there a red circle?").ids;
 * ```
 */
export function buildTokenizer(latents: number = DEFAULT_LATENTS): { tokenizer: Record<string, unknown>; config: Record<string, unknown> } {
  const vocabWords = worldWords();
  const special = [...SPECIAL_TOKENS];
  const latent = latentTokens(latents);
  const all = [...special, ...vocabWords, ...latent];
  const vocab: Record<string, number> = {};
  all.forEach((t, i) => (vocab[t] = i));
  const added: AddedToken[] = [...special, ...latent].map((content) => ({
    id: vocab[content]!, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  }));
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: "Whitespace" },
    post_processor: null,
    decoder: null,
    model: { type: "WordLevel", vocab, unk_token: UNK },
  };
  const addedDecoder: Record<string, Omit<AddedToken, "id">> = {};
  for (const { id, ...rest } of added) {
    addedDecoder[String(id)] = { content: rest.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  }
  const config = {
    added_tokens_decoder: addedDecoder,
    additional_special_tokens: [...special.filter((t) => t !== "<|endoftext|>" && t !== UNK), ...latent],
    bos_token: null,
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: true,
    eos_token: "<|im_end|>",
    model_max_length: 1024,
    pad_token: "<|endoftext|>",
    tokenizer_class: "PreTrainedTokenizerFast",
    unk_token: UNK,
  };
  return { tokenizer, config };
}
