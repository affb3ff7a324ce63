// The family interface on a tiny random Qwen2.5-VL written in its published layout (config.json
// fields as Qwen/Qwen2.5-VL-7B-Instruct's, weights under the original release's names, a
// Qwen2VLImageProcessor preprocessor_config.json, a tokenizer with Qwen2-VL's vision tokens): the
// loader, the processor's token counts, vision features before and after the PatchMerger, the
// latent head with resize_token_embeddings, and the whole path latent-pretrain → finetune → eval
// from the paper recipes with --set overrides, on the world and on fixtures in real formats.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { torch, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { Tokenizer } from "../data/tokenizer.js";
import { readCheckpointHeader } from "./pretrained.js";
import { Qwen2_5_VLForConditionalGeneration, qwen2_5_vlPreset } from "./qwen2_5_vl.js";
import { loadVlm, poolImageFeatures, MindsEyeVlm, LATENT_HEAD_FILE, type Vlm } from "./family.js";
import { loadStageRecipe, runRecipe } from "../train/stages/index.js";
import { evaluate } from "../eval/run.js";
import { saveTinyEvalModel } from "../eval/test_helpers.js";
import { CLIP_MEAN, CLIP_STD, type RgbImage } from "./processors.js";
import { LlavaForConditionalGeneration, llavaPreset } from "./llava.js";
import { InternVLChatModel, internVLPreset } from "./internvl.js";
import { writeTinyLlava } from "./llava_test_helpers.js";
import { VICUNA_V1, INTERNVL_CHATML } from "../data/vlm_inputs.js";
import { writeTinyInternVL } from "./internvl_test_helpers.js";
import { writeTinyQwen } from "./qwen2_5_vl_test_helpers.js";

const here = dirname(fileURLToPath(import.meta.url));
const PAPER = join(here, "..", "..", "..", "..", "configs", "paper"); // dist/models -> repo root
const X = join(here, "..", "..", "test-fixtures", "formats");
let tmp = "", world = "", qwenDir = "";

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), "mindseye-family-"));
  world = join(tmp, "world");
  await generateWorld(resolveWorldOptions({ out: world, scenes: 40, seed: 2, size: 32, latents: 4, workers: 0, log: () => {} }));
  qwenDir = join(tmp, "qwen");
  writeTinyQwen(qwenDir, world);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

const gray = (w: number, h: number, v = 0): RgbImage => ({ data: Uint8Array.from({ length: w * h * 3 }, (_, i) => (i * 7 + v) % 256), width: w, height: h });
const same = (a: Tensor, b: Tensor) => a.sub(b).abs().max().item() === 0;
const weightsOf = (m: Vlm, prefix: string) => new Map(m.module.namedParameters().filter(([n]) => n.includes(prefix)).map(([n, p]) => [n, p.clone()]));

test("loadVlm reads the published Qwen2.5-VL layout; its processor gives each image its own token count", () => {
  const vlm = loadVlm(qwenDir);
  try {
    assert.equal(vlm.modelType, "qwen2_5_vl");
    assert.deepEqual(vlm.visionLayers, ["merger", "pre_merger"]);
    // smart_resize to multiples of 8 within [16², 32²] px; 4-px patches, 2×2 merged: 32×32 → 16 tokens, 16×24 → 6
    assert.equal(vlm.processor.tokensFor({ width: 32, height: 32 }), 16);
    assert.equal(vlm.processor.tokensFor({ width: 24, height: 16 }), 6);
    const px = vlm.processor.process([gray(32, 32), gray(24, 16, 5)]);
    assert.deepEqual(px.tokensPerImage, [16, 6]);
    assert.deepEqual(px.imageGridThw, [[1, 8, 8], [1, 4, 6]]);
    assert.deepEqual(px.pixelValues.shape, [64 + 24, 3 * 2 * 4 * 4]);
    // one prompt per image: pads expanded per image, right-padded
    const pad = vlm.imageTokenId;
    const rows = [[1, 2, ...Array<number>(16).fill(pad), 3], [1, 2, ...Array<number>(6).fill(pad), 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]];
    const mask = rows.map((r, i) => r.map((_, j) => (i === 1 && j > 9 ? 0 : 1)));
    const out = torch.noGrad(() => vlm.forward({ inputIds: torch.tensor(rows, { dtype: "int64" }), attentionMask: torch.tensor(mask, { dtype: "int64" }), pixels: px }));
    assert.deepEqual(out.logits.shape, [2, 19, vlm.vocabSize]);
    assert.deepEqual(out.lastHiddenState.shape, [2, 19, 64]);
    assert.throws(() => vlm.forward({ inputIds: torch.tensor([rows[0]!], { dtype: "int64" }), pixels: px }), /image features and image tokens do not match/);
  } finally {
    vlm.dispose();
  }
});

