// InternViT: the golden fixture from fixtures/models/make_internvl_golden.py (OpenGVLab's
// modeling_intern_vit.py in plain PyTorch 1.13: the 300M layout with LayerNorm and qkv bias, the 6B
// layout with RMSNorm and q/k norms, position interpolation), checkpoints in the published layout,
// and config.json reading and its errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, io, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { wellConditioned, configRefusal } from "./test_weights.js";
import {
  InternVisionModel, INTERN_VIT_PRESETS, internVitPreset, internVitFromHfConfig, internVitToHfConfig, resolveInternVit, type ResolvedInternVitConfig,
} from "./intern_vit.js";

// dist/models/intern_vit.test.js -> <repo>/fixtures/models/
const GOLDEN = fileURLToPath(new URL("../../../../fixtures/models/internvl_golden.safetensors", import.meta.url));
const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/models/make_internvl_golden.py";

const tiny = internVitPreset("tiny");
/** The 6B layout at the tiny size (make_internvl_golden.py's vit_rms). */
const tinyRms = internVitPreset("tiny", { qkvBias: false, qkNormalization: true, normType: "rms_norm", initializerFactor: 0.1 });
const newModel = (cfg: ResolvedInternVitConfig = tiny, seed = 0) => wellConditioned(new InternVisionModel(cfg, { generator: new torch.Generator(seed) }).eval(), seed);
const free = (m: InternVisionModel) => m.parameters().forEach((p) => p.dispose());
const tmp = () => mkdtempSync(join(tmpdir(), "mindseye-internvit-"));
const maxDiff = (a: Tensor, b: Tensor) => {
  assert.deepEqual(a.shape, b.shape);
  return torch.scope(() => a.sub(b).abs().max().item());
};

