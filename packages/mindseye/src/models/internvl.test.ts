// InternVL: the golden fixture from fixtures/models/make_internvl_golden.py (modeling_internvl_chat.py
// in plain PyTorch 1.13, with an InternLM2 (dynamic RoPE, ps_version v2, select_layer -1) and a Qwen2
// (ps_version v1, select_layer -2) language model), the tile plan of dynamic_preprocess, checkpoints
// in the published layout, and config.json reading and its errors.
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
import { InternLM2ForCausalLM } from "./internlm2.js";
import {
  InternVLChatModel, INTERNVL_PRESETS, internVLPreset, internVLFromHfConfig, internVLToHfConfig, resolveInternVL, dynamicTiles, type ResolvedInternVLConfig,
} from "./internvl.js";

// dist/models/internvl.test.js -> <repo>/fixtures/models/
const GOLDEN = fileURLToPath(new URL("../../../../fixtures/models/internvl_golden.safetensors", import.meta.url));
const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/models/make_internvl_golden.py";

const tiny = internVLPreset("tiny");
const IMG = tiny.imgContextTokenId!, N = tiny.numImageToken;
/** The tiny InternVL with a Qwen2 language model and ps_version v1. */
const tinyQwen = resolveInternVL({ ...tiny, psVersion: "v1", llm: { architecture: "Qwen2ForCausalLM", config: qwen2Preset("tiny", { vocabSize: 110, hiddenSize: 48 }) } });

const newModel = (cfg: ResolvedInternVLConfig = tiny, seed = 0) => wellConditioned(new InternVLChatModel(cfg, { generator: new torch.Generator(seed) }).eval(), seed);
const ids = (rows: number[][]) => torch.tensor(rows, { dtype: "int64" });
const prompt = (before: number[], after: number[], n = N) => [...before, ...Array<number>(n).fill(IMG), ...after];
const free = (m: InternVLChatModel) => m.parameters().forEach((p) => p.dispose());
const tmp = () => mkdtempSync(join(tmpdir(), "mindseye-internvl-"));
const maxDiff = (a: Tensor, b: Tensor) => {
  assert.deepEqual(a.shape, b.shape);
  return torch.scope(() => a.sub(b).abs().max().item());
};