test("Qwen2.5-VL vision features: after the PatchMerger the LM's tokens, before it the patches in rows, and the merger maps one to the other", () => {
  const vlm = loadVlm(qwenDir);
  try {
    const px = vlm.processor.process([gray(32, 32), gray(24, 16, 9)]);
    const after = vlm.visionFeatures(px); // default: merger
    const before = vlm.visionFeatures(px, "pre_merger");
    assert.deepEqual(after.grids, [[4, 4], [2, 3]]);
    assert.deepEqual(after.features.map((f) => f.shape), [[16, 64], [6, 64]]);
    assert.deepEqual(before.grids, [[8, 8], [4, 6]]);
    assert.deepEqual(before.features.map((f) => f.shape), [[64, 32], [24, 32]]);
    // rows of patches -> 2×2 blocks (the processor's order) -> the merger == the tower's output
    const model = (vlm as unknown as { model: Qwen2_5_VLForConditionalGeneration }).model;
    before.features.forEach((f, i) => {
      const [h, w] = before.grids[i]!;
      const blocks = f.reshape(h / 2, 2, w / 2, 2, 32).permute(0, 2, 1, 3, 4).reshape(h * w, 32);
      const merged = torch.noGrad(() => model.visual.merger.forward(blocks));
      assert.ok(merged.sub(after.features[i]!).abs().max().item() < 1e-5, `image ${i}`);
    });
    // grid pooling on each image's own grid
    const pooled = poolImageFeatures(after.features[1]!, after.grids[1]!, "grid:4", false);
    assert.deepEqual(pooled.shape, [4, 64]);
    assert.ok(poolImageFeatures(after.features[0]!, after.grids[0]!, "mean", false).sub(after.features[0]!.mean(0, { keepdim: true })).abs().max().item() < 1e-6);
    assert.throws(() => poolImageFeatures(after.features[0]!, after.grids[0]!, "cls", false), /no class token/);
    assert.throws(() => vlm.visionFeatures(px, "layer_3"), ConfigError);
  } finally {
    vlm.dispose();
  }
});

