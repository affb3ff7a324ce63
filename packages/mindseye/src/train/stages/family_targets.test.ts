// A published family's latent targets in a fingerprinted cache on disk (familyTargetCache), on
// tiny published-layout checkpoints (LLaVA-1.5 in the llava-hf layout, Qwen2.5-VL in the original
// release's) and the COCO fixtures: the cached targets equal the per-image computation, a matching
// cache is reused without a tower forward, an interrupted one resumes, another pool / vision_layer
// / dataset is refused, and latent-pretrain trains from it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, io, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../../config/errors.js";
import { generateWorld, resolveWorldOptions } from "../../world/generate.js";
import { readPairs, SkipCounter } from "../../data/formats/index.js";
import { decodeBatch } from "../../data/images.js";
import { loadVlm, poolImageFeatures, disposePixels, type Vlm } from "../../models/family.js";
import { writeTinyLlava } from "../../models/llava_test_helpers.js";
import { writeTinyQwen } from "../../models/qwen2_5_vl_test_helpers.js";
import { targetStats } from "../../objectives/index.js";
import { loadStageRecipe, runRecipe } from "./index.js";
import { LatentPretrainRecipe, familyTargetCache, cacheTargetStats, type FamilyTargetManifest } from "./latent_pretrain.js";

const here = dirname(fileURLToPath(import.meta.url));
const X = join(here, "..", "..", "..", "test-fixtures", "formats"); // dist/train/stages -> package root
const PAPER = join(here, "..", "..", "..", "..", "..", "configs", "paper");
const COCO = { format: "coco", annotations: join(X, "coco/annotations/captions_val2017.json"), images: join(X, "coco/val2017") };
let tmp = "", llavaDir = "", qwenDir = "", world = "";

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mindseye-family-targets-"));
  llavaDir = join(tmp, "llava");
  writeTinyLlava(llavaDir, { template: false });
  world = join(tmp, "world");
  await generateWorld(resolveWorldOptions({ out: world, scenes: 10, seed: 2, size: 32, latents: 4, workers: 0, log: () => {} }));
  qwenDir = join(tmp, "qwen");
  writeTinyQwen(qwenDir, world);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

const recipe = (base: string, over: Record<string, unknown> = {}): LatentPretrainRecipe =>
  LatentPretrainRecipe.parse({ stage: "latent-pretrain", base, out: join(tmp, "unused"), captions: [COCO], pool: "grid:4", max_error_rate: 0.5, train: { steps: 1, batch_size: 1 }, ...over });

/** The reference: each image (COCO's, then the world's) alone through the processor and tower, pooled — the in-memory computation the cache replaced. */
async function perImageTargets(vlm: Vlm, pool: string, layer?: string): Promise<Map<string, Tensor>> {
  const out = new Map<string, Tensor>();
  const errors = new SkipCounter("test", { maxErrorRate: 1, setting: "test" });
  const worldSpec = { format: "coco", annotations: join(world, "captions_train.json"), images: join(world, "images") };
  for (const [i, spec] of [COCO, worldSpec].entries()) for await (const p of readPairs(spec, { errors })) {
    const [img] = await decodeBatch([{ image: p.image, source: p.source }], { errors });
    if (!img) continue;
    out.set(i === 0 ? `d0:${p.id}` : (p.image as { path: string }).path, torch.noGrad(() => torch.scope(() => {
      const px = vlm.processor.process([img]);
      const f = vlm.visionFeatures(px, layer);
      disposePixels(px);
      return poolImageFeatures(f.features[0]!, f.grids[0]!, pool, f.hasClassToken);
    })));
  }
  return out;
}

const maxDiff = (a: Tensor, b: Tensor) => a.sub(b).abs().max().item();

