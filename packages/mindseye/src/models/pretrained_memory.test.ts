// Loading a checkpoint costs the model's memory once: fromPretrained reads each tensor straight
// into its parameter (pretrained.ts loadCheckpointInto), where it used to hold the model, every
// checkpoint tensor and a copy of the largest (over twice the file). Measured in a child process
// by its peak resident set (VmHWM), against the runtime's own peak before loading. The full-size
// figure (the real widths, 2 + 2 layers, ≈ 3.3 GB) is `npm run bench:load`.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nn, torch } from "@mindseye/torch";
import { loadCheckpointInto, saveCheckpoint } from "./pretrained.js";
import { measureLoadInChild, writeQwen2_5_VL7bShaped } from "./pretrained_memory_test_helpers.js";

const root = mkdtempSync(join(tmpdir(), "mindseye-load-memory-"));
after(() => rmSync(root, { recursive: true, force: true }));

// The model once, plus a quarter for the 16 MiB read chunk, allocator slack and the module's
// small tensors. The old path's peak was 2× the file and more, so it fails this bound.
const FACTOR = 1.25;
const GB = (b: number) => (b / 1e9).toFixed(2);

test("a Qwen2.5-VL-7B-shaped bf16 checkpoint (real vocabulary and vision tower, LM a quarter as wide, 2 + 2 layers) loads from shards with peak memory ≈ its size", (t) => {
  const dir = join(root, "bf16");
  // The real config.json with the language model's widths / 4 (hidden 896, 7/1 heads of 128): ≈ 0.75 GB.
  const w = writeQwen2_5_VL7bShaped(dir, { numHiddenLayers: 2, visionDepth: 2, narrow: 4, maxShardBytes: 200e6 });
  assert.ok(w.shards >= 4 && w.fileBytes > 0.7e9, `expected a sharded checkpoint over 0.7 GB, got ${w.shards} shards of ${w.fileBytes} bytes`);
  const m = measureLoadInChild(dir, "bfloat16");
  rmSync(dir, { recursive: true, force: true });
  const grown = m.peakBytes - m.baselinePeakBytes;
  t.diagnostic(`file ${GB(w.fileBytes)} GB, runtime before loading ${GB(m.baselinePeakBytes)} GB, peak ${GB(m.peakBytes)} GB: grew ${(grown / w.fileBytes).toFixed(3)}× the file in ${m.loadSeconds.toFixed(1)} s`);
  assert.ok(grown <= FACTOR * w.fileBytes, `loading grew the peak resident set by ${GB(grown)} GB, over ${FACTOR}× the ${GB(w.fileBytes)} GB file`);
  assert.deepEqual(m.sums, w.sums, "the loaded weights are the file's");
});

test("a float32 checkpoint loads into a bfloat16 model without holding a float32 copy", (t) => {
  const dir = join(root, "f32");
  const w = writeQwen2_5_VL7bShaped(dir, { numHiddenLayers: 1, visionDepth: 1, narrow: 4, maxShardBytes: 500e6, dtype: "float32" });
  const m = measureLoadInChild(dir, "bfloat16");
  rmSync(dir, { recursive: true, force: true });
  const model = w.fileBytes / 2, grown = m.peakBytes - m.baselinePeakBytes;
  t.diagnostic(`float32 file ${GB(w.fileBytes)} GB (bf16 model ${GB(model)} GB), peak grew ${GB(grown)} GB = ${(grown / model).toFixed(3)}× the model`);
  assert.ok(grown <= FACTOR * model, `loading grew the peak resident set by ${GB(grown)} GB, over ${FACTOR}× the ${GB(model)} GB bf16 model`);
  assert.deepEqual(m.sums, w.sums, "the loaded weights are the file's, rounded to bf16");
});

test("loadCheckpointInto fills tied weights once, and names missing, unexpected and mis-shaped tensors before reading", () => torch.scope(() => {
  class Tied extends nn.Module {
    emb = new nn.Embedding(5, 3);
    head = new nn.Linear(3, 5, { bias: false });
    extra = new nn.Linear(3, 2);
    constructor() { super(); this.head.weight.dispose(); this.head.weight = this.emb.weight; }
  }
  const src = new Tied(), dir = join(root, "tied");
  saveCheckpoint(dir, src, {}, { skip: (n) => n === "head.weight" });
  const dst = new Tied();
  loadCheckpointInto(dst, dir);
  for (const [name, p] of src.stateDict()) assert.ok(dst.stateDict().get(name)!.eq(p).all().item() === 1, name);
  assert.equal(dst.head.weight, dst.emb.weight, "still one parameter");

  const fresh = new Tied(), before = fresh.extra.weight.toBytes();
  assert.throws(() => loadCheckpointInto(fresh, dir, { rename: (n) => (n === "extra.bias" ? null : n) }), /missing keys \(1\): extra\.bias/);
  assert.throws(() => loadCheckpointInto(fresh, dir, { rename: (n) => `x.${n}` }), /unexpected keys \(3\): x\.emb\.weight/);
  assert.deepEqual(fresh.extra.weight.toBytes(), before, "a refused load writes nothing");
  const wrong = new Tied();
  wrong.extra = new nn.Linear(3, 4);
  assert.throws(() => loadCheckpointInto(wrong, dir), (e: Error) => e instanceof nn.StateDictError && /shape mismatch for extra\.weight: model has \[4, 3\], checkpoint has \[2, 3\]/.test(e.message));
}));
