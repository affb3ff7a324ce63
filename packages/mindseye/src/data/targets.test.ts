import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { torch } from "@mindseye/torch";
import { VitVisionModel, vitPreset } from "../models/vit.js";
import { extractTargets, TargetCache, loadEncoder, encoderFingerprint, preprocess, type TargetManifest } from "./targets.js";
import { readPairs, type ImageTextPair } from "./formats/index.js";
import { decodeImage } from "./images.js";
import { poolFeatures } from "../objectives/pooling.js";

const here = dirname(fileURLToPath(import.meta.url));
const coco = join(here, "..", "..", "test-fixtures", "formats", "coco"); // dist/data -> package root
const data = { format: "coco", annotations: join(coco, "annotations", "captions_val2017.json"), images: join(coco, "val2017") };

/** A tiny SigLIP-style encoder saved as HF does, with its preprocessor_config.json. */
function makeEncoder(dir: string, seed: number): void {
  torch.manualSeed(seed);
  const model = new VitVisionModel(vitPreset("siglip-tiny"));
  model.savePretrained(dir);
  model.parameters().forEach((p) => p.dispose());
  writeFileSync(join(dir, "preprocessor_config.json"), JSON.stringify({
    image_processor_type: "SiglipImageProcessor", do_resize: true, size: { height: 16, width: 16 }, resample: 3,
    do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5],
  }));
}

function withDirs(fn: (enc: string, out: string, root: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const root = mkdtempSync(join(tmpdir(), "mindseye-targets-"));
    try { await fn(join(root, "encoder"), join(root, "cache"), root); } finally { rmSync(root, { recursive: true, force: true }); }
  };
}

test("extracted targets equal the encoder's pooled features, by record id", withDirs(async (enc, out) => {
  makeEncoder(enc, 1);
  const m = await extractTargets({ encoderDir: enc, data, out, pool: "grid:4", batchSize: 2, shardSize: 2, quiet: true });
  assert.equal(m.complete, true);
  // the fixture's COCO file has two well-formed images (its third record is deliberately malformed)
  assert.deepEqual([m.k, m.d, m.shards.length, m.skipped], [4, 32, 1, 0]);
  const cache = new TargetCache(out);
  assert.equal(cache.size, 2);
  // recompute one record directly
  const { model, preprocessing } = loadEncoder(enc);
  const pairs: ImageTextPair[] = [];
  for await (const p of readPairs(data)) pairs.push(p);
  const want = torch.noGrad(() => torch.scope(() => {
    const pixels = preprocess([decodeImageSync(pairs[1]!.image)], preprocessing);
    return poolFeatures(model.features(pixels, -1), "grid:4", { hasClassToken: false });
  }));
  const got = cache.get([pairs[1]!.id]);
  assert.deepEqual(got.shape, [1, 4, 32]);
  assert.ok(torch.scope(() => got.sub(want).abs().amax().item()) < 1e-6);
  assert.throws(() => cache.get(["no-such-id"]), /no target for record "no-such-id"/);
  cache.dispose(); got.dispose(); want.dispose();
  model.parameters().forEach((p) => p.dispose());
}));

// Decoding is async; the test pre-decodes through a small cache.
const decoded = new Map<string, Awaited<ReturnType<typeof decodeImage>>>();
function decodeImageSync(ref: { kind: string; path?: string }): Awaited<ReturnType<typeof decodeImage>> {
  const img = decoded.get(ref.path!);
  if (!img) throw new Error("not pre-decoded");
  return img;
}
test.before(async () => {
  for await (const p of readPairs(data)) if (p.image.kind === "file") decoded.set(p.image.path, await decodeImage(p.image));
});

test("an interrupted extraction resumes at the first missing shard, without recomputing the others", withDirs(async (enc, out) => {
  makeEncoder(enc, 2);
  const full = await extractTargets({ encoderDir: enc, data, out, pool: "mean", batchSize: 1, shardSize: 1, quiet: true });
  assert.equal(full.shards.length, 2);
  const before = new TargetCache(out);
  const all = before.get(before.ids());
  before.dispose();
  const firstMtime = statSync(join(out, full.shards[0]!.file)).mtimeMs;
  // The run died while writing shard 1: its file never appeared and the manifest lists one.
  const manifest = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")) as TargetManifest;
  unlinkSync(join(out, manifest.shards[1]!.file));
  writeFileSync(join(out, "manifest.json"), JSON.stringify({ ...manifest, shards: manifest.shards.slice(0, 1), complete: false }));
  assert.throws(() => new TargetCache(out), /did not finish/);
  const resumed = await extractTargets({ encoderDir: enc, data, out, pool: "mean", batchSize: 1, shardSize: 1, quiet: true });
  assert.equal(resumed.shards.length, 2);
  assert.equal(statSync(join(out, full.shards[0]!.file)).mtimeMs, firstMtime, "shard 0 was not rewritten");
  const after = new TargetCache(out);
  assert.ok(torch.scope(() => after.get(after.ids()).sub(all).abs().amax().item()) === 0);
  after.dispose(); all.dispose();
}));

test("a cache is refused for another encoder or other settings", withDirs(async (enc, out, root) => {
  makeEncoder(enc, 3);
  const m = await extractTargets({ encoderDir: enc, data, out, pool: "mean", quiet: true });
  const other = join(root, "other");
  makeEncoder(other, 4);
  const { model, config, preprocessing } = loadEncoder(other);
  const fp = encoderFingerprint(model, config, preprocessing);
  model.parameters().forEach((p) => p.dispose());
  assert.notEqual(fp, m.fingerprint);
  assert.throws(() => new TargetCache(out, { expectFingerprint: fp }), /made with another encoder/);
  assert.equal(new TargetCache(out, { expectFingerprint: m.fingerprint }).size, 2);
  await assert.rejects(extractTargets({ encoderDir: other, data, out, pool: "mean", quiet: true }), /holds a cache made with another fingerprint/);
  await assert.rejects(extractTargets({ encoderDir: enc, data, out, pool: "grid:4", quiet: true }), /another pooling/);
}));