for (const family of ["llava", "qwen2_5_vl"] as const) {
  test(`${family}: the cached targets equal the per-image computation, in chunks and shards; the stats too`, async (t) => {
    const vlm = loadVlm(family === "llava" ? llavaDir : qwenDir);
    vlm.freezeVision();
    const dir = join(tmp, `${family}-cache`);
    try {
      // COCO's and the world's images, 4 decoded and 3 run through the tower at a time, 4 per shard.
      const r = recipe(family === "llava" ? llavaDir : qwenDir, { world });
      const { cache, computed } = await familyTargetCache(vlm, r, dir, { quiet: true, chunk: 4, towerBatch: 3, shardSize: 4 });
      const ref = await perImageTargets(vlm, "grid:4");
      assert.equal(computed, ref.size);
      assert.ok(ref.size > 4);
      assert.equal(cache.manifest.shards.length, Math.ceil(ref.size / 4));
      assert.equal(cache.size, ref.size);
      const keys = [...ref.keys()];
      const got = cache.get(keys); // [n, K, D] read row by row from the shard files
      const want = torch.stack(keys.map((k) => ref.get(k)!), 0);
      const delta = maxDiff(got, want);
      // LLaVA's fixed-size tower gives the same numbers batched; Qwen's packs images of several grids in one sequence.
      assert.ok(delta < 1e-5, `max |Δ| ${delta}`);
      t.diagnostic(`${family}: ${ref.size} images, max |Δ| ${delta}`);
      const stats = cacheTargetStats(cache), direct = targetStats(want);
      assert.ok(maxDiff(stats.mean, direct.mean) < 1e-5 && maxDiff(stats.std, direct.std) < 1e-5);
      cache.dispose();
    } finally {
      vlm.dispose();
    }
  });
}

test("a complete matching cache is reused with no tower forward; an interrupted one resumes at its first missing shard", async () => {
  const vlm = loadVlm(llavaDir);
  vlm.freezeVision();
  const dir = join(tmp, "llava-reuse");
  const opts = { quiet: true, chunk: 2, towerBatch: 2, shardSize: 2 };
  const r = recipe(llavaDir, { world });
  try {
    const first = await familyTargetCache(vlm, r, dir, opts);
    const keys = first.cache.ids(), before = first.cache.get(keys);
    first.cache.dispose();
    const manifest = readFileSync(join(dir, "manifest.json"), "utf8");
    const mtimes = first.cache.manifest.shards.map((s) => statSync(join(dir, s.file)).mtimeMs);
    // Reuse: a tower forward would throw.
    const forward = vlm.visionFeatures.bind(vlm);
    vlm.visionFeatures = () => { throw new Error("the tower ran"); };
    const again = await familyTargetCache(vlm, r, dir, opts);
    assert.equal(again.computed, 0);
    assert.equal(readFileSync(join(dir, "manifest.json"), "utf8"), manifest);
    assert.deepEqual(again.cache.manifest.shards.map((s) => statSync(join(dir, s.file)).mtimeMs), mtimes);
    assert.equal(maxDiff(again.cache.get(keys), before), 0);
    again.cache.dispose();
    vlm.visionFeatures = forward;
    // A run killed after the first shard: the manifest incomplete, the second shard not written.
    const m = JSON.parse(manifest) as FamilyTargetManifest;
    assert.ok(m.shards.length >= 3);
    writeFileSync(join(dir, "manifest.json"), JSON.stringify({ ...m, complete: false }));
    unlinkSync(join(dir, m.shards[1]!.file));
    const resumed = await familyTargetCache(vlm, r, dir, opts);
    const redone = m.shards.slice(1).reduce((a, s) => a + s.records, 0);
    assert.equal(resumed.computed, redone, "only the missing shard's images and those after it");
    assert.equal(statSync(join(dir, m.shards[0]!.file)).mtimeMs, mtimes[0]);
    assert.equal(maxDiff(resumed.cache.get(keys), before), 0);
    resumed.cache.dispose();
  } finally {
    vlm.dispose();
  }
});

