import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { torch } from "@mindseye/torch";
import { VitVisionModel, vitPreset } from "../models/vit.js";
import { extractTargets, TargetCache, loadEncoder, encoderFingerprint, preprocess, type TargetManifest } from "./targets.js";
import { readPairs, SkipCounter, type ImageTextPair } from "./formats/index.js";
import { decodeImage } from "./images.js";
import { poolFeatures } from "../objectives/pooling.js";

const here = dirname(fileURLToPath(import.meta.url));
const coco = join(here, "..", "..", "test-fixtures", "formats", "coco"); // dist/data -> package root
const data = { format: "coco", annotations: join(coco, "annotations", "captions_val2017.json"), images: join(coco, "val2017") };
/** The fixture holds 2 malformed annotations of 7 records on purpose. */
const lenient = () => ({ errors: new SkipCounter("coco", { maxErrorRate: 1 }) });
const MAIN = join(here, "..", "cli", "main.js");

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
  const m = await extractTargets({ encoderDir: enc, data, out, pool: "grid:4", batchSize: 2, shardSize: 2, quiet: true, maxErrorRate: 0.5 });
  assert.equal(m.complete, true);
  // the fixture's COCO file has two well-formed images (two annotations are deliberately malformed: skipped, listed)
  assert.deepEqual([m.k, m.d, m.shards.length, m.skipped], [4, 32, 1, 2]);
  assert.deepEqual(m.skippedList.map((e) => [e.kind, e.record]), [["record", "annotations[4]"], ["record", "annotations[5]"]]);
  const cache = new TargetCache(out);
  assert.equal(cache.size, 2);
  // recompute one record directly
  const { model, preprocessing } = loadEncoder(enc);
  const pairs: ImageTextPair[] = [];
  for await (const p of readPairs(data, lenient())) pairs.push(p);
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
  for await (const p of readPairs(data, lenient())) if (p.image.kind === "file") decoded.set(p.image.path, await decodeImage(p.image));
});

test("an interrupted extraction resumes at the first missing shard, without recomputing the others", withDirs(async (enc, out) => {
  makeEncoder(enc, 2);
  const full = await extractTargets({ encoderDir: enc, data, out, pool: "mean", batchSize: 1, shardSize: 1, quiet: true, maxErrorRate: 0.5 });
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
  const resumed = await extractTargets({ encoderDir: enc, data, out, pool: "mean", batchSize: 1, shardSize: 1, quiet: true, maxErrorRate: 0.5 });
  assert.equal(resumed.shards.length, 2);
  assert.equal(statSync(join(out, full.shards[0]!.file)).mtimeMs, firstMtime, "shard 0 was not rewritten");
  const after = new TargetCache(out);
  assert.ok(torch.scope(() => after.get(after.ids()).sub(all).abs().amax().item()) === 0);
  after.dispose(); all.dispose();
}));

test("a cache is refused for another encoder or other settings", withDirs(async (enc, out, root) => {
  makeEncoder(enc, 3);
  const m = await extractTargets({ encoderDir: enc, data, out, pool: "mean", quiet: true, maxErrorRate: 0.5 });
  const other = join(root, "other");
  makeEncoder(other, 4);
  const { model, config, preprocessing } = loadEncoder(other);
  const fp = encoderFingerprint(model, config, preprocessing);
  model.parameters().forEach((p) => p.dispose());
  assert.notEqual(fp, m.fingerprint);
  assert.throws(() => new TargetCache(out, { expectFingerprint: fp }), /made with another encoder/);
  assert.equal(new TargetCache(out, { expectFingerprint: m.fingerprint }).size, 2);
  await assert.rejects(extractTargets({ encoderDir: other, data, out, pool: "mean", quiet: true, maxErrorRate: 0.5 }), /holds a cache made with another fingerprint/);
  await assert.rejects(extractTargets({ encoderDir: enc, data, out, pool: "grid:4", quiet: true, maxErrorRate: 0.5 }), /another pooling/);
}));

// ---- the data a cache was made from, and what it skipped ---------------------------------------

