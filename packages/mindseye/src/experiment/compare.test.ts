import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { checkSameQuestions, compareStudies, comparisonMarkdown, readStudyEvaluations, type StudyComparison } from "./compare.js";
import { Rng } from "../world/rng.js";
import type { EvalRun } from "./report.js";

const cli = join(dirname(fileURLToPath(import.meta.url)), "..", "cli", "main.js");
const QUESTIONS = 400;

/** A model that gets each question right with probability `p` (seeded per arm, seed and study). */
function model(arm: string, seed: number, p: number, study: string, fraction = 1): EvalRun {
  const rng = new Rng(seed, study, arm);
  return { arm, fraction, seed, task: "world_gqa/test", outcomes: new Map(Array.from({ length: QUESTIONS }, (_, i) => [`q${i}`, rng.float() < p])) };
}

/** A: every arm at 50%; B: the latent arm at 65%, the others at 50% again (fresh draws: the same seeds retrained). */
function twoStudies(): { a: EvalRun[]; b: EvalRun[] } {
  const seeds = [0, 1, 2, 3, 4];
  const a = seeds.flatMap((s) => ["baseline", "control", "latent"].map((arm) => model(arm, s, 0.5, "a")));
  const b = seeds.flatMap((s) => ["baseline", "control", "latent"].map((arm) => model(arm, s, arm === "latent" ? 0.65 : 0.5, "b")));
  return { a, b };
}

test("compareStudies: each arm's B − A and the change of the latent arm's gains, paired by seed and question", () => {
  const { a, b } = twoStudies();
  const c = compareStudies(a, b);
  assert.deepEqual(c.arms.map((r) => r.arm), ["baseline", "control", "latent"]);
  const shift = (arm: string) => c.arms.find((r) => r.arm === arm)!;
  assert.ok(shift("latent").difference.low > 0.08, `the latent arm gained about 15 points: ${JSON.stringify(shift("latent").difference)}`);
  assert.ok(shift("baseline").difference.low < 0 && shift("baseline").difference.high > 0, "the baseline did not change");
  for (const r of c.arms) assert.ok(Math.abs(r.difference.mean - (r.b.mean - r.a.mean)) < 1e-12, "B − A is the difference of the accuracies");
  assert.equal(shift("latent").perSeed.length, 5);

  assert.deepEqual(c.gains.map((g) => g.b), ["baseline", "control"]);
  for (const g of c.gains) {
    assert.ok(Math.abs(g.change.mean - (g.after.mean - g.before.mean)) < 1e-12, "the change is the difference of the gains");
    assert.ok(g.change.low > 0.05, `the latent arm's gain grew: ${JSON.stringify(g.change)}`);
    assert.ok(g.before.low < 0 && g.before.high > 0, "no gain in A");
  }
  const md = comparisonMarkdown(c, { a: "A", b: "B" });
  assert.match(md, /\| latent \| 1 \| world_gqa\/test \| .* \| \+1\d\.\d \[\d+\.\d, \d+\.\d\] \* \|/);
  assert.match(md, /\| latent − baseline \| 1 \| world_gqa\/test \|/);

  // A study compared with itself changes by exactly nothing
  const same = compareStudies(a, a);
  for (const r of [...same.arms.map((x) => x.difference), ...same.gains.map((g) => g.change)]) assert.deepEqual([r.mean, r.low, r.high], [0, 0, 0]);
  // Only seeds both evaluated pair, in every figure of a row; nothing shared, nothing compared
  const partial = compareStudies(a, b.filter((r) => r.seed < 2 || r.arm !== "latent"));
  assert.deepEqual(partial.arms.map((r) => r.perSeed.length), [5, 5, 2]);
  const latentA = a.filter((r) => r.arm === "latent" && r.seed < 2);
  const meanOf = (runs: EvalRun[]) => runs.reduce((s, r) => s + [...r.outcomes.values()].filter(Boolean).length, 0) / (runs.length * QUESTIONS);
  assert.equal(partial.arms[2]!.a.mean, meanOf(latentA), "A's accuracy on the seeds B has");
  for (const g of partial.gains) {
    assert.equal(g.perSeed.length, 2);
    assert.ok(Math.abs(g.change.mean - (g.after.mean - g.before.mean)) < 1e-12, "gains and their change on the same seeds");
  }
  assert.deepEqual(compareStudies(a, b.map((r) => ({ ...r, fraction: 0.5 }))), { arms: [], gains: [] } satisfies StudyComparison);
  // Blind evaluations are not compared
  assert.deepEqual(compareStudies(a, b.map((r) => ({ ...r, blind: true }))).arms, []);
});

