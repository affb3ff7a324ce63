// The recipe's train settings that the trainer applies: gradient_checkpointing (same loss curve
// and weights as without) and lora (only the adapters train; PEFT's layout beside the model;
// merged weights = base + (α/r)·B·A), run as stages on a tiny world, in one process.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, io, type Tensor } from "@mindseye/torch";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { loadStageRecipe, runRecipe } from "./stages/index.js";
import { trainConfig } from "./stages/common.js";

const here = dirname(fileURLToPath(import.meta.url));
const configs = join(here, "..", "..", "..", "..", "configs"); // dist/train -> repo root
const TINY_ENCODER = ["encoder.hidden_size=32", "encoder.intermediate_size=64", "encoder.layers=2", "encoder.heads=2", "encoder.patch_size=16"];
const TINY_LM = ["lm.hidden_size=32", "lm.intermediate_size=64", "lm.layers=2", "lm.heads=2", "lm.kv_heads=1"];
const losses = (dir: string) => readFileSync(join(dir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { loss: number }).loss);

async function tinyWorld(root: string): Promise<string> {
  const world = join(root, "world");
  await generateWorld(resolveWorldOptions({ out: world, scenes: 48, seed: 3, size: 48, latents: 4, workers: 0, log: () => {} }));
  return world;
}

function maxDiff(a: Map<string, Tensor>, b: Map<string, Tensor>, keys = [...a.keys()]): number {
  return Math.max(...keys.map((k) => torch.scope(() => a.get(k)!.sub(b.get(k)!).abs().amax().item())));
}

