// Generation: greedy equals step-by-step argmax of full recomputation, batched left-padded runs
// equal per-sequence runs, stop tokens, seeded sampling, HF's top-k/top-p semantics, no leaks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { torch, type Tensor } from "@mindseye/torch";
import { Qwen2ForCausalLM, qwen2Preset } from "./qwen2.js";
import { generate, chooseNext, padLeft } from "./generation.js";
import { wellConditionedQwen2 } from "./test_helpers.js";

const cfg = qwen2Preset("tiny");

/** The tiny model with weights of O(1) effect, so greedy paths are far from ties. */
function newModel(seed = 0): Qwen2ForCausalLM {
  return wellConditionedQwen2(cfg, seed);
}
const model = newModel();
const PROMPTS = [[5, 17, 33, 8, 61, 12], [44, 9], [70, 71, 72, 3]];

/** Greedy continuation by full recomputation: argmax of the last logits, one token at a time. */
function naiveGreedy(prompt: number[], n: number): number[] {
  const seq = [...prompt];
  for (let i = 0; i < n; i++) {
    const next = torch.noGrad(() => torch.scope(() => {
      const logits = model.forward({ inputIds: torch.tensor([seq], { dtype: "int64" }) }).logits; // [1, T, V]
      return logits.select(1, -1).argmax(-1).item();
    }));
    seq.push(next);
  }
  return seq.slice(prompt.length);
}

function run(prompts: number[][], o: Omit<Parameters<typeof generate>[1], "inputIds" | "attentionMask">) {
  return torch.scope(() => {
    const { inputIds, attentionMask } = padLeft(prompts, 0);
    return generate(model, { inputIds, attentionMask, ...o });
  });
}

test("greedy equals the argmax of full recomputation, step by step", () => {
  const { tokens, finishReasons } = run([PROMPTS[0]!], { maxNewTokens: 8 });
  assert.deepEqual(tokens[0], naiveGreedy(PROMPTS[0]!, 8));
  assert.deepEqual(finishReasons, ["length"]);
});

test("batched left-padded generation equals per-sequence generation", () => {
  const batched = run(PROMPTS, { maxNewTokens: 7 });
  PROMPTS.forEach((p, i) => {
    assert.deepEqual(batched.tokens[i], run([p], { maxNewTokens: 7 }).tokens[0], `sequence ${i}`);
    assert.deepEqual(batched.tokens[i], naiveGreedy(p, 7), `sequence ${i} vs full recomputation`);
  });
});

test("stop tokens end each sequence on its own; the stop token is included", () => {
  const free = run(PROMPTS, { maxNewTokens: 8 }).tokens;
  const stopId = free[0]![2]!; // sequence 0 produces it at its third step
  const stopped = run(PROMPTS, { maxNewTokens: 8, stopTokenIds: [stopId, 1000] });
  free.forEach((seq, i) => {
    const at = seq.indexOf(stopId);
    const want = at < 0 ? seq : seq.slice(0, at + 1);
    assert.deepEqual(stopped.tokens[i], want, `sequence ${i}`);
    assert.equal(stopped.finishReasons[i], at < 0 ? "length" : "stop");
  });
  assert.ok(stopped.tokens[0]!.length <= 3);
});

test("sampling: the same seed gives the same tokens; another seed other tokens", () => {
  const sample = (seed: number) => run(PROMPTS, { maxNewTokens: 10, doSample: true, temperature: 1.5, topK: 50, topP: 0.95, generator: new torch.Generator(seed) }).tokens;
  assert.deepEqual(sample(7), sample(7));
  assert.notDeepEqual(sample(7), sample(8));
});

test("sampling with top-k 1 or a tiny top-p is greedy", () => {
  const greedy = run(PROMPTS, { maxNewTokens: 6 }).tokens;
  assert.deepEqual(run(PROMPTS, { maxNewTokens: 6, doSample: true, topK: 1, generator: new torch.Generator(1) }).tokens, greedy);
  assert.deepEqual(run(PROMPTS, { maxNewTokens: 6, doSample: true, topP: 1e-6, generator: new torch.Generator(1) }).tokens, greedy);
});

test("top-k and top-p keep the tokens HF's warpers keep", () => {
  // probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.8 drops the tail of mass 0.2 (tokens 2 and 3);
  // top-k 3 drops token 3.
  const counts = (o: { topK?: number; topP?: number }) => torch.scope(() => {
    const logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(4000, 4);
    const t = chooseNext(logits, { doSample: true, temperature: 1, topK: o.topK ?? 0, topP: o.topP ?? 1, generator: new torch.Generator(3) });
    const c = [0, 0, 0, 0];
    for (const x of t.toFloat64Values()) c[x]!++;
    return c.map((n) => n / 4000);
  });
  const p = counts({ topP: 0.8 });
  assert.deepEqual([p[2], p[3]], [0, 0]);
  assert.ok(Math.abs(p[0]! - 0.625) < 0.03, `token 0: ${p[0]} (0.5 / 0.8 expected)`);
  const k = counts({ topK: 3 });
  assert.equal(k[3], 0);
  assert.ok(Math.abs(k[2]! - 0.15 / 0.95) < 0.03, `token 2: ${k[2]}`);
});

test("the first step may take embeddings instead of token ids (the VLM path)", () => {
  const fromIds = run(PROMPTS, { maxNewTokens: 5 }).tokens;
  const fromEmbeds = torch.scope(() => {
    const { inputIds, attentionMask } = padLeft(PROMPTS, 0);
    const inputsEmbeds = torch.noGrad(() => model.model.embed_tokens.forward(inputIds));
    return generate(model, { inputsEmbeds, attentionMask, maxNewTokens: 5 }).tokens;
  });
  assert.deepEqual(fromEmbeds, fromIds);
});

test("generation frees everything it makes, cache included", () => {
  const { inputIds, attentionMask } = padLeft(PROMPTS, 0);
  const before = torch.memory().tensors;
  generate(model, { inputIds, attentionMask, maxNewTokens: 6, doSample: true, generator: new torch.Generator(0) });
  generate(model, { inputIds, attentionMask, maxNewTokens: 6 });
  assert.equal(torch.memory().tensors, before);
  [inputIds, attentionMask].forEach((t: Tensor) => t.dispose());
});

test("bad options are errors that say what to do", () => {
  const { inputIds } = padLeft(PROMPTS, 0);
  assert.throws(() => generate(model, { inputIds, maxNewTokens: 0 }), /maxNewTokens must be a positive integer/);
  assert.throws(() => generate(model, { inputIds, maxNewTokens: 3, temperature: 0.7 }), /set doSample: true/);
  assert.throws(() => generate(model, { inputIds, maxNewTokens: 3, doSample: true, topP: 0 }), /topP must be in \(0, 1\]/);
  assert.throws(() => generate(model, { maxNewTokens: 3 }), /exactly one of inputIds and inputsEmbeds/);
  assert.throws(() => padLeft([[1], []], 0), /none of them empty/);
  inputIds.dispose();
});
