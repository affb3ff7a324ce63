// `mindseye model inspect` on a tiny saved model of each family: the counts are the models' own
// numParameters, the per-module rows add up, and the files are listed with their sizes.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nn, torch } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { Qwen2ForCausalLM, qwen2Preset } from "../models/qwen2.js";
import { Qwen2_5_VLForConditionalGeneration, qwen2_5_vlPreset } from "../models/qwen2_5_vl.js";
import { VitVisionModel, vitPreset } from "../models/vit.js";
import { MindsEyeVLM, type VlmConfig } from "../models/vlm.js";
import { LlamaForCausalLM, llamaPreset } from "../models/llama.js";
import { LlavaForConditionalGeneration, llavaPreset } from "../models/llava.js";
import { InternVisionModel, internVitPreset } from "../models/intern_vit.js";
import { InternLM2ForCausalLM, internLM2Preset } from "../models/internlm2.js";
import { InternVLChatModel, internVLPreset } from "../models/internvl.js";
import { FAMILIES, formatBytes, formatInspect, inspectModel, type InspectReport } from "./model.js";

let tmp = "";
/** Fresh models saved under tmp/<name>, with the parameter count each had. */
const saved = new Map<string, { total: number; frozen: number }>();

function save(name: string, m: nn.Module & { savePretrained(dir: string, o?: { dtype?: "bfloat16" }): void }, o: { frozen?: number; dtype?: "bfloat16" } = {}): void {
  m.savePretrained(join(tmp, name), o.dtype ? { dtype: o.dtype } : {});
  saved.set(name, { total: m.numParameters(), frozen: o.frozen ?? 0 });
  m.parameters().forEach((p) => p.dispose());
}