test("golden: hidden states, last state and interpolated positions match OpenGVLab's InternViT within 1e-4 (LayerNorm/qkv-bias and RMSNorm/qk-norm layouts)", (t) => {
  const fixture = io.loadFile(GOLDEN);
  const meta = io.loadMetadata(GOLDEN) ?? {};
  const get = (k: string) => fixture.get(k) ?? assert.fail(`${GOLDEN} has no tensor "${k}"; ${REGENERATE}`);
  const worst: Record<string, number> = {};
  try {
    for (const c of ["vit_ln", "vit_rms"]) {
      const dir = tmp();
      try {
        writeFileSync(join(dir, "config.json"), meta[`${c}_config`] ?? assert.fail(`${GOLDEN}: no ${c}_config; ${REGENERATE}`));
        const prefix = `${c}.weight.`;
        io.saveFile(join(dir, "model.safetensors"), new Map([...fixture].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v])));
        const model = InternVisionModel.fromPretrained(dir);
        assert.deepEqual(model.config, c === "vit_ln" ? tiny : tinyRms, `${c}: the fixture's config is the preset's`);
        torch.noGrad(() => torch.scope(() => {
          const out = model.forward(get(`${c}.pixel_values`));
          const want = get(`${c}.hidden_states`);
          worst[`${c} hidden states`] = Math.max(...out.hiddenStates.map((h, i) => maxDiff(h, want.select(0, i))));
          worst[`${c} last hidden state`] = maxDiff(out.lastHiddenState, get(`${c}.last_hidden_state`));
          worst[`${c} features(-2)`] = maxDiff(model.features(get(`${c}.pixel_values`), -2), want.select(0, 1));
          worst[`${c} interpolated 32×28`] = maxDiff(model.forward(get(`${c}.interp_pixel_values`)).lastHiddenState, get(`${c}.interp_last_hidden_state`));
          assert.equal(maxDiff(out.pooled, out.lastHiddenState.select(1, 0)), 0);
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

test("weights: the published names; q_norm/k_norm only under qk_normalization, qkv and norm biases only where the layout has them", () => {
  for (const [cfg, rms] of [[tiny, false], [tinyRms, true]] as const) {
    const m = newModel(cfg);
    const names = [...m.stateDict().keys()];
    for (const n of ["embeddings.class_embedding", "embeddings.patch_embedding.weight", "embeddings.patch_embedding.bias", "embeddings.position_embedding",
      "encoder.layers.1.attn.qkv.weight", "encoder.layers.1.attn.proj.bias", "encoder.layers.1.mlp.fc2.weight", "encoder.layers.1.ls1", "encoder.layers.1.ls2", "encoder.layers.1.norm2.weight"]) assert.ok(names.includes(n), n);
    assert.equal(names.includes("encoder.layers.0.attn.q_norm.weight"), rms);
    assert.equal(names.includes("encoder.layers.0.attn.qkv.bias"), !rms);
    assert.equal(names.includes("encoder.layers.0.norm1.bias"), !rms);
    assert.deepEqual(m.stateDict().get("embeddings.position_embedding")!.shape, [1, 37, 32]);
    free(m);
  }
  const fresh = new InternVisionModel(tinyRms, { generator: new torch.Generator(0) });
  assert.deepEqual(torch.scope(() => fresh.encoder.layers.at(0).ls1.toFloat64Values().every((v) => Math.abs(v - 0.1) < 1e-7)), true, "layer scale starts at initializer_factor");
  free(fresh);
});

test("savePretrained → fromPretrained: same weights and outputs, config.json as the reference writes it", () => {
  for (const cfg of [tiny, tinyRms]) {
    const model = newModel(cfg, 1);
    const dir = tmp();
    try {
      model.savePretrained(dir);
      const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
      assert.deepEqual([json.model_type, json.norm_type, json.qk_normalization, json.architectures], ["intern_vit_6b", cfg.normType, cfg.qkNormalization, ["InternVisionModel"]]);
      const loaded = InternVisionModel.fromPretrained(dir);
      assert.deepEqual(loaded.config, model.config);
      torch.noGrad(() => torch.scope(() => {
        const px = torch.randn([1, 3, 24, 24], { generator: new torch.Generator(3) });
        assert.equal(maxDiff(model.forward(px).lastHiddenState, loaded.forward(px).lastHiddenState), 0);
      }));
      free(loaded);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      free(model);
    }
  }
});

test("config.json that does not describe the checkpoint is refused before allocation, naming the field", () => {
  const model = newModel(tinyRms);
  const dir = tmp();
  try {
    model.savePretrained(dir);
    const { refuse } = configRefusal(dir, (d) => InternVisionModel.fromPretrained(d));
    refuse({ num_hidden_layers: 24 }, /field "num_hidden_layers" says 24, but the checkpoint has weights for 2 layers/);
    refuse({ hidden_size: 1024, num_attention_heads: 16 }, /field "hidden_size" says 1024, but the checkpoint's embeddings\.patch_embedding\.weight .* has shape \[32, 3, 4, 4\]/);
    refuse({ image_size: 448 }, /"\(image_size \/ patch_size\)² \+ 1 = \(448 \/ 4\)² \+ 1" says 12545, but the checkpoint's embeddings\.position_embedding/);
    refuse({ qk_normalization: false }, /field "qk_normalization" says false, but the checkpoint has encoder\.layers\.0\.attn\.q_norm\.weight/);
    refuse({ qkv_bias: true }, /field "qkv_bias" says true, but the checkpoint lacks encoder\.layers\.0\.attn\.qkv\.bias/);
    refuse({ norm_type: "layer_norm" }, /field "norm_type" says "layer_norm", but the checkpoint lacks encoder\.layers\.0\.norm1\.bias/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
    free(model);
  }
});

test("config.json: InternViT-300M-448px-V2_5 as published reads as its preset; presets round-trip; errors say what and where", () => {
  const published = {
    architectures: ["InternVisionModel"], attention_dropout: 0.0, drop_path_rate: 0.1, dropout: 0.0, hidden_act: "gelu", hidden_size: 1024, image_size: 448,
    initializer_factor: 1.0, initializer_range: 0.02, intermediate_size: 4096, layer_norm_eps: 1e-6, model_type: "intern_vit_6b", norm_type: "layer_norm",
    num_attention_heads: 16, num_channels: 3, num_hidden_layers: 24, patch_size: 14, qk_normalization: false, qkv_bias: true, torch_dtype: "bfloat16", use_flash_attn: true,
  };
  const cfg = internVitFromHfConfig(published);
  assert.deepEqual(cfg, internVitPreset("internvit-300m-448px-v2.5"));
  assert.deepEqual([cfg.gridSize, cfg.numPositions, cfg.headDim], [32, 1025, 64]);
  for (const name of Object.keys(INTERN_VIT_PRESETS)) assert.deepEqual(internVitFromHfConfig(internVitToHfConfig(internVitPreset(name))), internVitPreset(name), name);
  assert.equal(internVitFromHfConfig({}).hiddenSize, 3200, "fields left out take InternVisionConfig's defaults (the 6B)");
  const bad = (patch: Record<string, unknown>, msg: RegExp) =>
    assert.throws(() => internVitFromHfConfig({ ...published, ...patch }, "v/config.json"), (e: Error) => e instanceof ConfigError && msg.test(e.message) && e.message.startsWith("v/config.json"));
  bad({ model_type: "clip_vision_model" }, /"model_type": expected "intern_vit_6b"/);
  bad({ norm_type: "batch_norm" }, /"norm_type": must be "rms_norm" or "layer_norm"/);
  bad({ num_channels: 4 }, /"num_channels": InternViT's patch embedding takes 3/);
  bad({ hidden_act: "relu" }, /"hidden_act": only "gelu"/);
  bad({ hidden_size: 1000 }, /"hidden_size": 1000 is not divisible by the number of attention heads 16/);
  assert.throws(() => resolveInternVit({ hiddenSise: 8 } as never), /intern_vit\.hiddenSise: unknown InternViT config field \(did you mean "hiddenSize"\?\)/);
  assert.throws(() => internVitPreset("internvit-300m"), /unknown InternViT preset "internvit-300m"/);
});
