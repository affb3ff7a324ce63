// mindseye plan's estimator: parameter counts exact against real modules and the published 7B
// total, ZeRO and checkpointing arithmetic consistent, and the fit verdicts the ZeRO paper's
// numbers imply for a 7B model on 80 GB GPUs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { torch } from "@mindseye/torch";
import { qwen2Preset, Qwen2ForCausalLM, toHfConfig as qwen2ToHfConfig } from "../models/qwen2.js";
import { qwen2_5_vlPreset, qwen2_5_vlToHfConfig, Qwen2_5_VLForConditionalGeneration } from "../models/qwen2_5_vl.js";
import { applyLora, resolveLora } from "../models/lora.js";
import { llavaPreset, llavaToHfConfig, LlavaForConditionalGeneration } from "../models/llava.js";
import { internVLPreset, internVLToHfConfig, InternVLChatModel } from "../models/internvl.js";
import { llamaPreset, llamaToHfConfig, LlamaForCausalLM } from "../models/llama.js";
import { internLM2Preset, internLM2ToHfConfig, InternLM2ForCausalLM } from "../models/internlm2.js";
import { shapeFromHfConfig, planReport } from "../cli/plan.js";
import { countParameters, estimateMemory, fits, loraParameters, parseBytes, qwen2TextShape, type PlanOptions } from "./plan.js";

const vl7b = () => shapeFromHfConfig(qwen2_5_vlToHfConfig(qwen2_5_vlPreset("qwen2.5-vl-7b")), "qwen2.5-vl-7b");
const GiB80 = 80 * 2 ** 30;
const run: PlanOptions = { worldSize: 8, zero: 0, checkpointing: false, loraRank: null, batchSize: 4, seqLen: 2048, imagePatches: 1024, dtype: "bfloat16" };

test("parameter count: Qwen2.5-VL-7B from its config.json is the published 8,292,166,656", () => {
  const p = countParameters(vl7b());
  assert.equal(p.total, 8_292_166_656);
  assert.equal(p.text, 7_615_616_512, "the language model is Qwen2.5-7B's 7.62 B");
  assert.equal(p.vision, 676_550_144);
});

test("parameter count: the formulas equal the real modules' numParameters (tiny Qwen2, tiny Qwen2.5-VL, LoRA adapters)", () => {
  const text = qwen2Preset("tiny");
  assert.equal(countParameters({ text: qwen2TextShape(text), vision: null }).total, new Qwen2ForCausalLM(text).numParameters());
  const tied = qwen2Preset("tiny", { tieWordEmbeddings: true });
  assert.equal(countParameters({ text: qwen2TextShape(tied), vision: null }).total, new Qwen2ForCausalLM(tied).numParameters());
  const vl = qwen2_5_vlPreset("tiny");
  assert.equal(countParameters(shapeFromHfConfig(qwen2_5_vlToHfConfig(vl), "tiny")).total, new Qwen2_5_VLForConditionalGeneration(vl).numParameters());
  const model = new Qwen2ForCausalLM(text, { generator: new torch.Generator(0) });
  const lora = applyLora(model, resolveLora({ r: 3 }));
  assert.equal(loraParameters(qwen2TextShape(text), 3), lora.parameters().reduce((a, p) => a + p.numel(), 0));
});

test("parameter count: the formulas equal the real modules' numParameters for Llama, InternLM2, LLaVA and InternVL (tiny, with and without biases)", () => {
  const count = (json: ReturnType<typeof llavaToHfConfig>) => countParameters(shapeFromHfConfig(json, "tiny")).total;
  for (const over of [{}, { attentionBias: true, mlpBias: true }]) {
    const c = llamaPreset("tiny", over);
    assert.equal(count(llamaToHfConfig(c)), new LlamaForCausalLM(c).numParameters(), `llama ${JSON.stringify(over)}`);
  }
  for (const over of [{ bias: false }, { bias: true }]) {
    const c = internLM2Preset("tiny", over);
    assert.equal(count(internLM2ToHfConfig(c)), new InternLM2ForCausalLM(c).numParameters(), `internlm2 ${JSON.stringify(over)}`);
  }
  const llava = llavaPreset("tiny");
  assert.equal(count(llavaToHfConfig(llava)), new LlavaForConditionalGeneration(llava).numParameters(), "llava");
  const internvl = internVLPreset("tiny");
  assert.equal(count(internVLToHfConfig(internvl)), new InternVLChatModel(internvl).numParameters(), "internvl");
});

