// The table `mindseye eval` prints: overall, per type, then per form where the task has forms.
import { test } from "node:test";
import assert from "node:assert/strict";
import { formatResults } from "./eval.js";
import type { EvalResults } from "../eval/run.js";

const interval = (mean: number, n: number) => ({ mean, low: mean - 0.1, high: mean + 0.1, n });

const results = (byForm?: EvalResults["byForm"]): EvalResults => ({
  task: "world_sqa", kind: "scienceqa", harness: "lmms-eval", split: "test", n: 10, accuracy: interval(0.5, 10),
  byType: { Density: interval(0.6, 5), Magnets: interval(0.4, 5) }, ...(byForm ? { byForm } : {}),
  skipped: { records: 0, images: 0, items: 0, list: [] }, truncated: 0, model: { path: "/m", fingerprint: "abcdef0123456789" }, data: "/w",
  generation: { greedy: true, maxNewTokens: 16, harnessMaxNewTokens: 16, stopToken: "<|im_end|>", batchSize: 4 },
  limit: null, shuffledImages: null, seconds: 1, itemsPerSecond: 10, finished: "2026-12-06T00:00:00.000Z",
});

test("the eval table lists each form after the types, and no form rows for a task without forms", () => {
  const withForms = formatResults(results({ count: interval(0.75, 4), "which-2": interval(0.25, 6) }), "/out").split("\n");
  const rows = withForms.map((l) => l.trim().split(/\s{2,}/)[0]);
  assert.deepEqual(rows.slice(1, 7), ["type", "overall", "Density", "Magnets", "form count", "form which-2"]);
  assert.match(withForms.find((l) => l.includes("form count"))!, /form count\s+4\s+75\.0%\s+\[65\.0, 85\.0\]/);
  assert.ok(!formatResults(results(), "/out").includes("form "));
});
