import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer } from "./tokenizer.js";
import { buildTokenizer } from "../world/tokenizer_json.js";
import { buildPrompt, buildExample, padRight, decodeAnswer, expandImagePads, VICUNA_V1, INTERNVL_CHATML, INTERNVL2_5_SYSTEM_MESSAGE } from "./vlm_inputs.js";
import { writeLlavaTokenizer } from "../models/llava_test_helpers.js";
import { writeInternVLTokenizer } from "../models/internvl_test_helpers.js";
import { latentInput } from "../train/stages/latent_pretrain.js";
import { IGNORE_INDEX } from "../objectives/next_token.js";

function worldTokenizer(edit: (tokenizer: { added_tokens: { content: string }[]; model: { vocab: Record<string, number> } }) => void = () => {}, dir = mkdtempSync(join(tmpdir(), "mindseye-tok-"))): Tokenizer {
  mkdirSync(dir, { recursive: true });
  try {
    const { tokenizer, config } = buildTokenizer(4);
    edit(tokenizer as unknown as Parameters<typeof edit>[0]);
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(config));
    return Tokenizer.fromPretrained(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("prompts expand each image to its vision tokens and end with the assistant's opening", () => {
  const tok = worldTokenizer();
  const pad = tok.specialTokenIds.imagePad!;
  const ids = buildPrompt(tok, { images: 2, text: "Is there a red circle?" }, 3);
  assert.equal(ids.filter((i) => i === pad).length, 6);
  assert.match(tok.decode(ids), /<\|vision_start\|> (<\|image_pad\|> ){3}<\|vision_end\|> <\|vision_start\|>/);
  assert.match(tok.decode(ids), /Is there a red circle \?|Is there a red circle\?/);
  assert.ok(tok.decode(ids).endsWith("<|im_start|> assistant"));
  assert.deepEqual(expandImagePads([1, 9, 2], 9, 2), [1, 9, 9, 2]);
});

test("imagesAfterText puts the question first and the images after it, still before the assistant's turn", () => {
  const tok = worldTokenizer();
  const pad = tok.specialTokenIds.imagePad!;
  const before = buildPrompt(tok, { images: 1, text: "Is there a red circle?" }, 3);
  const after = buildPrompt(tok, { images: 1, text: "Is there a red circle?", imagesAfterText: true }, 3);
  assert.equal(after.filter((i) => i === pad).length, 3);
  assert.deepEqual([...after].sort(), [...before].sort(), "the same tokens, in another order");
  const words = tok.encode("circle", { addSpecialTokens: false })[0]!;
  assert.ok(after.indexOf(words) < after.indexOf(pad) && before.indexOf(words) > before.indexOf(pad));
  assert.ok(tok.decode(after).endsWith("<|im_start|> assistant"));
});

test("examples put labels on the answer and <|im_end|> only; padding and decoding", () => {
  const tok = worldTokenizer();
  const ex = buildExample(tok, { images: 1, text: "How many circles are there?", answer: "two" }, 2);
  const answerStart = ex.labels.findIndex((l) => l !== IGNORE_INDEX);
  assert.deepEqual(ex.labels.slice(answerStart), [tok.tokenToId("two"), tok.specialTokenIds.imEnd]);
  assert.ok(ex.labels.slice(0, answerStart).every((l) => l === IGNORE_INDEX));
  assert.equal(decodeAnswer(tok, ex.ids.slice(answerStart)), "two");
  const short = buildExample(tok, { images: 0, text: "Is it red?", answer: "no" }, 2);
  const batch = padRight([ex, short], 0);
  assert.equal(batch.ids[1]!.length, ex.ids.length);
  assert.deepEqual(batch.mask[1]!.slice(short.ids.length), Array(ex.ids.length - short.ids.length).fill(0));
  assert.ok(batch.labels[1]!.slice(short.ids.length).every((l) => l === IGNORE_INDEX));
});

test("a tokenizer without <|image_pad|> as a token is named, not a prompt with 0 image tokens", () => {
  const base = mkdtempSync(join(tmpdir(), "mindseye-tok-"));
  // in the vocabulary but not an added token: the text "<|image_pad|>" is split into pieces
  const split = join(base, "not-added");
  const notAdded = worldTokenizer((t) => { t.added_tokens = t.added_tokens.filter((a) => a.content !== "<|image_pad|>"); }, split);
  assert.throws(() => buildPrompt(notAdded, { images: 1, text: "Is it red?" }, 4),
    new RegExp(`the tokenizer ${split} lacks the image token <\\|image_pad\\|> as one token: its vocabulary has it \\(id 5\\) but it is not an added token, so .* the prompt gets 0 image tokens for 1 image\\(s\\); declare it in tokenizer\\.json "added_tokens"`));
  // not there at all
  const none = join(base, "none");
  const without = worldTokenizer((t) => { t.added_tokens = t.added_tokens.filter((a) => a.content !== "<|image_pad|>"); delete t.model.vocab["<|image_pad|>"]; }, none);
  assert.throws(() => buildPrompt(without, { images: 1, text: "Is it red?" }, 4), new RegExp(`the tokenizer ${none} lacks the image token <\\|image_pad\\|> \\(Qwen2-VL's image placeholder\\)`));
  assert.deepEqual(buildPrompt(without, { images: 0, text: "Is it red?" }, 4).length > 0, true, "text-only prompts need no image token");
  rmSync(base, { recursive: true, force: true });
});

test("LLaVA-1.5 (Vicuna v1): <s> USER: <image>×n \\n text ASSISTANT: answer </s>, labels on the answer and </s> only; the same ids from llava-hf's template and the fallback", () => {
  const tmp = mkdtempSync(join(tmpdir(), "mindseye-llava-tok-"));
  try {
    const ids = writeLlavaTokenizer(join(tmp, "plain"), { template: false });
    writeLlavaTokenizer(join(tmp, "hf"), { template: true });
    const plain = Tokenizer.fromPretrained(join(tmp, "plain")), hf = Tokenizer.fromPretrained(join(tmp, "hf"));
    assert.equal(plain.template, null);
    const w = (t: string) => plain.tokenToId(t)!;
    const prompt = [1, w("USER"), w(":"), ...Array<number>(3).fill(ids.image), w("Is"), w("there"), w("a"), w("red"), w("circle"), w("?"), w("ASSISTANT"), w(":")];
    const answer = [w("yes"), ids.eos];
    for (const tok of [plain, hf]) {
      const ex = buildExample(tok, { images: 1, text: "Is there a red circle?", answer: "yes" }, 3, VICUNA_V1);
      assert.deepEqual(ex.ids, [...prompt, ...answer], tok.template ?? "fallback");
      assert.deepEqual(ex.labels, [...prompt.map(() => IGNORE_INDEX), ...answer]);
      assert.deepEqual(buildPrompt(tok, { images: 1, text: "Is there a red circle?" }, 3, VICUNA_V1), prompt);
      assert.equal(decodeAnswer(tok, [w("yes"), ids.eos, w("no")], VICUNA_V1), "yes", "generation ends at </s>");
      // latent pretraining's caption turn: labels on the caption only
      const li = latentInput(tok, "a red circle", [7, 8], VICUNA_V1);
      assert.deepEqual(li.ids, [1, w("USER"), w(":"), w("a"), w("red"), w("circle"), w("ASSISTANT"), w(":"), 7, 8]);
      assert.deepEqual(li.labels, [IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, w("a"), w("red"), w("circle"), ...Array<number>(4).fill(IGNORE_INDEX)]);
    }
    // two images: one <image> each, expanded to each image's own count
    assert.equal(buildPrompt(plain, { images: 2, text: "Is it red?" }, [2, 4], VICUNA_V1).filter((i) => i === ids.image).length, 6);
    // the ChatML default names the token it lacks
    assert.throws(() => buildExample(plain, { images: 1, text: "Is it red?", answer: "yes" }, 3), /no chat template|<\|image_pad\|>/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("InternVL2.5 (ChatML as chat() writes it): the internvl2_5 system turn, <|im_start|>user <img> <IMG_CONTEXT>×n </img> text <|im_end|> <|im_start|>assistant answer <|im_end|>, labels on the answer and <|im_end|> only", () => {
  const tmp = mkdtempSync(join(tmpdir(), "mindseye-internvl-tok-"));
  try {
    const ids = writeInternVLTokenizer(tmp);
    const tok = Tokenizer.fromPretrained(tmp);
    const w = (t: string) => tok.tokenToId(t)!;
    // the system message is Chinese: this word-level vocabulary reads it as <unk> pieces
    const system = [ids.imStart, w("system"), ...tok.encode(INTERNVL2_5_SYSTEM_MESSAGE, { addSpecialTokens: false }), ids.imEnd];
    assert.ok(system.length > 3);
    const prompt = [...system, ids.imStart, w("user"), ids.img, ...Array<number>(3).fill(ids.context), ids.imgEnd, w("Is"), w("there"), w("a"), w("red"), w("circle"), w("?"), ids.imEnd, ids.imStart, w("assistant")];
    const answer = [w("yes"), ids.imEnd];
    const ex = buildExample(tok, { images: 1, text: "Is there a red circle?", answer: "yes" }, 3, INTERNVL_CHATML);
    assert.deepEqual(ex.ids, [...prompt, ...answer]);
    assert.deepEqual(ex.labels, [...prompt.map(() => IGNORE_INDEX), ...answer]);
    assert.deepEqual(buildPrompt(tok, { images: 1, text: "Is there a red circle?" }, 3, INTERNVL_CHATML), prompt);
    assert.equal(decodeAnswer(tok, [w("yes"), ids.imEnd, w("no")], INTERNVL_CHATML), "yes", "generation ends at <|im_end|>");
    // two images: one <img>…</img> block each, expanded to each image's own count (num_image_token × tiles)
    const two = buildPrompt(tok, { images: 2, text: "Is it red?" }, [2, 4], INTERNVL_CHATML);
    assert.equal(two.filter((i) => i === ids.context).length, 6);
    assert.equal(two.filter((i) => i === ids.img).length, 2);
    // latent pretraining's caption turn: labels on the caption only
    const li = latentInput(tok, "a red circle", [7, 8], INTERNVL_CHATML);
    assert.deepEqual(li.ids, [...system, ids.imStart, w("user"), w("a"), w("red"), w("circle"), ids.imEnd, ids.imStart, w("assistant"), 7, 8]);
    assert.deepEqual(li.labels, [...system.map(() => IGNORE_INDEX), IGNORE_INDEX, IGNORE_INDEX, w("a"), w("red"), w("circle"), ...Array<number>(5).fill(IGNORE_INDEX)]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
