import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { loadRecipe, parseOverrides, validate } from "./recipe.js";
import { ConfigError } from "./errors.js";

const Schema = z.strictObject({
  seed: z.number().int().default(0),
  train: z.strictObject({
    lr: z.number().positive().default(1e-3),
    steps: z.number().int().positive(),
    schedule: z.enum(["cosine", "linear", "constant"]).default("cosine"),
  }),
  data: z.strictObject({ fractions: z.array(z.number()).default([1]) }).default({ fractions: [1] }),
});

function withRecipe(yaml: string, fn: (path: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-recipe-"));
  try {
    const path = join(dir, "r.yaml");
    writeFileSync(path, yaml);
    fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("a recipe with defaults and overrides resolves to typed values", () => {
  withRecipe("train:\n  steps: 10\n", (p) => {
    const c = loadRecipe(p, Schema, ["train.lr=3e-4", "data.fractions=[0.01, 0.1, 1]", "seed=7"]);
    assert.deepEqual(c, { seed: 7, train: { lr: 3e-4, steps: 10, schedule: "cosine" }, data: { fractions: [0.01, 0.1, 1] } });
  });
});

test("unknown keys are named with their dotted path and the closest known key", () => {
  withRecipe("train:\n  steps: 10\n  lrr: 0.1\n", (p) => {
    assert.throws(() => loadRecipe(p, Schema), (e: Error) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /unknown key train\.lrr \(did you mean train\.lr\?\)/);
      assert.match(e.message, /known keys here: lr, steps, schedule/);
      return true;
    });
  });
});

test("wrong types and values are rejected with the dotted key", () => {
  withRecipe("train:\n  steps: ten\n", (p) => assert.throws(() => loadRecipe(p, Schema), /train\.steps: .*number/));
  withRecipe("train:\n  steps: 5\n", (p) => assert.throws(() => loadRecipe(p, Schema, ["train.schedule=step"]), /train\.schedule/));
  withRecipe("train:\n  steps: 5\n", (p) => assert.throws(() => loadRecipe(p, Schema, ["train.lr=-1"]), /train\.lr: .*>0|train\.lr: .*positive|train\.lr/));
  assert.throws(() => validate(Schema, {}, "inline"), /inline: invalid configuration\n {2}train: /);
});

test("override syntax errors are clear", () => {
  assert.throws(() => parseOverrides(["train.lr"]), /expected key=value/);
  assert.throws(() => parseOverrides(["=3"]), /expected key=value/);
  assert.throws(() => parseOverrides(["train..lr=3"]), /not a dotted key/);
  withRecipe("train:\n  steps: 5\n", (p) => assert.throws(() => loadRecipe(p, Schema, ["train.steps.x=1"]), /train\.steps is a value, not a section/));
});

test("--set values are YAML values: a '#' inside a plain string stays, block syntax and unparsable text are strings", () => {
  const values = parseOverrides([
    "out=/x/run #2", "name=foo # bar", "quoted=\"run #3\"", "lr=3e-4", "flag=true", "none=null", "list=[1, 2]", "map={a: 1}",
    "text=a: b", "bad=[1, 2", "list2=[1, 2] # trailing",
  ]).map(([k, v]) => [k.join("."), v]);
  assert.deepEqual(values, [
    ["out", "/x/run #2"], ["name", "foo # bar"], ["quoted", "run #3"], ["lr", 3e-4], ["flag", true], ["none", null], ["list", [1, 2]], ["map", { a: 1 }],
    ["text", "a: b"], ["bad", "[1, 2"], ["list2", "[1, 2] # trailing"],
  ]);
});
