// Projector tests: weight names as the checkpoints name them, shapes, configs, and a golden
// comparison (forward output, input and weight gradients) against PyTorch implementations written
// after the original code (fixtures/models/make_projector_golden.py).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, io, nn, type Tensor } from "@mindseye/torch";
import {
  LlavaMultiModalProjector, Qwen2_5_VLPatchMerger, InternVLProjector, pixelShuffle, llavaProjectorRename,
  LLAVA_PROJECTOR_PRESETS, QWEN2_5_VL_MERGER_PRESETS, INTERNVL_PROJECTOR_PRESETS,
  llavaProjectorFromHfConfig, llavaProjectorToHfConfig, llavaProjectorFromOriginalConfig,
  qwen2_5_VLPatchMergerFromHfConfig, qwen2_5_VLPatchMergerToHfConfig,
  internVLProjectorFromHfConfig, internVLProjectorToHfConfig, resolveInternVLProjector,
  type LlavaProjectorConfig, type Qwen2_5_VLPatchMergerConfig, type InternVLProjectorConfig,
} from "./projectors.js";
import { loadCheckpointInto } from "./pretrained.js";
import { ConfigError } from "../config/errors.js";

// dist/models/projectors.test.js -> <repo>/fixtures/models/
const FIXTURE = fileURLToPath(new URL("../../../../fixtures/models/projector_golden.safetensors", import.meta.url));
const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/models/make_projector_golden.py";
const TOL = 1e-5;

const golden = io.loadFile(FIXTURE);
const meta = io.loadMetadata(FIXTURE) ?? {};
function config<T>(family: string): T {
  const v = meta[family];
  if (v === undefined) assert.fail(`${FIXTURE}: __metadata__ has no "${family}"; ${REGENERATE}`);
  return JSON.parse(v) as T;
}
function get(name: string): Tensor {
  const t = golden.get(name);
  if (t === undefined) assert.fail(`${FIXTURE} has no tensor "${name}"; ${REGENERATE}`);
  return t;
}

/** max |got - want| <= TOL · max(1, max|want|) */
function assertClose(name: string, got: Tensor, want: Tensor): void {
  assert.deepEqual(got.shape, want.shape, `${name}: shape [${got.shape}] but PyTorch has [${want.shape}]`);
  const a = got.toFloat64Values(), b = want.toFloat64Values();
  const scale = Math.max(1, b.reduce((m, x) => Math.max(m, Math.abs(x)), 0));
  let worst = 0;
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  assert.ok(worst <= TOL * scale, `${name}: max abs difference ${worst.toExponential(3)} > ${TOL} × ${scale.toFixed(3)}`);
}

/**
 * Loads the fixture's weights for `family` into module (strictly: every name must match), runs the
 * forward on the fixture's input, backpropagates sum(output · probe) and compares output, input
 * gradient and every weight gradient with PyTorch's.
 */
function checkGolden(family: string, module: nn.Module): void {
  const weights = new Map<string, Tensor>();
  for (const [k, t] of golden) {
    const rest = k.slice(family.length + 1);
    if (k.startsWith(`${family}.`) && !["input", "output", "probe"].includes(rest) && !rest.startsWith("grad.")) weights.set(rest, t);
  }
  module.loadStateDict(weights);
  torch.scope(() => {
    const x = get(`${family}.input`).clone().requiresGrad_(true);
    const y = (module as unknown as { forward(t: Tensor): Tensor }).forward(x);
    assertClose(`${family} output`, y, get(`${family}.output`));
    y.mul(get(`${family}.probe`)).sum().backward();
    assertClose(`${family} input gradient`, x.grad!, get(`${family}.grad.input`));
    for (const [name, p] of module.namedParameters()) assertClose(`${family} gradient of ${name}`, p.grad!, get(`${family}.grad.${name}`));
  });
}

const names = (m: nn.Module) => [...m.stateDict().keys()].sort();

test("LLaVA projector: HF weight names, shapes, golden", () => {
  const proj = new LlavaMultiModalProjector(config<LlavaProjectorConfig>("llava"));
  assert.deepEqual(names(proj), ["linear_1.bias", "linear_1.weight", "linear_2.bias", "linear_2.weight"]);
  assert.deepEqual(proj.linear_1.weight.shape, [48, 32]);
  checkGolden("llava", proj);
});

