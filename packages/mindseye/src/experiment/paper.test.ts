// The paper study (paper.ts) end to end on a tiny random Qwen2.5-VL in its published layout and
// the fixtures in the real formats (COCO captions, GQA, ScienceQA, BLINK): a recipe shaped as
// configs/paper/small.yaml, its steps written out of order, runs latent-pretrain (latent, text
// control) before the fine-tunes that read them (baseline, text control, latent; two seeds each),
// evaluates every fine-tuned model and a zero-shot one on three tasks, and writes results.json with
// the cells and paired comparisons the predictions give; a rerun runs nothing, a changed step is
// refused by name, and a bad recipe is refused before anything runs. Under `launch:` a stage runs
// as `mindseye launch -- train` on two real ranks.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { freePort } from "@mindseye/torch/testing";
import { ConfigError } from "../config/errors.js";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { writeTinyQwen } from "../models/qwen2_5_vl_test_helpers.js";
import { loadPaperStudy, runPaperStudy, isPaperStudy } from "./paper.js";
import { stepMarkerPath } from "./steps.js";
import { registerExperimentCommand } from "../cli/experiment.js";
import type { PaperCell, PaperComparison } from "./paper_report.js";

const here = dirname(fileURLToPath(import.meta.url));
const X = join(here, "..", "..", "test-fixtures", "formats"); // dist/experiment -> package root
let tmp = "", qwen = "", sqa = "", recipePath = "", out = "";

const ARMS = ["finetune_latent", "finetune_text_control", "finetune_baseline"]; // as written
const TASKS = ["gqa/testdev", "scienceqa_img/test", "blink_jigsaw/val"];

/** A recipe shaped as configs/paper/small.yaml, the fine-tunes written before the steps they read. */
const recipe = () => `
name: paper-tiny
out: ${out}
eval:
  harness: lmms-eval
  batch_size: 2
  max_new_tokens: 3
  max_error_rate: 0.5   # the fixtures hold malformed records on purpose
  tasks:
    - { task: gqa, data: ${join(X, "gqa")} }
    - { task: scienceqa_img, data: ${sqa} }
    - { task: blink_jigsaw, data: ${join(X, "blink")} }
zero_shot:
  - { name: qwen_zero_shot, model: ${qwen} }
compare:
  - { a: finetune_latent, b: finetune_baseline }
  - { a: finetune_latent, b: finetune_text_control }
  - { a: finetune_baseline, b: qwen_zero_shot }
steps:
  finetune_latent: &finetune
    stage: finetune
    model: ${out}/qwen/latent/model
    datasets:
      - { task: gqa, data: ${join(X, "gqa")}, split: testdev }
      - { task: scienceqa_img, data: ${sqa}, split: train }
    out: ${out}/qwen/finetune_latent
    seeds: [0, 1]
    task_sampling: proportional
    max_error_rate: 0.5
    train: { steps: 2, batch_size: 2, grad_accum: 1, warmup_steps: 1, log_every: 1, checkpoint_every: 100 }
  finetune_text_control:
    <<: *finetune
    model: ${out}/qwen/text_control/model
    out: ${out}/qwen/finetune_text_control
  finetune_baseline:
    <<: *finetune
    model: ${qwen}
    out: ${out}/qwen/finetune_baseline
  latent:
    stage: latent-pretrain
    base: ${qwen}
    captions: [{ format: coco, annotations: ${join(X, "coco/annotations/captions_val2017.json")}, images: ${join(X, "coco/val2017")} }]
    out: ${out}/qwen/latent
    pool: grid:4
    vision_layer: merger
    max_error_rate: 0.5
    loss: { lambda_nt: 1.0, lambda_sim: 1.0, lambda_align: 0.1, alignment: infonce, temperature: 0.07 }
    train: { steps: 2, batch_size: 2, grad_accum: 1, warmup_steps: 1, log_every: 1, checkpoint_every: 100 }
  text_control:
    stage: latent-pretrain
    base: ${qwen}
    captions: [{ format: coco, annotations: ${join(X, "coco/annotations/captions_val2017.json")}, images: ${join(X, "coco/val2017")} }]
    out: ${out}/qwen/text_control
    pool: grid:4
    max_error_rate: 0.5
    loss: { lambda_nt: 1.0, lambda_sim: 0.0, lambda_align: 0.0 }
    train: { steps: 2, batch_size: 2, grad_accum: 1, warmup_steps: 1, log_every: 1, checkpoint_every: 100 }
`;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mindseye-paper-"));
  const world = join(tmp, "world"); // only for its tokenizer
  await generateWorld(resolveWorldOptions({ out: world, scenes: 10, seed: 2, size: 32, latents: 4, workers: 0, log: () => {} }));
  qwen = join(tmp, "Qwen2.5-VL-tiny");
  writeTinyQwen(qwen, world);
  // ScienceQA as its release lays it out: problems.json and pid_splits.json beside images/.
  sqa = join(tmp, "scienceqa");
  mkdirSync(sqa);
  for (const f of ["problems.json", "pid_splits.json"]) symlinkSync(join(X, "scienceqa/data/scienceqa", f), join(sqa, f));
  symlinkSync(join(X, "scienceqa/images"), join(sqa, "images"));
  out = join(tmp, "study");
  recipePath = join(tmp, "paper-tiny.yaml");
  writeFileSync(recipePath, recipe());
});
after(() => rmSync(tmp, { recursive: true, force: true }));

