import { test } from "node:test";
import assert from "node:assert/strict";
import { parseResumeOverrides, trainCommand } from "./train.js";

test("--override: lr and warmup_steps become trainer overrides and the matching --set train.* values", () => {
  assert.deepEqual(parseResumeOverrides(["lr=1e-4", "warmup_steps=50"]), { overrides: { lr: 1e-4, warmupSteps: 50 }, sets: ["train.lr=0.0001", "train.warmup_steps=50"] });
  assert.deepEqual(parseResumeOverrides([]), { overrides: {}, sets: [] });
  assert.throws(() => parseResumeOverrides(["steps=10"]), /key one of lr, warmup_steps/);
  assert.throws(() => parseResumeOverrides(["lr=fast"]), /fast is not a number/);
  assert.throws(() => parseResumeOverrides(["lr="]), /is not a number/);
});

test("the command that reruns a run, with the --override a divergence advises", () => {
  const o = { config: "configs/my run.yaml", set: ["train.steps=100", "loss.lambda_sim=0"], override: [] };
  assert.equal(trainCommand(o), "mindseye train --config 'configs/my run.yaml' --set train.steps=100 --set loss.lambda_sim=0");
  assert.equal(trainCommand({ ...o, quiet: true }, ["lr=1e-5"]), "mindseye train --config 'configs/my run.yaml' --set train.steps=100 --set loss.lambda_sim=0 --override lr=1e-5 --quiet");
});