test("a latent head with query tokens past the vocabulary grows the embeddings (rows kept) and round-trips beside the published layout", () => {
  const vlm = loadVlm(qwenDir);
  const out = join(tmp, "qwen-head");
  try {
    const V = vlm.vocabSize;
    const embedBefore = weightsOf(vlm, "embed_tokens");
    vlm.attachLatentHead({ type: "mlp", inputSize: 64, hiddenSize: 64, latentSize: 32, bias: true }, [V, V + 1], { generator: new torch.Generator(1) });
    assert.equal(vlm.vocabSize, V + 2);
    const [name, old] = [...embedBefore][0]!;
    const grown = vlm.module.namedParameters().find(([n]) => n === name)![1];
    assert.deepEqual(grown.shape, [V + 2, 64]);
    assert.ok(grown.narrow(0, 0, V).sub(old).abs().max().item() === 0, "old rows are kept");
    const ids = torch.tensor([[1, 2, 3, V, V + 1], [0, 1, 2, V, V + 1]], { dtype: "int64" });
    const { latents } = vlm.predictLatents(ids, torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], { dtype: "int64" }));
    assert.deepEqual(latents.shape, [2, 2, 32]);
    vlm.savePretrained(out);
    const names = [...readCheckpointHeader(out).keys()];
    assert.ok(names.every((n) => !n.includes("latent_head")), "the head is not in the family's weights");
    assert.ok(names.includes("model.language_model.embed_tokens.weight") || names.includes("model.embed_tokens.weight"));
    assert.ok(existsSync(join(out, LATENT_HEAD_FILE)));
    const json = JSON.parse(readFileSync(join(out, "config.json"), "utf8")) as Record<string, unknown>;
    assert.equal(json.vocab_size, V + 2);
    assert.deepEqual(json.latent_token_ids, [V, V + 1]);
    writeFileSync(join(out, "preprocessor_config.json"), readFileSync(join(qwenDir, "preprocessor_config.json")));
    const back = loadVlm(out);
    try {
      assert.deepEqual(back.latentTokenIds, [V, V + 1]);
      const again = back.predictLatents(ids, torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]], { dtype: "int64" })).latents;
      assert.ok(again.sub(latents).abs().max().item() < 1e-5);
      back.dropLatentHead();
      assert.equal(back.latentHead, null);
    } finally {
      back.dispose();
    }
  } finally {
    vlm.dispose();
  }
});

test("loadVlm dispatches on model_type and names the known families", () => {
  const me = join(tmp, "mindseye");
  saveTinyEvalModel(me, world, 32);
  const vlm = loadVlm(me);
  try {
    assert.ok(vlm instanceof MindsEyeVlm);
    assert.equal(vlm.processor.tokensFor({ width: 99, height: 7 }), 16);
  } finally {
    vlm.dispose();
  }
  const bad = join(tmp, "bad");
  mkdirSync(bad);
  writeFileSync(join(bad, "config.json"), JSON.stringify({ model_type: "qwen2_vl" }));
  assert.throws(() => loadVlm(bad), (e: unknown) => e instanceof ConfigError && /model_type "qwen2_vl" is not a VLM family MindsEye trains \(did you mean "qwen2_5_vl"\?\); known: mindseye_vlm, qwen2_5_vl, llava, internvl_chat/.test(e.message));
  assert.deepEqual(qwen2_5_vlPreset("tiny").vision.patchSize, 4);
});

