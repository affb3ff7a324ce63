import { test } from "node:test";
import assert from "node:assert/strict";
import { formatPlan } from "./experiment.js";

test("--dry-run's plan: each step with its status, counts per kind, and the --force hint only when a step changed", () => {
  const plan = [
    { what: "world: 10 scenes", out: "w", kind: "world" as const, status: "done" as const },
    { what: "stage 4: finetune baseline, fraction 1, seed 0", out: "f0", kind: "finetune" as const, status: "changed" as const },
    { what: "stage 4: finetune baseline, fraction 1, seed 1", out: "f1", kind: "finetune" as const, status: "run" as const },
  ];
  const text = formatPlan(plan, "runs/x");
  assert.match(text, /^done {4}world: 10 scenes$/m);
  assert.match(text, /^changed stage 4: finetune baseline, fraction 1, seed 0$/m);
  assert.match(text, /runs\/x: 3 steps/);
  assert.match(text, /^ {2}finetune +1 \/ 1 \/ 0$/m);
  assert.match(text, /--force/);
  assert.doesNotMatch(formatPlan(plan.filter((p) => p.status !== "changed"), "runs/x"), /--force/);
});