test("golden: vision features, mlp1 output, logits with images and greedy tokens (KV cache) match the reference InternVL within 1e-4 (InternLM2 and Qwen2)", (t) => {
  const fixture = io.loadFile(GOLDEN);
  const meta = io.loadMetadata(GOLDEN) ?? {};
  const get = (k: string) => fixture.get(k) ?? assert.fail(`${GOLDEN} has no tensor "${k}"; ${REGENERATE}`);
  const worst: Record<string, number> = {};
  try {
    for (const c of ["vl_internlm2", "vl_qwen2"]) {
      const dir = tmp();
      try {
        writeFileSync(join(dir, "config.json"), meta[`${c}_config`] ?? assert.fail(`${GOLDEN}: no ${c}_config; ${REGENERATE}`));
        const prefix = `${c}.weight.`;
        io.saveFile(join(dir, "model.safetensors"), new Map([...fixture].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v])));
        const token = Number(meta[`${c}_img_context_token_id`]);
        // The token id as checkpoints pin it: the tokenizer's added tokens (InternLM2 case), or the option (Qwen2 case).
        if (c === "vl_internlm2") writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ added_tokens_decoder: { [String(token)]: { content: "<IMG_CONTEXT>", special: true } } }));
        const model = InternVLChatModel.fromPretrained(dir, c === "vl_qwen2" ? { imgContextTokenId: token } : {}).eval();
        assert.equal(model.config.imgContextTokenId, token);
        assert.ok(model.language_model instanceof (c === "vl_qwen2" ? Qwen2ForCausalLM : InternLM2ForCausalLM), "llm_config.architectures picks the language model");
        assert.equal(model.config.llm.config.tieWordEmbeddings, false, "InternVLChatConfig unties the language model");
        const inputIds = get(`${c}.input_ids`), mask = get(`${c}.attention_mask`), pixels = get(`${c}.pixel_values`);
        torch.noGrad(() => torch.scope(() => {
          worst[`${c} vision features`] = maxDiff(model.visionFeatures(pixels), get(`${c}.vision_features`));
          worst[`${c} image features (mlp1)`] = maxDiff(model.imageFeatures(pixels), get(`${c}.image_features`));
          const out = model.forward({ inputIds, pixelValues: pixels, attentionMask: mask });
          const [B, T] = mask.shape as [number, number];
          const m = mask.toFloat64Values();
          let d = 0;
          for (let b = 0; b < B; b++) {
            for (let i = 0; i < T; i++) if (m[b * T + i] !== 0) d = Math.max(d, maxDiff(out.logits.select(0, b).select(0, i), get(`${c}.logits`).select(0, b).select(0, i)));
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
    for (const v of fixture.values()) v.dispose();
  }
  for (const [k, d] of Object.entries(worst)) t.diagnostic(`${k}: max |Δ| ${d}`);
  for (const [k, d] of Object.entries(worst)) assert.ok(d <= 1e-4, `${k}: max |Δ| ${d}`);
});

test("tile plan: the reference's grids for the fixture's sizes; boxes row by row; a thumbnail only with several tiles", () => {
  const sizes = io.loadFile(GOLDEN);
  try {
    const s = sizes.get("tiles.sizes")!.tolist() as number[][], g = sizes.get("tiles.grids")!.tolist() as number[][];
    s.forEach(([w, h, min, max], i) => {
      const plan = dynamicTiles(w!, h!, { minNum: min!, maxNum: max! });
      assert.deepEqual([plan.columns, plan.rows], g[i], `${w}×${h}, ${min}..${max} tiles`);
    });
  } finally {
    for (const v of sizes.values()) v.dispose();
  }
  const p = dynamicTiles(800, 600, { useThumbnail: true });
  assert.deepEqual([p.columns, p.rows, p.resizedWidth, p.resizedHeight, p.boxes.length, p.thumbnail], [4, 3, 1792, 1344, 12, true]);
  assert.deepEqual(p.boxes[5], { left: 448, top: 448, right: 896, bottom: 896 }, "tile 5: second column, second row");
  const one = dynamicTiles(448, 448, { useThumbnail: true });
  assert.deepEqual([one.columns, one.rows, one.boxes.length, one.thumbnail], [1, 1, 1, false]);
  // 1.5:1 is as close to 1:1 as to 2:1; the image covers more than half of two tiles, so 2×1 wins the tie.
  assert.deepEqual([dynamicTiles(672, 448, { maxNum: 2 }).columns, dynamicTiles(60, 40, { maxNum: 2 }).columns], [2, 1]);
  assert.throws(() => dynamicTiles(0, 10), /width must be a positive integer/);
  assert.throws(() => dynamicTiles(10, 10, { minNum: 3, maxNum: 2 }), /maxNum must be an integer ≥ minNum 3/);
});

test("image tokens: features replace <IMG_CONTEXT> in order; text before the image does not see it; a wrong count is named", () => {
  const model = newModel();
  torch.noGrad(() => torch.scope(() => {
    const input = ids([prompt([1, 2], [3, 4])]);
    const gen = new torch.Generator(5);
    const a = model.forward({ inputIds: input, pixelValues: torch.randn([1, 3, 24, 24], { generator: gen }) }).logits;
    const b = model.forward({ inputIds: input, pixelValues: torch.randn([1, 3, 24, 24], { generator: gen }) }).logits;
    assert.deepEqual(a.shape, [1, N + 4, 110]);
    assert.equal(maxDiff(a.narrow(1, 0, 2), b.narrow(1, 0, 2)), 0, "causal: text before the image");
    assert.ok(maxDiff(a.narrow(1, N + 2, 2), b.narrow(1, N + 2, 2)) > 1e-3, "text after the image sees it");
    assert.throws(() => model.forward({ inputIds: ids([prompt([1], [2], N + 1)]), pixelValues: torch.randn([1, 3, 24, 24]) }), /the prompt has 10 image tokens but 1 image\(s\) give 9 features \(9 per image\)/);
    assert.deepEqual(model.imageFeatures(torch.randn([3, 3, 24, 24])).shape, [3, 9, 48], "3 tiles, 9 tokens each (6×6 patches shuffled to 3×3)");
  }));
  free(model);
  const unknown = newModel(resolveInternVL({ ...tiny, imgContextTokenId: null }));
  assert.throws(() => unknown.forward({ inputIds: ids([[1, 2]]), pixelValues: torch.randn([1, 3, 24, 24]) }), /the <IMG_CONTEXT> token id is unknown; pass fromPretrained's imgContextTokenId/);
  free(unknown);
});

test("savePretrained → fromPretrained in the published layout: same weights and logits (InternLM2 and Qwen2)", () => {
  for (const cfg of [tiny, tinyQwen]) {
    const model = newModel(cfg, 1);
    const dir = tmp();
    try {
      model.savePretrained(dir);
      const names = [...io.readHeader(join(dir, "model.safetensors")).tensors.keys()];
      for (const n of ["vision_model.embeddings.class_embedding", "vision_model.encoder.layers.1.attn.qkv.weight", "vision_model.encoder.layers.1.ls2", "mlp1.0.weight", "mlp1.0.bias",
        "mlp1.1.weight", "mlp1.3.bias", "language_model.model.norm.weight"]) assert.ok(names.includes(n), n);
      assert.ok(names.includes(cfg.llm.architecture === "InternLM2ForCausalLM" ? "language_model.output.weight" : "language_model.lm_head.weight"));
      const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, Record<string, unknown>>;
      assert.deepEqual([json.model_type, json.ps_version, json.img_context_token_id, json.llm_config!.architectures, json.vision_config!.model_type],
        ["internvl_chat", cfg.psVersion, IMG, [cfg.llm.architecture], "intern_vit_6b"]);
      const loaded = InternVLChatModel.fromPretrained(dir).eval();
      assert.deepEqual(loaded.config, model.config);
      torch.noGrad(() => torch.scope(() => {
        const x = ids([prompt([1], [5, 6])]), px = torch.randn([1, 3, 24, 24], { generator: new torch.Generator(2) });
        assert.equal(maxDiff(model.forward({ inputIds: x, pixelValues: px }).logits, loaded.forward({ inputIds: x, pixelValues: px }).logits), 0);
      }));
      free(loaded);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      free(model);
    }
  }
});

test("config.json that does not describe the checkpoint is refused before allocation, naming the sub-config and field", () => {
  const model = newModel();
  const dir = tmp();
  try {
    model.savePretrained(dir);
    const { good, refuse } = configRefusal<Record<string, Record<string, unknown>>>(dir, (d) => InternVLChatModel.fromPretrained(d));
    refuse({ llm_config: { ...good.llm_config, num_hidden_layers: 24 } }, /config\.json llm_config: field "num_hidden_layers" says 24, but the checkpoint has weights for 2 layers/);
    refuse({ llm_config: { ...good.llm_config, hidden_size: 64 } }, /field "llm_config\.hidden_size" says 64, but the checkpoint's mlp1\.1\.weight/);
    refuse({ vision_config: { ...good.vision_config, num_hidden_layers: 24 } }, /config\.json vision_config: field "num_hidden_layers" says 24/);
    refuse({ llm_config: { ...good.llm_config, bias: true } }, /llm_config: field "bias" says true, but the checkpoint lacks language_model\.model\.layers\.0\.attention\.wqkv\.bias/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    free(model);
  }
});

test("config.json: presets round-trip; InternVL2.5-8B's numbers; errors say what, where and what to do", () => {
  for (const name of Object.keys(INTERNVL_PRESETS)) assert.deepEqual(internVLFromHfConfig(internVLToHfConfig(internVLPreset(name))), internVLPreset(name), name);
  const big = internVLPreset("internvl2.5-8b");
  assert.deepEqual([big.numImageToken, big.imageSize, big.llm.config.vocabSize, big.vision.hiddenSize * 4], [256, 448, 92553, 4096]);
  const base = internVLToHfConfig(tiny) as Record<string, Record<string, unknown>>;
  const untied = internVLFromHfConfig({ ...base, llm_config: { ...internVLToHfConfig(tinyQwen).llm_config as object, tie_word_embeddings: true } });
  assert.equal(untied.llm.config.tieWordEmbeddings, false, "llm_config's tie_word_embeddings is overridden, as InternVLChatConfig does");
  const bad = (patch: Record<string, unknown>, msg: RegExp) =>
    assert.throws(() => internVLFromHfConfig({ ...base, ...patch }, "vl/config.json"), (e: Error) => e instanceof ConfigError && msg.test(e.message) && e.message.startsWith("vl/config.json"));
  bad({ llm_config: { ...base.llm_config, architectures: ["Phi3ForCausalLM"] } }, /llm_config: architectures\[0\] "Phi3ForCausalLM" is not a language model MindsEye's InternVL builds \(supported: InternLM2ForCausalLM, Qwen2ForCausalLM, LlamaForCausalLM; Phi3 is not\)/);
  bad({ use_llm_lora: 16 }, /"use_llm_lora": 16: a checkpoint saved with PEFT LoRA wrappers has other weight names/);
  bad({ select_layer: -4 }, /selectLayer: -4 is not a hidden state of the 2-layer vision tower \(use -3\.\.2; InternVL2\.5 uses -1\)/);
  bad({ ps_version: "v3" }, /psVersion: must be "v1" or "v2", got "v3"/);
  bad({ force_image_size: 20 }, /the 5×5 patch grid of a 20-px tile does not divide into 2×2 blocks/);
  bad({ img_context_token_id: 110 }, /imgContextTokenId: 110 is not a token of the language model's vocabulary of 110/);
  bad({ model_type: "internvl" }, /"model_type": expected "internvl_chat", got "internvl"/);
  bad({ vision_config: { ...base.vision_config, norm_type: "group_norm" } }, /vl\/config\.json vision_config: "norm_type": must be "rms_norm" or "layer_norm"/);
  assert.throws(() => internVLPreset("internvl2.5-8B"), /unknown InternVL preset "internvl2\.5-8B" \(did you mean "internvl2\.5-8b"\?\)/);
});
