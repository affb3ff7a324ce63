// The proposal's study recipes (configs/paper/) cannot run here (7B models, real datasets): they
// are validated and planned without running — every stage recipe against its schema, small.yaml's
// steps in order (each model a step reads is made by an earlier step or is a downloaded model).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { ConfigError } from "../../config/errors.js";
import { validate } from "../../config/recipe.js";
import { parsePool } from "../../objectives/index.js";
import { getTask } from "../../eval/tasks.js";
import { loadStageRecipe, Recipe } from "./index.js";

const here = dirname(fileURLToPath(import.meta.url));
const PAPER = join(here, "..", "..", "..", "..", "..", "configs", "paper"); // dist/train/stages -> repo root

/** Every stage recipe file under configs/paper/ (small.yaml is a list of steps). */
function stageFiles(): string[] {
  return readdirSync(PAPER, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".yaml") && f !== "small.yaml").sort();
}

/** The model a step reads (finetune: model, latent-pretrain: base). */
const input = (r: Recipe): string => (r.stage === "finetune" ? r.model : r.stage === "latent-pretrain" ? r.base : "");

test("every paper stage recipe validates against its stage's schema", () => {
  const files = stageFiles();
  assert.deepEqual(files, [
    "internvl2_5_8b/finetune_baseline.yaml", "llava_1_5_7b/finetune_baseline.yaml",
    "qwen2_5_vl_7b/finetune_baseline.yaml", "qwen2_5_vl_7b/finetune_latent.yaml", "qwen2_5_vl_7b/finetune_text_control.yaml",
    "qwen2_5_vl_7b/latent.yaml", "qwen2_5_vl_7b/text_control.yaml",
  ]);
  const outs = new Set<string>();
  for (const f of files) {
    const r = loadStageRecipe(join(PAPER, f));
    if (r.stage === "latent-pretrain") {
      parsePool(r.pool);
      assert.ok(r.captions && r.captions.length >= 2, `${f}: COCO + CC3M`);
      assert.equal(r.world, undefined, `${f}: real data, not the world`);
    } else {
      assert.equal(r.stage, "finetune", f);
      if (r.stage !== "finetune") continue;
      assert.deepEqual(r.datasets?.map((d) => d.task), ["gqa", "scienceqa_img"], `${f}: GQA + ScienceQA (BLINK is zero-shot)`);
      // identical fine-tuning settings for every family and arm
      assert.deepEqual(r.train, loadStageRecipe(join(PAPER, "qwen2_5_vl_7b/finetune_baseline.yaml")).train, f);
    }
    outs.add(r.out);
  }
  assert.equal(outs.size, files.length, "every recipe writes its own folder");
  // the arms fine-tune what their pretraining wrote
  for (const arm of ["latent", "text_control"]) {
    const ft = loadStageRecipe(join(PAPER, `qwen2_5_vl_7b/finetune_${arm}.yaml`));
    const pre = loadStageRecipe(join(PAPER, `qwen2_5_vl_7b/${arm === "latent" ? "latent" : "text_control"}.yaml`));
    assert.equal(input(ft), join(pre.out, "model"));
  }
  // a wrong type is named by its dotted key
  assert.throws(() => loadStageRecipe(join(PAPER, "qwen2_5_vl_7b/latent.yaml"), ["vision_layer=3"]), (e: unknown) => e instanceof ConfigError && /vision_layer/.test(e.message));
});

test("small.yaml: its steps validate and plan in order on one GPU's models, and its eval tasks exist", () => {
  const doc = parseYaml(readFileSync(join(PAPER, "small.yaml"), "utf8"), { merge: true }) as { steps: Record<string, unknown>; eval: { tasks: string[] } };
  const made = new Set<string>();
  const models = new Set<string>();
  for (const [name, step] of Object.entries(doc.steps)) {
    const r = validate(Recipe, step, `small.yaml steps.${name}`);
    const from = input(r);
    if (from.startsWith("runs/")) assert.ok(made.has(from), `${name} reads ${from}, which no earlier step makes`);
    else models.add(from);
    made.add(join(r.out, "model"));
  }
  assert.deepEqual([...models].sort(), ["OpenGVLab/InternVL2_5-1B", "Qwen/Qwen2.5-VL-3B-Instruct", "llava-hf/llava-interleave-qwen-0.5b-hf"]); // Hugging Face ids, read from the hub cache
  assert.equal(Object.keys(doc.steps).length, 7);
  for (const t of doc.eval.tasks) assert.equal(getTask(t).name, t);
});