test("7B full fine-tune: plain DDP AdamW does not fit 80 GB; ZeRO-2 over 8 GPUs with checkpointing does", () => {
  const plain = estimateMemory(vl7b(), run);
  // 16 bytes per parameter of model states alone (ZeRO §3.1): 8.29 B × 16 = 133 GB.
  assert.equal(plain.weights + plain.gradients + plain.optimizer, 16 * 8_292_166_656);
  assert.equal(fits(plain, GiB80), false);
  const z2 = estimateMemory(vl7b(), { ...run, zero: 2, checkpointing: true });
  assert.equal(fits(z2, GiB80), true, `ZeRO-2 + checkpointing: ${(z2.total / 1e9).toFixed(1)} GB`);
  // Checkpointing alone keeps DDP's 133 GB of model states, so it does not fit either.
  assert.equal(fits(estimateMemory(vl7b(), { ...run, checkpointing: true }), GiB80), false);
});

test("the parts are consistent: ZeRO-1 shards the optimizer state by N, ZeRO-2 the gradients too; checkpointing changes activations only; LoRA trains only the adapters", () => {
  const s = vl7b();
  const plain = estimateMemory(s, run);
  const z1 = estimateMemory(s, { ...run, zero: 1 });
  const z2 = estimateMemory(s, { ...run, zero: 2 });
  assert.equal(z1.optimizer, plain.optimizer / 8);
  assert.equal(z1.gradients, plain.gradients);
  assert.equal(z2.gradients, plain.gradients / 8);
  assert.equal(z2.optimizer, z1.optimizer);
  assert.equal(plain.optimizer, 12 * 8_292_166_656, "fp32 master, m and v");
  const ck = estimateMemory(s, { ...run, checkpointing: true });
  assert.equal(ck.weights + ck.gradients + ck.optimizer, plain.weights + plain.gradients + plain.optimizer);
  assert.ok(ck.activations < plain.activations / 4, `${ck.activations} vs ${plain.activations}`);
  for (const r of [plain, z1, z2, ck]) assert.equal(r.total, r.weights + r.gradients + r.optimizer + r.activations);
  // ZeRO-2 reduces after backward: the full gradients once, at its end (the activations freed by then)
  assert.equal(z2.unreducedGradients, plain.gradients);
  const tiny = estimateMemory(s, { ...run, zero: 2, batchSize: 1, seqLen: 16, imagePatches: 0, checkpointing: true });
  assert.ok(tiny.activations < tiny.unreducedGradients - tiny.gradients, "a short sequence: the end of backward is the peak");
  assert.equal(tiny.total, tiny.weights + tiny.optimizer + tiny.unreducedGradients);
  // Text activations by hand: 28 layers × (8·3584 + 4·18944) elements × 2 bytes × 8192 tokens.
  const textOnly = estimateMemory({ ...s, vision: null }, { ...run, imagePatches: 0 });
  assert.equal(textOnly.activations, 8192 * (28 * (8 * 3584 + 4 * 18944) * 2 + 152064 * 6));
  const lora = estimateMemory(s, { ...run, loraRank: 16 });
  assert.equal(lora.trainable, loraParameters(s.text, 16));
  assert.equal(lora.optimizer, lora.trainable * 12);
  assert.ok(lora.weights + lora.gradients + lora.optimizer < (plain.weights + plain.gradients + plain.optimizer) / 7);
  const one = { ...run, worldSize: 1, loraRank: 16, checkpointing: true };
  assert.equal(fits(estimateMemory(s, one), GiB80), true, "LoRA with checkpointing on one 80 GB GPU (batch 4 × 2048) fits");
});