before(() => {
  tmp = mkdtempSync(join(tmpdir(), "mindseye-inspect-"));
  const g = () => ({ generator: new torch.Generator(0) });
  save("qwen2", new Qwen2ForCausalLM(qwen2Preset("tiny"), g()));
  save("qwen2-tied", new Qwen2ForCausalLM(qwen2Preset("tiny", { tieWordEmbeddings: true }), g()));
  save("qwen2-bf16", new Qwen2ForCausalLM(qwen2Preset("tiny"), g()), { dtype: "bfloat16" });
  save("qwen2_5_vl", new Qwen2_5_VLForConditionalGeneration(qwen2_5_vlPreset("tiny"), g()));
  save("clip", new VitVisionModel(vitPreset("clip-tiny"), g()));
  save("siglip", new VitVisionModel(vitPreset("siglip-tiny"), g()));
  const text = qwen2Preset("tiny");
  const config: VlmConfig = {
    vision: vitPreset("siglip-tiny"), text, visionFeatureLayer: -1, visionFeatureSelectStrategy: "default", imageTokenId: 90,
    latentHead: { type: "mlp", inputSize: text.hiddenSize, hiddenSize: 48, latentSize: 32, bias: true }, latentTokenIds: [91, 92, 93, 94],
  };
  const vlm = new MindsEyeVLM(config, g());
  save("vlm", vlm, { frozen: vlm.vision_tower.numParameters() });
  save("llama", new LlamaForCausalLM(llamaPreset("tiny", { tieWordEmbeddings: true, ropeScaling: { ropeType: "linear", factor: 2 } }), g()));
  save("llava", new LlavaForConditionalGeneration(llavaPreset("tiny"), g()));
  save("internlm2", new InternLM2ForCausalLM(internLM2Preset("tiny", { ropeScaling: { type: "dynamic", factor: 2 } }), g()));
  save("intern_vit", new InternVisionModel(internVitPreset("tiny"), g()));
  save("internvl", new InternVLChatModel(internVLPreset("tiny"), g()));
  mkdirSync(join(tmp, "unknown"));
  writeFileSync(join(tmp, "unknown", "config.json"), JSON.stringify({ model_type: "qwen2_vl" }));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/** Rows add up to the total, children to their parent, and the files are the directory's. */
function checkReport(r: InspectReport, name: string): void {
  const want = saved.get(name)!;
  assert.equal(r.parameters.total, want.total, `${name}: total = the model's numParameters`);
  assert.equal(r.parameters.frozen, want.frozen, `${name}: frozen`);
  assert.equal(r.parameters.trainable, want.total - want.frozen);
  assert.equal(r.modules.reduce((a, m) => a + m.parameters, 0), r.parameters.total, `${name}: top-level rows add up`);
  assert.equal(r.modules.reduce((a, m) => a + m.trainable, 0), r.parameters.trainable);
  for (const m of r.modules) {
    if (m.children.length > 0) assert.equal(m.children.reduce((a, c) => a + c.parameters, 0), m.parameters, `${name}: ${m.name}'s children add up`);
    for (const c of m.children) assert.ok(c.name.startsWith(`${m.name}.`));
  }
  const dir = join(tmp, name);
  assert.deepEqual(r.files.map((f) => [f.name, f.bytes]), readdirSync(dir).sort().map((f) => [f, statSync(join(dir, f)).size]));
  assert.ok(formatInspect(r).includes(`parameters: ${r.parameters.total.toLocaleString("en-US")} (`));
}

test("every family: counts equal numParameters, per module and one level down; architecture numbers from config.json", () => {
  const qwen = inspectModel(join(tmp, "qwen2"));
  checkReport(qwen, "qwen2");
  assert.deepEqual([qwen.modelType, qwen.family, qwen.loadedAs, qwen.dtypes, qwen.tied], ["qwen2", "Qwen2ForCausalLM", "float32", ["float32"], []]);
  assert.deepEqual(qwen.modules.map((m) => m.name), ["model", "lm_head"]);
  assert.deepEqual(qwen.modules[0]!.children.map((c) => c.name), ["model.embed_tokens", "model.layers", "model.norm"]);
  assert.equal(qwen.architecture.text!.num_key_value_heads, 2);
  assert.equal(qwen.files.find((f) => f.name === "model.safetensors")!.tensors!.F32, 2 * 12 + 3);

  const tied = inspectModel(join(tmp, "qwen2-tied"));
  checkReport(tied, "qwen2-tied");
  assert.deepEqual(tied.tied, ["lm_head.weight = model.embed_tokens.weight"]);
  assert.equal(tied.parameters.total, qwen.parameters.total - 99 * 32, "the tied output embedding is counted once");

  const vl = inspectModel(join(tmp, "qwen2_5_vl"));
  checkReport(vl, "qwen2_5_vl");
  assert.deepEqual([vl.family, vl.architecture.vision!.depth, vl.architecture.multimodal!.mrope_section], ["Qwen2_5_VLForConditionalGeneration", 3, [2, 3, 3]]);
  assert.deepEqual(vl.modules[0]!.children.map((c) => c.name).sort(), ["model.language_model", "model.visual"]);

  for (const name of ["clip", "siglip"]) {
    const r = inspectModel(join(tmp, name));
    checkReport(r, name);
    assert.deepEqual([r.modelType, r.architecture.vision!.variant, r.architecture.vision!.class_token], [`${name}_vision_model`, name, name === "clip"]);
  }

  const vlm = inspectModel(join(tmp, "vlm"));
  checkReport(vlm, "vlm");
  assert.deepEqual(vlm.modules.map((m) => [m.name, m.trainable === 0]), [["vision_tower", true], ["multi_modal_projector", false], ["language_model", false], ["latent_head", false]]);
  assert.deepEqual(vlm.architecture.latent_head, { type: "mlp", input_size: 32, hidden_size: 48, latent_size: 32, latents: 4 });
  assert.match(formatInspect(vlm), /frozen [\d,]+: vision_tower/);

  const llama = inspectModel(join(tmp, "llama"));
  checkReport(llama, "llama");
  assert.deepEqual([llama.family, llama.tied, llama.architecture.text!.rope_scaling, llama.architecture.text!.head_dim], ["LlamaForCausalLM", ["lm_head.weight = model.embed_tokens.weight"], "linear ×2", 8]);

  const llava = inspectModel(join(tmp, "llava"));
  checkReport(llava, "llava");
  assert.deepEqual(llava.modules.map((m) => m.name), ["vision_tower", "multi_modal_projector", "language_model"]);
  assert.deepEqual([llava.family, llava.architecture.projector!.image_seq_length, llava.architecture.text!.model_type, llava.architecture.text!.hidden_size], ["LlavaForConditionalGeneration", 16, "llama", 48]);

  const internlm2 = inspectModel(join(tmp, "internlm2"));
  checkReport(internlm2, "internlm2");
  assert.deepEqual(internlm2.modules.map((m) => m.name), ["model", "output"]);
  assert.deepEqual([internlm2.family, internlm2.architecture.text!.rope_scaling, internlm2.architecture.text!.num_key_value_heads], ["InternLM2ForCausalLM", "dynamic ×2", 2]);

  const vit = inspectModel(join(tmp, "intern_vit"));
  checkReport(vit, "intern_vit");
  assert.deepEqual([vit.modelType, vit.family, vit.architecture.vision!.norm_type, vit.architecture.vision!.patches], ["intern_vit_6b", "InternVisionModel", "layer_norm", 36]);

  const internvl = inspectModel(join(tmp, "internvl"));
  checkReport(internvl, "internvl");
  assert.deepEqual(internvl.modules.map((m) => m.name), ["vision_model", "language_model", "mlp1"]);
  assert.deepEqual([internvl.family, internvl.architecture.projector!.num_image_token, internvl.architecture.projector!.img_context_token_id, internvl.architecture.text!.architecture],
    ["InternVLChatModel", 9, 100, "InternLM2ForCausalLM"]);
});

test("a bf16 checkpoint is inspected in bf16; unknown model types suggest the closest known one", () => {
  const r = inspectModel(join(tmp, "qwen2-bf16"));
  checkReport(r, "qwen2-bf16");
  assert.deepEqual([r.loadedAs, r.dtypes], ["bfloat16", ["bfloat16"]]);
  assert.deepEqual(Object.keys(r.files.find((f) => f.name === "model.safetensors")!.tensors!), ["BF16"]);
  assert.throws(() => inspectModel(join(tmp, "unknown")), (e: unknown) => e instanceof ConfigError &&
    /model_type "qwen2_vl" is not a family MindsEye loads \(did you mean "qwen2_5_vl"\?\); known model types: qwen2, qwen2_5_vl, clip, siglip, clip_vision_model, siglip_vision_model, mindseye_vlm, llama, llava, internlm2, intern_vit_6b, internvl_chat/.test(e.message));
  assert.throws(() => inspectModel(join(tmp, "nothing")), /no config\.json/);
  assert.deepEqual([...FAMILIES.keys()].length, 12);
  assert.deepEqual([formatBytes(512), formatBytes(1536), formatBytes(5 * 1024 ** 3)], ["512 B", "1.5 KiB", "5.0 GiB"]);
});
