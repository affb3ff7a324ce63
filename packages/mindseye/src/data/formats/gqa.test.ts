import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DataFormatError, SkipCounter } from "./errors.js";
import { readGqa } from "./gqa.js";

const FIX = fileURLToPath(new URL("../../../test-fixtures/formats/gqa/", import.meta.url));
const questions = join(FIX, "questions1.2/testdev_balanced_questions.json");

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test("GQA: one item per question with answer, types and image path; a malformed question is counted", async () => {
  const errors = new SkipCounter("gqa");
  const items = await all(readGqa({ questions, images: join(FIX, "images") }, { errors }));
  assert.deepEqual(items.map((q) => q.id), ["20968379", "20968380", "201551245"]);
  const q = items[0]!;
  assert.equal(q.dataset, "gqa");
  assert.equal(q.question, "Do the shorts have dark color?");
  assert.equal(q.answer, "yes");
  assert.equal(q.fullAnswer, "Yes, the shorts are dark.");
  assert.equal(q.imageId, "n288870");
  assert.deepEqual(q.images, [{ kind: "file", path: join(FIX, "images/n288870.jpg") }]);
  assert.deepEqual(q.types, { structural: "verify", semantic: "attr", detailed: "verifyAttr" });
  assert.deepEqual(q.groups, { global: null, local: "06-shorts_dark" });
  assert.equal(q.isBalanced, true);
  assert.equal(items[1]!.isBalanced, false);
  assert.deepEqual(q.source, { file: questions, record: "question 20968379" });
  assert.deepEqual(errors.report().examples.map((e) => `${e.source.record}: ${e.reason}`), ['question 20968381: missing "imageId"']);
});

test("GQA: a folder of chunk files is read in numeric order; test-split questions have no answer", async () => {
  const dir = join(mkdtempSync(join(tmpdir(), "mindseye-gqa-")), "train_all_questions");
  mkdirSync(dir);
  const q = (id: string) => ({ imageId: id, question: `q ${id}?`, isBalanced: true });
  writeFileSync(join(dir, "train_all_questions_10.json"), JSON.stringify({ c: q("3") }));
  writeFileSync(join(dir, "train_all_questions_2.json"), JSON.stringify({ b: { ...q("2"), answer: "no" } }));
  writeFileSync(join(dir, "train_all_questions_0.json"), JSON.stringify({ a: q("1") }));
  const items = await all(readGqa({ questions: dir, images: "img" }));
  assert.deepEqual(items.map((i) => [i.id, i.answer]), [["a", null], ["b", "no"], ["c", null]]);
  assert.deepEqual(items[2]!.source.file, join(dir, "train_all_questions_10.json"));
  await assert.rejects(all(readGqa({ questions: join(dir, "missing.json"), images: "img" })), DataFormatError);
});