test("mindseye plan: reads a config.json, prints the table and the verdict; sizes parse", () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-plan-"));
  try {
    writeFileSync(join(dir, "config.json"), JSON.stringify(qwen2_5_vlToHfConfig(qwen2_5_vlPreset("qwen2.5-vl-7b"))));
    const flags = { config: dir, worldSize: "8", gpuMemory: "80GiB", zero: "2", loraR: "16", seqLen: "2048", imagePatches: "1024", dtype: "bfloat16", batchSize: "4" };
    const yes = planReport({ ...flags, checkpointing: true });
    assert.equal(yes.fits, true);
    assert.match(yes.lines[0]!, /8\.292 B parameters/);
    assert.equal(yes.lines.filter((l) => /^→\s+2\s+on\s/.test(l)).length, 1, "the asked-for row is marked");
    assert.equal(yes.lines.filter((l) => /^[ →]\s+[012]\s+(on|off)\s/.test(l)).length, 6, "every ZeRO stage with and without checkpointing");
    const no = planReport({ ...flags, zero: "0" });
    assert.equal(no.fits, false);
    assert.match(no.lines.at(-2)!, /does NOT fit/);
    writeFileSync(join(dir, "lm.json"), JSON.stringify(qwen2ToHfConfig(qwen2Preset("qwen2.5-7b"))));
    assert.match(planReport({ ...flags, config: join(dir, "lm.json") }).lines[0]!, /7\.616 B parameters \(text 7,615,616,512, vision 0\)/);
    assert.throws(() => planReport({ ...flags, zero: "3" }), /--zero must be 0, 1 or 2/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(parseBytes("80GiB"), 80 * 2 ** 30);
  assert.equal(parseBytes("141 GB"), 141e9);
  assert.throws(() => parseBytes("lots"), /cannot read "lots" as a size/);
});

test("the proposal's 7B/8B recipes (Qwen2.5-VL, LLaVA-1.5, InternVL2.5) fit 8 GPUs of 80 GB by their own settings (ZeRO-2, checkpointing), the models read from the hub cache", () => {
  const paper = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "configs", "paper"); // dist/train -> repo root
  const cache = mkdtempSync(join(tmpdir(), "mindseye-plan-hub-"));
  const saved = process.env.HF_HUB_CACHE;
  // the hub cache's layout: models--ORG--NAME/refs/main names the snapshot holding config.json
  const publish = (id: string, config: unknown) => {
    const repo = join(cache, `models--${id.replace("/", "--")}`), commit = "0".repeat(40);
    mkdirSync(join(repo, "refs"), { recursive: true });
    mkdirSync(join(repo, "snapshots", commit), { recursive: true });
    writeFileSync(join(repo, "refs", "main"), commit);
    writeFileSync(join(repo, "snapshots", commit, "config.json"), JSON.stringify(config));
  };
  try {
    publish("Qwen/Qwen2.5-VL-7B-Instruct", qwen2_5_vlToHfConfig(qwen2_5_vlPreset("qwen2.5-vl-7b")));
    publish("llava-hf/llava-1.5-7b-hf", llavaToHfConfig(llavaPreset("llava-1.5-7b")));
    publish("OpenGVLab/InternVL2_5-8B", internVLToHfConfig(internVLPreset("internvl2.5-8b")));
    process.env.HF_HUB_CACHE = cache;
    // the fine-tunes of the latent and text-control runs read those runs' outputs (not there before
    // they run): they must train exactly as the baseline's fine-tune, which is planned
    const recipe = (f: string) => parseYaml(readFileSync(join(paper, f), "utf8")) as { model?: string; base?: string; train: unknown };
    const qwen = readdirSync(join(paper, "qwen2_5_vl_7b")).filter((f) => f.endsWith(".yaml")).map((f) => `qwen2_5_vl_7b/${f}`);
    assert.equal(qwen.length, 5, "latent, text control and three fine-tunes");
    const fromHub = (f: string) => !(recipe(f).model ?? recipe(f).base ?? "").startsWith("runs/");
    for (const f of qwen.filter((x) => !fromHub(x))) assert.deepEqual(recipe(f).train, recipe("qwen2_5_vl_7b/finetune_baseline.yaml").train, f);
    const planned: [string, RegExp][] = [
      ...qwen.filter(fromHub).map((f): [string, RegExp] => [f, /8\.292 B parameters/]),
      ["llava_1_5_7b/finetune_baseline.yaml", /7\.063 B parameters/],
      ["internvl2_5_8b/finetune_baseline.yaml", /8\.075 B parameters/],
    ];
    assert.equal(planned.length, 5, "Qwen2.5-VL latent, text control and baseline fine-tune; LLaVA; InternVL");
    const flags = { worldSize: "8", gpuMemory: "80GiB", loraR: "16", seqLen: "2048", imagePatches: "1024", dtype: "bfloat16" };
    for (const [f, size] of planned) {
      const r = planReport({ ...flags, config: join(paper, f) });
      assert.match(r.lines[0]!, size, f);
      assert.equal(r.lines.filter((l) => /^→\s+2\s+on\s/.test(l)).length, 1, `${f}: the recipe's zero_stage 2 with checkpointing is the row asked for`);
      assert.equal(r.fits, true, `${f}: ${r.lines.join("\n")}`);
      assert.equal(planReport({ ...flags, config: join(paper, f), zero: "0", checkpointing: false }).fits, false, `${f}: plain DDP does not fit, so the recipe's settings matter`);
    }
  } finally {
    if (saved === undefined) delete process.env.HF_HUB_CACHE;
    else process.env.HF_HUB_CACHE = saved;
    rmSync(cache, { recursive: true, force: true });
  }
});