test("LLaVA projector: original repo names map through llavaProjectorRename", () => {
  assert.equal(llavaProjectorRename("model.mm_projector.0.weight"), "linear_1.weight");
  assert.equal(llavaProjectorRename("model.mm_projector.2.bias"), "linear_2.bias");
  assert.equal(llavaProjectorRename("mm_projector.2.weight"), "linear_2.weight");
  assert.equal(llavaProjectorRename("multi_modal_projector.linear_1.bias"), "linear_1.bias");
  assert.equal(llavaProjectorRename("model.multi_modal_projector.linear_2.weight"), "linear_2.weight");
  assert.equal(llavaProjectorRename("model.layers.0.self_attn.q_proj.weight"), null);
  assert.equal(llavaProjectorRename("model.mm_projector.1.weight"), null, "index 1 is the GELU, it has no weights");

  // A checkpoint in the original layout (with unrelated LM weights) loads into the HF-named module.
  const src = new LlavaMultiModalProjector(LLAVA_PROJECTOR_PRESETS.tiny);
  const dir = mkdtempSync(join(tmpdir(), "mindseye-projector-"));
  after(() => rmSync(dir, { recursive: true, force: true }));
  io.saveFile(join(dir, "model.safetensors"), new Map<string, Tensor>([
    ["model.mm_projector.0.weight", src.linear_1.weight.clone()],
    ["model.mm_projector.0.bias", src.linear_1.bias!.clone()],
    ["model.mm_projector.2.weight", src.linear_2.weight.clone()],
    ["model.mm_projector.2.bias", src.linear_2.bias!.clone()],
    ["model.embed_tokens.weight", torch.zeros([4, 4])],
  ]));
  const dst = new LlavaMultiModalProjector(LLAVA_PROJECTOR_PRESETS.tiny);
  loadCheckpointInto(dst, dir, { rename: llavaProjectorRename });
  torch.scope(() => {
    for (const [k, t] of src.stateDict()) assert.equal(t.sub(dst.stateDict().get(k)!).abs().max().item(), 0, k);
  });
});

test("LLaVA projector configs: HF and original config.json, multi-layer features, errors", () => {
  // llava-hf's text_config omits hidden_size; transformers then uses LlamaConfig's default 4096.
  const hf = { projector_hidden_act: "gelu", vision_feature_layer: -2, vision_config: { model_type: "clip_vision_model", hidden_size: 1024 }, text_config: { model_type: "llama", vocab_size: 32064 } };
  assert.deepEqual(llavaProjectorFromHfConfig(hf), LLAVA_PROJECTOR_PRESETS["llava-1.5-7b"]);
  const back = llavaProjectorFromHfConfig(llavaProjectorToHfConfig(LLAVA_PROJECTOR_PRESETS["llava-1.5-7b"]));
  assert.deepEqual(back, LLAVA_PROJECTOR_PRESETS["llava-1.5-7b"]);
  const original = { mm_projector_type: "mlp2x_gelu", mm_hidden_size: 1024, hidden_size: 4096, mm_vision_select_layer: -2 };
  assert.deepEqual(llavaProjectorFromOriginalConfig(original), LLAVA_PROJECTOR_PRESETS["llava-1.5-7b"]);

  const two = new LlavaMultiModalProjector({ visionHiddenSize: 8, visionFeatureLayer: [-2, -5], textHiddenSize: 12, bias: false });
  assert.deepEqual(two.linear_1.weight.shape, [12, 16]);
  assert.equal(two.linear_1.bias, null);
  torch.scope(() => assert.deepEqual(two.forward(torch.randn([2, 3, 16])).shape, [2, 3, 12]));

  assert.throws(() => llavaProjectorFromHfConfig({ ...hf, projector_hidden_act: "relu" }), ConfigError);
  assert.throws(() => llavaProjectorFromOriginalConfig({ ...original, mm_projector_type: "linear" }), /mlp2x_gelu/);
  assert.throws(() => llavaProjectorFromHfConfig({ ...hf, text_config: { model_type: "gemma" } }), /text_config: no "hidden_size"/);
  assert.throws(() => new LlavaMultiModalProjector({ visionHiddenSize: 0, textHiddenSize: 4 }), /visionHiddenSize must be a positive integer/);
});

test("Qwen2.5-VL PatchMerger: HF weight names, shapes, golden", () => {
  const merger = new Qwen2_5_VLPatchMerger(config<Qwen2_5_VLPatchMergerConfig>("qwen"));
  assert.deepEqual(names(merger), ["ln_q.weight", "mlp.0.bias", "mlp.0.weight", "mlp.2.bias", "mlp.2.weight"]);
  assert.deepEqual(merger.mlp[0].weight.shape, [128, 128]);
  assert.deepEqual(merger.mlp[2].weight.shape, [48, 128]);
  checkGolden("qwen", merger);
});

