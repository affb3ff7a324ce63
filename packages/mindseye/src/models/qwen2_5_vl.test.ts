// Qwen2.5-VL: the vision tower's index arithmetic, shapes and image isolation, the VLM's rope
// index, KV-cache decoding, checkpoint layouts, and a golden fixture from PyTorch
// (fixtures/models/make_qwen2_5_vl_golden.py, torch 1.13, float32).
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { torch, io, type Tensor } from "@mindseye/torch";
import {
  Qwen2_5_VisionTransformer, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLCache, visionConfigFromHf, visionWindowIndex,
  visionPatchPositions, inversePermutation, ropeIndex, qwen2_5_vlFromHfConfig, qwen2_5_vlToHfConfig, qwen2_5_vlPreset,
  QWEN2_5_VL_PRESETS, type GridThw,
} from "./qwen2_5_vl.js";

// dist/models/qwen2_5_vl.test.js -> <repo>/fixtures/models/
const FIXTURE = fileURLToPath(new URL("../../../../fixtures/models/qwen2_5_vl_golden.safetensors", import.meta.url));
const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/models/make_qwen2_5_vl_golden.py";
const TOL = 1e-4;

const golden = io.loadFile(FIXTURE);
const meta = io.loadMetadata(FIXTURE) ?? {};
function header<T>(key: string): T {
  const v = meta[key];
  if (v === undefined) assert.fail(`${FIXTURE}: __metadata__ has no "${key}"; ${REGENERATE}`);
  return JSON.parse(v) as T;
}
function get(name: string): Tensor {
  const t = golden.get(name);
  if (t === undefined) assert.fail(`${FIXTURE} has no tensor "${name}"; ${REGENERATE}`);
  return t;
}
/** The fixture's tensors under `prefix`, with the prefix removed. */
function withPrefix(prefix: string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const [k, t] of golden) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), t);
  return out;
}
function maxAbsDiff(a: Tensor, b: Tensor): number {
  assert.deepEqual(a.shape, b.shape);
  const x = a.toFloat64Values(), y = b.toFloat64Values();
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

const hfConfig = header<Record<string, unknown> & { vision_config: Record<string, unknown> }>("config");
const visionCfg = visionConfigFromHf(hfConfig.vision_config);

function goldenTower(): Qwen2_5_VisionTransformer {
  const tower = new Qwen2_5_VisionTransformer(visionCfg).eval();
  tower.loadStateDict(withPrefix("weights.visual."));
  return tower;
}
function patches(grid: GridThw, seed: number): Tensor {
  const g = new torch.Generator(seed);
  return torch.randn([grid[0] * grid[1] * grid[2], visionCfg.patchDim], { generator: g });
}

// ---------------------------------------------------------------------------------------------
// Vision tower

test("window index: a 3×4 merged grid in 2×2 windows (ragged edges) and a 2×2 grid in one window", () => {
  // merged tokens of the 3×4 grid, row-major:  0 1 | 2 3      windows: {0,1,4,5} {2,3,6,7}
  //                                            4 5 | 6 7               {8,9} {10,11}
  //                                            ---------
  //                                            8 9 |10 11
  const a = visionWindowIndex([[1, 6, 8]], visionCfg);
  assert.deepEqual(a.windowIndex, [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 10, 11]);
  assert.deepEqual(a.cuWindowSeqlens, [0, 16, 32, 40, 48]); // in patches: 4 per merged token
  // two images: the second's indices are offset by the first's 12 merged tokens
  const b = visionWindowIndex([[1, 6, 8], [1, 4, 4]], visionCfg);
  assert.deepEqual(b.windowIndex.slice(12), [12, 13, 14, 15]);
  assert.deepEqual(b.cuWindowSeqlens, [0, 16, 32, 40, 48, 64]);
  // two frames: each frame is windowed on its own
  const v = visionWindowIndex([[2, 4, 4]], visionCfg);
  assert.deepEqual(v.windowIndex, [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(v.cuWindowSeqlens, [0, 16, 32]);
});

test("window reordering round trip: the reverse index undoes the forward one", () => {
  const grids: GridThw[] = [[1, 6, 8], [1, 4, 4], [2, 10, 6], [1, 14, 22]];
  const { windowIndex } = visionWindowIndex(grids, { spatialMergeSize: 2, mergedWindowSize: 4 });
  const n = grids.reduce((a, [t, h, w]) => a + (t * h * w) / 4, 0);
  assert.deepEqual([...windowIndex].sort((x, y) => x - y), Array.from({ length: n }, (_, i) => i), "a permutation");
  assert.notDeepEqual(windowIndex, Array.from({ length: n }, (_, i) => i), "not the identity");
  torch.scope(() => {
    const x = torch.randn([n, 5]);
    const fwd = torch.tensor(windowIndex, { dtype: "int64" });
    const back = torch.tensor(inversePermutation(windowIndex), { dtype: "int64" });
    assert.equal(x.indexSelect(0, fwd).indexSelect(0, back).sub(x).abs().max().item(), 0);
  });
});

test("patch positions follow the merge-block order", () => {
  // a 2×4 grid: blocks (0,0) (0,1); inside each block row-major
  const p = visionPatchPositions([[1, 2, 4]], 2);
  assert.deepEqual(p.h, [0, 0, 1, 1, 0, 0, 1, 1]);
  assert.deepEqual(p.w, [0, 1, 0, 1, 2, 3, 2, 3]);
});

test("vision tower shapes for one image and for two images of different grids", () => {
  const tower = goldenTower();
  torch.noGrad(() => torch.scope(() => {
    const one = tower.forward(patches([1, 6, 8], 1), [[1, 6, 8]]);
    assert.deepEqual(one.shape, [12, visionCfg.outHiddenSize]);
    const a = patches([1, 6, 8], 1), b = patches([1, 4, 4], 2);
    const two = tower.forward(torch.cat([a, b]), [[1, 6, 8], [1, 4, 4]]);
    assert.deepEqual(two.shape, [16, visionCfg.outHiddenSize]);
    assert.deepEqual(tower.tokensPerImage([[1, 6, 8], [1, 4, 4]]), [12, 4]);
    assert.throws(() => tower.forward(a, [[1, 4, 4]]), /pixelValues has shape \[48, 96\], expected \[16, 96\]/);
    assert.throws(() => tower.forward(a, [[1, 6, 7]]), /multiples of spatial_merge_size/);
  }));
});

test("vision attention does not cross image boundaries", () => {
  const tower = goldenTower();
  torch.noGrad(() => torch.scope(() => {
    const grids: GridThw[] = [[1, 6, 8], [1, 4, 4]];
    const a = patches(grids[0], 1), b = patches(grids[1], 2), b2 = patches(grids[1], 3), a2 = patches(grids[0], 4);
    const first = tower.forward(torch.cat([a, b]), grids);
    const changed2 = tower.forward(torch.cat([a, b2]), grids);
    const alone = tower.forward(a, [grids[0]]);
    // image 1's 12 tokens are the same whatever image 2 is, and the same as image 1 alone
    assert.ok(maxAbsDiff(first.narrow(0, 0, 12), changed2.narrow(0, 0, 12)) < 1e-6);
    assert.ok(maxAbsDiff(first.narrow(0, 0, 12), alone) < 1e-5);
    // ... while image 2's tokens did change, and image 1's change with image 1
    assert.ok(maxAbsDiff(first.narrow(0, 12, 4), changed2.narrow(0, 12, 4)) > 1e-2);
    const changed1 = tower.forward(torch.cat([a2, b]), grids);
    assert.ok(maxAbsDiff(first.narrow(0, 0, 12), changed1.narrow(0, 0, 12)) > 1e-2);
    assert.ok(maxAbsDiff(first.narrow(0, 12, 4), changed1.narrow(0, 12, 4)) < 1e-6);
  }));
});

test("golden: vision features of two images and of a two-frame grid match PyTorch", () => {
  const tower = goldenTower();
  torch.noGrad(() => torch.scope(() => {
    const grids = header<GridThw[]>("image_grids");
    const d1 = maxAbsDiff(tower.forward(get("vision.pixels"), grids), get("vision.features"));
    const d2 = maxAbsDiff(tower.forward(get("video.pixels"), header<GridThw[]>("video_grid")), get("video.features"));
    assert.ok(d1 <= TOL, `image features differ from PyTorch by ${d1}`);
    assert.ok(d2 <= TOL, `two-frame features differ from PyTorch by ${d2}`);
    console.log(`# vision golden max abs diff: images ${d1.toExponential(2)}, two frames ${d2.toExponential(2)}`);
  }));
});

// ---------------------------------------------------------------------------------------------
// The VLM

const tiny = qwen2_5_vlPreset("tiny");
const VS = tiny.visionStartTokenId, VE = tiny.visionEndTokenId, IMG = tiny.imageTokenId, PAD = 0;

test("the tiny preset is the golden script's config", () => {
  assert.deepEqual(qwen2_5_vlFromHfConfig(hfConfig), tiny);
});

test("rope index for text, a 2×2 merged image, text (HF's get_rope_index by hand)", () => {
  // tokens:  a  b  <vs>  I  I  I  I  <ve>  c  d      (grid [1, 4, 4] patches = 2×2 merged tokens)
  // text before the image counts 0, 1, 2; the image starts at 3: t = 3, h = 3 + row, w = 3 + column;
  // the text after continues from the image's max (4) + 1 = 5. delta = max + 1 - length = 8 - 10.
  const ids = [[7, 8, VS, IMG, IMG, IMG, IMG, VE, 9, 10]];
  const r = ropeIndex(ids, [[1, 4, 4]], tiny, 2);
  assert.deepEqual(r.positions[0], [[0, 1, 2, 3, 3, 3, 3, 5, 6, 7]]);
  assert.deepEqual(r.positions[1], [[0, 1, 2, 3, 3, 4, 4, 5, 6, 7]]);
  assert.deepEqual(r.positions[2], [[0, 1, 2, 3, 4, 3, 4, 5, 6, 7]]);
  assert.deepEqual(r.ropeDeltas, [-2]);
  // left padding: padded slots get 1 and are skipped; the delta counts the padded length
  const padded = ropeIndex([[0, 0, ...ids[0]!]], [[1, 4, 4]], tiny, 2, [[0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]]);
  assert.deepEqual(padded.positions[1], [[1, 1, 0, 1, 2, 3, 3, 4, 4, 5, 6, 7]]);
  assert.deepEqual(padded.ropeDeltas, [-4]);
  // text only: 0..T-1 on every axis, delta 0
  const text = ropeIndex([[1, 2, 3]], [], tiny, 2);
  assert.deepEqual(text.positions, [[[0, 1, 2]], [[0, 1, 2]], [[0, 1, 2]]]);
  assert.deepEqual(text.ropeDeltas, [0]);
  // a non-square grid: 2×3 merged tokens
  const wide = ropeIndex([[VS, IMG, IMG, IMG, IMG, IMG, IMG, VE]], [[1, 4, 6]], tiny, 2);
  assert.deepEqual(wide.positions[1], [[0, 1, 1, 1, 2, 2, 2, 4]]);
  assert.deepEqual(wide.positions[2], [[0, 1, 2, 3, 1, 2, 3, 4]]);
  assert.throws(() => ropeIndex([[VS, tiny.videoTokenId, VE]], [], tiny, 2), /only images are supported/);
});

/** A tiny checkpoint directory holding the golden weights under the original release's names. */
function goldenCheckpoint(): string {
  const dir = mkdtempSync(join(tmpdir(), "qwen2_5_vl-"));
  writeFileSync(join(dir, "config.json"), JSON.stringify(hfConfig));
  io.saveFile(join(dir, "model.safetensors"), withPrefix("weights."));
  return dir;
}

function goldenInputs(): { inputIds: Tensor; pixelValues: Tensor; imageGridThw: GridThw[] } {
  return { inputIds: get("vlm.input_ids"), pixelValues: get("vision.pixels"), imageGridThw: header<GridThw[]>("image_grids") };
}

test("golden: positions and logits of text + two images match PyTorch", () => {
  const dir = goldenCheckpoint();
  try {
    const vlm = Qwen2_5_VLForConditionalGeneration.fromPretrained(dir);
    torch.noGrad(() => torch.scope(() => {
      const inputs = goldenInputs();
      const { positionIds } = vlm.ropeIndex(inputs.inputIds, inputs.imageGridThw);
      assert.deepEqual(positionIds.tolist(), get("vlm.position_ids").tolist());
      const out = vlm.forward(inputs);
      assert.deepEqual(out.ropeDeltas, Array.from(get("vlm.rope_deltas").toFloat64Values()));
      const d = maxAbsDiff(out.logits, get("vlm.logits"));
      assert.ok(d <= TOL, `logits differ from PyTorch by ${d}`);
      console.log(`# VLM golden logits max abs diff ${d.toExponential(2)}`);
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("bfloat16 weights run end to end and stay near the float32 logits", () => {
  const dir = goldenCheckpoint();
  try {
    const vlm = Qwen2_5_VLForConditionalGeneration.fromPretrained(dir, { dtype: "bfloat16" });
    assert.equal(vlm.visual.blocks.at(0).attn.qkv.weight.dtype, "bfloat16");
    torch.noGrad(() => torch.scope(() => {
      const logits = vlm.forward(goldenInputs()).logits;
      assert.equal(logits.dtype, "bfloat16");
      const want = get("vlm.logits"), scale = want.abs().max().item();
      const d = maxAbsDiff(logits.float(), want);
      assert.ok(d < 0.1 * scale, `bf16 logits differ by ${d} (max |logit| ${scale})`);
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("KV-cache decoding equals full recomputation", () => {
  const vlm = new Qwen2_5_VLForConditionalGeneration(tiny, { generator: new torch.Generator(5) }).eval();
  // larger weights than HF's 0.02 init, so that positions visibly matter
  torch.noGrad(() => { for (const p of vlm.parameters()) if (p.ndim > 1) p.mul_(10); });
  torch.noGrad(() => torch.scope(() => {
    const grids: GridThw[] = [[1, 6, 8], [1, 4, 4]];
    const pixels = torch.cat([patches(grids[0], 1), patches(grids[1], 2)]);
    const prompt = [5, VS, ...Array<number>(12).fill(IMG), VE, 9, VS, ...Array<number>(4).fill(IMG), VE, 11];
    const next = [17, 23, 31];
    const full = vlm.forward({ inputIds: torch.tensor([[...prompt, ...next]], { dtype: "int64" }), pixelValues: pixels, imageGridThw: grids });
    const pre = vlm.forward({ inputIds: torch.tensor([prompt], { dtype: "int64" }), pixelValues: pixels, imageGridThw: grids, useCache: true });
    const cache = pre.pastKeyValues!;
    assert.ok(cache instanceof Qwen2_5_VLCache);
    assert.deepEqual(cache.ropeDeltas, pre.ropeDeltas);
    assert.ok(pre.ropeDeltas[0]! < 0, "images compress positions, so the delta is negative");
    assert.ok(maxAbsDiff(pre.logits, full.logits.narrow(1, 0, prompt.length)) < 1e-4);
    let worst = 0;
    next.forEach((tok, i) => {
      const step = vlm.forward({ inputIds: torch.tensor([[tok]], { dtype: "int64" }), pastKeyValues: cache });
      worst = Math.max(worst, maxAbsDiff(step.logits, full.logits.narrow(1, prompt.length + i, 1)));
    });
    assert.equal(cache.length, prompt.length + next.length);
    assert.ok(worst < 1e-4, `cached decoding differs from full recomputation by ${worst}`);
    // decoding with delta 0 (positions as plain text) gives different logits: the delta matters
    const cache2 = vlm.forward({ inputIds: torch.tensor([prompt], { dtype: "int64" }), pixelValues: pixels, imageGridThw: grids, useCache: true }).pastKeyValues!;
    const wrong = vlm.forward({ inputIds: torch.tensor([[next[0]!]], { dtype: "int64" }), pastKeyValues: cache2, ropeDeltas: [0] });
    assert.ok(maxAbsDiff(wrong.logits, full.logits.narrow(1, prompt.length, 1)) > 1e-3);
    cache.dispose();
    cache2.dispose();
  }));
});

test("generation (left-padded batch, one image per row) equals greedy decoding by full recomputation", () => {
  const vlm = new Qwen2_5_VLForConditionalGeneration(tiny, { generator: new torch.Generator(8) }).eval();
  torch.noGrad(() => { for (const p of vlm.parameters()) if (p.ndim > 1) p.mul_(10); });
  torch.noGrad(() => torch.scope(() => {
    const grids: GridThw[] = [[1, 6, 8], [1, 4, 4]];
    const pixelValues = torch.cat([patches(grids[0], 1), patches(grids[1], 2)]);
    const rows = [
      [5, VS, ...Array<number>(12).fill(IMG), VE, 9],
      [PAD, PAD, PAD, PAD, PAD, PAD, PAD, PAD, 3, VS, ...Array<number>(4).fill(IMG), VE, 14],
    ];
    const mask = rows.map((r) => r.map((t) => (t === PAD ? 0 : 1)));
    const steps = 4;
    const { tokens } = vlm.generate({
      inputIds: torch.tensor(rows, { dtype: "int64" }), attentionMask: torch.tensor(mask, { dtype: "int64" }),
      pixelValues, imageGridThw: grids, maxNewTokens: steps,
    });
    // the same by hand: the whole sequence again at every step, no cache
    const ids = rows.map((r) => [...r]), m = mask.map((r) => [...r]);
    for (let n = 0; n < steps; n++) {
      const out = vlm.forward({ inputIds: torch.tensor(ids, { dtype: "int64" }), attentionMask: torch.tensor(m, { dtype: "int64" }), pixelValues, imageGridThw: grids });
      const next = Array.from(out.logits.select(1, -1).argmax(-1).toFloat64Values());
      next.forEach((t, b) => { ids[b]!.push(t); m[b]!.push(1); });
    }
    assert.deepEqual(tokens, ids.map((r) => r.slice(rows[0]!.length)));
    assert.ok(new Set(tokens.flat()).size > 1, "the model does not emit one constant token");
  }));
});

test("image features must match the image pads", () => {
  const vlm = new Qwen2_5_VLForConditionalGeneration(tiny, { generator: new torch.Generator(1) });
  torch.noGrad(() => torch.scope(() => {
    const ids = torch.tensor([[VS, IMG, IMG, IMG, VE]], { dtype: "int64" });
    assert.throws(() => vlm.forward({ inputIds: ids, pixelValues: patches([1, 4, 4], 1), imageGridThw: [[1, 4, 4]] }), /3 <\|image_pad\|> tokens .* 4 merged vision tokens/);
  }));
});

/** Weights of a checkpoint directory (single file) by name. */
function savedNames(dir: string): string[] {
  return [...io.readHeader(join(dir, "model.safetensors")).tensors.keys()].sort();
}

test("both weight namings load, and give the golden logits", () => {
  const dir = goldenCheckpoint();
  const nestedDir = mkdtempSync(join(tmpdir(), "qwen2_5_vl-nested-"));
  try {
    const a = Qwen2_5_VLForConditionalGeneration.fromPretrained(dir);
    assert.equal(a.loadedNaming, "original");
    // the same weights under transformers ≥ 4.52's names, with the text fields under text_config
    const renamed = new Map<string, Tensor>();
    for (const [k, t] of withPrefix("weights.")) renamed.set(k.startsWith("visual.") ? `model.${k}` : k.startsWith("model.") ? `model.language_model.${k.slice(6)}` : k, t);
    io.saveFile(join(nestedDir, "model.safetensors"), renamed);
    writeFileSync(join(nestedDir, "config.json"), JSON.stringify(qwen2_5_vlToHfConfig(tiny)));
    const b = Qwen2_5_VLForConditionalGeneration.fromPretrained(nestedDir);
    assert.equal(b.loadedNaming, "nested");
    torch.noGrad(() => torch.scope(() => {
      assert.ok(maxAbsDiff(b.forward(goldenInputs()).logits, get("vlm.logits")) <= TOL);
      const sa = a.stateDict(), sb = b.stateDict();
      for (const [k, t] of sa) assert.equal(t.sub(sb.get(k)!).abs().max().item(), 0, k);
    }));
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(nestedDir, { recursive: true, force: true });
  }
});

test("a missing, unexpected, mis-shaped or mixed-naming checkpoint is one clear error", () => {
  const dir = goldenCheckpoint();
  try {
    const w = withPrefix("weights.");
    const edit = (f: (m: Map<string, Tensor>) => void) => {
      const m = new Map(w);
      f(m);
      io.saveFile(join(dir, "model.safetensors"), m);
    };
    edit((m) => { m.delete("visual.blocks.0.attn.qkv.bias"); m.set("visual.extra.weight", torch.zeros([2])); });
    assert.throws(() => Qwen2_5_VLForConditionalGeneration.fromPretrained(dir),
      (e: Error) => /does not fit Qwen2_5_VLForConditionalGeneration/.test(e.message) && /missing keys \(1\): model\.visual\.blocks\.0\.attn\.qkv\.bias/.test(e.message) && /unexpected keys \(1\): model\.visual\.extra\.weight/.test(e.message));
    edit((m) => { m.set("lm_head.weight", torch.zeros([10, 64])); });
    // config.json against the header, before anything is allocated: the field is named
    assert.throws(() => Qwen2_5_VLForConditionalGeneration.fromPretrained(dir), /config\.json: field "vocab_size" says 256, but the checkpoint's lm_head\.weight \(.*model\.safetensors\) has shape \[10, 64\]/);
    edit((m) => { m.set("model.language_model.norm.weight", m.get("model.norm.weight")!); m.delete("model.norm.weight"); });
    assert.throws(() => Qwen2_5_VLForConditionalGeneration.fromPretrained(dir), /mixes the two Qwen2\.5-VL weight namings/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("save → load is the identity, in the loaded naming by default or the one asked for", () => {
  const src = goldenCheckpoint();
  const out1 = mkdtempSync(join(tmpdir(), "qwen2_5_vl-save-")), out2 = mkdtempSync(join(tmpdir(), "qwen2_5_vl-save-"));
  try {
    const a = Qwen2_5_VLForConditionalGeneration.fromPretrained(src);
    a.savePretrained(out1); // loaded with the original names: saved with them
    assert.deepEqual(savedNames(out1), savedNames(src));
    a.savePretrained(out2, { naming: "nested" });
    const names2 = savedNames(out2);
    assert.ok(names2.every((n) => n === "lm_head.weight" || n.startsWith("model.language_model.") || n.startsWith("model.visual.")));
    assert.equal(names2.length, savedNames(src).length);
    for (const dir of [out1, out2]) {
      const b = Qwen2_5_VLForConditionalGeneration.fromPretrained(dir);
      assert.deepEqual(b.config, a.config);
      const sa = a.stateDict(), sb = b.stateDict();
      assert.deepEqual([...sb.keys()], [...sa.keys()]);
      torch.scope(() => { for (const [k, t] of sa) assert.equal(t.sub(sb.get(k)!).abs().max().item(), 0, k); });
    }
    const cfg = JSON.parse(readFileSync(join(out2, "config.json"), "utf8")) as Record<string, Record<string, unknown>>;
    assert.equal(cfg.text_config!.hidden_size, 64);
    assert.equal((cfg as Record<string, unknown>).hidden_size, 64);
    assert.deepEqual((cfg.rope_scaling as Record<string, unknown>).mrope_section, [2, 3, 3]);
  } finally {
    for (const d of [src, out1, out2]) rmSync(d, { recursive: true, force: true });
  }
});

test("tied embeddings: lm_head is embed_tokens, saved once, and loads back", () => {
  const dir = mkdtempSync(join(tmpdir(), "qwen2_5_vl-tied-"));
  try {
    const cfg = qwen2_5_vlFromHfConfig(qwen2_5_vlToHfConfig({ ...tiny, text: { ...tiny.text, tieWordEmbeddings: true } }));
    assert.equal(cfg.text.tieWordEmbeddings, true);
    const a = new Qwen2_5_VLForConditionalGeneration(cfg, { generator: new torch.Generator(3) });
    assert.equal(a.lm_head.weight, a.languageModel.embed_tokens.weight);
    a.savePretrained(dir);
    assert.ok(!savedNames(dir).includes("lm_head.weight"));
    assert.ok(savedNames(dir).includes("model.language_model.embed_tokens.weight"));
    const b = Qwen2_5_VLForConditionalGeneration.fromPretrained(dir);
    assert.equal(b.lm_head.weight, b.languageModel.embed_tokens.weight);
    torch.scope(() => assert.equal(b.lm_head.weight.sub(a.lm_head.weight).abs().max().item(), 0));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("config.json: text_config and top-level layouts agree; presets resolve; bad configs say why", () => {
  const top = { ...hfConfig };
  const nested = qwen2_5_vlToHfConfig(tiny);
  assert.deepEqual(qwen2_5_vlFromHfConfig(nested), qwen2_5_vlFromHfConfig(top));
  // text_config wins over stale top-level copies (transformers ≥ 4.55 keeps tying there)
  const stale = { ...nested, tie_word_embeddings: true };
  assert.equal(qwen2_5_vlFromHfConfig(stale).text.tieWordEmbeddings, false);
  // newer rope_parameters with rope_theta inside
  const { rope_scaling: _r, rope_theta: _t, ...noRope } = top as Record<string, unknown>;
  const rp = qwen2_5_vlFromHfConfig({ ...noRope, rope_parameters: { rope_type: "default", rope_theta: 5000, mrope_section: [2, 3, 3] } });
  assert.equal(rp.text.ropeTheta, 5000);
  for (const name of Object.keys(QWEN2_5_VL_PRESETS)) assert.ok(qwen2_5_vlPreset(name).text.headDim > 0, name);
  assert.equal(qwen2_5_vlPreset("qwen2.5-vl-7b").vision.mergedWindowSize, 4);
  assert.throws(() => qwen2_5_vlFromHfConfig({ ...top, rope_scaling: { type: "mrope", mrope_section: [2, 3, 4] } }), /sums to 9, but must cover the 8 rotary pairs/);
  assert.throws(() => qwen2_5_vlFromHfConfig(noRope), /missing "rope_scaling"/);
  const { hidden_size: _hs, ...noVisionWidth } = hfConfig.vision_config;
  assert.throws(() => qwen2_5_vlFromHfConfig({ ...top, vision_config: noVisionWidth }), /vision_config: missing required field "hidden_size"/);
  assert.throws(() => qwen2_5_vlFromHfConfig({ ...top, vision_config: { ...hfConfig.vision_config, out_hidden_size: 32 } }), /outHiddenSize.*must equal the language model's hiddenSize 64/);
  assert.throws(() => qwen2_5_vlFromHfConfig({ ...top, model_type: "qwen2_vl" }), /expected "qwen2_5_vl"/);
  assert.ok(existsSync(FIXTURE));
});
