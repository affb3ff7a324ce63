import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { readCc3m } from "./cc3m.js";
import { readPairs } from "./index.js";
import { DataFormatError, ErrorRateExceeded, SkipCounter } from "./errors.js";
import { img2datasetKey } from "./img2dataset.js";

const FIX = fileURLToPath(new URL("../../../test-fixtures/formats/cc3m/", import.meta.url));
const tsv = join(FIX, "cc3m.tsv");
const images = join(FIX, "images");

async function all<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test("img2dataset keys: shard · 10^ceil(log10(samples per shard)) + index, zero-padded", () => {
  const d = { samplesPerShard: 10000, shardDigits: 5 };
  assert.equal(img2datasetKey(0, 0, d), "000000000");
  assert.equal(img2datasetKey(1, 5, d), "000010005");
  assert.equal(img2datasetKey(331, 9999, d), "003319999");
  assert.equal(img2datasetKey(2, 1, { samplesPerShard: 3, shardDigits: 5 }), "000021");
});

test("CC3M: one pair per downloaded row, caption from the TSV, img2dataset's json as meta", async () => {
  const errors = new SkipCounter("cc3m");
  const pairs = await all(readCc3m({ tsv, images }, { errors }));
  assert.deepEqual(pairs.map((p) => p.id), ["000000000", "000000003", "000000005"]);
  assert.deepEqual(pairs.map((p) => p.captions), [["a very typical bus station"], ["actor arrives at the premiere"], ["the harbour at night"]]);
  assert.deepEqual(pairs[1]!.image, { kind: "file", path: join(images, "00000/000000003.png") });
  assert.equal(pairs[0]!.meta.url, "http://example.com/cc3m/bus.jpg");
  assert.equal(pairs[0]!.meta.status, "success");
  assert.deepEqual(pairs[2]!.source, { file: tsv, record: "line 7" });
  const r = errors.report();
  assert.deepEqual(r.omitted, { "not downloaded": 1 });
  assert.deepEqual(r.examples.map((e) => `${e.source.record}: ${e.reason}`), ["line 4: expected 2 tab-separated fields (caption, url), got 3", "line 6: empty caption"]);
});

test("CC3M: the released TSV without a header reads the same", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-cc3m-"));
  const bare = join(dir, "Train_GCC-training.tsv");
  writeFileSync(bare, readFileSync(tsv, "utf8").split("\n").slice(1).join("\n"));
  const pairs = await all(readCc3m({ tsv: bare, images }, { errors: new SkipCounter("cc3m") }));
  assert.deepEqual(pairs.map((p) => p.id), ["000000000", "000000003", "000000005"]);
});

test("CC3M: a download folder that does not match the TSV is a DataFormatError, not silently wrong pairs", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mindseye-cc3m-"));
  const shifted = join(dir, "shifted.tsv");
  writeFileSync(shifted, "caption\turl\nan extra first row\thttp://example.com/extra.jpg\n" + readFileSync(tsv, "utf8").split("\n").slice(1).join("\n"));
  await assert.rejects(all(readCc3m({ tsv: shifted, images })), (e: unknown) =>
    e instanceof DataFormatError && /000000000\.json has url "http:\/\/example\.com\/cc3m\/bus\.jpg" but .*shifted\.tsv line 2 has "http:\/\/example\.com\/extra\.jpg"/.test(e.message) && /samplesPerShard 10000/.test(e.message));
});

test("CC3M: past maxErrorRate over the whole file the run stops, saying how many were bad and where", async () => {
  const errors = new SkipCounter("cc3m", { maxErrorRate: 0.1 });
  const seen = (await all(readCc3m({ tsv, images }, { errors }))).map((p) => p.id);
  assert.deepEqual(seen, ["000000000", "000000003", "000000005"], "every good record is read before the verdict");
  assert.throws(() => errors.finish(), (e: unknown) => e instanceof ErrorRateExceeded && /stopped reading cc3m: 2 of 5 records were malformed \(40%\)/.test(e.message) && e.message.includes(`${tsv} line 4: expected 2 tab-separated fields`));
  // a read through the registry without a counter of the caller's judges its own at the end
  await assert.rejects(all(readPairs({ format: "cc3m", tsv, images })), (e: unknown) => e instanceof ErrorRateExceeded && /2 of 5 records were malformed \(40%\), above the maximum error rate 1%/.test(e.message));
});

test("CC3M: a missing download folder is a clear error", async () => {
  await assert.rejects(all(readCc3m({ tsv, images: join(FIX, "no-such-folder") })), /img2dataset output folder .*no-such-folder/);
});
