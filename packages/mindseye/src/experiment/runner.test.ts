// The study runner on a tiny study: finished steps are skipped, a changed setting is never
// reused silently (the study stops and names the step; --force redoes it and what follows), and
// a world whose generation was cut short is regenerated; the shipped study configs plan their grids.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { StudyConfig, runStudy, stepMarkerPath, checkStudy, loadStudy, planStudy, withBaseReplay } from "./runner.js";
import { writeTinyLlava } from "../models/llava_test_helpers.js";

const configs = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "configs"); // dist/experiment -> repo root

const tinyStudy = (out: string, scenes = 30) => StudyConfig.parse({
  name: "tiny", out, world: { scenes, size: 32, latents: 4 },
  world_encoder: { encoder: { hidden_size: 32, intermediate_size: 64, layers: 1, heads: 2, patch_size: 16 }, train: { steps: 2, batch_size: 8 } },
  vlm_base: { lm: { hidden_size: 32, intermediate_size: 64, layers: 1, heads: 2, kv_heads: 1 }, train: { steps: 2, batch_size: 8 } },
  latent_pretrain: { pool: "grid:4", train: { steps: 2, batch_size: 8 } },
  finetune: { train: { steps: 2, batch_size: 8 } },
  fractions: [1], seeds: [0],
  eval: { tasks: ["world_gqa"], splits: ["test"], limit: 4, batch_size: 4 },
});

