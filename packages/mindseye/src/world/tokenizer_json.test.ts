import { test } from "node:test";
import assert from "node:assert/strict";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { Rng } from "./rng.js";
import { SPLITS, sampleScene } from "./scene.js";
import { sceneCaptions } from "./captions.js";
import { QuestionGenerator } from "./questions.js";
import { ScienceGenerator } from "./science.js";
import { JigsawGenerator } from "./jigsaw.js";
import { groundingPairs } from "./grounding.js";
import { HARNESS_TEXTS, SPECIAL_TOKENS, UNK, buildTokenizer, latentTokens, worldWords } from "./tokenizer_json.js";

const { tokenizer: tj, config } = buildTokenizer(16);
const tok = new Tokenizer(tj, config);
const unk = tok.token_to_id(UNK)!;

// A small world's texts.
const captions: string[] = [], questions: string[] = [], others: string[] = [];
for (const split of SPLITS) {
  const q = new QuestionGenerator(split), s = new ScienceGenerator(split), j = new JigsawGenerator(split);
  for (let i = 1; i <= 75; i++) {
    const scene = sampleScene(new Rng(2, split, i), i, split, 64);
    captions.push(...sceneCaptions(scene, new Rng(2, "c", split, i)));
    for (const [, x] of q.forScene(scene, new Rng(2, "q", split, i), 1)) questions.push(x.question, x.fullAnswer, x.answer);
    const p = s.forScene(scene, new Rng(2, "s", split, i));
    if (p) others.push(p.question, p.hint, p.lecture, p.solution, ...p.choices);
    const r = j.forScene(scene, new Rng(2, "j", split, i), i)?.record;
    if (r) others.push(r.question, r.prompt, r.explanation, ...r.choices, r.answer);
    for (const g of groundingPairs(scene, new Rng(2, "g", split, i))) others.push(g.question, g.answer);
  }
}

test("tokenizer.json is a WordLevel model with a Whitespace pre-tokenizer and contiguous ids", () => {
  const model = tj.model as { type: string; vocab: Record<string, number>; unk_token: string };
  assert.equal(model.type, "WordLevel");
  assert.equal(model.unk_token, UNK);
  assert.deepEqual(tj.pre_tokenizer, { type: "Whitespace" });
  const ids = Object.values(model.vocab).sort((a, b) => a - b);
  assert.deepEqual(ids, ids.map((_, i) => i));
  const added = tj.added_tokens as { id: number; content: string; special: boolean }[];
  assert.deepEqual(added.map((t) => t.content), [...SPECIAL_TOKENS, ...latentTokens(16)]);
  for (const t of added) assert.equal(model.vocab[t.content], t.id);
  assert.ok(Object.keys(model.vocab).length < 1000, "a word-level vocabulary stays small");
});

test("every word of captions, questions, answers, problems and prompts is in the vocabulary", () => {
  for (const text of [...captions, ...questions, ...others, ...HARNESS_TEXTS]) {
    const e = tok.encode(text);
    const missing = e.tokens.filter((_: string, i: number) => e.ids[i] === unk);
    assert.deepEqual(missing, [], `unknown words in "${text}"`);
  }
  assert.ok(captions.length > 1000 && questions.length > 1000);
  // And a word the world never writes is unknown.
  assert.deepEqual(tok.encode("a zebra").ids, [tok.token_to_id("a"), unk]);
});

test("captions and questions round-trip: decode(encode(text)) === text", () => {
  for (const text of [...captions, ...questions]) assert.equal(tok.decode(tok.encode(text).ids), text);
});

test("special and latent tokens are single ids; K changes only the latent ids", () => {
  const e = tok.encode("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Is there a red circle?<|im_end|><|latent_0|><|latent_15|>");
  assert.deepEqual(e.tokens, ["<|im_start|>", "user", "<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "Is", "there", "a", "red", "circle", "?", "<|im_end|>", "<|latent_0|>", "<|latent_15|>"]);
  const k4 = buildTokenizer(4).tokenizer.model as { vocab: Record<string, number> };
  const k16 = tj.model as { vocab: Record<string, number> };
  assert.equal(Object.keys(k16.vocab).length - Object.keys(k4.vocab).length, 12);
  for (const w of worldWords()) assert.equal(k4.vocab[w], k16.vocab[w]);
  assert.equal(k4.vocab["<|latent_4|>"], undefined);
  assert.equal(new Tokenizer(buildTokenizer(4).tokenizer, buildTokenizer(4).config).encode("<|latent_3|>").ids.length, 1);
});

test("the chat template renders Qwen2-VL's format, and its text is in the vocabulary", () => {
  const t = new Template(config.chat_template as string);
  const text = t.render({
    messages: [{ role: "user", content: [{ type: "image" }, { type: "text", text: "Is there a red circle?" }] }, { role: "assistant", content: "yes" }],
    add_generation_prompt: false,
  });
  assert.equal(text, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Is there a red circle?<|im_end|>\n<|im_start|>assistant\nyes<|im_end|>\n");
  assert.ok(!tok.encode(text).ids.includes(unk));
  assert.ok(t.render({ messages: [{ role: "user", content: "hi" }], add_generation_prompt: true }).endsWith("<|im_start|>assistant\n"));
  assert.equal(config.eos_token, "<|im_end|>");
  assert.equal(config.pad_token, "<|endoftext|>");
  assert.equal(config.unk_token, UNK);
});