test("train.gradient_checkpointing: a world-encoder and a vlm-base recipe train to the same loss curve and weights as without", { timeout: 120_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-ckpt-"));
  try {
    const world = await tinyWorld(root);
    const run = (stage: string, out: string, sets: string[]) => runRecipe(loadStageRecipe(join(configs, `${stage}.yaml`), [
      `world=${world}`, `out=${join(root, out)}`, "train.steps=4", "train.batch_size=8", "train.log_every=1", "train.warmup_steps=0", ...sets,
    ]), { quiet: true });
    const plain = await run("world-encoder", "enc", TINY_ENCODER);
    const ckpt = await run("world-encoder", "enc-ckpt", [...TINY_ENCODER, "train.gradient_checkpointing=true"]);
    const lmPlain = await run("vlm-base", "base", [`encoder=${plain}`, ...TINY_LM]);
    const lmCkpt = await run("vlm-base", "base-ckpt", [`encoder=${plain}`, ...TINY_LM, "train.gradient_checkpointing=true"]);
    for (const [a, b, what] of [[plain, ckpt, "enc"], [lmPlain, lmCkpt, "base"]] as const) {
      const la = losses(join(root, what)), lb = losses(join(root, `${what}-ckpt`));
      const lossErr = Math.max(...la.map((l, i) => Math.abs(l - lb[i]!)));
      const x = io.loadFile(join(a, "model.safetensors")), y = io.loadFile(join(b, "model.safetensors"));
      const weightErr = maxDiff(x, y);
      for (const v of [...x.values(), ...y.values()]) v.dispose();
      t.diagnostic(`${what}: max |Δloss| ${lossErr.toExponential(2)} over ${la.length} steps, max |Δweight| ${weightErr.toExponential(2)}`);
      assert.equal(la.length, 4);
      assert.ok(lossErr < 1e-6 && weightErr < 1e-6, `${what}: loss ${lossErr}, weights ${weightErr}`);
      const settings = JSON.parse(readFileSync(join(root, `${what}-ckpt`, "train_config.json"), "utf8")) as { gradientCheckpointing: boolean };
      assert.equal(settings.gradientCheckpointing, true);
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("train.lora on a vlm-base recipe: only adapters train, the adapter is saved in PEFT's layout, the model is base + (α/r)·B·A", { timeout: 120_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-lora-"));
  try {
    const world = await tinyWorld(root);
    const enc = await runRecipe(loadStageRecipe(join(configs, "world-encoder.yaml"), [`world=${world}`, `out=${join(root, "enc")}`, "train.steps=2", "train.batch_size=8", ...TINY_ENCODER]), { quiet: true });
    const common = [`world=${world}`, `encoder=${enc}`, "train.steps=3", "train.batch_size=8", "train.warmup_steps=0", ...TINY_LM];
    const recipe = (merge: boolean) => {
      const path = join(root, `lora-${merge}.yaml`);
      writeFileSync(path, readFileSync(join(configs, "vlm-base.yaml"), "utf8").replace(/^train:\n/m, `train:\n  lora:\n    r: 4\n    alpha: 8\n    target_modules: [q_proj, v_proj]\n    merge: ${merge}\n`));
      return path;
    };
    // merge: false saves the model with its base weights, untouched: the reference for the merge
    const base = await runRecipe(loadStageRecipe(recipe(false), [...common, `out=${join(root, "unmerged")}`]), { quiet: true });
    const tuned = await runRecipe(loadStageRecipe(recipe(true), [...common, `out=${join(root, "lora")}`]), { quiet: true });
    const adapterDir = join(root, "lora", "adapter");
    const config = JSON.parse(readFileSync(join(adapterDir, "adapter_config.json"), "utf8")) as { peft_type: string; r: number; lora_alpha: number; target_modules: string[] };
    assert.equal(config.peft_type, "LORA");
    assert.deepEqual([config.r, config.lora_alpha], [4, 8]);
    assert.ok(config.target_modules.every((n) => /^language_model\..*\.(q_proj|v_proj)$/.test(n)), `only the LM's (trainable) projections: ${config.target_modules.join(", ")}`);
    const adapter = io.loadFile(join(adapterDir, "adapter_model.safetensors"));
    assert.ok([...adapter.keys()].every((k) => /^base_model\.model\.language_model\..*\.(q_proj|v_proj)\.lora_[AB]\.weight$/.test(k)), [...adapter.keys()].join(", "));
    assert.equal(adapter.size, 2 * config.target_modules.length);
    const unmerged = io.loadFile(join(root, "unmerged", "adapter", "adapter_model.safetensors"));
    assert.equal(maxDiff(adapter, unmerged), 0, "the same training with merge: false trains the same adapter");

    const before = io.loadFile(join(base, "model.safetensors")), after = io.loadFile(join(tuned, "model.safetensors"));
    assert.deepEqual([...after.keys()].sort(), [...before.keys()].sort(), "the merged model has the base model's tensors, no lora_ ones");
    const targets = new Set(config.target_modules.map((n) => `${n}.weight`));
    assert.equal(maxDiff(before, after, [...before.keys()].filter((k) => !targets.has(k))), 0, "every other weight is unchanged");
    let changed = 0;
    for (const name of config.target_modules) {
      const A = adapter.get(`base_model.model.${name}.lora_A.weight`)!, B = adapter.get(`base_model.model.${name}.lora_B.weight`)!;
      const err = torch.scope(() => before.get(`${name}.weight`)!.add(B.matmul(A).mul(8 / 4)).sub(after.get(`${name}.weight`)!).abs().amax().item());
      assert.ok(err < 1e-6, `${name}: merged = base + (α/r)·B·A within ${err}`);
      if (torch.scope(() => B.abs().amax().item()) > 0) changed += 1;
    }
    assert.ok(changed > 0, "the adapters trained (B moved from zero)");
    assert.ok(existsSync(join(root, "lora", "checkpoints", "step-000003", "model.safetensors")));
    for (const m of [adapter, unmerged, before, after]) for (const v of m.values()) v.dispose();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("train.lora and gradient_checkpointing are validated with the recipe and left out when not given", () => {
  const r = loadStageRecipe(join(configs, "vlm-base.yaml"), ["train.lora.r=4"]);
  assert.deepEqual(r.train.lora, { r: 4, alpha: 8, dropout: 0, target_modules: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], merge: true });
  assert.ok(!("gradient_checkpointing" in loadStageRecipe(join(configs, "vlm-base.yaml")).train), "absent keys stay absent (fingerprints of older recipes do not change)");
  assert.throws(() => loadStageRecipe(join(configs, "vlm-base.yaml"), ["train.lora.rank=4"]), /train\.lora\.rank/);
  assert.throws(() => loadStageRecipe(join(configs, "vlm-base.yaml"), ["train.lora.dropout=1"]), /train\.lora\.dropout/);
  assert.throws(() => loadStageRecipe(join(configs, "vlm-base.yaml"), ["train.gradient_checkpointing=yes"]), /train\.gradient_checkpointing/);
  // modules_to_save reaches the trainer from any stage's recipe, and stays out when not given
  const saved = loadStageRecipe(join(configs, "vlm-base.yaml"), ["train.lora.r=4", "train.lora.modules_to_save=[multi_modal_projector]"]);
  assert.deepEqual(trainConfig(saved.out, saved.train, 0).lora?.modulesToSave, ["multi_modal_projector"]);
  assert.ok(!("modulesToSave" in trainConfig(r.out, r.train, 0).lora!));
  // keep_checkpoints: absent leaves the trainer's default (2); 0 keeps every checkpoint
  assert.ok(!("keepCheckpoints" in trainConfig(r.out, r.train, 0)));
  const keepAll = loadStageRecipe(join(configs, "vlm-base.yaml"), ["train.keep_checkpoints=0"]);
  assert.equal(trainConfig(keepAll.out, keepAll.train, 0).keepCheckpoints, Number.MAX_SAFE_INTEGER);
  assert.throws(() => loadStageRecipe(join(configs, "vlm-base.yaml"), ["train.keep_checkpoints=-1"]), /train\.keep_checkpoints/);
});