test("a study skips finished steps, refuses changed ones without --force, and redoes them with it", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-study-"));
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  try {
    const out = join(root, "study");
    await runStudy(tinyStudy(out), { log });
    assert.ok(existsSync(join(out, "results.json")));
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as {
      controls: { kind: string }[]; baselines: Record<string, unknown>; machines: { machines: { steps: number }[]; unrecorded: number }; captionLoss: Record<"control" | "latent", { mean: number; steps: number[]; values: number[] }> & { difference: { mean: number; n: number } };
    };
    assert.ok(results.controls.some((c) => c.kind === "blind"), "the blind control ran");
    const steps = readdirSync(join(out, "steps")).filter((f) => f.endsWith(".json")).length;
    assert.deepEqual(results.machines.machines.map((m) => m.steps), [steps], "every step recorded this machine");
    assert.equal(results.machines.unrecorded, 0);
    assert.ok(results.baselines["world_gqa/test"]);
    for (const arm of ["control", "latent"] as const) {
      const c = results.captionLoss[arm];
      assert.ok(Number.isFinite(c.mean) && c.mean > 0 && c.steps.at(-1) === 2 && c.values.length === c.steps.length, `${arm}: the caption loss of its last logged steps, ${JSON.stringify(c)}`);
    }
    const { control, latent, difference } = results.captionLoss;
    assert.equal(difference.n, control.steps.length, "latent − control is paired over the steps both arms logged");
    assert.ok(Math.abs(difference.mean - (latent.mean - control.mean)) < 1e-9, JSON.stringify(difference));
    assert.match(readFileSync(join(out, "results.md"), "utf8"), /Caption next-token loss at the end of latent pretraining \(mean of the last \d logged training steps\): text control \d\.\d{3} .*latent − control [+-]\d\.\d{3}/);

    const seconds = () => (JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { seconds: number }).seconds;
    const ranFor = seconds();
    lines.length = 0;
    await runStudy(tinyStudy(out), { log });
    assert.ok(lines.filter((l) => l.startsWith("[run ]")).length === 0, `nothing reruns: ${lines.join("\n")}`);
    assert.equal(seconds(), ranFor, "a rerun that only rewrites the report keeps the study's wall time");

    // A changed world: stopped at the world step, named, with the way out.
    await assert.rejects(runStudy(tinyStudy(out, 40), { log }), /world: 40 scenes: .*world was made with other settings \(changed: scenes\).*--force/s);
    const scenes = () => (JSON.parse(readFileSync(join(out, "world", "manifest.json"), "utf8")) as { scenes: number }).scenes;
    assert.equal(scenes(), 30, "nothing was touched");
    const resolvedScenes = () => (JSON.parse(readFileSync(join(out, "study.resolved.json"), "utf8")) as { world: { scenes: number } }).world.scenes;
    assert.equal(resolvedScenes(), 30, "the recorded settings still describe the results");

    // --force redoes the world and, because it changed, every step after it.
    lines.length = 0;
    await runStudy(tinyStudy(out, 40), { log, force: true });
    assert.equal(scenes(), 40);
    assert.ok(lines.some((l) => l.startsWith("[redo] stage 4: finetune")), "downstream steps are redone");
    assert.equal(resolvedScenes(), 40);
    assert.ok(!lines.some((l) => l.startsWith("[skip]")), "no stale step is reused");

    // A world generation cut short (marker says unfinished, files half written) is regenerated.
    const marker = stepMarkerPath(out, join(out, "world"));
    writeFileSync(marker, JSON.stringify({ ...JSON.parse(readFileSync(marker, "utf8")) as object, complete: false }));
    rmSync(join(out, "world", "manifest.json"));
    lines.length = 0;
    await runStudy(tinyStudy(out, 40), { log, force: true });
    assert.equal(scenes(), 40);
    assert.ok(lines.some((l) => l.startsWith("[run ] world")));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("replicate: each seed trains its own base and caption stages, the study seed's stay where they were, and switching is never silent", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-study-replicate-"));
  const lines: string[] = [];
  try {
    const out = join(root, "study");
    const study = (replicate: string, seeds = [0, 1]) => StudyConfig.parse({ ...tinyStudy(out), seeds, replicate });
    await runStudy(study("finetune", [0]), { log: () => {} });
    // Seed 0's stages are the study's: replicating per seed only adds seed 1's.
    const plan = await planStudy(study("base"));
    const status = (what: RegExp) => plan.filter((p) => what.test(p.what)).map((p) => p.status);
    assert.deepEqual(status(/^stage 2: vlm-base/), ["done", "run"]);
    assert.deepEqual(status(/^stage 3: latent-pretrain/), ["done", "done", "run", "run"]);
    assert.deepEqual(status(/^stage 4: finetune .*seed 0$/), ["done", "done", "done"]);

    await runStudy(study("base"), { log: (l) => lines.push(l) });
    const startOf = (arm: string, seed: number) =>
      (JSON.parse(readFileSync(join(out, "finetune", arm, "fraction-1", `seed-${seed}`, "recipe.resolved.json"), "utf8")) as { model: string }).model;
    assert.equal(startOf("baseline", 0), join(out, "stages", "vlm-base", "model"));
    assert.equal(startOf("baseline", 1), join(out, "stages", "seed-1", "vlm-base", "model"));
    assert.equal(startOf("latent", 1), join(out, "stages", "seed-1", "pretrain-latent", "model"));
    assert.equal(startOf("control", 1), join(out, "stages", "seed-1", "pretrain-control", "model"));
    const base1 = JSON.parse(readFileSync(join(out, "stages", "seed-1", "pretrain-latent", "recipe.resolved.json"), "utf8")) as { base: string; seed: number; targets: string };
    assert.deepEqual([base1.base, base1.seed, base1.targets], [join(out, "stages", "seed-1", "vlm-base", "model"), 1, join(out, "stages", "targets", "grid4")],
      "seed 1's latent arm starts from seed 1's base and reads the shared target cache");
    type Stages = { seed: number; retrieval?: { medianRank: number; galleryImages: number }; captionLoss?: { latent: { mean: number } } };
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { replicate: string; cells: { perSeed: number[] }[]; retrieval: unknown; stagesPerSeed: Stages[] };
    assert.equal(results.replicate, "base");
    assert.ok(results.cells.every((c) => c.perSeed.length === 2));
    // Each seed's latent arm is retrieved and its caption losses read: seed 0's are the study's own.
    assert.deepEqual(results.stagesPerSeed.map((s) => s.seed), [0, 1]);
    assert.deepEqual(results.stagesPerSeed[0]!.retrieval, results.retrieval);
    const seed1 = results.stagesPerSeed[1]!;
    assert.ok(seed1.retrieval && seed1.retrieval.medianRank >= 1 && seed1.retrieval.medianRank <= seed1.retrieval.galleryImages && Number.isFinite(seed1.captionLoss?.latent.mean));
    assert.ok(existsSync(join(out, "eval", "retrieval-test-seed-1", "results.json")));
    const md = readFileSync(join(out, "results.md"), "utf8");
    assert.match(md, /Each seed trained its own base VLM/);
    assert.match(md, /\| seed \| recall@1 .*\| median rank \| caption loss: latent − control \|\n\|---.*\n\| 0 \| .*\n\| 1 \| /);

    // Back to one base: seed 1's caption stages and fine-tunes were made from its own base.
    await assert.rejects(runStudy(study("pretrain"), { log: () => {} }), /latent-pretrain, text control .*seed 1: .*was made from earlier results of the steps it reads.*--force/s);
    const plan2 = await planStudy(study("pretrain"));
    assert.ok(!plan2.some((p) => p.out.endsWith(join("seed-1", "vlm-base"))), "no base of seed 1 without replicate: base");
    assert.deepEqual(plan2.filter((p) => /seed 0$/.test(p.what) || p.kind === "vlm-base").map((p) => p.status).filter((x) => x !== "done"), []);
    // An ablation cell is pre-trained per seed too, from that seed's base, and fine-tuned from its own stage.
    const withCell = StudyConfig.parse({ ...tinyStudy(out), seeds: [0, 1], replicate: "base", ablations: { variants: [{ name: "v", set: { "loss.lambda_sim": 0.5 } }] } });
    assert.deepEqual((await planStudy(withCell)).filter((p) => /ablation v/.test(p.what)).map((p) => [p.what, p.out.slice(out.length)]), [
      ["stage 3: latent-pretrain, ablation v", join("/stages", "ablations", "v")],
      ["eval: world_retrieval of ablation v (test captions)", join("/eval", "v", "retrieval-test")],
      ["stage 3: latent-pretrain, ablation v, seed 1", join("/stages", "seed-1", "ablations", "v")],
    ]);
    assert.throws(() => checkStudy(StudyConfig.parse({ ...tinyStudy(out), seeds: [1, 2], replicate: "pretrain" })), /replicate: pretrain: the study's seed 0 is not among seeds \[1,2\]/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("finetune.instruct and benchmark_world: an instruction phase per arm × seed on the study's world, the start of its fine-tunes at every fraction on the benchmark's; never reused when changed", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-study-instruct-"));
  try {
    const out = join(root, "study");
    const study = (steps: number) => StudyConfig.parse({
      ...tinyStudy(out), fractions: [0.5, 1], benchmark_world: { scenes: 40, seed: 1 },
      finetune: { tasks: ["scienceqa"], instruct: { tasks: ["gqa"], train: { steps, batch_size: 8 } }, train: { steps: 2, batch_size: 8 } },
      eval: { tasks: ["world_sqa"], splits: ["test"], limit: 4, batch_size: 4 },
    });
    const plan = await planStudy(study(2));
    assert.deepEqual(plan.filter((p) => /instruction phase/.test(p.what)).map((p) => p.out.slice(out.length)),
      ["baseline", "control", "latent"].map((arm) => join("/finetune", arm, "instruct", "seed-0")));
    assert.equal(plan.filter((p) => p.kind === "finetune").length, 3 + 6);
    assert.deepEqual(plan.filter((p) => p.kind === "world").map((p) => p.out), [join(out, "world"), join(out, "benchmark-world")]);

    await runStudy(study(2), { log: () => {} });
    const resolved = (...path: string[]) => JSON.parse(readFileSync(join(out, "finetune", ...path, "recipe.resolved.json"), "utf8")) as { model: string; world: string; tasks: string[]; fraction: number; seed: number; harness: string };
    const phase = resolved("latent", "instruct", "seed-0");
    assert.deepEqual([phase.model, phase.world, phase.tasks, phase.fraction, phase.seed, phase.harness], [join(out, "stages", "pretrain-latent", "model"), join(out, "world"), ["gqa"], 1, 0, "lmms-eval"]);
    for (const fraction of [0.5, 1]) {
      const ft = resolved("latent", `fraction-${fraction}`, "seed-0");
      assert.deepEqual([ft.model, ft.world, ft.tasks], [join(out, "finetune", "latent", "instruct", "seed-0", "model"), join(out, "benchmark-world"), ["scienceqa"]], `fraction ${fraction} starts from the instruction phase`);
    }
    assert.equal(resolved("baseline", "instruct", "seed-0").model, join(out, "stages", "vlm-base", "model"));
    const manifest = JSON.parse(readFileSync(join(out, "benchmark-world", "manifest.json"), "utf8")) as { scenes: number; seed: number; size: number };
    assert.deepEqual([manifest.scenes, manifest.seed, manifest.size], [40, 1, 32], "the study world's size, the benchmark's scenes and seed");
    for (const folder of ["eval", "eval-blind"]) {
      const scored = JSON.parse(readFileSync(join(out, folder, "latent", "fraction-1", "seed-0", "world_sqa-test", "results.json"), "utf8")) as { data: string };
      assert.equal(scored.data, resolve(out, "benchmark-world"), `${folder}: scored on the benchmark world`);
    }
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { instruct: unknown; benchmarkWorld: unknown };
    assert.deepEqual([results.instruct, results.benchmarkWorld], [{ tasks: ["gqa"], steps: 2 }, { scenes: 40, seed: 1 }]);
    const md = readFileSync(join(out, "results.md"), "utf8");
    assert.match(md, /Instruction phase: every model was first fine-tuned for 2 steps on all the training questions of gqa/);
    assert.match(md, /Benchmark world: .*\(40 scenes, seed 1\)/);
    assert.throws(() => checkStudy(StudyConfig.parse({ ...study(2), benchmark_world: { scenes: 40, seed: 0 } })), /benchmark_world.seed 0 is world.seed/);

    // A changed phase stops the study at it; the plan shows it and every fine-tune after it changed.
    await assert.rejects(runStudy(study(3), { log: () => {} }), /instruction phase baseline \(gqa\), seed 0: .*changed: 0\.train\.steps.*--force/s);
    const replanned = await planStudy(study(3));
    assert.deepEqual([...new Set(replanned.filter((p) => p.kind === "finetune").map((p) => p.status))], ["changed"]);
    assert.deepEqual([...new Set(replanned.filter((p) => p.kind !== "finetune" && p.kind !== "eval").map((p) => p.status))], ["done"]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("settings that clash across sections are refused before anything runs", () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-study-"));
  try {
    const out = join(root, "study");
    assert.throws(() => checkStudy({ ...tinyStudy(out), latent_pretrain: { ...tinyStudy(out).latent_pretrain, pool: "grid:2" } }), /latent_pretrain\.pool: pooling "grid:2": K must be a perfect square/);
    assert.throws(() => checkStudy({ ...tinyStudy(out), latent_pretrain: { ...tinyStudy(out).latent_pretrain, pool: "grid:9" } }), /pools a 2×2 patch grid into 3×3 cells|needs 9 latent tokens/);
    assert.throws(() => checkStudy({ ...tinyStudy(out), world: { ...tinyStudy(out).world, size: 40 } }), /patch_size 16 does not divide world\.size 40/);
    const replay = (r: object) => ({ ...tinyStudy(out), latent_pretrain: { ...tinyStudy(out).latent_pretrain, replay: { batch_size: 8, weight: 1, ...r } } });
    checkStudy(replay({}));
    const study = { ...replay({}), vlm_base: { ...tinyStudy(out).vlm_base, grounding_descriptions: "minimal" as const, grounding_relations: true } };
    assert.deepEqual(withBaseReplay(study, study.latent_pretrain).replay, { batch_size: 8, weight: 1, grounding_descriptions: "minimal", grounding_relations: true }, "a study rehearses its own base's mix");
    assert.throws(() => checkStudy(replay({ grounding_relations: true })), /latent_pretrain\.replay: in a study the rehearsed mix is the study's base's .*remove replay\.grounding_descriptions/);
    assert.ok(!existsSync(out), "nothing was made");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a study's named models (models:) are fine-tuned and evaluated like the arms, compared with them, and refused when replaced", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-study-models-"));
  const lines: string[] = [];
  const log = (l: string) => lines.push(l);
  try {
    const llava = join(root, "llava-hf", "tiny"); // a published-layout LLaVA, as a Hugging Face download would be
    writeTinyLlava(llava, { template: true });
    const out = join(root, "study");
    const study = () => StudyConfig.parse({ ...tinyStudy(out), models: [{ name: "llava-tiny", model: llava }] });
    await runStudy(study(), { log });
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as {
      cells: { arm: string }[]; comparisons: { a: string; b: string }[]; controls: { kind: string; arm: string }[]; models: { name: string }[];
    };
    assert.deepEqual(results.models.map((m) => m.name), ["llava-tiny"]);
    assert.ok(results.cells.some((c) => c.arm === "llava-tiny"));
    assert.deepEqual(results.comparisons.filter((c) => c.a === "llava-tiny").map((c) => c.b).sort(), ["baseline", "latent"]);
    assert.ok(results.controls.some((c) => c.kind === "blind" && c.arm === "llava-tiny"), "its blind control ran");
    assert.match(readFileSync(join(out, "results.md"), "utf8"), /## Other models[\s\S]*\| world_gqa\/test \| 1 \| llava-tiny \(/);
    assert.match(readFileSync(join(out, "report.html"), "utf8"), /<h2 id="models">Other models<\/h2>/);

    lines.length = 0;
    await runStudy(study(), { log });
    assert.equal(lines.filter((l) => l.startsWith("[run ]")).length, 0, lines.join("\n"));
    // The model replaced in place: its fine-tunes are refused as changed, not reused.
    writeTinyLlava(llava, { template: true, seed: 1 });
    await assert.rejects(runStudy(study(), { log }), /finetune llava-tiny, fraction 1, seed 0: .*was made from earlier results of the steps it reads.*--force/s);
    assert.throws(() => checkStudy(StudyConfig.parse({ ...tinyStudy(out), models: [{ name: "latent", model: llava }] })), /models\.0: the name "latent" is taken/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("configs/demo.yaml, study.yaml, jigsaw.yaml and sqa.yaml validate and plan their grids", async () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-study-plan-"));
  try {
    const count = (plan: { kind: string }[], kind: string) => plan.filter((s) => s.kind === kind).length;
    const demo = loadStudy(join(configs, "demo.yaml"), [`out=${join(root, "demo")}`]);
    const study = loadStudy(join(configs, "study.yaml"), [`out=${join(root, "study")}`]);
    // demo: 3 arms × 2 fractions × 3 seeds; study: 3 arms × 3 fractions × 5 seeds on a larger world.
    assert.equal(count(await planStudy(demo), "finetune"), 18);
    const plan = await planStudy(study);
    assert.equal(count(plan, "finetune"), 45);
    assert.ok(study.world.scenes > demo.world.scenes && study.fractions.length > demo.fractions.length && study.seeds.length >= 5);
    // Each model on test and test_novel; the 15 at the largest fraction also blind on the first split.
    assert.equal(count(plan, "eval"), 45 * 2 + 15);
    assert.ok(!existsSync(join(root, "study")), "planning writes nothing");
    // jigsaw: the demo's grid on world_jigsaw, from an encoder that has read the partial views.
    const jigsaw = loadStudy(join(configs, "jigsaw.yaml"), [`out=${join(root, "jigsaw")}`]);
    assert.equal(count(await planStudy(jigsaw), "finetune"), 18);
    assert.deepEqual([jigsaw.finetune.tasks, jigsaw.eval.tasks, jigsaw.world_encoder.read_views], [["jigsaw"], ["world_jigsaw"], true]);
    // sqa: the demo's world and stages, world_gqa first, then world_sqa at each fraction on a benchmark world of its own.
    const sqa = loadStudy(join(configs, "sqa.yaml"), [`out=${join(root, "sqa")}`]);
    const sqaPlan = await planStudy(sqa);
    assert.equal(count(sqaPlan, "finetune"), 9 + 18);
    assert.deepEqual([sqa.finetune.instruct?.tasks, sqa.finetune.tasks, sqa.eval.tasks], [["gqa"], ["scienceqa"], ["world_sqa"]]);
    assert.deepEqual([sqa.world, sqa.world_encoder, sqa.vlm_base, sqa.latent_pretrain], [demo.world, demo.world_encoder, demo.vlm_base, demo.latent_pretrain], "a copy of runs/demo's stages is reused");
    assert.deepEqual([sqa.benchmark_world, count(sqaPlan, "world")], [{ scenes: 20000, seed: 1 }, 2]);
    // With replicate: base, each seed's own base and caption stages.
    const replicated = await planStudy(loadStudy(join(configs, "demo.yaml"), [`out=${join(root, "demo")}`, "replicate=base"]));
    assert.deepEqual([count(replicated, "vlm-base"), count(replicated, "latent-pretrain"), count(replicated, "finetune")], [3, 6, 18]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