interface Prediction { id: string; correct: boolean }
const predictions = (model: string, seed: string, task: string): Prediction[] =>
  readFileSync(join(out, "eval", model, seed, `${task.replace("/", "-")}`, "predictions.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Prediction);

test("the paper study runs its steps in dependency order, evaluates every model, reports cells and paired comparisons; a rerun runs nothing; a changed step is refused", async () => {
  assert.ok(isPaperStudy(recipePath));
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  const study = loadPaperStudy(recipePath);
  assert.deepEqual(study.steps.map((s) => s.name), ["finetune_baseline", "latent", "finetune_latent", "text_control", "finetune_text_control"], "a step runs after the step it reads");
  await runPaperStudy(study, { log });

  // Each stage ran once per seed, in that order, and each fine-tune read what its step names.
  const ran = lines.filter((l) => l.startsWith("[run ]") && !l.includes("eval ")).map((l) => l.slice(7, -2));
  assert.deepEqual(ran, [
    "finetune finetune_baseline, seed 0", "finetune finetune_baseline, seed 1", "latent-pretrain latent", "finetune finetune_latent, seed 0",
    "finetune finetune_latent, seed 1", "latent-pretrain text_control", "finetune finetune_text_control, seed 0", "finetune finetune_text_control, seed 1",
  ]);
  const resolved = (dir: string) => JSON.parse(readFileSync(join(dir, "recipe.resolved.json"), "utf8")) as { model: string; seed: number };
  const latentSeed1 = resolved(join(out, "qwen/finetune_latent/seed-1"));
  assert.deepEqual([latentSeed1.model, latentSeed1.seed], [`${out}/qwen/latent/model`, 1]);
  assert.equal(resolved(join(out, "qwen/finetune_text_control/seed-0")).model, `${out}/qwen/text_control/model`);
  assert.ok(existsSync(join(out, "qwen/latent/model/config.json")) && existsSync(join(out, "qwen/finetune_baseline/seed-0/model/DONE")));
  assert.equal(lines.filter((l) => l.startsWith("[run ] eval ")).length, (3 * 2 + 1) * 3, "3 fine-tuned models × 2 seeds and 1 zero-shot model, on 3 tasks");

  // results.json: one cell per model × task, its mean the predictions' accuracy over both seeds.
  const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { cells: PaperCell[]; comparisons: PaperComparison[]; models: { name: string; kind: string }[]; tasks: { task: string; split: string; data: string }[] };
  assert.deepEqual(results.tasks.map((t) => `${t.task}/${t.split}`), TASKS);
  assert.equal(results.tasks[1]!.data, sqa);
  assert.deepEqual(results.models.map((m) => [m.name, m.kind]), [...ARMS.map((a) => [a, "finetune"]), ["qwen_zero_shot", "zero-shot"]]);
  assert.equal(results.cells.length, 4 * 3);
  for (const task of TASKS) {
    for (const model of ARMS) {
      const cell = results.cells.find((c) => c.model === model && c.task === task)!;
      const seeds = ["seed-0", "seed-1"].map((s) => predictions(model, s, task));
      const all = seeds.flat();
      assert.deepEqual(cell.seeds, [0, 1]);
      assert.ok(all.length >= 4, `${model} ${task}: ${all.length} answers`);
      assert.equal(cell.accuracy.n, all.length);
      assert.ok(Math.abs(cell.accuracy.mean - all.filter((p) => p.correct).length / all.length) < 1e-12, `${model} ${task}`);
      assert.ok(cell.accuracy.low <= cell.accuracy.mean && cell.accuracy.mean <= cell.accuracy.high);
      assert.deepEqual(cell.perSeed, seeds.map((s) => s.filter((p) => p.correct).length / s.length));
    }
    const zs = results.cells.find((c) => c.model === "qwen_zero_shot" && c.task === task)!;
    assert.deepEqual(zs.seeds, [0]);
    // Comparisons: paired by seed and question, the mean difference of the outcomes.
    for (const [a, b] of [["finetune_latent", "finetune_baseline"], ["finetune_latent", "finetune_text_control"], ["finetune_baseline", "qwen_zero_shot"]] as const) {
      const cmp = results.comparisons.find((c) => c.a === a && c.b === b && c.task === task)!;
      assert.ok(cmp, `${a} − ${b} on ${task}`);
      assert.equal(cmp.perSeed.length, 2);
      const perSeed = ["seed-0", "seed-1"].map((s) => {
        const pa = predictions(a, s, task), pb = b === "qwen_zero_shot" ? predictions(b, "", task) : predictions(b, s, task);
        const right = new Map(pb.map((p) => [p.id, p.correct]));
        return pa.reduce((sum, p) => sum + Number(p.correct) - Number(right.get(p.id)), 0) / pa.length;
      });
      assert.deepEqual(cmp.perSeed.map((x) => x.toFixed(12)), perSeed.map((x) => x.toFixed(12)));
      assert.ok(Math.abs(cmp.difference.mean - (perSeed[0]! + perSeed[1]!) / 2) < 1e-12);
      assert.ok(cmp.difference.low <= cmp.difference.mean && cmp.difference.mean <= cmp.difference.high);
    }
  }
  const md = readFileSync(join(out, "results.md"), "utf8");
  assert.match(md, /\| finetune_latent \| fine-tuned from .*\/qwen\/latent\/model, seeds 0, 1 \| \d+\.\d \[/);
  assert.match(md, /\| finetune_latent − finetune_text_control \| gqa\/testdev \| [+-]\d+\.\d \[/);

  // A rerun skips every step; the dry run through the command line says all are done.
  lines.length = 0;
  await runPaperStudy(loadPaperStudy(recipePath), { log });
  assert.equal(lines.filter((l) => l.startsWith("[run ]")).length, 0, lines.join("\n"));
  assert.equal(lines.filter((l) => l.startsWith("[skip]")).length, 8 + 21);
  const printed: string[] = [];
  const consoleLog = console.log;
  console.log = (...args: unknown[]) => { printed.push(args.join(" ")); };
  try {
    const program = new Command().exitOverride();
    registerExperimentCommand(program);
    await program.parseAsync(["node", "mindseye", "experiment", "--config", recipePath, "--dry-run"]);
  } finally {
    console.log = consoleLog;
  }
  const plan = printed.join("\n");
  assert.match(plan, /: 29 steps; per kind/);
  for (const [kind, n] of [["latent-pretrain", 2], ["finetune", 6], ["eval", 21]] as const) assert.match(plan, new RegExp(`\\n  ${kind} +0 / 0 / ${n}(\\n|$)`), plan);

  // A changed step is refused by name, before it or anything after it is touched.
  const marker = readFileSync(stepMarkerPath(out, join(out, "qwen/finetune_latent/seed-0")), "utf8");
  await assert.rejects(runPaperStudy(loadPaperStudy(recipePath, ["steps.finetune_latent.train.lr=0.5"]), { log }),
    (e: unknown) => e instanceof ConfigError && /finetune finetune_latent, seed 0: .*was made with other settings \(changed: train\.lr\).*--force.*--set steps\.<name>\.out=/s.test(e.message));
  assert.equal(readFileSync(stepMarkerPath(out, join(out, "qwen/finetune_latent/seed-0")), "utf8"), marker);
  // Missing data is named before any step runs.
  await assert.rejects(runPaperStudy(loadPaperStudy(recipePath, [`eval.tasks=[{task: gqa, data: ${tmp}/no-gqa}]`, `steps.latent.captions=[{format: coco, annotations: ${join(X, "coco/annotations/captions_val2017.json")}, images: ${tmp}/no-coco}]`]), { log }),
    (e: unknown) => e instanceof ConfigError && e.message.includes(`eval.tasks.0.data: ${tmp}/no-gqa does not exist`) && e.message.includes(`steps.latent.captions.0.images: ${tmp}/no-coco does not exist`));
  // A changed upstream step is refused when its turn comes, before the fine-tunes that read it.
  await assert.rejects(runPaperStudy(loadPaperStudy(recipePath, ["steps.latent.loss.lambda_align=0.5"]), { log }), /latent-pretrain latent: .*changed: loss\.lambda_align/s);
});

test("a bad paper recipe is refused before anything runs, naming the key", () => {
  const bad = (overrides: string[], what: RegExp) => assert.throws(() => loadPaperStudy(recipePath, overrides), (e: unknown) => e instanceof ConfigError && what.test(e.message), String(what));
  bad(["steps.latent.train.stepz=3"], /steps\.latent: invalid configuration\n {2}unknown key train\.stepz \(did you mean train\.steps\?\)/);
  bad(["steps.latent.stage=vlm-base"], /steps\.latent\.stage: must be one of latent-pretrain, finetune/);
  bad(["steps.finetune_latent.seed=3"], /steps\.finetune_latent: give seed or seeds, not both/);
  bad(["eval.tasks=[{task: gqa_testdev, data: x}]"], /eval\.tasks\.0: unknown evaluation task "gqa_testdev"/);
  bad(["eval.harnes=vlmevalkit"], /unknown key eval\.harnes \(did you mean eval\.harness\?\)/);
  bad(["eval.harness=vlmevalkit"], /steps\.finetune_latent\.harness: lmms-eval prompts are trained, but eval\.harness is vlmevalkit/);
  bad(["compare=[{a: finetune_latent, b: latent}]"], /compare\.0\.b: "latent" is not an evaluated model \(steps\.latent is a latent-pretrain step/);
  bad(["steps.latent.out=/elsewhere/latent"], /steps\.latent\.out: \/elsewhere\/latent does not lie inside the study folder/);
  bad([`steps.latent.base=${out}/qwen/finetune_latent/model`], /steps\.latent\.base: .* is the output of steps\.finetune_latent, which runs several seeds/);
  bad([`steps.latent.base=${out}/qwen/text_control/model`, `steps.text_control.base=${out}/qwen/latent`], /the steps read each other in a cycle \(steps\.latent reads steps\.text_control; steps\.text_control reads steps\.latent/);
  bad(["steps.finetune_baseline.seeds=[0, 2]"], /compare\.0: finetune_latent \(seeds \[0,1\]\) and finetune_baseline \(seeds \[0,2\]\) are fine-tuned with other seeds/);
});

test("launch: each stage runs as `mindseye launch --nproc-per-node 2 -- train` from its recipe file; the ranks are part of its settings", async () => {
  const dir = join(tmp, "launched");
  const path = join(tmp, "launched.yaml");
  const study = (launch: string) => `
name: launched
out: ${dir}
${launch}
eval: { batch_size: 2, max_new_tokens: 2, max_error_rate: 0.5, tasks: [{ task: gqa, data: ${join(X, "gqa")} }] }
steps:
  finetune: { recipe: ${join(tmp, "finetune.yaml")}, set: { out: ${dir}/finetune, train.batch_size: 1 } }
`;
  // A stage recipe file as configs/paper/*/ holds them, given by reference.
  writeFileSync(join(tmp, "finetune.yaml"), `stage: finetune
model: ${qwen}
datasets: [{ task: gqa, data: ${join(X, "gqa")}, split: testdev }]
out: elsewhere
max_error_rate: 0.5
train: { steps: 2, batch_size: 4, warmup_steps: 1, log_every: 1, checkpoint_every: 100 }
`);
  writeFileSync(path, study(`launch: { nproc_per_node: 2, master_port: ${await freePort()} }`));
  const lines: string[] = [];
  const loaded = loadPaperStudy(path);
  assert.deepEqual([loaded.steps[0]!.recipe.out, loaded.steps[0]!.recipe.train.batch_size], [`${dir}/finetune`, 1], "set applied to the file's recipe");
  await runPaperStudy(loaded, { log: (l) => lines.push(l) });
  const cfg = JSON.parse(readFileSync(join(dir, "finetune", "train_config.json"), "utf8")) as { worldSize: number; batchSize: number };
  assert.deepEqual([cfg.worldSize, cfg.batchSize], [2, 1]);
  assert.ok(existsSync(join(dir, "finetune", "model", "DONE")));
  const written = JSON.parse(readFileSync(stepMarkerPath(dir, join(dir, "finetune")).replace(/\.json$/, ".recipe.json"), "utf8")) as { out: string };
  assert.equal(written.out, `${dir}/finetune`);
  const results = JSON.parse(readFileSync(join(dir, "results.json"), "utf8")) as { cells: PaperCell[] };
  assert.deepEqual(results.cells.map((c) => [c.model, c.task, c.seeds]), [["finetune", "gqa/testdev", [0]]]);
  // Run in this process instead: one rank, another global batch — refused as changed.
  writeFileSync(path, study(""));
  await assert.rejects(runPaperStudy(loadPaperStudy(path), { log: () => {} }), /finetune finetune: .*changed: ranks/s);
  // A reference with keys beside set is refused.
  writeFileSync(path, study("").replace("set: {", "train: {steps: 1}, set: {"));
  assert.throws(() => loadPaperStudy(path), /steps\.finetune: a step given by recipe takes only set beside it/);
});
