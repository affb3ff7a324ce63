import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DataFormatError, SkipCounter } from "./errors.js";
import { readScienceQa } from "./scienceqa.js";

const FIX = fileURLToPath(new URL("../../../test-fixtures/formats/scienceqa/", import.meta.url));
const files = { problems: join(FIX, "data/scienceqa/problems.json"), pidSplits: join(FIX, "data/scienceqa/pid_splits.json"), images: join(FIX, "images") };

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test("ScienceQA: the IMG subset of a split, in pid_splits order, answers as letters", async () => {
  const errors = new SkipCounter("scienceqa");
  const items = await all(readScienceQa({ ...files, split: "test" }, { errors }));
  assert.deepEqual(items.map((p) => p.id), ["5", "11"]);
  const p = items[1]!;
  assert.equal(p.dataset, "scienceqa");
  assert.deepEqual(p.choices, ["sea otter", "tokay gecko"]);
  assert.equal(p.answer, "A");
  assert.equal(p.answerIndex, 0);
  assert.equal(p.hint, "Sea turtles have flippers.");
  assert.equal(items[0]!.hint, "");
  assert.equal(p.topic, "biology");
  assert.equal(p.lecture, "A map is a drawing of a place.");
  assert.deepEqual(p.images, [{ kind: "file", path: join(FIX, "images/test/11/image.png") }]);
  assert.deepEqual(p.source, { file: files.problems, record: "pid 11" });
  const r = errors.report();
  assert.deepEqual(r.omitted, { "without an image (not in the IMG subset)": 1 });
  assert.deepEqual(r.examples.map((e) => `${e.source.file} ${e.source.record}: ${e.reason}`), [
    `${files.problems} pid 9: "answer" 2 is not an index into its 2 choices`,
    `${files.pidSplits} test[4]: pid 404 is not in ${files.problems}`,
  ]);
});

test("ScienceQA: the train split finds its images under images/train; an unknown split lists the known ones", async () => {
  const items = await all(readScienceQa({ ...files, split: "train" }));
  assert.deepEqual(items.map((p) => [p.id, p.split, p.answer]), [["1", "train", "A"]]);
  assert.deepEqual(items[0]!.images, [{ kind: "file", path: join(FIX, "images/train/1/image.png") }]);
  await assert.rejects(all(readScienceQa({ ...files, split: "testt" })), (e: unknown) => e instanceof DataFormatError && /has no list "testt"; its splits are train, val, test, minival/.test(e.message));
});