test("Qwen2.5-VL latent-pretrain → finetune → eval from the paper recipes, on the world and on COCO / CC3M / WebDataset / LAION / GQA / ScienceQA / BLINK fixtures", async () => {
  const sqa = join(tmp, "scienceqa");
  mkdirSync(sqa);
  for (const f of ["problems.json", "pid_splits.json"]) symlinkSync(join(X, "scienceqa/data/scienceqa", f), join(sqa, f));
  symlinkSync(join(X, "scienceqa/images"), join(sqa, "images"));
  const quick = ["train.steps=2", "train.batch_size=4", "train.grad_accum=1", "train.warmup_steps=1", "train.log_every=1", "train.checkpoint_every=100", "max_error_rate=0.5"];
  const coco = `captions=[{format: coco, annotations: ${join(X, "coco/annotations/captions_val2017.json")}, images: ${join(X, "coco/val2017")}}]`;
  // every caption source the proposal names, in its published format: COCO, CC3M (img2dataset), WebDataset shards, LAION parquet
  const allSources = `captions=[{format: coco, annotations: ${join(X, "coco/annotations/captions_val2017.json")}, images: ${join(X, "coco/val2017")}}, ` +
    `{format: cc3m, tsv: ${join(X, "cc3m/cc3m.tsv")}, images: ${join(X, "cc3m/images")}}, ` +
    `{format: webdataset, shards: [${join(X, "webdataset/00000.tar")}, ${join(X, "webdataset/00001.tar")}]}, ` +
    `{format: laion, metadata: ${join(X, "laion/laion400m-meta")}, images: ${join(X, "laion/images")}, samplesPerShard: 3}]`;

  // 1. latent pretraining: targets from the model's own tower (after the PatchMerger), pooled 2×2
  const latent = await runRecipe(loadStageRecipe(join(PAPER, "qwen2_5_vl_7b", "latent.yaml"), [
    `base=${qwenDir}`, allSources, `world=${world}`, "pool=grid:4", `out=${join(tmp, "latent")}`, ...quick,
  ]), { quiet: true });
  const json = JSON.parse(readFileSync(join(latent, "config.json"), "utf8")) as { model_type: string; latent_token_ids: number[]; latent_head: { latent_size: number } };
  assert.equal(json.model_type, "qwen2_5_vl");
  assert.equal(json.latent_token_ids.length, 4);
  assert.equal(json.latent_head.latent_size, 64, "merged tokens are the LM's width");
  const tok = Tokenizer.fromPretrained(latent);
  assert.deepEqual(json.latent_token_ids, ["<|latent_0|>", "<|latent_1|>", "<|latent_2|>", "<|latent_3|>"].map((t) => tok.tokenToId(t)));
  const base = loadVlm(qwenDir), trained = loadVlm(latent);
  try {
    const [b, t] = [weightsOf(base, "visual."), weightsOf(trained, "visual.")];
    assert.ok(b.size > 0 && [...b].every(([n, w]) => same(t.get(n)!, w)), "the vision tower stayed frozen");
    const [bl, tl] = [weightsOf(base, "layers.0.self_attn.q_proj.weight"), weightsOf(trained, "layers.0.self_attn.q_proj.weight")];
    assert.ok(bl.size > 0 && [...bl].every(([n, w]) => !same(tl.get(n)!, w)), "the LM trained");
    assert.ok(trained.latentHead !== null);
  } finally {
    base.dispose();
    trained.dispose();
  }

  // the text control: the same captions, no head, no new tokens
  const control = await runRecipe(loadStageRecipe(join(PAPER, "qwen2_5_vl_7b", "text_control.yaml"), [
    `base=${qwenDir}`, coco, `out=${join(tmp, "control")}`, ...quick,
  ]), { quiet: true });
  assert.equal((JSON.parse(readFileSync(join(control, "config.json"), "utf8")) as { latent_head?: unknown }).latent_head, undefined);

  // 2. fine-tuning on GQA and ScienceQA files (and the world's questions); the head is dropped
  const ft = await runRecipe(loadStageRecipe(join(PAPER, "qwen2_5_vl_7b", "finetune_latent.yaml"), [
    `model=${latent}`, `world=${world}`, `out=${join(tmp, "ft")}`, ...quick,
    `datasets=[{task: gqa, data: ${join(X, "gqa")}, split: testdev}, {task: scienceqa_img, data: ${sqa}, split: train}]`,
  ]), { quiet: true });
  assert.equal((JSON.parse(readFileSync(join(ft, "config.json"), "utf8")) as { latent_head?: unknown }).latent_head, undefined);
  assert.ok(existsSync(join(ft, "DONE")) && !existsSync(join(ft, LATENT_HEAD_FILE)));

  // 3. evaluation, every task
  const cases: [string, string, number][] = [["world_gqa", world, 3], ["world_jigsaw", world, 2], ["gqa", join(X, "gqa"), 2], ["scienceqa_img", sqa, 2], ["blink_jigsaw", join(X, "blink"), 2]];
  for (const [task, dataDir, n] of cases) {
    const r = await evaluate({ modelDir: join(tmp, "ft"), task, dataDir, out: join(tmp, "eval", task), limit: n, batchSize: 2, maxNewTokens: 3, quiet: true, maxErrorRate: 0.5 });
    assert.equal(r.n, n, task);
    assert.match(r.model.fingerprint, /^[0-9a-f]{64}$/);
    const lines = readFileSync(join(tmp, "eval", task, "predictions.jsonl"), "utf8").trim().split("\n");
    assert.equal(lines.length, n);
  }
});

