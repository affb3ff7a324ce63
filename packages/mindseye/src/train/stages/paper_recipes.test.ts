// The proposal's study recipes (configs/paper/) cannot run here (7B models, real datasets): they
// are validated and planned without running — every stage recipe against its schema, small.yaml as
// the paper study `mindseye experiment` runs (experiment/paper.ts; its run end to end on tiny
// checkpoints is experiment/paper.test.ts): its steps in dependency order, each model a step reads
// made by an earlier step or a downloaded model, its evaluations and comparisons; full.yaml as the
// same study made of the stage recipe files, each stage on 8 ranks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../config/errors.js";
import { parsePool } from "../../objectives/index.js";
import { loadPaperStudy } from "../../experiment/paper.js";
import { loadStageRecipe, type Recipe } from "./index.js";

const here = dirname(fileURLToPath(import.meta.url));
const PAPER = join(here, "..", "..", "..", "..", "..", "configs", "paper"); // dist/train/stages -> repo root

/** Every stage recipe file under configs/paper/ (the studies, small.yaml and full.yaml, lie at its top). */
function stageFiles(): string[] {
  return readdirSync(PAPER, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".yaml") && f.includes("/")).sort();
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

test("small.yaml: the paper study validates; its steps run in dependency order on one GPU's models; every fine-tune is evaluated and compared", () => {
  const { study, steps, models } = loadPaperStudy(join(PAPER, "small.yaml"));
  assert.equal(study.out, "runs/paper-small");
  const made = new Set<string>();
  const downloaded = new Set<string>();
  for (const s of steps) {
    assert.ok(s.recipe.out.startsWith(`${study.out}/`), `${s.name} writes inside the study folder`);
    if (s.after !== null) assert.ok(made.has(s.reads) && s.reads === join(steps.find((t) => t.name === s.after)!.recipe.out, "model"), `${s.name} reads ${s.reads}, made by an earlier step`);
    else downloaded.add(s.reads);
    made.add(join(s.recipe.out, "model"));
  }
  assert.deepEqual([...downloaded].sort(), ["OpenGVLab/InternVL2_5-1B", "Qwen/Qwen2.5-VL-3B-Instruct", "llava-hf/llava-interleave-qwen-0.5b-hf"]); // Hugging Face ids, read from the hub cache
  assert.equal(steps.length, 7);
  const byName = new Map(steps.map((s) => [s.name, s]));
  assert.equal(byName.get("qwen2_5_vl_3b_finetune_latent")!.after, "qwen2_5_vl_3b_latent");
  assert.equal(byName.get("qwen2_5_vl_3b_finetune_text_control")!.after, "qwen2_5_vl_3b_text_control");
  // the arms and the other families share every fine-tuning setting but the model and folder
  const finetunes = steps.filter((s) => s.recipe.stage === "finetune");
  const shared = (s: (typeof steps)[number]) => ({ ...s.recipe, model: "", out: "", seeds: s.seeds });
  for (const s of finetunes) assert.deepEqual(shared(s), shared(finetunes[0]!), s.name);
  assert.deepEqual(finetunes[0]!.seeds, [0, 1, 2]);
  // the text control is the latent step with λ_sim = λ_align = 0
  const [latent, control] = [byName.get("qwen2_5_vl_3b_latent")!.recipe, byName.get("qwen2_5_vl_3b_text_control")!.recipe] as Recipe[];
  assert.ok(latent!.stage === "latent-pretrain" && control!.stage === "latent-pretrain");
  assert.deepEqual([control.loss.lambda_sim, control.loss.lambda_align], [0, 0]);
  assert.ok(latent.loss.lambda_sim > 0);
  assert.deepEqual({ ...control.train }, { ...latent.train }, "the same caption steps");
  // evaluated: every fine-tune and the zero-shot base; compared: latent against the baseline and the text control
  assert.deepEqual(models.map((m) => m.name), [...finetunes.map((s) => s.name), "qwen2_5_vl_3b_zero_shot"]);
  assert.deepEqual(study.eval.tasks.map((t) => t.task), ["gqa", "scienceqa_img", "blink_jigsaw"]);
  for (const b of ["qwen2_5_vl_3b_finetune_baseline", "qwen2_5_vl_3b_finetune_text_control"]) {
    assert.ok(study.compare.some((c) => c.a === "qwen2_5_vl_3b_finetune_latent" && c.b === b), b);
  }
  // a bad key is named, through --set as in the file
  assert.throws(() => loadPaperStudy(join(PAPER, "small.yaml"), ["steps.qwen2_5_vl_3b_latent.vision_layer=3"]), (e: unknown) => e instanceof ConfigError && /steps\.qwen2_5_vl_3b_latent: invalid configuration\n {2}vision_layer/.test(e.message));
});

test("full.yaml: the 7B study is the stage recipe files, in dependency order, each on 8 ranks, evaluated and compared as small.yaml", () => {
  const { study, steps, models } = loadPaperStudy(join(PAPER, "full.yaml"));
  assert.deepEqual(study.launch, { nproc_per_node: 8, master_port: 29500 });
  // every stage file is one step, exactly as `mindseye train --config <file>` reads it
  const files = stageFiles();
  assert.equal(steps.length, files.length);
  for (const f of files) {
    const s = steps.find((x) => x.recipe.out === loadStageRecipe(join(PAPER, f)).out);
    assert.ok(s, f);
    assert.deepEqual(s.recipe, loadStageRecipe(join(PAPER, f)), f);
    assert.ok(s.recipe.out.startsWith(`${study.out}/`), f);
  }
  const order = steps.map((s) => s.name);
  for (const arm of ["latent", "text_control"]) {
    assert.ok(order.indexOf(`qwen2_5_vl_7b_${arm}`) < order.indexOf(`qwen2_5_vl_7b_finetune_${arm}`), arm);
    assert.equal(steps.find((s) => s.name === `qwen2_5_vl_7b_finetune_${arm}`)!.after, `qwen2_5_vl_7b_${arm}`);
  }
  // the same evaluation and comparisons as the one-GPU study, on the 7B models
  const small = loadPaperStudy(join(PAPER, "small.yaml")).study;
  assert.deepEqual(study.eval, small.eval);
  const to7b = (name: string) => name.replace("qwen2_5_vl_3b", "qwen2_5_vl_7b").replace("internvl2_5_1b", "internvl2_5_8b").replace("llava_qwen2_0_5b", "llava_1_5_7b");
  assert.deepEqual(study.compare, small.compare.map((c) => ({ a: to7b(c.a), b: to7b(c.b) })));
  assert.deepEqual(models.filter((m) => m.kind === "zero-shot").map((m) => m.model), ["Qwen/Qwen2.5-VL-7B-Instruct"]);
  // a step's key changed through --set on the referenced file
  const changed = loadPaperStudy(join(PAPER, "full.yaml"), ["steps.qwen2_5_vl_7b_latent.train.steps=1000"]);
  assert.equal(changed.steps.find((s) => s.name === "qwen2_5_vl_7b_latent")!.recipe.train.steps, 1000);
});
