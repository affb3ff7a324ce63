import { test } from "node:test";
import assert from "node:assert/strict";
import { summarize, markdownTable, type EvalRun } from "./report.js";

const outcomes = (pattern: string) => new Map([...pattern].map((c, i) => [`q${i}`, c === "1"]));

test("cells average seeds per question; comparisons are paired by question", () => {
  const runs: EvalRun[] = [
    { arm: "baseline", fraction: 1, seed: 0, task: "t/test", outcomes: outcomes("1100") },
    { arm: "baseline", fraction: 1, seed: 1, task: "t/test", outcomes: outcomes("1000") },
    { arm: "latent", fraction: 1, seed: 0, task: "t/test", outcomes: outcomes("1110") },
    { arm: "latent", fraction: 1, seed: 1, task: "t/test", outcomes: outcomes("1110") },
  ];
  const { cells, comparisons } = summarize(runs);
  const base = cells.find((c) => c.arm === "baseline")!, lat = cells.find((c) => c.arm === "latent")!;
  // baseline per question: 1, 0.5, 0, 0 -> 0.375; per seed 0.5 and 0.25
  assert.equal(base.accuracy.mean, 0.375);
  assert.deepEqual(base.perSeed, [0.5, 0.25]);
  assert.equal(lat.accuracy.mean, 0.75);
  // paired differences per question: 0, 0.5, 1, 0 -> mean 0.375
  const d = comparisons.find((c) => c.b === "baseline")!;
  assert.equal(d.difference.mean, 0.375);
  assert.ok(d.difference.low <= 0.375 && d.difference.high >= 0.375);
  assert.equal(comparisons.find((c) => c.b === "control"), undefined, "no control runs, no comparison");
  const md = markdownTable(cells, comparisons);
  assert.match(md, /\| t\/test \| 1 \| 37\.5 \[/);
  assert.match(md, /\| – \| 75\.0 \[/);
  assert.match(md, /\+37\.5 \[/);
});