test("LLaVA (llava-hf layout): CLIP preprocessing padded to a square with the mean colour, image_seq_length tokens, head and vocabulary round trip", () => {
  const dir = join(tmp, "llava");
  const m = new LlavaForConditionalGeneration(llavaPreset("tiny"), { generator: new torch.Generator(3) });
  m.savePretrained(dir);
  m.parameters().forEach((p) => p.dispose());
  writeFileSync(join(dir, "preprocessor_config.json"), JSON.stringify({
    image_processor_type: "CLIPImageProcessor", size: { shortest_edge: 16 }, crop_size: { height: 16, width: 16 }, do_center_crop: true, resample: 3, image_mean: [...CLIP_MEAN], image_std: [...CLIP_STD],
  }));
  const vlm = loadVlm(dir);
  try {
    assert.equal(vlm.modelType, "llava");
    assert.equal(vlm.processor.tokensFor({ width: 64, height: 8 }), 16);
    const px = vlm.processor.process([{ data: new Uint8Array(32 * 8 * 3).fill(255), width: 32, height: 8 }]);
    assert.deepEqual(px.pixelValues.shape, [1, 3, 16, 16]);
    // the first row is LLaVA's padding: int(mean·255) per channel, normalised
    const row0 = px.pixelValues.select(2, 0).select(2, 0).squeeze(0).tolist() as number[];
    row0.forEach((v, c) => assert.ok(Math.abs(v - (Math.trunc(CLIP_MEAN[c]! * 255) / 255 - CLIP_MEAN[c]!) / CLIP_STD[c]!) < 1e-5, `channel ${c}: ${v}`));
    const ids = torch.tensor([[1, ...Array<number>(16).fill(100), 5, 6]], { dtype: "int64" });
    assert.deepEqual(torch.noGrad(() => vlm.forward({ inputIds: ids, pixels: px })).logits.shape, [1, 19, 110]);
    assert.deepEqual(vlm.visionFeatures(px).features[0]!.shape, [16, 32], "layer -2 without the class token");
    vlm.attachLatentHead({ type: "linear", inputSize: 48, hiddenSize: 48, latentSize: 32, bias: true }, [110, 111], { generator: new torch.Generator(0) });
    vlm.savePretrained(join(tmp, "llava-head"));
    const json = JSON.parse(readFileSync(join(tmp, "llava-head", "config.json"), "utf8")) as { text_config: { vocab_size: number }; latent_token_ids: number[] };
    assert.deepEqual([json.text_config.vocab_size, json.latent_token_ids], [112, [110, 111]]);
  } finally {
    vlm.dispose();
  }
});

