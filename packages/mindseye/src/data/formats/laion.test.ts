import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SkipCounter } from "./errors.js";
import { readLaion } from "./laion.js";

const FIX = fileURLToPath(new URL("../../../test-fixtures/formats/laion/", import.meta.url));
const PART0 = join(FIX, "laion400m-meta/part-00000-5b54c5d5-bbcf-484d-a2ce-0d6f73df1a36-c000.snappy.parquet");

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test("LAION: metadata parquet files joined with img2dataset's download, shard numbers running on across files", async () => {
  const errors = new SkipCounter("laion");
  // the fixture was downloaded with --number_sample_per_shard 3: part-00000 (5 rows) → shards 0–1, part-00001 → shard 2
  const pairs = await all(readLaion({ metadata: join(FIX, "laion400m-meta"), images: join(FIX, "images"), samplesPerShard: 3 }, { errors }));
  assert.deepEqual(pairs.map((p) => p.id), ["000000", "000010", "000011", "000020"]);
  assert.deepEqual(pairs.map((p) => p.captions[0]), ["Vintage poster of a seaside town", "Cat sleeping on a sofa", "Mountain lake at sunrise", "Red sports car"]);
  assert.deepEqual(pairs[1]!.meta, { URL: "http://example.com/laion/3.jpg", NSFW: "UNLIKELY", similarity: 0.3899, LICENSE: "https://creativecommons.org/licenses/by/4.0/" });
  assert.deepEqual(pairs[2]!.image, { kind: "file", path: join(FIX, "images/00001/000011.jpg") });
  assert.deepEqual(pairs[3]!.source.record, "row 0");
  const r = errors.report();
  assert.deepEqual(r.omitted, { "not downloaded": 2 });
  assert.deepEqual(r.examples.map((e) => [e.source.file, e.source.record, e.reason]), [[PART0, "row 2", 'missing "TEXT"']]);
});

test("LAION: one file read alone; a parquet without URL/TEXT is a clear error", async () => {
  const pairs = await all(readLaion({ metadata: PART0, images: join(FIX, "images"), samplesPerShard: 3 }, { errors: new SkipCounter("laion") }));
  assert.equal(pairs.length, 3);
  const blink = fileURLToPath(new URL("../../../test-fixtures/formats/blink/Jigsaw/val-00000-of-00001.parquet", import.meta.url));
  await assert.rejects(all(readLaion({ metadata: blink, images: join(FIX, "images") })), (e: unknown) => e instanceof Error && e.message.includes(blink) && /missing column\(s\) URL, TEXT; it has idx, question/.test(e.message));
});
