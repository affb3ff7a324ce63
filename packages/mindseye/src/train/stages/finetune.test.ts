import { test } from "node:test";
import assert from "node:assert/strict";
import { familyBatches } from "./finetune.js";

const examples = [
  ...Array.from({ length: 50 }, (_, i) => ({ task: "gqa", i })),
  ...Array.from({ length: 12 }, (_, i) => ({ task: "scienceqa", i })),
  ...Array.from({ length: 5 }, (_, i) => ({ task: "jigsaw", i })),
];

test("fine-tuning batches hold one task family each; proportional uses every example once", () => {
  const batches = familyBatches(examples, 8, 0);
  for (const b of batches) assert.equal(new Set(b.map((e) => e.task)).size, 1);
  assert.equal(batches.flat().length, examples.length);
  assert.equal(new Set(batches.flat()).size, examples.length);
  assert.deepEqual(familyBatches(examples, 8, 0), batches, "seeded");
  assert.notDeepEqual(familyBatches(examples, 8, 1), batches);
});

test("balanced sampling gives every family as many batches as the largest, repeating the smaller ones", () => {
  const batches = familyBatches(examples, 8, 0, "balanced");
  const count = (task: string) => batches.filter((b) => b[0]!.task === task).length;
  assert.deepEqual([count("gqa"), count("scienceqa"), count("jigsaw")], [7, 7, 7]);
  for (const b of batches) assert.equal(new Set(b.map((e) => e.task)).size, 1);
  const jig = batches.filter((b) => b[0]!.task === "jigsaw");
  assert.ok(jig.every((b) => b.length === 5), "a family smaller than a batch repeats whole");
});