/** A study folder in `mindseye experiment`'s layout: study.resolved.json and eval/<arm>/fraction-F/seed-S/<task>-<split>/predictions.jsonl. */
function writeStudy(dir: string, runs: EvalRun[], world: object = { scenes: 100, seed: 0 }): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "study.resolved.json"), JSON.stringify({ name: "s", world }));
  for (const r of runs) {
    const out = join(dir, r.blind ? "eval-blind" : "eval", r.arm, `fraction-${r.fraction}`, `seed-${r.seed}`, r.task.replace("/", "-"));
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, "predictions.jsonl"), [...r.outcomes].map(([id, correct]) =>
      JSON.stringify({ id, type: "exist", prompt: `Question ${id}?`, prediction: correct ? "yes" : "no", answer: "yes", correct })).join("\n") + "\n");
  }
}

test("mindseye compare reads two study folders, refuses studies whose questions differ, and writes --json", () => {
  const root = mkdtempSync(join(tmpdir(), "mindseye-compare-"));
  try {
    const { a, b } = twoStudies();
    const [dirA, dirB] = [join(root, "a"), join(root, "b")];
    writeStudy(dirA, [...a, { ...a[0]!, blind: true }]);
    writeStudy(dirB, [...b, model("latent", 0, 0.5, "b", 0.05)]);
    const read = readStudyEvaluations(dirA);
    assert.equal(read.length, 15, "the blind evaluation is not read");
    const first = read.find((r) => r.arm === "baseline" && r.seed === 0)!;
    assert.deepEqual([first.fraction, first.task, first.outcomes.size], [1, "world_gqa/test", QUESTIONS]);
    assert.deepEqual([...first.outcomes], [...a[0]!.outcomes]);

    const json = join(root, "comparison.json");
    const res = spawnSync(process.execPath, [cli, "compare", dirA, dirB, "--json", json], { encoding: "utf8" });
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /\| latent − control \| 1 \| world_gqa\/test \|/);
    const written = JSON.parse(readFileSync(json, "utf8")) as StudyComparison & { a: string; b: string };
    assert.deepEqual(written.arms.map((r) => r.fraction), [1, 1, 1], "the 5% model of B alone has nothing to pair with");
    assert.deepEqual(written, JSON.parse(JSON.stringify({ a: dirA, b: dirB, ...compareStudies(readStudyEvaluations(dirA), readStudyEvaluations(dirB)) })));

    // another world: refused before anything is compared
    const other = join(root, "other");
    writeStudy(other, b, { scenes: 200, seed: 0 });
    const refused = spawnSync(process.execPath, [cli, "compare", dirA, other], { encoding: "utf8" });
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /were run on different worlds .*"scenes":100.* against .*"scenes":200/);
    // the same world settings, but a question id that asks something else
    const edited = join(root, "edited");
    writeStudy(edited, b);
    const file = join(edited, "eval", "latent", "fraction-1", "seed-3", "world_gqa-test", "predictions.jsonl");
    writeFileSync(file, readFileSync(file, "utf8").replace('"prompt":"Question q7?"', '"prompt":"Question q7, reworded?"'));
    assert.throws(() => checkSameQuestions({ dir: dirA, runs: readStudyEvaluations(dirA) }, { dir: edited, runs: readStudyEvaluations(edited) }),
      /world_gqa\/test question q7 differs between the evaluations of .* \("Question q7\? → yes" against "Question q7, reworded\? → yes"\)/);
    // not a study folder
    assert.throws(() => readStudyEvaluations(root), /not a study folder \(no study\.resolved\.json\)/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
