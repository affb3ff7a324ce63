// CLIP / SigLIP vision towers: shapes, class token, position interpolation, feature layers,
// checkpoints (own, full CLIPModel / SiglipModel), configs, and the golden fixture from
// fixtures/models/make_vit_golden.py (HF's modeling_clip.py / modeling_siglip.py in PyTorch 1.13).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, nn, io, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import {
  VitVisionModel, VIT_PRESETS, vitPreset, resolveVitConfig, vitConfigFromHf, vitConfigToHf, checkpointRename,
  type ResolvedVitConfig,
} from "./vit.js";

// dist/models/vit.test.js -> <repo>/fixtures/models/
const GOLDEN = fileURLToPath(new URL("../../../../fixtures/models/vit_golden.safetensors", import.meta.url));
const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/models/make_vit_golden.py";
const TOL = 1e-4;

const clipTiny = vitPreset("clip-tiny");
const siglipTiny = vitPreset("siglip-tiny");

/** A tiny tower whose norms and biases are not identities (as the golden fixture's). */
function newModel(cfg: ResolvedVitConfig, seed = 0): VitVisionModel {
  const generator = new torch.Generator(seed);
  const model = new VitVisionModel(cfg, { generator }).eval();
  for (const [name, p] of model.namedParameters()) {
    if (/norm\d?\.weight$|layrnorm\.weight$/.test(name)) nn.init.normal_(p, 1, 0.2, generator);
    else if (name.endsWith("bias")) nn.init.normal_(p, 0, 0.2, generator);
  }
  return model;
}

const pixels = (B: number, H: number, W: number, seed = 1) => torch.randn([B, 3, H, W], { generator: new torch.Generator(seed) });

function maxDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  return torch.scope(() => a.sub(b).abs().max().item());
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), "mindseye-vit-"));
}

test("tiny presets: output shapes for CLIP (class token) and SigLIP (head, and without)", () => {
  torch.noGrad(() => torch.scope(() => {
    for (const [cfg, tokens] of [[clipTiny, 17], [siglipTiny, 16]] as const) {
      const out = newModel(cfg).forward(pixels(2, 16, 16));
      assert.deepEqual(out.lastHiddenState.shape, [2, tokens, 32], cfg.variant);
      assert.equal(out.hiddenStates.length, cfg.numHiddenLayers + 1);
      for (const h of out.hiddenStates) assert.deepEqual(h.shape, [2, tokens, 32]);
      assert.deepEqual(out.pooled!.shape, [2, 32]);
      assert.equal(out.features, out.lastHiddenState);
    }
    const noHead = resolveVitConfig({ ...baseOf(siglipTiny), useHead: false });
    const model = newModel(noHead);
    assert.equal(model.stateDict().has("vision_model.head.probe"), false);
    assert.equal(model.forward(pixels(1, 16, 16)).pooled, null);
  }));
});

test("CLIP: last_hidden_state is the raw last layer, pooled is post_layernorm of its class token; SigLIP: last is normed", () => {
  torch.noGrad(() => torch.scope(() => {
    const clip = newModel(clipTiny);
    const out = clip.forward(pixels(2, 16, 16));
    assert.equal(out.lastHiddenState, out.hiddenStates[2]);
    assert.ok(maxDiff(out.pooled!, clip.vision_model.post_layernorm.forward(out.lastHiddenState.select(1, 0))) === 0);
    const siglip = newModel(siglipTiny);
    const s = siglip.forward(pixels(2, 16, 16));
    assert.ok(maxDiff(s.lastHiddenState, siglip.vision_model.post_layernorm.forward(s.hiddenStates[2]!)) === 0);
  }));
});

test("class token: the same for every image at the input, dropped by features(dropClassToken)", () => {
  torch.noGrad(() => torch.scope(() => {
    const model = newModel(clipTiny);
    const x = torch.cat([pixels(1, 16, 16, 1), pixels(1, 16, 16, 2)], 0);
    const out = model.forward(x);
    const h0 = out.hiddenStates[0]!;
    assert.equal(maxDiff(h0.select(0, 0).select(0, 0), h0.select(0, 1).select(0, 0)), 0, "token 0 does not depend on the pixels");
    const emb = model.vision_model.embeddings;
    const expected = model.vision_model.pre_layrnorm!.forward(emb.class_embedding!.add(emb.position_embedding.weight.select(0, 0)));
    assert.ok(maxDiff(h0.select(0, 0).select(0, 0), expected) < 1e-6);
    assert.ok(maxDiff(h0.select(0, 0).select(0, 1), h0.select(0, 1).select(0, 1)) > 1e-3, "patch tokens do");

    const patches = model.features(x, -1, { dropClassToken: true });
    assert.deepEqual(patches.shape, [2, 16, 32]);
    assert.equal(maxDiff(patches, out.lastHiddenState.slice(1, 1)), 0);
    assert.throws(() => newModel(siglipTiny).features(x, -1, { dropClassToken: true }), /no class token/);
  }));
});