test("Qwen2.5-VL PatchMerger: 7B shapes without weights, config mapping, bad input", () => {
  const cfg = qwen2_5_VLPatchMergerFromHfConfig({ hidden_size: 1280, out_hidden_size: 3584, spatial_merge_size: 2, depth: 32 });
  assert.deepEqual(cfg, QWEN2_5_VL_MERGER_PRESETS["qwen2.5-vl-7b"]);
  assert.deepEqual(qwen2_5_VLPatchMergerFromHfConfig(qwen2_5_VLPatchMergerToHfConfig(cfg)), cfg);
  assert.throws(() => qwen2_5_VLPatchMergerFromHfConfig({ out_hidden_size: 3584 }), /missing required field "hidden_size"/);

  const merger = new Qwen2_5_VLPatchMerger(QWEN2_5_VL_MERGER_PRESETS.tiny);
  torch.scope(() => {
    assert.deepEqual(merger.forward(torch.randn([12, 32])).shape, [3, 48]);
    assert.throws(() => merger.forward(torch.randn([10, 32])), /N a multiple of 4/);
    assert.throws(() => merger.forward(torch.randn([8, 16])), /expected patches \[N, 32\]/);
  });
});

test("Qwen2.5-VL PatchMerger merges exactly the consecutive groups of merge² patches", () => {
  // Row j of the output depends only on input rows 4j..4j+3.
  const merger = new Qwen2_5_VLPatchMerger(QWEN2_5_VL_MERGER_PRESETS.tiny);
  torch.scope(() => {
    const x = torch.randn([8, 32]);
    const y = merger.forward(x);
    const x2 = x.clone();
    x2.narrow(0, 5, 1).add_(1); // perturb a patch of the second group
    const y2 = merger.forward(x2);
    assert.equal(y.narrow(0, 0, 1).sub(y2.narrow(0, 0, 1)).abs().max().item(), 0);
    assert.ok(y.narrow(0, 1, 1).sub(y2.narrow(0, 1, 1)).abs().max().item() > 0);
  });
});

test("InternVL pixel shuffle matches InternVL's v1 and v2 on a non-square grid", () => {
  const x = get("pixel_shuffle.input"); // [2, 4, 6, 8]
  torch.scope(() => {
    assertClose("pixel_shuffle v1", pixelShuffle(x, 0.5, "v1"), get("pixel_shuffle.v1"));
    assertClose("pixel_shuffle v2", pixelShuffle(x, 0.5, "v2"), get("pixel_shuffle.v2"));
    assert.deepEqual(pixelShuffle(x, 0.5, "v2").shape, [2, 2, 3, 32]);
    assert.deepEqual(pixelShuffle(x, 0.5, "v1").shape, [2, 3, 2, 32]);
    assert.throws(() => pixelShuffle(torch.randn([1, 3, 4, 8]), 0.5, "v2"), /divisible by 2/);
  });
});

test("InternVL projector: mlp1 weight names, shapes, golden", () => {
  const proj = new InternVLProjector(config<InternVLProjectorConfig>("internvl"));
  assert.deepEqual(names(proj), ["mlp1.0.bias", "mlp1.0.weight", "mlp1.1.bias", "mlp1.1.weight", "mlp1.3.bias", "mlp1.3.weight"]);
  assert.deepEqual(proj.mlp1[1].weight.shape, [40, 64]);
  checkGolden("internvl", proj);
});

test("InternVL projector: config mapping and shapes", () => {
  const json = { downsample_ratio: 0.5, ps_version: "v2", vision_config: { hidden_size: 1024 }, llm_config: { hidden_size: 4096 }, template: "internvl2_5" };
  const cfg = internVLProjectorFromHfConfig(json);
  assert.deepEqual(cfg, INTERNVL_PROJECTOR_PRESETS["internvl2.5-8b"]);
  assert.deepEqual(internVLProjectorFromHfConfig(internVLProjectorToHfConfig(cfg)), cfg);
  assert.equal(resolveInternVLProjector(cfg).inFeatures, 4096);
  assert.throws(() => internVLProjectorFromHfConfig({ ...json, ps_version: "v3" }), /ps_version/);
  assert.throws(() => resolveInternVLProjector({ ...cfg, downsampleRatio: 0.3 }), /downsampleRatio must be 1\/k/);

  const proj = new InternVLProjector(INTERNVL_PROJECTOR_PRESETS.tiny);
  torch.scope(() => {
    assert.deepEqual(proj.forward(torch.randn([2, 16, 16])).shape, [2, 4, 40]);
    assert.throws(() => proj.forward(torch.randn([2, 15, 16])), /side²/);
  });
});
