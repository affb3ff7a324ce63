import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readBlink, readBlinkJsonl } from "./blink.js";
import { DataFormatError, SkipCounter } from "./errors.js";

const FIX = fileURLToPath(new URL("../../../test-fixtures/formats/blink/Jigsaw/", import.meta.url));
const VAL = join(FIX, "val-00000-of-00001.parquet");

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test("BLINK Jigsaw: embedded images from {bytes, path} structs, gold letters, malformed answers counted", async () => {
  const errors = new SkipCounter("blink");
  const items = await all(readBlink({ files: VAL }, { errors }));
  assert.deepEqual(items.map((i) => [i.id, i.answer, i.answerIndex]), [["val_Jigsaw_1", "B", 1], ["val_Jigsaw_2", "A", 0]]);
  const it = items[0]!;
  assert.equal(it.dataset, "blink");
  assert.equal(it.subTask, "Jigsaw");
  assert.deepEqual(it.choices, ["the second image", "the third image"]);
  assert.match(it.prompt, /^Given the first image with the lower right corner missing.*\n\(A\) the second image\n\(B\) the third image$/s);
  assert.equal(it.images.length, 3, "image_4 is null");
  for (const img of it.images) {
    assert.ok(img.kind === "bytes");
    assert.deepEqual([...img.bytes.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], "PNG signature");
  }
  assert.deepEqual(it.source, { file: VAL, record: "row 0 (idx val_Jigsaw_1)" });
  assert.deepEqual(errors.report().examples.map((e) => `${e.source.record}: ${e.reason}`), ['row 2 (idx val_Jigsaw_3): "answer" must be "(A)", "(B)", … or "hidden", got "B"']);
});

test("BLINK: a config folder reads every split file in name order; test answers are hidden", async () => {
  const items = await all(readBlink({ files: FIX }, { errors: new SkipCounter("blink") }));
  assert.deepEqual(items.map((i) => [i.id, i.answer]), [["test_Jigsaw_1", null], ["val_Jigsaw_1", "B"], ["val_Jigsaw_2", "A"]]);
});

test("BLINK: a parquet without BLINK's columns is a DataFormatError listing them", async () => {
  const laion = fileURLToPath(new URL("../../../test-fixtures/formats/laion/laion400m-meta", import.meta.url));
  await assert.rejects(all(readBlink({ files: laion })), (e: unknown) => e instanceof DataFormatError && /missing column\(s\) idx, question, sub_task, image_1/.test(e.message) && /it has URL, TEXT, NSFW, similarity, LICENSE/.test(e.message));
});

test("BLINK as JSON lines: the same items with image files beside the file; bad lines counted", async () => {
  const file = fileURLToPath(new URL("../../../test-fixtures/formats/blink_jsonl/Jigsaw/val.jsonl", import.meta.url));
  const errors = new SkipCounter("blink");
  const items = await all(readBlinkJsonl({ file }, { errors }));
  const parquet = await all(readBlink({ files: VAL }, { errors: new SkipCounter("blink") }));
  const fields = (i: (typeof items)[number]) => [i.id, i.question, i.answer, i.answerIndex, i.choices, i.subTask, i.prompt];
  assert.deepEqual(items.map(fields), parquet.map(fields));
  assert.deepEqual(items[0]!.images, [1, 2, 3].map((n) => ({ kind: "file", path: join(file, "..", `images/val_Jigsaw_1_${n}.png`) })));
  assert.deepEqual(items[0]!.source, { file, record: "line 1 (idx val_Jigsaw_1)" });
  assert.deepEqual(errors.report().examples.map((e) => `${e.source.record}: ${e.reason}`), ['line 3 (idx val_Jigsaw_3): "answer" must be "(A)", "(B)", … or "hidden", got "B"']);
  await assert.rejects(all(readBlinkJsonl({ file: join(FIX, "nope.jsonl") })), DataFormatError);
});
