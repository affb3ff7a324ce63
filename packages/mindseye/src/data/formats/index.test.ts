import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../../config/errors.js";
import { FORMATS, SkipCounter, createRegistry, getFormat, imageBytes, readPairs, readTasks, type DatasetSpec } from "./index.js";

const X = fileURLToPath(new URL("../../../test-fixtures/formats/", import.meta.url));

// every format, pointed at its fixture through the spec a recipe would give
const SPECS: Record<string, { spec: DatasetSpec; records: number }> = {
  coco: { spec: { format: "coco", annotations: join(X, "coco/annotations/captions_val2017.json"), images: join(X, "coco/val2017") }, records: 2 },
  cc3m: { spec: { format: "cc3m", tsv: join(X, "cc3m/cc3m.tsv"), images: join(X, "cc3m/images") }, records: 3 },
  webdataset: { spec: { format: "webdataset", shards: [join(X, "webdataset/00000.tar"), join(X, "webdataset/00001.tar")] }, records: 6 },
  laion: { spec: { format: "laion", metadata: join(X, "laion/laion400m-meta"), images: join(X, "laion/images"), samplesPerShard: 3 }, records: 4 },
  gqa: { spec: { format: "gqa", questions: join(X, "gqa/questions1.2/testdev_balanced_questions.json"), images: join(X, "gqa/images") }, records: 3 },
  scienceqa: { spec: { format: "scienceqa", problems: join(X, "scienceqa/data/scienceqa/problems.json"), pidSplits: join(X, "scienceqa/data/scienceqa/pid_splits.json"), images: join(X, "scienceqa/images"), split: "test" }, records: 2 },
  blink: { spec: { format: "blink", files: join(X, "blink/Jigsaw") }, records: 3 },
  blink_jsonl: { spec: { format: "blink_jsonl", file: join(X, "blink_jsonl/Jigsaw/val.jsonl") }, records: 2 },
};

async function count(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of it) n++;
  return n;
}

test("the registry holds the eight formats, and every one reads its fixture through its spec", async () => {
  assert.deepEqual([...FORMATS.keys()].sort(), Object.keys(SPECS).sort());
  for (const [name, { spec, records }] of Object.entries(SPECS)) {
    const f = getFormat(name);
    const read = f.kind === "pairs" ? readPairs(spec, { errors: new SkipCounter(name) }) : readTasks(spec, { errors: new SkipCounter(name) });
    assert.equal(await count(read), records, name);
    for (const key of Object.keys(spec)) if (key !== "format") assert.ok(key in f.fields, `${name}.${key} is declared`);
  }
});

test("a misspelt format or key gets a suggestion; missing and mistyped keys are named", () => {
  assert.throws(() => getFormat("cooc"), (e: unknown) => e instanceof ConfigError && /unknown data format "cooc" \(did you mean "coco"\?\); known formats: coco, cc3m/.test(e.message));
  assert.throws(() => getFormat("imagenet"), (e: unknown) => e instanceof ConfigError && !/did you mean/.test(e.message));
  assert.throws(() => readPairs({ format: "coco", annotation: "a.json", images: "x" }), /data format "coco": unknown key "annotation" \(did you mean "annotations"\?\); it takes annotations, images/);
  assert.throws(() => readPairs({ format: "cc3m", images: "x" }), /data format "cc3m": missing "tsv"/);
  assert.throws(() => readPairs({ format: "cc3m", tsv: "a.tsv", images: "x", samplesPerShard: 0 }), /"samplesPerShard" must be a positive integer, got 0/);
  assert.throws(() => readPairs({ format: "webdataset", shards: [1] }), /"shards" must be a path or a list of paths/);
  assert.throws(() => readPairs({ format: "gqa", questions: "q.json", images: "x" }), /"gqa" gives task items, not image–caption pairs \(pair formats: coco, cc3m, webdataset, laion\)/);
  assert.throws(() => readTasks({ format: "laion", metadata: "m", images: "x" }), /gives image–caption pairs, not task items/);
});

test("createRegistry refuses two formats with one name", () => {
  const coco = getFormat("coco");
  assert.throws(() => createRegistry([coco, getFormat("gqa"), coco]), /data format "coco" is registered twice/);
});

test("imageBytes reads a file reference and passes bytes through", async () => {
  const path = join(X, "coco/val2017/000000000139.jpg");
  const bytes = await imageBytes({ kind: "file", path });
  assert.deepEqual([...bytes.subarray(0, 2)], [0xff, 0xd8]);
  const b = new Uint8Array([1, 2, 3]);
  assert.equal(await imageBytes({ kind: "bytes", bytes: b, name: "x" }), b);
  await assert.rejects(imageBytes({ kind: "file", path: join(X, "nope.jpg") }), /cannot read image .*nope\.jpg/);
});
