// LLaVA: the golden fixture from fixtures/models/make_llava_golden.py (HF's modeling_llava.py in
// plain PyTorch 1.13, with a Llama and a Qwen2 language model), checkpoints in the llava-hf layout
// (and transformers ≥ 4.52's), and config.json reading and its errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, io, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { wellConditioned, configRefusal } from "./test_weights.js";
import { Qwen2ForCausalLM, qwen2Preset } from "./qwen2.js";
import { LlamaForCausalLM } from "./llama.js";
import {
  LlavaForConditionalGeneration, LLAVA_PRESETS, llavaPreset, llavaFromHfConfig, llavaToHfConfig, llavaCheckpointRename, resolveLlava,
  type ResolvedLlavaConfig,
} from "./llava.js";

// dist/models/llava.test.js -> <repo>/fixtures/models/
const GOLDEN = fileURLToPath(new URL("../../../../fixtures/models/llava_golden.safetensors", import.meta.url));
const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/models/make_llava_golden.py";

const tiny = llavaPreset("tiny");
const IMAGE = tiny.imageTokenIndex, N = tiny.imageSeqLength;
/** The tiny LLaVA with a tied Qwen2 language model and the "full" strategy (17 image tokens). */
const tinyQwen = resolveLlava({ ...tiny, text: { modelType: "qwen2", config: qwen2Preset("tiny", { vocabSize: 110, hiddenSize: 48, tieWordEmbeddings: true }) }, visionFeatureSelectStrategy: "full" });

const newModel = (cfg: ResolvedLlavaConfig = tiny, seed = 0) => wellConditioned(new LlavaForConditionalGeneration(cfg, { generator: new torch.Generator(seed) }).eval(), seed);
const ids = (rows: number[][]) => torch.tensor(rows, { dtype: "int64" });
const prompt = (before: number[], after: number[], n = N) => [...before, ...Array<number>(n).fill(IMAGE), ...after];
const free = (m: LlavaForConditionalGeneration) => m.parameters().forEach((p) => p.dispose());
const tmp = () => mkdtempSync(join(tmpdir(), "mindseye-llava-"));
const maxDiff = (a: Tensor, b: Tensor) => {
  assert.deepEqual(a.shape, b.shape);
  return torch.scope(() => a.sub(b).abs().max().item());
};

/** Writes the fixture's weights of `c` (renamed by `rename`) and its config.json as a checkpoint directory. */
function fixtureCheckpoint(fixture: Map<string, Tensor>, meta: Record<string, string>, c: string, dir: string, rename = (n: string) => n): void {
  const json = meta[`${c}_config`] ?? assert.fail(`${GOLDEN}: no ${c}_config in __metadata__; ${REGENERATE}`);
  const prefix = `${c}.weight.`;
  writeFileSync(join(dir, "config.json"), json);
  io.saveFile(join(dir, "model.safetensors"), new Map([...fixture].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [rename(k.slice(prefix.length)), t])));
}

