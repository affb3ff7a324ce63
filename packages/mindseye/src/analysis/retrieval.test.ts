// Retrieval by imagined latents: the similarity and the ranks on cases worked out by hand, then
// world_retrieval end to end on a tiny world with a latent model trained for a few steps.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { Command } from "commander";
import { torch, F, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { loadStageRecipe, runRecipe } from "../train/stages/index.js";
import { readPreprocessor } from "../train/stages/common.js";
import { latentInput } from "../train/stages/latent_pretrain.js";
import { decodeImage } from "../data/images.js";
import { loadEncoder, preprocess } from "../data/targets.js";
import { VitVisionModel } from "../models/vit.js";
import { poolFeatures } from "../objectives/index.js";
import { getTask } from "../eval/tasks.js";
import { registerEvalCommand } from "../cli/eval.js";
import {
  latentSimilarity, scoreRetrieval, retrievalMetrics, evaluateRetrieval, resolveLatentRun, loadImaginer, disposeImaginer, imagineLatents,
  imagineInput, loadGallery, worldGallery, type RetrievalLine,
} from "./retrieval.js";

const T = (x: number[][][]) => torch.tensor(x);
const close = (got: number, want: number, tol = 1e-5, what = "") => assert.ok(Math.abs(got - want) <= tol, `${what} got ${got}, want ${want}`);
const vals = (t: Tensor) => Array.from(t.toFloat64Values());
const scoped = (name: string, fn: () => void) => test(name, () => torch.scope(fn));

scoped("similarity is the mean over the K latents of the cosine (not the cosine of the flattened latents)", () => {
  // ẑ = [(1, 0), (0, 2)], z = [(1, 1), (0, 1)]: cos_0 = 1/√2, cos_1 = 1 -> (0.70711 + 1) / 2 = 0.85355.
  // Flattened, (1, 0, 0, 2)·(1, 1, 0, 1) / (√5 √3) = 3/√15 = 0.7746 would differ.
  const s = latentSimilarity(T([[[1, 0], [0, 2]]]), T([[[1, 1], [0, 1]], [[0, 1], [1, 0]]])); // [1, 2]
  assert.deepEqual(s.shape, [1, 2]);
  close(vals(s)[0]!, (Math.SQRT1_2 + 1) / 2);
  close(vals(s)[1]!, 0); // z' = [(0, 1), (1, 0)]: cos = 0 and 0
  // against F.cosineSimilarity on random latents, pair by pair
  const g = new torch.Generator(1);
  const pred = torch.randn([3, 4, 5], { generator: g }), gal = torch.randn([6, 4, 5], { generator: g });
  const sim = latentSimilarity(pred, gal);
  for (let q = 0; q < 3; q++) {
    for (let n = 0; n < 6; n++) close(vals(sim)[q * 6 + n]!, F.cosineSimilarity(pred.select(0, q), gal.select(0, n), -1).mean().item(), 1e-5, `[${q}, ${n}]`);
  }
  assert.throws(() => latentSimilarity(torch.zeros([1, 2, 3]), torch.zeros([4, 3, 3])), /same K and D/);
});

scoped("ranks, recall@k, median rank and the true-pair cosine on a hand-built gallery", () => {
  // Gallery: 5 images, K = 2, D = 5, image n has both latents = e_n (one-hot).
  const e = (n: number) => [0, 1, 2, 3, 4].map((i) => (i === n ? 1 : 0));
  const gallery = T([0, 1, 2, 3, 4].map((n) => [e(n), e(n)]));
  // q0 and q1 imagine their own images exactly: rank 1, cosine 1.
  // q2 (true image 2) imagines (0, 0, 1, 2, 2) in both latents: cos with e2 = 1/3, with e3 and e4 = 2/3 -> rank 3.
  // q3 (true image 0) imagines (1, 2, 0, 0, 2): cos with e0 = 1/3, e1 and e4 = 2/3 -> rank 3.
  const pred = T([[e(0), e(0)], [e(1), e(1)], [[0, 0, 1, 2, 2], [0, 0, 1, 2, 2]], [[1, 2, 0, 0, 2], [1, 2, 0, 0, 2]]]);
  const s = scoreRetrieval(pred, gallery, [0, 1, 2, 0], 3);
  assert.deepEqual(s.ranks, [1, 1, 3, 3]);
  s.cosines.forEach((c, i) => close(c, [1, 1, 1 / 3, 1 / 3][i]!));
  assert.equal(s.top[0]![0], 0);
  assert.deepEqual(new Set(s.top[2]!.slice(0, 2)), new Set([3, 4]));
  assert.equal(s.top[2]![2], 2);
  const m = retrievalMetrics(s.ranks, s.cosines);
  assert.deepEqual([m.n, m.recall["1"]!.mean, m.recall["5"]!.mean, m.recall["10"]!.mean, m.medianRank], [4, 0.5, 1, 1, 2]);
  close(m.meanCosine.mean, (1 + 1 + 1 / 3 + 1 / 3) / 4);
  assert.ok(m.recall["1"]!.low <= 0.5 && m.recall["1"]!.high >= 0.5 && m.recall["1"]!.n === 4);
  assert.equal(retrievalMetrics([4, 1, 9], [0, 0, 0]).medianRank, 4, "odd count: the middle rank");
  // Ties count against the query: a model that imagines nothing (zeros) ranks every true image last.
  assert.deepEqual(scoreRetrieval(torch.zeros([2, 2, 5]), gallery, [0, 3]).ranks, [5, 5]);
  assert.throws(() => scoreRetrieval(pred, gallery, [0, 1, 2, 5]), /true index 5 is not in the gallery of 5/);
});

// ---- end to end ----------------------------------------------------------------------------------

const here = dirname(fileURLToPath(import.meta.url));
const configs = join(here, "..", "..", "..", "..", "configs"); // dist/analysis -> repo root
let root = "", study = "", world = "";

/** A study folder as `mindseye experiment` lays it out, with stages 1–3 trained for 4 steps each. */
before(async () => {
  root = mkdtempSync(join(tmpdir(), "mindseye-retrieval-"));
  study = join(root, "study");
  world = join(study, "world");
  const stages = join(study, "stages");
  await generateWorld(resolveWorldOptions({ out: world, scenes: 240, seed: 3, size: 32, latents: 4, workers: 0, log: () => {} }));
  const run = (name: string, sets: string[]) => runRecipe(loadStageRecipe(join(configs, `${name}.yaml`), [`world=${world}`, "train.steps=4", "train.batch_size=8", ...sets]), { quiet: true });
  const encoder = await run("world-encoder", [`out=${join(stages, "world-encoder")}`]);
  const base = await run("vlm-base", [`encoder=${encoder}`, `out=${join(stages, "vlm-base")}`]);
  await run("latent-pretrain", [`encoder=${encoder}`, `base=${base}`, `targets=${join(stages, "targets-grid4")}`, `out=${join(stages, "pretrain-latent")}`, "pool=grid:4", "loss.target_norm=layernorm"]);
  writeFileSync(join(study, "study.resolved.json"), "{}\n");
});
after(() => rmSync(root, { recursive: true, force: true }));

const readLines = (out: string) => readFileSync(join(out, "predictions.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as RetrievalLine);

test("a study folder, its run folder and its model directory resolve to the same model and recipe settings", () => {
  const s = resolveLatentRun(study);
  assert.equal(s.modelDir, join(study, "stages", "pretrain-latent", "model"));
  assert.deepEqual([s.pool, s.targetNorm, s.encoderDir, s.worldDir, s.studyDir], ["grid:4", "layernorm", join(study, "stages", "world-encoder", "encoder"), world, study]);
  const m = resolveLatentRun(s.modelDir), r = resolveLatentRun(s.runDir);
  assert.deepEqual([m.pool, m.targetNorm, m.encoderDir, r.modelDir, m.studyDir], ["grid:4", "layernorm", s.encoderDir, s.modelDir, null]);
  assert.throws(() => resolveLatentRun(join(study, "stages", "vlm-base")), (e: unknown) => e instanceof ConfigError && /this is a "vlm-base" run, not latent-pretrain/.test(e.message));
  cpSync(s.modelDir, join(root, "lone", "model"), { recursive: true });
  assert.throws(() => resolveLatentRun(join(root, "lone", "model")), /recipe\.resolved\.json not found: the pooling and target normalisation the model was trained with are unknown/);
  assert.throws(() => resolveLatentRun(world), /not a latent-pretrained model directory/);
  assert.throws(() => resolveLatentRun(s.modelDir, { encoder: join(root, "nowhere") }), /nowhere \(from --encoder\) has no config\.json/);
  assert.throws(() => loadImaginer(join(study, "stages", "vlm-base", "model")), /has no latent head/);
  assert.throws(() => getTask("world_retrieval"), /world_retrieval is not a generation task/);
});

test("imagined latents are built as in training: the caption in the chat template, then the K latent queries; left padding changes nothing", () => {
  const im = loadImaginer(resolveLatentRun(study).modelDir);
  try {
    const a = "A red circle.", b = "From left to right, a pink diamond, a red cross and a blue rubber square.";
    assert.deepEqual(imagineInput(im, a), latentInput(im.tokenizer, a, im.latentIds).ids);
    const words = im.tokenizer.encode(a, { addSpecialTokens: false }), ids = imagineInput(im, a);
    assert.deepEqual(ids.slice(-im.latentIds.length), im.latentIds, "the latent queries come last");
    assert.ok(ids.join(",").includes(words.join(",")) && ids.length > words.length + im.latentIds.length, "the caption sits inside the template");
    torch.scope(() => {
      const alone = imagineLatents(im, [a]), batched = imagineLatents(im, [b, a]);
      assert.deepEqual(alone.shape, [1, 4, 96]);
      assert.ok(vals(alone.sub(batched.narrow(0, 1, 1)).abs().amax())[0]! < 1e-4, "a short caption left-padded in a batch imagines the same latents");
    });
  } finally {
    disposeImaginer(im);
  }
});

test("the gallery holds the encoder's grid:4 features of the split's images, layer-normed as the targets were, cached once", async () => {
  const s = resolveLatentRun(study);
  const cacheRoot = join(root, "cache");
  const g = await loadGallery({ spec: worldGallery(world, "test"), encoderDir: s.encoderDir, pool: s.pool, targetNorm: s.targetNorm, cacheRoot });
  const coco = JSON.parse(readFileSync(join(world, "captions_test.json"), "utf8")) as { images: { id: number; file_name: string }[] };
  assert.deepEqual(g.ids, coco.images.map((i) => String(i.id)));
  assert.ok(g.cacheDir.startsWith(join(cacheRoot, g.encoderFingerprint.slice(0, 16))));
  // image 0 recomputed: preprocess -> last layer -> 2×2 grid -> LayerNorm without affine
  const enc = loadEncoder(s.encoderDir);
  const image = await decodeImage({ kind: "file", path: g.paths[0]! });
  torch.noGrad(() => torch.scope(() => {
    const f = enc.model.features(preprocess([image], readPreprocessor(s.encoderDir)), -1);
    const z = poolFeatures(f, "grid:4", { hasClassToken: false }); // [1, 4, 96]
    const want = F.layerNorm(z, [96], null, null, 1e-6);
    assert.ok(vals(want.sub(g.latents.narrow(0, 0, 1)).abs().amax())[0]! < 1e-4);
  }));
  enc.model.parameters().forEach((p) => p.dispose());
  g.latents.dispose();
  const manifest = join(g.cacheDir, "manifest.json"), written = statSync(manifest).mtimeMs;
  const again = await loadGallery({ spec: worldGallery(world, "test"), encoderDir: s.encoderDir, pool: s.pool, targetNorm: s.targetNorm, cacheRoot });
  assert.equal(again.cacheDir, g.cacheDir);
  assert.equal(statSync(manifest).mtimeMs, written, "the second call reads the cache");
  again.latents.dispose();
});

test("world_retrieval: every test caption ranks the test images; results.json agrees with predictions.jsonl", async () => {
  const out = join(root, "eval-first");
  const r = await evaluateRetrieval({ modelDir: study, dataDir: world, out, quiet: true, batchSize: 7, cacheRoot: join(root, "cache") });
  const coco = JSON.parse(readFileSync(join(world, "captions_test.json"), "utf8")) as { images: unknown[]; annotations: unknown[] };
  const N = coco.images.length;
  assert.deepEqual([r.task, r.split, r.captions, r.n, r.gallery.images, r.latents.k, r.latents.d], ["world_retrieval", "test", "first", N, N, 4, 96]);
  const lines = readLines(out);
  assert.equal(lines.length, N);
  for (const l of lines) {
    assert.ok(Number.isInteger(l.rank) && l.rank >= 1 && l.rank <= N, `${l.id}: rank ${l.rank}`);
    assert.equal(l.top[0] === l.image_id, l.rank === 1, `${l.id}: its image tops the list exactly when its rank is 1`);
    if (l.rank <= 10) assert.ok(l.top.includes(l.image_id));
  }
  for (const k of ["1", "5", "10"]) close(r.recall[k]!.mean, lines.filter((l) => l.rank <= Number(k)).length / N, 1e-12, `recall@${k}`);
  close(r.meanCosine.mean, lines.reduce((a, l) => a + l.cosine, 0) / N, 1e-9);
  close(r.chance["5"]!, 5 / N, 1e-12);
  assert.deepEqual(JSON.parse(readFileSync(join(out, "results.json"), "utf8")), JSON.parse(JSON.stringify(r)));
  assert.ok(existsSync(join(r.model.path, "config.json")) && r.encoder.fingerprint.length === 64);

  // All captions: five per image; batching does not change a caption's rank.
  const all = await evaluateRetrieval({ modelDir: study, dataDir: world, out: join(root, "eval-all"), captions: "all", quiet: true, cacheRoot: join(root, "cache") });
  assert.equal(all.n, coco.annotations.length);
  const allLines = new Map(readLines(join(root, "eval-all")).map((l) => [l.id, l]));
  for (const l of lines) assert.equal(allLines.get(l.id)!.rank, l.rank, l.id);
  await assert.rejects(evaluateRetrieval({ modelDir: study, dataDir: world, out: join(root, "x"), split: "tset" }), /no split "tset" \(did you mean "test"\?\)/);

  // Another encoder than the one of the training targets is refused.
  const encoder = resolveLatentRun(study).encoderDir, other = join(root, "other-encoder");
  const enc = VitVisionModel.fromPretrained(encoder);
  torch.noGrad(() => enc.parameters()[0]!.add_(0.5));
  enc.savePretrained(other);
  enc.parameters().forEach((p) => p.dispose());
  copyFileSync(join(encoder, "preprocessor_config.json"), join(other, "preprocessor_config.json"));
  await assert.rejects(evaluateRetrieval({ modelDir: study, dataDir: world, out: join(root, "x"), encoderDir: other, quiet: true, cacheRoot: join(root, "cache") }),
    /other-encoder \(fingerprint [0-9a-f]{12}…\) is not the one the model's training targets came from/);
  assert.equal(readdirSync(join(root, "cache")).length, 1, "refused before extracting anything with it");
});

test("`mindseye eval --task world_retrieval` dispatches to the retrieval runner", async () => {
  const program = new Command().exitOverride();
  registerEvalCommand(program);
  const out = join(root, "eval-cli");
  const log = console.log;
  const printed: string[] = [];
  console.log = (s: string) => printed.push(s);
  try {
    await program.parseAsync(["eval", "--model", study, "--task", "world_retrieval", "--data", world, "--split", "val", "--out", out], { from: "user" });
  } finally {
    console.log = log;
  }
  const r = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { task: string; split: string };
  assert.deepEqual([r.task, r.split], ["world_retrieval", "val"]);
  assert.match(printed.join("\n"), /recall@1 .*chance/);
});
