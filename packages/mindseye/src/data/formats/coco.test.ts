import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readCoco } from "./coco.js";
import { DataFormatError, SkipCounter } from "./errors.js";
import type { ImageTextPair } from "./index.js";

const FIX = fileURLToPath(new URL("../../../test-fixtures/formats/coco/", import.meta.url));
const annotations = join(FIX, "annotations/captions_val2017.json");

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test("COCO: one pair per image with its captions stripped, in file order", async () => {
  const errors = new SkipCounter("coco");
  const pairs: ImageTextPair[] = await all(readCoco({ annotations, images: join(FIX, "val2017") }, { errors }));
  assert.deepEqual(pairs.map((p) => p.id), ["139", "285"]);
  assert.deepEqual(pairs[0]!.captions, [
    "A woman stands in the dining area at the table.",
    "A room with chairs, a table, and a woman in it.",
    "A woman standing in a kitchen by a window",
  ]);
  assert.deepEqual(pairs[1]!.captions, ["A big burly grizzly bear is show with grass in the background.", "The large brown bear has a black nose."]);
  assert.deepEqual(pairs[0]!.image, { kind: "file", path: join(FIX, "val2017/000000000139.jpg") });
  assert.ok(existsSync((pairs[0]!.image as { path: string }).path));
  assert.equal(pairs[0]!.meta.width, 8);
  assert.equal(pairs[0]!.meta.coco_url, "http://images.cocodataset.org/val2017/000000000139.jpg");
  assert.deepEqual(pairs[1]!.source, { file: annotations, record: "images[1] (id 285)" });
});

test("COCO: malformed annotations are skipped and counted with file and index; a captionless image is omitted", async () => {
  const errors = new SkipCounter("coco");
  await all(readCoco({ annotations, images: join(FIX, "val2017") }, { errors }));
  const r = errors.report();
  assert.equal(r.seen, 7);
  assert.deepEqual(r.examples.map((e) => [e.source.file, e.source.record, e.reason]), [
    [annotations, "annotations[4]", 'missing "image_id"'],
    [annotations, "annotations[5]", 'image_id 77777 is not in "images"'],
  ]);
  assert.deepEqual(r.omitted, { "images without captions": 1 });
});

test("COCO: a file of another format is a DataFormatError naming it", async () => {
  const gqa = fileURLToPath(new URL("../../../test-fixtures/formats/gqa/questions1.2/testdev_balanced_questions.json", import.meta.url));
  await assert.rejects(all(readCoco({ annotations: gqa, images: FIX })), (e: unknown) => e instanceof DataFormatError && e.message.includes(gqa) && /expected arrays "images" and "annotations"/.test(e.message));
  await assert.rejects(all(readCoco({ annotations: join(FIX, "nope.json"), images: FIX })), /cannot read .*nope\.json/);
});