/** A COCO captions file over the fixture's two good images: one image entry and caption per id. */
function writeCoco(path: string, ids: number[]): void {
  const files = ["000000000139.jpg", "000000000285.jpg"];
  writeFileSync(path, JSON.stringify({
    images: ids.map((id, i) => ({ id, file_name: files[i % 2] })),
    annotations: ids.map((id, i) => ({ id: i, image_id: id, caption: `caption ${id}` })),
  }));
}

/** Runs the CLI; `until` may SIGKILL it (a crash) once it returns true for the output so far. */
async function runCli(args: string[], until?: () => boolean, timeoutMs = 120_000): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, MINDSEYE_NUM_THREADS: "1" }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "", stderr = "";
  child.stdout.on("data", (d: Buffer) => { stdout += d.toString(); });
  child.stderr.on("data", (d: Buffer) => { stderr += d.toString(); });
  const poll = until ? setInterval(() => { if (until()) child.kill("SIGKILL"); }, 5) : undefined;
  const deadline = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.on("exit", (c, s) => resolve([c, s])));
  clearInterval(poll);
  clearTimeout(deadline);
  return { code, signal, stdout, stderr };
}

const shardsDone = (out: string): number => {
  try {
    return (JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")) as TargetManifest).shards.length;
  } catch {
    return 0; // not written yet, or being renamed into place
  }
};

test("an extraction killed after some shards refuses to resume from other data, naming what differs (real process, SIGKILL)", withDirs(async (enc, out, root) => {
  makeEncoder(enc, 5);
  const images = join(root, "images");
  mkdirSync(images);
  for (const f of ["000000000139.jpg", "000000000285.jpg"]) copyFileSync(join(coco, "val2017", f), join(images, f));
  const train = join(root, "captions_train.json"), val = join(root, "captions_val.json");
  writeCoco(train, Array.from({ length: 3000 }, (_, i) => i + 1));
  writeCoco(val, Array.from({ length: 40 }, (_, i) => 100001 + i));
  const args = (annotations: string) => ["targets", "extract", "--encoder", enc, "--data", JSON.stringify({ format: "coco", annotations, images }), "--out", out, "--pool", "mean", "--batch-size", "1", "--shard-size", "1"];

  const killed = await runCli(args(train), () => shardsDone(out) >= 3);
  assert.equal(killed.signal, "SIGKILL", `the extraction ended before it could be killed: ${killed.stdout}${killed.stderr}`);
  const before = readFileSync(join(out, "manifest.json"), "utf8");
  const partial = JSON.parse(before) as TargetManifest;
  assert.equal(partial.complete, false);
  assert.ok(partial.shards.length >= 3 && partial.shards.length < 3000);

  const resumed = await runCli(args(val));
  assert.equal(resumed.code, 1, resumed.stdout);
  assert.match(resumed.stderr, new RegExp(`${out} holds targets extracted from other data \\(${partial.shards.length} shards done\\):\\n  annotations was "${train}", now "${val}"\\nUse another --out for this data, or delete the folder to start over \\(${out}\\)\\.`));
  assert.equal(readFileSync(join(out, "manifest.json"), "utf8"), before, "the refused run changed nothing");
  // the same data resumes past the finished shards (killed again: completing 3000 shards is not the point)
  const again = await runCli(args(train), () => shardsDone(out) >= partial.shards.length + 3);
  assert.equal(again.signal, "SIGKILL", again.stderr);
  assert.equal(again.stderr, "");
}));

test("a resume whose records differ from those a finished shard was made from is refused (same file path and size)", withDirs(async (enc, out, root) => {
  makeEncoder(enc, 6);
  const annotations = join(root, "captions.json");
  writeCoco(annotations, [11, 12, 13]);
  const spec = { format: "coco", annotations, images: join(coco, "val2017") };
  const full = await extractTargets({ encoderDir: enc, data: spec, out, pool: "mean", batchSize: 1, shardSize: 1, quiet: true });
  assert.deepEqual(full.shards.map((s) => [s.records, s.ids.first]), [[1, "11"], [1, "12"], [1, "13"]]);
  assert.deepEqual(full.data.files.map((f) => [f.field, f.kind, f.size]), [["annotations", "file", statSync(annotations).size], ["images", "folder", null]]);
  // the run died after two shards; meanwhile the file was rewritten with other ids of the same length
  writeFileSync(join(out, "manifest.json"), JSON.stringify({ ...full, shards: full.shards.slice(0, 2), complete: false }));
  writeCoco(annotations, [11, 21, 13]);
  await assert.rejects(extractTargets({ encoderDir: enc, data: spec, out, pool: "mean", batchSize: 1, shardSize: 1, quiet: true }),
    new RegExp(`${out}: shard targets-00001\\.safetensors was made from records 12 … 12, but the data now gives 21 … 21 there; the data changed since the cache was started — use another --out for this data, or delete ${out} to start over`));
}));

test("skipped records are reported and listed, and past --max-error-rate over the whole input the run stops (WebDataset with a truncated shard)", withDirs(async (enc, out, root) => {
  makeEncoder(enc, 7);
  const wds = join(here, "..", "..", "test-fixtures", "formats", "webdataset");
  copyFileSync(join(wds, "00001.tar"), join(root, "a.tar")); // 2 good samples
  writeFileSync(join(root, "b.tar"), readFileSync(join(wds, "00000.tar")).subarray(0, 512 * 9 + 100)); // 1 good sample, then cut
  const args = (rate: string) => ["targets", "extract", "--encoder", enc, "--data", `{format: webdataset, shards: "${root}/{a,b}.tar"}`, "--out", out, "--pool", "mean", "--batch-size", "1", "--shard-size", "2", "--max-error-rate", rate];

  const stopped = await runCli(args("0.1"));
  assert.equal(stopped.code, 1, stopped.stdout);
  assert.match(stopped.stderr, /stopped reading webdataset records: 1 of 4 records were malformed \(25%\), above the maximum error rate 10%/);
  assert.match(stopped.stderr, /b\.tar after member \d+ \(000000001\.\w+\): the rest of the shard is unreadable/);
  assert.match(stopped.stderr, /allow a higher rate with --max-error-rate \(mindseye targets extract\)/);
  const m = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")) as TargetManifest;
  assert.equal(m.complete, false, "a run stopped by its error rate is not complete");
  assert.deepEqual([m.skipped, m.skippedList.map((e) => [e.kind, e.file])], [1, [["record", join(root, "b.tar")]]]);

  rmSync(out, { recursive: true });
  const ok = await runCli(args("0.3"));
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /: 3 targets of \[1, 32\] \(mean, float32\) in 2 shards; encoder [0-9a-f]{12}\nskipped: 1 malformed record, 0 undecodable images \(all listed in .*manifest\.json "skippedList"\)\n {2}.*b\.tar after member \d+ \(000000001\.\w+\): the rest of the shard is unreadable/);
  const done = JSON.parse(readFileSync(join(out, "manifest.json"), "utf8")) as TargetManifest;
  assert.deepEqual([done.complete, done.skipped, done.maxErrorRate], [true, 1, 0.3]);
  assert.equal(existsSync(join(out, done.shards[1]!.file)), true);
}));

test("an output folder in a read-only place is refused as EROFS, naming what it is for (real process; no recursive-mkdir hang under /proc)", { skip: process.platform !== "linux" && "needs Linux's /proc" }, withDirs(async (enc) => {
  makeEncoder(enc, 8);
  const r = await runCli(["targets", "extract", "--encoder", enc, "--data", JSON.stringify(data), "--out", "/proc/mindseye-test/cache", "--max-error-rate", "0.5"], undefined, 30_000);
  assert.equal(r.signal, null, "the command hung and was killed");
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^mindseye: cannot create the target cache \(--out\) \/proc\/mindseye-test\/cache: \/proc is on a read-only file system \(proc mounted at \/proc\) \(EROFS\); choose a writable location\n$/);
}));