test("position embeddings: identity at the native size, bicubic grid elsewhere, clear error without the flag", () => {
  torch.noGrad(() => torch.scope(() => {
    for (const cfg of [clipTiny, siglipTiny]) {
      const model = newModel(cfg);
      const emb = model.vision_model.embeddings;
      assert.equal(maxDiff(emb.positions(16, 16, true), emb.position_embedding.weight.unsqueeze(0)), 0);
      const x = pixels(2, 16, 16);
      assert.equal(maxDiff(model.forward(x, { interpolatePosEncoding: true }).lastHiddenState, model.forward(x).lastHiddenState), 0);

      const extra = cfg.hasClassToken ? 1 : 0;
      const pos = emb.positions(24, 20, true); // 6 × 5 patches
      assert.deepEqual(pos.shape, [1, extra + 30, 32]);
      if (extra) assert.equal(maxDiff(pos.select(1, 0), emb.position_embedding.weight.select(0, 0).unsqueeze(0)), 0, "CLIP keeps the class position");
      const out = model.forward(pixels(2, 24, 20), { interpolatePosEncoding: true });
      assert.deepEqual(out.lastHiddenState.shape, [2, extra + 30, 32]);
      assert.throws(() => model.forward(pixels(1, 24, 20)), /input image size \(24\*20\) doesn't match the model \(16\*16\).*interpolatePosEncoding/);
    }
    // As HF: SigLIP takes any size with the training patch grid (the conv drops the remainder), CLIP only its size.
    assert.deepEqual(newModel(siglipTiny).forward(pixels(1, 17, 19)).lastHiddenState.shape, [1, 16, 32]);
    assert.throws(() => newModel(clipTiny).forward(pixels(1, 17, 19)), /input image size \(17\*19\)/);
  }));
});

test("feature layer selection: HF hidden_states indexing, early stop in features(), range errors", () => {
  torch.noGrad(() => torch.scope(() => {
    for (const cfg of [clipTiny, siglipTiny]) {
      const model = newModel(cfg);
      const x = pixels(2, 16, 16);
      const out = model.forward(x, { featureLayer: -2 });
      assert.equal(out.features, out.hiddenStates[1], "-2 is the output of the second-to-last layer (LLaVA)");
      assert.equal(model.forward(x, { featureLayer: 0 }).features.shape[1], out.hiddenStates[0]!.shape[1]);
      for (const layer of [0, 1, 2, -1, -2, -3]) {
        assert.ok(maxDiff(model.features(x, layer), out.hiddenStates.at(layer)!) < 1e-6, `${cfg.variant} layer ${layer}`);
      }
      assert.throws(() => model.features(x, 3), /feature layer 3 is out of range: there are 3 hidden states/);
      assert.throws(() => model.forward(x, { featureLayer: -4 }), /out of range/);
    }
  }));
});

test("savePretrained -> fromPretrained: same config, weights and outputs", () => {
  const dir = tmp();
  try {
    for (const cfg of [clipTiny, siglipTiny]) {
      const model = newModel(cfg, 3);
      model.savePretrained(dir);
      const json = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
      assert.equal(json.model_type, cfg.variant === "clip" ? "clip_vision_model" : "siglip_vision_model");
      const loaded = VitVisionModel.fromPretrained(dir);
      assert.deepEqual(loaded.config, cfg);
      const a = model.stateDict(), b = loaded.stateDict();
      assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
      for (const [k, t] of a) assert.equal(maxDiff(t, b.get(k)!), 0, k);
      torch.noGrad(() => torch.scope(() => {
        const x = pixels(1, 16, 16);
        assert.equal(maxDiff(loaded.forward(x).pooled!, model.forward(x).pooled!), 0);
      }));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Writes a full CLIPModel / SiglipModel checkpoint around a tower's weights. */
function writeFullModel(dir: string, model: VitVisionModel, visionConfig: Record<string, unknown>, drop: string[] = []): void {
  const family = model.config.variant;
  const tensors = new Map<string, Tensor>();
  for (const [k, t] of model.stateDict()) if (!drop.includes(k)) tensors.set(k, t);
  tensors.set("text_model.embeddings.token_embedding.weight", torch.randn([99, 32]));
  tensors.set("text_model.encoder.layers.0.self_attn.q_proj.weight", torch.randn([32, 32]));
  tensors.set("text_model.final_layer_norm.weight", torch.ones([32]));
  tensors.set("logit_scale", torch.tensor([2.6592]));
  tensors.set("vision_model.embeddings.position_ids", torch.arange(0, model.config.numPositions).unsqueeze(0)); // older transformers saved it
  if (family === "clip") {
    tensors.set("visual_projection.weight", torch.randn([16, 32]));
    tensors.set("text_projection.weight", torch.randn([16, 32]));
  } else {
    tensors.set("logit_bias", torch.tensor([-10]));
  }
  io.saveFile(join(dir, "model.safetensors"), tensors);
  const config = {
    architectures: [family === "clip" ? "CLIPModel" : "SiglipModel"], model_type: family, projection_dim: 16,
    text_config: { hidden_size: 32, vocab_size: 99, num_hidden_layers: 1 },
    vision_config: visionConfig,
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
}

test("a full CLIPModel / SiglipModel checkpoint loads the vision tower; text_model.* and projections are skipped", () => {
  const dir = tmp();
  try {
    for (const cfg of [clipTiny, siglipTiny]) {
      const model = newModel(cfg, 5);
      const vision = vitConfigToHf(cfg);
      delete vision.architectures;
      if (cfg.variant === "siglip") delete vision.vision_use_head; // the head is then taken when present
      writeFullModel(dir, model, vision);
      const loaded = VitVisionModel.fromPretrained(dir);
      assert.deepEqual(loaded.config, cfg);
      for (const [k, t] of model.stateDict()) assert.equal(maxDiff(t, loaded.stateDict().get(k)!), 0, k);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a SigLIP checkpoint without head weights and without vision_use_head loads a headless tower", () => {
  const dir = tmp();
  try {
    const model = newModel(siglipTiny, 6);
    const vision = vitConfigToHf(siglipTiny);
    delete vision.vision_use_head;
    const headNames = [...model.stateDict().keys()].filter((k) => k.startsWith("vision_model.head."));
    writeFullModel(dir, model, vision, headNames);
    const loaded = VitVisionModel.fromPretrained(dir);
    assert.equal(loaded.config.useHead, false);
    assert.equal(loaded.vision_model.head, null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a genuinely missing vision weight is a clear error naming it", () => {
  const dir = tmp();
  try {
    const model = newModel(clipTiny, 7);
    writeFullModel(dir, model, vitConfigToHf(clipTiny), ["vision_model.post_layernorm.weight"]);
    assert.throws(() => VitVisionModel.fromPretrained(dir), (e: Error) => {
      assert.match(e.message, /missing keys \(1\): vision_model\.post_layernorm\.weight/);
      assert.doesNotMatch(e.message, /text_model|logit_scale|position_ids/);
      return true;
    });
    assert.throws(() => VitVisionModel.fromPretrained(join(dir, "nowhere")), /no config\.json/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("checkpointRename skips exactly the non-vision tensors of CLIPModel / SiglipModel", () => {
  assert.equal(checkpointRename("vision_model.encoder.layers.0.mlp.fc1.weight"), "vision_model.encoder.layers.0.mlp.fc1.weight");
  for (const n of ["text_model.embeddings.token_embedding.weight", "visual_projection.weight", "text_projection.weight", "logit_scale", "logit_bias", "vision_model.embeddings.position_ids"]) {
    assert.equal(checkpointRename(n), null, n);
  }
  assert.equal(checkpointRename("model.vision_tower.foo"), "model.vision_tower.foo", "unknown names are kept, to be reported");
});

/** The user-facing fields of a resolved config. */
function baseOf(c: ResolvedVitConfig) {
  const { headDim: _h, gridSize: _g, numPositions: _n, hasClassToken: _c, ...base } = c;
  return base;
}

test("configs: HF round trips for every preset, full configs, derived fields", () => {
  for (const [name, cfg] of Object.entries(VIT_PRESETS)) {
    assert.deepEqual(vitConfigFromHf(vitConfigToHf(cfg)), cfg, name);
    const full = { model_type: cfg.variant, vision_config: vitConfigToHf(cfg), text_config: {} };
    assert.deepEqual(vitConfigFromHf(full), cfg, `${name} inside a full ${cfg.variant} config`);
  }
  const l14 = vitPreset("clip-vit-l14-336");
  assert.deepEqual([l14.gridSize, l14.numPositions, l14.headDim], [24, 577, 64]);
  const so400m = vitPreset("siglip-so400m-14-384");
  assert.deepEqual([so400m.gridSize, so400m.numPositions, so400m.headDim, so400m.useHead], [27, 729, 72, true]);
  // Left-out fields take HF's class defaults, as transformers does.
  const bare = vitConfigFromHf({ model_type: "clip_vision_model" });
  assert.deepEqual([bare.patchSize, bare.hiddenAct, bare.layerNormEps], [32, "quick_gelu", 1e-5]);
  assert.equal(vitConfigFromHf({ model_type: "siglip", vision_config: {} }).useHead, true);
  assert.equal(vitConfigFromHf({ model_type: "siglip_vision_model", vision_use_head: false }).useHead, false);
  const b16 = vitPreset("clip-vit-b16");
  assert.equal(new VitVisionModel(resolveVitConfig({ ...baseOf(b16), numHiddenLayers: 1 })).numParameters() > 7e6, true);
});

test("configs: errors name the field and say what to do", () => {
  const bad: [() => unknown, RegExp][] = [
    [() => vitConfigFromHf({ model_type: "llava" }), /model_type "llava" is not a CLIP or SigLIP vision tower.*pass its vision_config/],
    [() => vitConfigFromHf({ model_type: "clip", vision_config: { model_type: "siglip_vision_model" } }), /vision_config\.model_type: "siglip_vision_model" does not belong to a "clip" config/],
    [() => vitConfigFromHf({ model_type: "siglip" }), /missing required field "vision_config"/],
    [() => vitConfigFromHf({ model_type: "clip_vision_model", hidden_size: "32" }), /field "hidden_size" must be an integer, got "32"/],
    [() => vitConfigFromHf({ model_type: "clip_vision_model", hidden_act: "swish" }), /hiddenAct: unsupported activation "swish"/],
    [() => vitConfigFromHf({ model_type: "clip_vision_model", hidden_size: 30, num_attention_heads: 4 }), /hiddenSize: 30 is not divisible by numAttentionHeads 4/],
    [() => resolveVitConfig({ variant: "clip", useHead: true }), /useHead: CLIP's vision tower has no attention-pooling head/],
    [() => resolveVitConfig({ variant: "siglip", hidenSize: 32 } as never), /vit config\.hidenSize: unknown field/],
    [() => resolveVitConfig({ variant: "siglip", imageSize: 8, patchSize: 16 }), /imageSize: 8 is smaller than one patch/],
    [() => resolveVitConfig({ variant: "vit" } as never), /variant: must be "clip" or "siglip"/],
    [() => vitPreset("clip-huge"), /unknown ViT preset "clip-huge" \(known: clip-tiny, siglip-tiny/],
  ];
  for (const [fn, re] of bad) assert.throws(fn, (e: Error) => e instanceof ConfigError && re.test(e.message), String(re));
});

// ---------------------------------------------------------------------------------------------
// Golden fixture

test("golden: CLIP and SigLIP hidden states and pooled outputs match PyTorch following HF (native and interpolated)", () => {
  const fixture = io.loadFile(GOLDEN);
  const meta = io.loadMetadata(GOLDEN) ?? {};
  const get = (name: string): Tensor => fixture.get(name) ?? assert.fail(`${GOLDEN} has no tensor "${name}"; ${REGENERATE}`);
  let worst = 0;
  for (const family of ["clip", "siglip"] as const) {
    const json = meta[`${family}_config`] ?? assert.fail(`${GOLDEN}: no ${family}_config in __metadata__; ${REGENERATE}`);
    const cfg = vitConfigFromHf(JSON.parse(json) as Record<string, unknown>);
    assert.deepEqual(cfg, family === "clip" ? clipTiny : siglipTiny, "the tiny presets are the fixture's shapes");
    const model = new VitVisionModel(cfg).eval();
    const prefix = `${family}.weight.`;
    const weights = new Map([...fixture].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]));
    model.loadStateDict(weights);
    torch.noGrad(() => torch.scope(() => {
      for (const c of ["native", "interp"] as const) {
        const p = `${family}.${c}`;
        const out = model.forward(get(`${p}.pixel_values`), { interpolatePosEncoding: c === "interp" });
        const pairs: [string, Tensor][] = [["last_hidden_state", out.lastHiddenState], ["pooler_output", out.pooled!]];
        out.hiddenStates.forEach((h, i) => pairs.push([`hidden_states.${i}`, h]));
        for (const [name, got] of pairs) {
          const d = maxDiff(got, get(`${p}.${name}`));
          worst = Math.max(worst, d);
          assert.ok(d <= TOL, `${p}.${name}: max |diff| ${d} > ${TOL}`);
        }
      }
    }));
  }
  for (const t of fixture.values()) t.dispose();
  console.log(`vit golden: worst max |diff| ${worst.toExponential(2)}`);
});
