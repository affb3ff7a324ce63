import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { summarize, markdownTable, interactionLines, ablationTable, concentration, studyIsMeaningful, typeBreakdown, writeReport, type EvalRun } from "./report.js";
import { hierarchicalBootstrap, tInterval } from "../eval/stats.js";

const outcomes = (pattern: string) => new Map([...pattern].map((c, i) => [`q${i}`, c === "1"]));
const run = (arm: EvalRun["arm"], fraction: number, seed: number, pattern: string, extra: Partial<EvalRun> = {}): EvalRun =>
  ({ arm, fraction, seed, task: "t/test", outcomes: outcomes(pattern), ...extra });

test("cells pool seeds; comparisons pair seeds and questions; per-seed values are kept", () => {
  const runs = [run("baseline", 1, 0, "1100"), run("baseline", 1, 1, "1000"), run("latent", 1, 0, "1110"), run("latent", 1, 1, "1110")];
  const { cells, comparisons } = summarize(runs);
  const base = cells.find((c) => c.arm === "baseline")!, lat = cells.find((c) => c.arm === "latent")!;
  assert.equal(base.accuracy.mean, 0.375);
  assert.deepEqual(base.perSeed, [0.5, 0.25]);
  assert.equal(lat.accuracy.mean, 0.75);
  const d = comparisons.find((c) => c.b === "baseline")!;
  assert.equal(d.difference.mean, 0.375);
  assert.deepEqual(d.perSeed, [0.25, 0.5]);
  assert.ok(d.difference.low <= 0.375 && d.difference.high >= 0.375);
  assert.equal(comparisons.find((c) => c.b === "control"), undefined, "no control runs, no comparison");
  const md = markdownTable(cells, comparisons, { "t/test": { chance: 0.5, majority: 0.5, textOnly: 0.4, n: 4 } });
  assert.match(md, /\| t\/test \| 1 \| 40\.0 \| 37\.5 \[/);
  assert.match(md, /\(50\.0 \/ 25\.0\)/);
  assert.match(md, /\+37\.5 \[/);
});

test("the text control is compared with the baseline, paired, in its own column", () => {
  const runs = [run("baseline", 1, 0, "1100"), run("baseline", 1, 1, "1000"), run("control", 1, 0, "1110"), run("control", 1, 1, "1000"),
    run("latent", 1, 0, "1111"), run("latent", 1, 1, "1110")];
  const { cells, comparisons } = summarize(runs);
  assert.deepEqual(comparisons.map((c) => `${c.a}−${c.b}`).sort(), ["control−baseline", "latent−baseline", "latent−control"]);
  const d = comparisons.find((c) => c.a === "control")!;
  assert.equal(d.difference.mean, 0.125);
  assert.deepEqual(d.perSeed, [0.25, 0]);
  const md = markdownTable(cells, comparisons);
  assert.match(md.split("\n")[0]!, /\| latent − baseline \| latent − control \| control − baseline \|$/);
  // latent − baseline +50.0, latent − control +37.5, control − baseline +12.5, in that order.
  assert.match(md, /\+50\.0 \[[^|]*\| \+37\.5 \[[^|]*\| \+12\.5 \[[^|]*\|$/m);
});

test("interactions: each difference at the largest fraction minus the same at the smallest, paired over four groups", () => {
  // latent − baseline: +50 and +25 points at 0.1 (seeds 0, 1), +25 and 0 at 1: the lead shrinks by 25 with data.
  const runs = [
    run("baseline", 0.1, 0, "1000"), run("baseline", 0.1, 1, "1100"), run("latent", 0.1, 0, "1110"), run("latent", 0.1, 1, "1110"),
    run("baseline", 1, 0, "1100"), run("baseline", 1, 1, "1110"), run("latent", 1, 0, "1110"), run("latent", 1, 1, "1110"),
  ];
  const { comparisons, interactions } = summarize(runs);
  assert.equal(interactions.length, 1, "only latent − baseline has both arms at both fractions");
  const x = interactions[0]!;
  assert.deepEqual([x.a, x.b, x.task, x.from, x.to], ["latent", "baseline", "t/test", 0.1, 1]);
  assert.deepEqual(x.perSeed, [-0.25, -0.25]);
  assert.equal(x.difference.mean, -0.25);
  const lines = interactionLines(interactions, comparisons).join("\n");
  assert.match(lines, /\| t\/test \| latent − baseline \| \+37\.5 \[[^|]*\| \+12\.5 \[[^|]*\| -25\.0 \[[^|]*\| -25\.0 \/ -25\.0 \|/);
  assert.deepEqual(summarize(runs.filter((r) => r.fraction === 1)).interactions, [], "one fraction: nothing to compare");
  assert.deepEqual(interactionLines([], comparisons), []);
  const withControl = summarize([...runs, run("control", 0.1, 0, "1000"), run("control", 0.1, 1, "1100"), run("control", 1, 0, "1100"), run("control", 1, 1, "1100")]);
  assert.deepEqual(withControl.interactions.map((i) => `${i.a}−${i.b}`), ["latent−baseline", "latent−control", "control−baseline"], "the results table's column order");
});

test("the hierarchical bootstrap counts the variance between seeds; the question-only one does not", () => {
  // Two seeds that disagree completely: 100% and 0% on the same 200 questions.
  const rows = [Array<number>(200).fill(1), Array<number>(200).fill(0)];
  const h = hierarchicalBootstrap(rows, { seed: 1 });
  assert.equal(h.mean, 0.5);
  assert.ok(h.low <= 0.05 && h.high >= 0.95, `seed resampling spans both seeds: [${h.low}, ${h.high}]`);
  // Averaging seeds per question first (the old interval) would say 0.5 exactly, with no width.
  const agree = hierarchicalBootstrap([Array.from({ length: 200 }, (_, i) => i % 2), Array.from({ length: 200 }, (_, i) => i % 2)], { seed: 1 });
  assert.ok(agree.high - agree.low < 0.2, "seeds that agree leave only question sampling");
  assert.deepEqual(hierarchicalBootstrap(rows, { seed: 1 }), h, "seeded: reproducible");
  assert.throws(() => hierarchicalBootstrap([[1, 0], [1]]), /same 2 questions/);
  const t = tInterval([0.5, 0.6, 0.7]);
  assert.ok(Math.abs(t.mean - 0.6) < 1e-12 && Math.abs(t.high - 0.6 - 4.303 * 0.1 / Math.sqrt(3)) < 1e-9);
});

test("controls: the positive control compares fractions, the blind control shuffled images, both paired", () => {
  const runs = [
    run("baseline", 0.1, 0, "1000"), run("baseline", 0.1, 1, "0100"),
    run("baseline", 1, 0, "1111"), run("baseline", 1, 1, "1110"),
    run("baseline", 1, 0, "1000", { blind: true }), run("baseline", 1, 1, "0000", { blind: true }),
  ];
  const { cells, controls } = summarize(runs);
  assert.equal(cells.length, 2, "blind runs are controls, not cells");
  const f = controls.find((c) => c.kind === "fraction")!;
  assert.equal(f.difference.mean, (0.75 + 0.5) / 2);
  assert.deepEqual(f.perSeed, [0.75, 0.5]);
  const b = controls.find((c) => c.kind === "blind")!;
  assert.ok(b.kind === "blind" && b.accuracy.mean === 0.125 && b.difference.mean === 0.125 - 0.875);
  assert.equal(studyIsMeaningful(controls.map((c) => ({ ...c, task: "world_gqa/test" }))), true);
});

test("answer concentration: a model repeating one answer within a type is flagged", () => {
  const answers = [...Array<{ type: string; prediction: string }>(9).fill({ type: "exist", prediction: "yes" }), { type: "exist", prediction: "no" },
    { type: "count", prediction: "1" }, { type: "count", prediction: "2" }];
  const [c] = concentration([run("latent", 1, 0, "1", { answers })]);
  assert.deepEqual(c!.byType.exist, { answer: "yes", share: 0.9 });
  assert.deepEqual(c!.flagged, ["exist"]);
});

test("writeReport writes results.json with cells, comparisons, controls, baselines and concentration", () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-report-"));
  try {
    const runs = [run("baseline", 0.1, 0, "10"), run("baseline", 1, 0, "11"), run("latent", 1, 0, "01"), run("baseline", 1, 0, "00", { blind: true })];
    writeReport(dir, runs, { name: "x", seeds: [0], fractions: [0.1, 1], harness: "lmms-eval", baselines: { "t/test": { chance: 0.5, majority: 0.5, textOnly: 0.5, n: 2 } } });
    const json = JSON.parse(readFileSync(join(dir, "results.json"), "utf8")) as Record<string, unknown[]>;
    for (const key of ["cells", "comparisons", "controls", "concentration"]) assert.ok(Array.isArray(json[key]), key);
    assert.ok(json.baselines && json.intervals);
    assert.match(readFileSync(join(dir, "results.md"), "utf8"), /## Controls/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the positive control names the data ratio of the fractions it compares", () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-report-"));
  try {
    const runs = [run("baseline", 0.05, 0, "10", { task: "world_gqa/test" }), run("baseline", 1, 0, "10", { task: "world_gqa/test" })];
    writeReport(dir, runs, { name: "x", seeds: [0], fractions: [0.05, 1], harness: "lmms-eval", baselines: {} });
    const md = readFileSync(join(dir, "results.md"), "utf8");
    assert.match(md, /\| fraction 1 − 0\.05 \| baseline \| world_gqa\/test \| .* \| no detectable effect of 20× more data \|/);
    assert.match(md, /cannot detect even the effect of 20× more data/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the caption-loss line judges latent − control by its paired interval, not by its sign", () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-report-"));
  const line = (latent: number[], control: number[]) => {
    const steps = [20, 40, 60];
    const arm = (values: number[]) => ({ mean: values.reduce((a, b) => a + b, 0) / values.length, steps, values });
    writeReport(dir, [run("baseline", 1, 0, "10")], {
      name: "x", seeds: [0], fractions: [1], harness: "lmms-eval", baselines: {},
      captionLoss: { control: arm(control), latent: arm(latent), difference: tInterval(latent.map((v, i) => v - control[i]!)) },
    });
    return readFileSync(join(dir, "results.md"), "utf8").split("\n").find((l) => l.startsWith("Caption next-token loss"))!;
  };
  try {
    // Batches of very different difficulty, the latent arm a hair above on one and below on another.
    assert.match(line([1.2002, 0.9, 1.0999], [1.2, 0.9, 1.1]), /latent − control \+0\.0000 \[-0\.\d{4}, \+0\.\d{4}\] .*\(no detectable cost: the interval includes 0\)/);
    assert.match(line([1.22, 0.92, 1.12], [1.2, 0.9, 1.1]), /latent − control \+0\.020 .*\(the latent objective costs caption modelling\)/);
    assert.match(line([1.18, 0.88, 1.08], [1.2, 0.9, 1.1]), /\(below the control's\)/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("ablation cells: compared paired with the baseline and the latent arm, kept out of the arms' table, listed in their own", () => {
  const cellName = "latent[similarity=l2,alignment=siglip]";
  const runs = [
    run("baseline", 1, 0, "1000"), run("baseline", 1, 1, "0100"),
    run("latent", 1, 0, "1100"), run("latent", 1, 1, "1100"),
    run(cellName, 1, 0, "1110"), run(cellName, 1, 1, "1111"),
  ];
  const { cells, comparisons } = summarize(runs);
  assert.deepEqual(cells.map((c) => c.arm), ["baseline", "latent", cellName], "arms first, then cells");
  const vsBase = comparisons.find((c) => c.a === cellName && c.b === "baseline")!, vsLatent = comparisons.find((c) => c.a === cellName && c.b === "latent")!;
  assert.equal(vsBase.difference.mean, 0.875 - 0.25);
  assert.deepEqual(vsLatent.perSeed, [0.25, 0.5]);
  assert.equal(comparisons.filter((c) => c.a === cellName).length, 2);
  // The arms' table compares the latent arm only, whatever cells exist.
  assert.match(markdownTable(cells, comparisons), /\| t\/test \| 1 \| – \| 25\.0 .* \| – \| 50\.0 .* \| \+25\.0 \[/);
  const table = ablationTable(cells, comparisons, [
    { name: cellName, folder: "x", set: { "loss.similarity": "l2", "loss.alignment": "siglip" }, readout: "queries", sameAs: null },
    { name: "latent[lambda_sim=1]", folder: "y", set: { "loss.lambda_sim": 1 }, readout: "queries", sameAs: "latent" },
  ]).join("\n");
  assert.match(table, /\| t\/test \| 1 \| latent \| \(the latent arm\) \| 50\.0 .* \| \+25\.0 .* \| – \|/);
  assert.match(table, /\| t\/test \| 1 \| latent\[similarity=l2,alignment=siglip\] \| loss\.similarity=l2, loss\.alignment=siglip \| 87\.5 .* \| \+62\.5 .* \| \+37\.5 /);
  assert.match(table, /Not run \(the same settings as another arm or cell\): latent\[lambda_sim=1\] = latent\./);

  const dir = mkdtempSync(join(tmpdir(), "mindseye-report-"));
  try {
    writeReport(dir, runs, { name: "x", seeds: [0, 1], fractions: [1], harness: "lmms-eval", baselines: {}, ablations: [{ name: cellName, folder: "x", set: { "loss.similarity": "l2" }, readout: "queries", sameAs: null }] });
    assert.match(readFileSync(join(dir, "results.md"), "utf8"), /## Ablations/);
    assert.match(readFileSync(join(dir, "results.csv"), "utf8"), /t\/test,1,"latent\[similarity=l2,alignment=siglip\]",2,/);
    const json = JSON.parse(readFileSync(join(dir, "results.json"), "utf8")) as { ablations: { name: string }[] };
    assert.equal(json.ablations[0]!.name, cellName);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("by question type: each arm on one type's questions, the latent arm's differences paired within the type", () => {
  const types = new Map([["q0", "exist"], ["q1", "exist"], ["q2", "count"], ["q3", "count"]]);
  const runs = [
    run("baseline", 1, 0, "1000", { types }), run("baseline", 1, 1, "0100", { types }),
    run("latent", 1, 0, "1110", { types }), run("latent", 1, 1, "1101", { types }),
    run("latent", 1, 0, "0000", { types, blind: true }), // blind runs are controls, not in the breakdown
  ];
  const rows = typeBreakdown(runs);
  assert.deepEqual(rows.map((r) => [r.type, r.n]), [["count", 2], ["exist", 2]]);
  const count = rows[0]!, exist = rows[1]!;
  assert.equal(count.accuracy.baseline!.mean, 0);
  assert.equal(count.accuracy.latent!.mean, 0.5);
  assert.equal(count.accuracy.control, undefined, "no control runs");
  assert.deepEqual(count.comparisons.map((c) => [c.b, c.difference.mean, c.perSeed]), [["baseline", 0.5, [0.5, 0.5]]]);
  assert.equal(exist.accuracy.baseline!.mean, 0.5);
  assert.deepEqual(exist.comparisons[0]!.perSeed, [0.5, 0.5]);
  assert.deepEqual(typeBreakdown(runs.map((r) => ({ ...r, types: undefined }))), [], "runs without types: no breakdown");
});