test("LLaVA-1.5 (llava-hf layout, Vicuna v1 prompts with <image> and </s>) latent-pretrain → finetune → eval on the world, the vision tower frozen", async () => {
  const dir = join(tmp, "llava-e2e");
  writeTinyLlava(dir, { template: false });
  const quick = ["train.steps=2", "train.batch_size=4", "train.grad_accum=1", "train.warmup_steps=1", "train.log_every=1", "train.checkpoint_every=100", "max_error_rate=0.5"];

  // 1. latent pretraining on COCO-format and the world's captions: targets from LLaVA's own tower (the projector's input)
  const coco = `captions=[{format: coco, annotations: ${join(X, "coco/annotations/captions_val2017.json")}, images: ${join(X, "coco/val2017")}}]`;
  const latent = await runRecipe(loadStageRecipe(join(PAPER, "qwen2_5_vl_7b", "latent.yaml"), [
    `base=${dir}`, coco, `world=${world}`, "vision_layer=projector_input", "pool=grid:4", `out=${join(tmp, "llava-latent")}`, ...quick,
  ]), { quiet: true });
  const json = JSON.parse(readFileSync(join(latent, "config.json"), "utf8")) as { model_type: string; latent_token_ids: number[]; latent_head: { latent_size: number } };
  assert.equal(json.model_type, "llava");
  assert.equal(json.latent_token_ids.length, 4);
  assert.equal(json.latent_head.latent_size, 32, "the tower's width");
  const base = loadVlm(dir), trained = loadVlm(latent);
  try {
    assert.equal(trained.promptFormat, VICUNA_V1);
    const [b, t] = [weightsOf(base, "vision_tower."), weightsOf(trained, "vision_tower.")];
    assert.ok(b.size > 0 && [...b].every(([n, w]) => same(t.get(n)!, w)), "the vision tower stayed frozen");
    const q = "language_model.model.layers.0.self_attn.q_proj.weight";
    const [bl, tl] = [weightsOf(base, q), weightsOf(trained, q)];
    assert.ok(bl.size > 0 && [...bl].every(([n, w]) => !same(tl.get(n)!, w)), "the LM trained");
  } finally {
    base.dispose();
    trained.dispose();
  }

  // 2. fine-tuning on the world's questions and a GQA file; the head is dropped, the vision tower still frozen
  const ft = await runRecipe(loadStageRecipe(join(PAPER, "llava_1_5_7b", "finetune_baseline.yaml"), [
    `model=${latent}`, `world=${world}`, `out=${join(tmp, "llava-ft")}`, ...quick, `datasets=[{task: gqa, data: ${join(X, "gqa")}, split: testdev}]`,
  ]), { quiet: true });
  assert.ok(existsSync(join(ft, "DONE")) && !existsSync(join(ft, LATENT_HEAD_FILE)));
  const first = loadVlm(dir), tuned = loadVlm(ft);
  try {
    const [b, t] = [weightsOf(first, "vision_tower."), weightsOf(tuned, "vision_tower.")];
    assert.ok([...b].every(([n, w]) => same(t.get(n)!, w)), "the vision tower stayed frozen through fine-tuning");
  } finally {
    first.dispose();
    tuned.dispose();
  }

  // 3. evaluation: prompts in the Vicuna format, generation stopping at </s>
  for (const [task, dataDir, n] of [["world_gqa", world, 3], ["gqa", join(X, "gqa"), 2]] as const) {
    const r = await evaluate({ modelDir: join(tmp, "llava-ft"), task, dataDir, out: join(tmp, "llava-eval", task), limit: n, batchSize: 2, maxNewTokens: 3, quiet: true, maxErrorRate: 0.5 });
    assert.equal(r.n, n, task);
    assert.equal(readFileSync(join(tmp, "llava-eval", task, "predictions.jsonl"), "utf8").trim().split("\n").length, n);
  }
});

test("InternVL (published layout): the dynamic tile plan with its thumbnail, ImageNet normalisation, num_image_token per tile", () => {
  const dir = join(tmp, "internvl");
  const m = new InternVLChatModel(internVLPreset("tiny"), { generator: new torch.Generator(4) });
  m.savePretrained(dir);
  m.parameters().forEach((p) => p.dispose());
  const vlm = loadVlm(dir);
  try {
    assert.equal(vlm.modelType, "internvl_chat");
    assert.equal(vlm.imageTokenId, 100);
    // 48×24 → a 2×1 grid of 24-px tiles + the thumbnail = 3 tiles of 9 tokens; a square image is one tile
    assert.equal(vlm.processor.tokensFor({ width: 48, height: 24 }), 27);
    assert.equal(vlm.processor.tokensFor({ width: 24, height: 24 }), 9);
    const px = vlm.processor.process([{ data: new Uint8Array(48 * 24 * 3).fill(0), width: 48, height: 24 }, gray(24, 24)]);
    assert.deepEqual(px.tokensPerImage, [27, 9]);
    assert.deepEqual(px.pixelValues.shape, [4, 3, 24, 24]);
    assert.ok(Math.abs((px.pixelValues.flatten().tolist() as number[])[0]! - -0.485 / 0.229) < 1e-5, "ImageNet mean/std");
    const ids = torch.tensor([[1, ...Array<number>(36).fill(100), 5]], { dtype: "int64" });
    assert.deepEqual(torch.noGrad(() => vlm.forward({ inputIds: ids, pixels: px })).logits.shape, [1, 38, 110]);
    const f = vlm.visionFeatures(px);
    assert.deepEqual([f.features.length, f.grids[0]], [4, [6, 6]]);
  } finally {
    vlm.dispose();
  }
});