test("another pool, vision_layer, dataset or tower is refused by name, never reused", async () => {
  const dir = join(tmp, "qwen-refuse");
  let vlm = loadVlm(qwenDir);
  vlm.freezeVision();
  try {
    (await familyTargetCache(vlm, recipe(qwenDir), dir, { quiet: true })).cache.dispose();
    const refused = async (r: LatentPretrainRecipe, what: RegExp) =>
      assert.rejects(familyTargetCache(vlm, r, dir, { quiet: true }), (e: Error) => e instanceof ConfigError && what.test(e.message) && e.message.includes(dir));
    await refused(recipe(qwenDir, { pool: "mean" }), /pooling was grid:4, now mean/);
    await refused(recipe(qwenDir, { vision_layer: "pre_merger" }), /visionLayer was merger, now pre_merger/);
    // The same COCO data copied: another annotations path; then a cache of the copy, and one caption added to it.
    const copy = join(tmp, "coco-copy");
    cpSync(join(X, "coco"), copy, { recursive: true });
    const annotations = join(copy, "annotations/captions_val2017.json");
    const onCopy = recipe(qwenDir, { captions: [{ ...COCO, annotations }] });
    await refused(onCopy, /dataset 0: annotations was/);
    await refused(recipe(qwenDir, { captions: [COCO, COCO] }), /1 caption datasets, now 2/);
    const copyDir = join(tmp, "qwen-copy-cache");
    (await familyTargetCache(vlm, onCopy, copyDir, { quiet: true })).cache.dispose();
    const json = JSON.parse(readFileSync(annotations, "utf8")) as { annotations: { image_id: number; id: number; caption: string }[] };
    json.annotations.push({ ...json.annotations[0]!, id: 999999, caption: "one more caption" });
    writeFileSync(annotations, JSON.stringify(json));
    await assert.rejects(familyTargetCache(vlm, onCopy, copyDir, { quiet: true }), (e: Error) => e instanceof ConfigError && /bytes\) is now .*bytes\)/.test(e.message));
    vlm.dispose();
    // Another tower: the same layout, one vision weight changed -> refused. Another LM, the same tower -> reused.
    const withWeight = (name: string, prefix: string) => {
      const d = join(tmp, name);
      cpSync(qwenDir, d, { recursive: true });
      const w = io.loadFile(join(d, "model.safetensors"));
      const key = [...w.keys()].find((n) => n.startsWith(prefix) && n.endsWith("weight"))!;
      w.set(key, w.get(key)!.add(0.01));
      io.saveFile(join(d, "model.safetensors"), w);
      return d;
    };
    const otherTower = withWeight("qwen-other-tower", "visual.");
    vlm = loadVlm(otherTower);
    vlm.freezeVision();
    await refused(recipe(otherTower), /fingerprint/);
    vlm.dispose();
    const otherLm = withWeight("qwen-other-lm", "model.");
    vlm = loadVlm(otherLm);
    vlm.freezeVision();
    const reused = await familyTargetCache(vlm, recipe(otherLm), dir, { quiet: true });
    assert.equal(reused.computed, 0);
    reused.cache.dispose();
  } finally {
    vlm.dispose();
  }
});

test("latent-pretrain of a family trains from the cache at `targets` (default <out>/targets) and reuses it on the next run", async () => {
  const quick = ["train.steps=2", "train.batch_size=4", "train.grad_accum=1", "train.warmup_steps=1", "train.log_every=1", "train.checkpoint_every=100", "max_error_rate=0.5"];
  const coco = `captions=[{format: coco, annotations: ${COCO.annotations}, images: ${COCO.images}}]`;
  const yaml = join(PAPER, "qwen2_5_vl_7b", "latent.yaml");
  const out1 = join(tmp, "run1");
  const model1 = await runRecipe(loadStageRecipe(yaml, [`base=${llavaDir}`, coco, "vision_layer=projector_input", "pool=grid:4", `out=${out1}`, ...quick]), { quiet: true });
  assert.ok(existsSync(join(model1, "config.json")));
  const dir = join(out1, "targets");
  const m = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as FamilyTargetManifest;
  assert.equal(m.complete, true);
  assert.equal(m.kind, "family");
  const mtimes = m.shards.map((s) => statSync(join(dir, s.file)).mtimeMs);
  // A second run pointed at the first's cache: trains, and the cache is not rewritten.
  const model2 = await runRecipe(loadStageRecipe(yaml, [`base=${llavaDir}`, coco, "vision_layer=projector_input", "pool=grid:4", `targets=${dir}`, `out=${join(tmp, "run2")}`, ...quick]), { quiet: true });
  assert.ok(existsSync(join(model2, "latent_target_stats.safetensors")));
  assert.deepEqual(m.shards.map((s) => statSync(join(dir, s.file)).mtimeMs), mtimes);
  assert.ok(!existsSync(join(tmp, "run2", "targets")), "no second cache");
});