test("golden: vision features, projector output, logits and greedy tokens (KV cache) match HF's LLaVA within 1e-4 (Llama and Qwen2 text)", (t) => {
  const fixture = io.loadFile(GOLDEN);
  const meta = io.loadMetadata(GOLDEN) ?? {};
  const get = (k: string) => fixture.get(k) ?? assert.fail(`${GOLDEN} has no tensor "${k}"; ${REGENERATE}`);
  const worst: Record<string, number> = {};
  try {
    for (const c of ["llama", "qwen2"]) {
      const dir = tmp();
      try {
        fixtureCheckpoint(fixture, meta, c, dir);
        const model = LlavaForConditionalGeneration.fromPretrained(dir).eval();
        assert.equal(model.config.text.modelType, c);
        assert.ok(model.language_model instanceof (c === "llama" ? LlamaForCausalLM : Qwen2ForCausalLM), "text_config.model_type picks the language model");
        const inputIds = get(`${c}.input_ids`), mask = get(`${c}.attention_mask`), pixels = get(`${c}.pixel_values`);
        torch.noGrad(() => torch.scope(() => {
          worst[`${c} vision features`] = maxDiff(model.visionFeatures(pixels), get(`${c}.vision_features`));
          worst[`${c} image features`] = maxDiff(model.imageFeatures(pixels), get(`${c}.image_features`));
          const out = model.forward({ inputIds, pixelValues: pixels, attentionMask: mask });
          const [B, T] = mask.shape as [number, number];
          const m = mask.toFloat64Values();
          let d = 0;
          for (let b = 0; b < B; b++) {
            for (let t = 0; t < T; t++) {
              if (m[b * T + t] !== 0) d = Math.max(d, maxDiff(out.logits.select(0, b).select(0, t), get(`${c}.logits`).select(0, b).select(0, t)));
            }
          }
          worst[`${c} logits`] = d;
          const want = get(`${c}.greedy`);
          const { tokens } = model.generate({ inputIds, pixelValues: pixels, attentionMask: mask, maxNewTokens: want.shape[1]! });
          assert.deepEqual(tokens, want.tolist(), `${c}: greedy tokens with the KV cache`);
        }));
        free(model);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    for (const t of fixture.values()) t.dispose();
  }
  for (const [k, d] of Object.entries(worst)) t.diagnostic(`${k}: max |Δ| ${d}`);
  for (const [k, d] of Object.entries(worst)) assert.ok(d <= 1e-4, `${k}: max |Δ| ${d}`);
});

test("transformers ≥ 4.52 checkpoint names (model.language_model.*, lm_head.*) load as the llava-hf layout", () => {
  const fixture = io.loadFile(GOLDEN);
  const meta = io.loadMetadata(GOLDEN) ?? {};
  const [a, b] = [tmp(), tmp()];
  const newName = (n: string) => n.startsWith("language_model.model.") ? `model.language_model.${n.slice("language_model.model.".length)}`
    : n.startsWith("language_model.lm_head.") ? n.slice("language_model.".length) : `model.${n}`;
  try {
    fixtureCheckpoint(fixture, meta, "llama", a);
    fixtureCheckpoint(fixture, meta, "llama", b, newName);
    assert.ok(io.readHeader(join(b, "model.safetensors")).tensors.has("model.language_model.norm.weight"));
    const [old, now] = [LlavaForConditionalGeneration.fromPretrained(a), LlavaForConditionalGeneration.fromPretrained(b)];
    for (const [k, t] of old.stateDict()) assert.equal(maxDiff(t, now.stateDict().get(k)!), 0, k);
    assert.equal(llavaCheckpointRename("vision_tower.vision_model.embeddings.position_ids"), null);
    free(old); free(now);
  } finally {
    rmSync(a, { recursive: true, force: true });
    rmSync(b, { recursive: true, force: true });
    for (const t of fixture.values()) t.dispose();
  }
});

test("image tokens: features replace them in order, text before the image does not see it, a wrong count is named", () => {
  const model = newModel();
  torch.noGrad(() => torch.scope(() => {
    const input = ids([prompt([1, 2], [3, 4])]);
    const gen = new torch.Generator(5);
    const a = model.forward({ inputIds: input, pixelValues: torch.randn([1, 3, 16, 16], { generator: gen }) }).logits;
    const b = model.forward({ inputIds: input, pixelValues: torch.randn([1, 3, 16, 16], { generator: gen }) }).logits;
    assert.deepEqual(a.shape, [1, N + 4, 110]);
    assert.equal(maxDiff(a.narrow(1, 0, 2), b.narrow(1, 0, 2)), 0, "causal: text before the image");
    assert.ok(maxDiff(a.narrow(1, N + 2, 2), b.narrow(1, N + 2, 2)) > 1e-3, "text after the image sees it");
    assert.throws(() => model.forward({ inputIds: ids([prompt([1], [2], N + 1)]), pixelValues: torch.randn([1, 3, 16, 16]) }), /the prompt has 17 image tokens but 1 image\(s\) give 16 features \(16 per image\)/);
    assert.throws(() => model.forward({ inputIds: input }), /16 image tokens but no pixelValues/);
  }));
  free(model);
});

test("savePretrained → fromPretrained in the llava-hf layout: same weights and logits (Llama untied, Qwen2 tied)", () => {
  for (const cfg of [tiny, tinyQwen]) {
    const model = newModel(cfg, 1);
    const dir = tmp();
    try {
      model.savePretrained(dir);
      const names = [...io.readHeader(join(dir, "model.safetensors")).tensors.keys()];
      for (const n of ["vision_tower.vision_model.encoder.layers.1.mlp.fc2.weight", "vision_tower.vision_model.post_layernorm.weight", "multi_modal_projector.linear_1.weight",
        "multi_modal_projector.linear_2.bias", "language_model.model.layers.1.self_attn.o_proj.weight", "language_model.model.norm.weight"]) assert.ok(names.includes(n), n);
      const tied = cfg.text.config.tieWordEmbeddings;
      assert.equal(names.includes("language_model.lm_head.weight"), !tied, "a tied lm_head is saved once, as the embedding");
      const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, Record<string, unknown>>;
      assert.deepEqual([json.model_type, json.image_seq_length, json.text_config!.model_type, json.vision_config!.model_type], ["llava", cfg.imageSeqLength, cfg.text.modelType, "clip_vision_model"]);
      const loaded = LlavaForConditionalGeneration.fromPretrained(dir).eval();
      assert.deepEqual(loaded.config, model.config);
      torch.noGrad(() => torch.scope(() => {
        const x = ids([prompt([1], [5, 6], cfg.imageSeqLength)]), px = torch.randn([1, 3, 16, 16], { generator: new torch.Generator(2) });
        assert.equal(maxDiff(model.forward({ inputIds: x, pixelValues: px }).logits, loaded.forward({ inputIds: x, pixelValues: px }).logits), 0);
      }));
      free(loaded);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    free(model);
  }
});

test("config.json that does not describe the checkpoint is refused before allocation, naming the sub-config and field", () => {
  const model = newModel();
  const dir = tmp();
  try {
    model.savePretrained(dir);
    const { good, refuse } = configRefusal<Record<string, Record<string, unknown>>>(dir, (d) => LlavaForConditionalGeneration.fromPretrained(d));
    refuse({ text_config: { ...good.text_config, num_hidden_layers: 5 } }, /config\.json text_config: field "num_hidden_layers" says 5, but the checkpoint has weights for 2 layers/);
    refuse({ text_config: { ...good.text_config, hidden_size: 64, head_dim: 12 } }, /field "text_config\.hidden_size" says 64, but the checkpoint's multi_modal_projector\.linear_1\.weight/);
    refuse({ vision_config: { ...good.vision_config, num_hidden_layers: 3 } }, /config\.json vision_config: field "num_hidden_layers" says 3/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    free(model);
  }
});

test("config.json: llava-hf/llava-1.5-7b-hf as published reads as the llava-1.5-7b preset (576 image tokens); presets round-trip", () => {
  const published = {
    architectures: ["LlavaForConditionalGeneration"], ignore_index: -100, image_token_index: 32000, model_type: "llava", pad_token_id: 32001,
    projector_hidden_act: "gelu", image_seq_length: 576,
    text_config: { _name_or_path: "lmsys/vicuna-7b-v1.5", architectures: ["LlamaForCausalLM"], max_position_embeddings: 4096, model_type: "llama", rms_norm_eps: 1e-5, torch_dtype: "float16", vocab_size: 32064 },
    tie_word_embeddings: false, torch_dtype: "float16", transformers_version: "4.36.0.dev0",
    vision_config: { hidden_size: 1024, image_size: 336, intermediate_size: 4096, model_type: "clip_vision_model", num_attention_heads: 16, num_hidden_layers: 24, patch_size: 14, projection_dim: 768, vocab_size: 32000 },
    vision_feature_layer: -2, vision_feature_select_strategy: "default", vocab_size: 32064,
  };
  const cfg = llavaFromHfConfig(published);
  assert.deepEqual(cfg, llavaPreset("llava-1.5-7b"));
  assert.deepEqual([cfg.imageSeqLength, cfg.text.config.hiddenSize, cfg.vision.hiddenAct], [576, 4096, "quick_gelu"]);
  for (const name of Object.keys(LLAVA_PRESETS)) assert.deepEqual(llavaFromHfConfig(llavaToHfConfig(llavaPreset(name))), llavaPreset(name), name);
  assert.deepEqual(llavaFromHfConfig(llavaToHfConfig(tinyQwen)), tinyQwen);
});

test("config errors say what, where and what to do", () => {
  const base = llavaToHfConfig(tiny) as Record<string, Record<string, unknown>>;
  const bad = (patch: Record<string, unknown>, msg: RegExp) =>
    assert.throws(() => llavaFromHfConfig({ ...base, ...patch }, "ckpt/config.json"), (e: Error) => e instanceof ConfigError && msg.test(e.message) && e.message.startsWith("ckpt/config.json"));
  bad({ image_seq_length: 576 }, /"image_seq_length": 576 differs from the 16 tokens one image gives \(\(image_size \/ patch_size\)² = \(16 \/ 4\)² \+ 1 class token, the first dropped by "default"\)/);
  bad({ text_config: { ...base.text_config, model_type: "mistral" } }, /text_config: model_type "mistral" is not a language model MindsEye's LLaVA builds \(supported: llama, qwen2\)/);
  bad({ vision_feature_layer: [-2, -5] }, /"vision_feature_layer" \[-2,-5\]: a list of layers .* is not supported/);
  bad({ vision_feature_layer: -4 }, /visionFeatureLayer: -4 is not a hidden state of the 2-layer vision tower \(use -3\.\.2; LLaVA uses -2\)/);
  bad({ image_token_index: 110 }, /imageTokenIndex: 110 is not a token of the language model's vocabulary of 110/);
  bad({ projector_hidden_act: "relu" }, /"projector_hidden_act": only "gelu"/);
  bad({ vision_feature_select_strategy: "patch" }, /visionFeatureSelectStrategy: must be "default" or "full", got "patch"/);
  bad({ model_type: "llava_next" }, /"model_type": expected "llava", got "llava_next"/);
  bad({ text_config: { ...base.text_config, rope_scaling: { rope_type: "yarn", factor: 4 } } }, /ckpt\/config\.json text_config: "rope_scaling": RoPE type "yarn" is not supported/);
  bad({ vision_config: undefined }, /missing required field "vision_config"/);
  assert.throws(() => llavaPreset("llava-1.5-7B"), /unknown LLaVA preset "llava-1\.5-7B" \(did you mean "llava-1\.5-7b"\?\)/);
});