test("InternVL2.5 (published layout, ChatML with <img> <IMG_CONTEXT>×(tokens·tiles) </img>) latent-pretrain → finetune → eval on the world, the vision tower frozen", async () => {
  const dir = join(tmp, "internvl-e2e");
  writeTinyInternVL(dir);
  const quick = ["train.steps=2", "train.batch_size=4", "train.grad_accum=1", "train.warmup_steps=1", "train.log_every=1", "train.checkpoint_every=100", "max_error_rate=0.5"];

  // 1. latent pretraining on COCO-format and the world's captions: targets from InternViT (the projector's input)
  const coco = `captions=[{format: coco, annotations: ${join(X, "coco/annotations/captions_val2017.json")}, images: ${join(X, "coco/val2017")}}]`;
  const latent = await runRecipe(loadStageRecipe(join(PAPER, "qwen2_5_vl_7b", "latent.yaml"), [
    `base=${dir}`, coco, `world=${world}`, "vision_layer=projector_input", "pool=grid:4", `out=${join(tmp, "internvl-latent")}`, ...quick,
  ]), { quiet: true });
  const json = JSON.parse(readFileSync(join(latent, "config.json"), "utf8")) as { model_type: string; latent_token_ids: number[] };
  assert.equal(json.model_type, "internvl_chat");
  assert.equal(json.latent_token_ids.length, 4);
  const base = loadVlm(dir), trained = loadVlm(latent);
  try {
    assert.equal(trained.promptFormat, INTERNVL_CHATML);
    const [b, t] = [weightsOf(base, "vision_model."), weightsOf(trained, "vision_model.")];
    assert.ok(b.size > 0 && [...b].every(([n, w]) => same(t.get(n)!, w)), "the vision tower stayed frozen");
    const [bl, tl] = [weightsOf(base, "language_model.model.layers.0."), weightsOf(trained, "language_model.model.layers.0.")];
    assert.ok(bl.size > 0 && [...bl].some(([n, w]) => !same(tl.get(n)!, w)), "the LM trained");
  } finally {
    base.dispose();
    trained.dispose();
  }

  // 2. fine-tuning on the world's questions and a GQA file; the head is dropped, the vision tower still frozen
  const ft = await runRecipe(loadStageRecipe(join(PAPER, "internvl2_5_8b", "finetune_baseline.yaml"), [
    `model=${latent}`, `world=${world}`, `out=${join(tmp, "internvl-ft")}`, ...quick, `datasets=[{task: gqa, data: ${join(X, "gqa")}, split: testdev}]`,
  ]), { quiet: true });
  assert.ok(existsSync(join(ft, "DONE")) && !existsSync(join(ft, LATENT_HEAD_FILE)));
  const first = loadVlm(dir), tuned = loadVlm(ft);
  try {
    const [b, t] = [weightsOf(first, "vision_model."), weightsOf(tuned, "vision_model.")];
    assert.ok([...b].every(([n, w]) => same(t.get(n)!, w)), "the vision tower stayed frozen through fine-tuning");
  } finally {
    first.dispose();
    tuned.dispose();
  }

  // 3. evaluation: InternVL's prompts, generation stopping at <|im_end|>
  for (const [task, dataDir, n] of [["world_gqa", world, 3], ["gqa", join(X, "gqa"), 2]] as const) {
    const r = await evaluate({ modelDir: join(tmp, "internvl-ft"), task, dataDir, out: join(tmp, "internvl-eval", task), limit: n, batchSize: 2, maxNewTokens: 3, quiet: true, maxErrorRate: 0.5 });
    assert.equal(r.n, n, task);
    assert.equal(readFileSync(join(tmp, "internvl-eval", task, "predictions.jsonl"), "utf8").trim().split("\n").length, n);
  }
});
