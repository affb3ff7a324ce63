// Stage 4, finetune: image + question → answer, loss on the answer tokens only, on a seeded
// `fraction` of the world's training questions (all three task families, mixed), with the
// prompts the evaluation harness will use. Any arm's model (base, text control, latent) starts
// here; the latent head is not used (the claim under test is that pretraining shaped the LM).
//
// Any VLM family (models/family.ts: loadVlm) is fine-tuned: mindseye_vlm on the world as before
// (its images preprocessed once into a bank), the published families (qwen2_5_vl, llava,
// internvl_chat) on the world or on real datasets named by `datasets` (GQA and ScienceQA-IMG
// in their published formats, read by the evaluation's task readers), each batch's images put
// through the family's processor (Qwen2.5-VL's dynamic resolution: token counts per image).
// BLINK has no training split: BLINK-Jigsaw is evaluated zero-shot.
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { torch, type Tensor } from "@mindseye/torch";
import type { ImageProcessorConfig, RgbImage } from "../../models/processors.js";
import { imageTokenCount } from "../../models/vlm.js";
import { loadVlm, MindsEyeVlm, type PixelInputs, type Vlm } from "../../models/family.js";
import { DataLoader } from "../../data/loader.js";
import { buildExample, padRight } from "../../data/vlm_inputs.js";
import { decodeBatch } from "../../data/images.js";
import type { Tokenizer } from "../../data/tokenizer.js";
import { nextTokenCrossEntropy } from "../../objectives/next_token.js";
import type { Harness } from "../../eval/harness.js";
import { getTask, promptFor, answerText } from "../../eval/tasks.js";
import { ConfigError } from "../../config/errors.js";
import { resolveModelRef } from "../../config/hub.js";
import { SkipCounter } from "../../data/formats/index.js";
import { mulberry32, shuffleInPlace } from "../../util/random.js";
import { train, type TrainResult } from "../trainer.js";
import { collateVlm, vlmLoss, type VlmBatch } from "./vlm_base.js";
import { ImageBank, TrainSection, trainConfig, readPreprocessor, loadTokenizer, copyCompanions, markDone, writeResolved, stopIfInterrupted, trainOptions, MaxErrorRate, dataShard, onLeadRank, type StageOptions } from "./common.js";

export const TASK_FAMILIES = ["gqa", "scienceqa", "jigsaw"] as const;

/** Real datasets a fine-tune reads, by the evaluation task whose reader parses them, and the family they train. */
export const TRAIN_TASKS = { gqa: "gqa", scienceqa_img: "scienceqa", world_gqa: "gqa", world_sqa: "scienceqa", world_jigsaw: "jigsaw" } as const;

/** One real dataset of a fine-tune: GQA train_balanced, ScienceQA train (image questions), … */
export const FinetuneDataset = z.strictObject({
  /** The evaluation task whose reader parses it (eval/tasks.ts); blink_jigsaw has no training split. */
  task: z.enum(Object.keys(TRAIN_TASKS) as [keyof typeof TRAIN_TASKS, ...(keyof typeof TRAIN_TASKS)[]]),
  /** Its root, as `mindseye eval --data` takes it. */
  data: z.string(),
  /** GQA: train (train_balanced_questions.json); ScienceQA: train (pid_splits.json). */
  split: z.string(),
  /** Only the first `limit` questions. */
  limit: z.number().int().positive().optional(),
});
export type FinetuneDataset = z.output<typeof FinetuneDataset>;

export const FinetuneRecipe = z.strictObject({
  stage: z.literal("finetune"),
  seed: z.number().int().min(0).default(0),
  /** The synthetic world (its training questions; `tasks` picks the families). Absent: `datasets`. */
  world: z.string().optional(),
  /** Real datasets instead of (or besides) the world; only for published families (absent: the world alone). */
  datasets: z.array(FinetuneDataset).min(1).optional(),
  /** The model directory to fine-tune (any arm, any family: models/family.ts). */
  model: z.string(),
  out: z.string(),
  /** The seeded fraction of each task family's training questions used (data-efficiency curves). */
  fraction: z.number().gt(0).max(1).default(1),
  tasks: z.array(z.enum(TASK_FAMILIES)).min(1).default([...TASK_FAMILIES]),
  /**
   * Only the questions of these types (GQA's detailed types such as "exist", ScienceQA's
   * categories, "Jigsaw"): one type's learning curve, apart from the others. Absent: every type.
   */
  question_types: z.array(z.string().min(1)).min(1).optional(),
  /**
   * How often each task family is trained on: "proportional" to its number of questions, or
   * "balanced" (as many batches of each family; the smaller ones repeat, reshuffled).
   */
  task_sampling: z.enum(["proportional", "balanced"]).default("balanced"),
  /** Whose prompts the model is trained on (evaluate with the same). */
  harness: z.enum(["lmms-eval", "vlmevalkit"]).default("lmms-eval"),
  max_error_rate: MaxErrorRate,
  train: TrainSection,
});
export type FinetuneRecipe = z.output<typeof FinetuneRecipe>;

/** A question with its images (paths), prompt text and the answer the assistant gives. */
export interface QaExample { task: (typeof TASK_FAMILIES)[number]; id: string; type: string; images: string[]; text: string; answer: string }

/** The examples of `types` (absent: all); refuses a type no example has, naming the ones there are. */
export function ofTypes(examples: QaExample[], types: readonly string[] | undefined): QaExample[] {
  if (types === undefined) return examples;
  const present = new Set(examples.map((q) => q.type));
  const unknown = types.filter((t) => !present.has(t));
  if (unknown.length > 0) throw new ConfigError(`question_types: no training question is of type ${unknown.map((t) => JSON.stringify(t)).join(", ")}; the types there are ${[...present].sort().join(", ")}`);
  const keep = new Set(types);
  return examples.filter((q) => keep.has(q.type));
}

const WORLD_TASK: Record<(typeof TASK_FAMILIES)[number], string> = { gqa: "world_gqa", scienceqa: "world_sqa", jigsaw: "world_jigsaw" };

/**
 * A split's questions of each family, read by the evaluation's own task readers, with the
 * evaluation's prompt (promptFor) and the answer that scores as right (answerText): training
 * and evaluation cannot drift apart.
 */
export async function worldQuestions(world: string, split: string, tasks: readonly (typeof TASK_FAMILIES)[number][], harness: Harness, maxErrorRate = 0.01): Promise<QaExample[]> {
  const out: QaExample[] = [];
  for (const task of tasks) {
    const errors = new SkipCounter(`${WORLD_TASK[task]} ${split}`, { maxErrorRate, setting: "max_error_rate in the recipe" });
    for await (const item of getTask(WORLD_TASK[task]).items(world, split, errors)) {
      const images = item.images.map((ref) => {
        if (ref.kind !== "file") throw new Error(`${item.id}: world images are files`);
        return ref.path;
      });
      out.push({ task, id: item.id, type: item.type, images, text: promptFor(item, harness), answer: answerText(item) });
    }
    errors.finish(); // stops past the rate, judged on the whole file
    if (errors.skipped > 0) console.error(errors.summary());
  }
  return out;
}

/** A seeded fraction of each family (so every family stays represented at small fractions). */
export function sampleFraction(examples: QaExample[], fraction: number, seed: number): QaExample[] {
  if (fraction >= 1) return examples;
  const out: QaExample[] = [];
  for (const task of TASK_FAMILIES) {
    const family = examples.filter((e) => e.task === task);
    const order = shuffleInPlace(family.map((_, i) => i), mulberry32(Math.imul(seed + 1, 2654435761) + TASK_FAMILIES.indexOf(task)));
    out.push(...order.slice(0, Math.max(1, Math.round(family.length * fraction))).map((i) => family[i]!));
  }
  return out;
}

/**
 * Examples grouped into batches of one task family each (seeded: each family shuffled, then
 * cut into batches of `batchSize`, the last one smaller). "balanced" repeats the smaller
 * families, each pass reshuffled, until every family has as many batches as the largest. The
 * loader then shuffles the batches.
 */
export function familyBatches<E extends { task: string }>(examples: readonly E[], batchSize: number, seed: number, sampling: "proportional" | "balanced" = "proportional"): E[][] {
  const rand = mulberry32(Math.imul(seed + 1, 0x9e3779b1) ^ 0x5bd1e995);
  const families = [...new Set(examples.map((e) => e.task))].sort().map((task) => examples.filter((e) => e.task === task));
  const batchesOf = (family: E[]) => Math.ceil(family.length / batchSize);
  const target = Math.max(...families.map(batchesOf));
  const out: E[][] = [];
  for (const family of families) {
    const mine: E[][] = [];
    do {
      const order = shuffleInPlace([...family], rand);
      for (let i = 0; i < order.length; i += batchSize) mine.push(order.slice(i, i + batchSize));
    } while (sampling === "balanced" && mine.length < target);
    out.push(...(sampling === "balanced" ? mine.slice(0, target) : mine));
  }
  return out;
}

/**
 * The fine-tune's loader over its examples (ids: prompt + answer tokens, image tokens expanded).
 *
 * By default one task family per batch (familyBatches), the batches shuffled by the loader: a
 * jigsaw prompt (three images and BLINK's long text) is several times a GQA question, and
 * padding every mixed batch to it would cost most of the step.
 *
 * With train.group_by_length, batches of examples of similar lengths instead (the DataLoader's
 * `lengths`, Hugging Face's group_by_length), which serves the same end for any spread of
 * lengths, also within a family (Qwen2.5-VL's per-image token counts, long and short prompts);
 * families mix in a batch. task_sampling still decides how often each family is seen: the
 * examples are familyBatches' (for "balanced", the smaller families repeated), each epoch
 * regrouped. As with any loader, an epoch's last incomplete batch is dropped.
 */
export function finetuneLoader<E extends { task: string; ids: number[] }, B>(examples: readonly E[], r: FinetuneRecipe, collate: (batch: E[]) => B): DataLoader<E[], B> | DataLoader<E, B> {
  const batches = familyBatches(examples, r.train.batch_size, r.seed, r.task_sampling);
  if (r.train.group_by_length !== true) {
    return new DataLoader({ length: batches.length, get: (i: number) => batches[i]! }, {
      batchSize: 1, seed: r.seed, ...dataShard(), collate: (b: E[][]) => collate(b[0]!),
    });
  }
  const records = batches.flat();
  return new DataLoader({ length: records.length, get: (i: number) => records[i]! }, {
    batchSize: r.train.batch_size, seed: r.seed, ...dataShard(), lengths: records.map((e) => e.ids.length), collate: (b: E[]) => collate(b),
  });
}

/**
 * The training questions' images, decoded and preprocessed once per process and kept: a study
 * fine-tunes many models (arms × fractions × seeds) on subsets of the same images, and decoding
 * them took longer than a short fine-tuning run.
 */
const banks = new Map<string, Promise<ImageBank>>();
function sharedBank(paths: string[], pre: ImageProcessorConfig, maxErrorRate: number): Promise<ImageBank> {
  const unique = [...new Set(paths)].sort();
  const key = createHash("sha256").update(JSON.stringify([pre, unique, maxErrorRate])).digest("hex");
  let bank = banks.get(key);
  if (!bank) {
    bank = ImageBank.load(unique, pre, { maxErrorRate, setting: "max_error_rate in the recipe" });
    banks.set(key, bank);
    bank.catch(() => banks.delete(key));
  }
  return bank;
}

export async function runFinetune(recipe: FinetuneRecipe, opts: StageOptions = {}): Promise<{ modelDir: string; result: TrainResult; examples: number; questionIds: string[] }> {
  const r = { ...recipe, model: resolveModelRef(recipe.model) }; // a directory, or a Hugging Face id in the hub cache
  mkdirSync(r.out, { recursive: true });
  writeResolved(r.out, r);
  if (r.world === undefined && r.datasets === undefined) throw new ConfigError("finetune: give world (the synthetic world) or datasets (real GQA / ScienceQA files)");
  const tok = loadTokenizer(r.model);
  const vlm = loadVlm(r.model);
  vlm.dropLatentHead();
  if (!(vlm instanceof MindsEyeVlm)) return finetuneFamily(r, vlm, tok, opts);
  if (r.datasets !== undefined || r.world === undefined) throw new ConfigError(`finetune: ${r.model} is a mindseye_vlm, fine-tuned on the world (world, tasks); datasets are for the published families`);
  const pre = readPreprocessor(r.model);
  const model = vlm.model;
  model.vision_tower.requiresGrad_(false);
  const all = ofTypes(await worldQuestions(r.world, "train", r.tasks, r.harness, r.max_error_rate), r.question_types);
  const bank = await sharedBank(all.flatMap((q) => q.images), pre, r.max_error_rate);
  if (bank.skipped.length > 0) console.error(bank.summary());
  const qa = sampleFraction(bank.keep(all, (q) => q.images), r.fraction, r.seed);
  const perImage = imageTokenCount(model.config);
  const imagesAfterText = model.config.imagePosition === "after_text";
  const examples = qa.map((q) => ({ ...buildExample(tok, { images: q.images.length, text: q.text, answer: q.answer, imagesAfterText }, perImage), images: q.images, task: q.task }));
  const loader = finetuneLoader(examples, r, collateVlm(bank, tok.specialTokenIds.pad ?? 0));
  torch.manualSeed(r.seed);
  const result = await train({ model, loader: loader as DataLoader<unknown, VlmBatch>, step: (b) => ({ loss: vlmLoss(model, b) }) },
    trainConfig(r.out, r.train, r.seed), trainOptions(opts));
  stopIfInterrupted(result, r.out);
  const modelDir = join(r.out, "model");
  onLeadRank(() => {
    model.savePretrained(modelDir);
    copyCompanions(modelDir, [r.model]);
    markDone(modelDir, { stage: "finetune", fraction: r.fraction, examples: examples.length, steps: result.steps, lastLoss: result.lastLoss });
  });
  model.parameters().forEach((p) => p.dispose());
  return { modelDir, result, examples: examples.length, questionIds: qa.map((q) => q.id) };
}

/** The questions of `datasets` (and of the world, when given), with the harness's prompts and answers. */
export async function datasetQuestions(r: FinetuneRecipe): Promise<QaExample[]> {
  const out = r.world === undefined ? [] : await worldQuestions(r.world, "train", r.tasks, r.harness, r.max_error_rate);
  for (const d of r.datasets ?? []) {
    const errors = new SkipCounter(`${d.task} ${d.split}`, { maxErrorRate: r.max_error_rate, setting: "max_error_rate in the recipe" });
    let n = 0;
    for await (const item of getTask(d.task).items(d.data, d.split, errors)) {
      const images = item.images.map((ref) => {
        if (ref.kind !== "file") throw new ConfigError(`${d.task}: ${item.id}'s images are embedded bytes; fine-tuning reads image files (GQA images/, ScienceQA images/)`);
        return ref.path;
      });
      out.push({ task: TRAIN_TASKS[d.task], id: item.id, type: item.type, images, text: promptFor(item, r.harness), answer: answerText(item) });
      if (d.limit !== undefined && ++n >= d.limit) break;
    }
    if (d.limit === undefined || n < d.limit) errors.finish();
    if (errors.skipped > 0) console.error(errors.summary());
  }
  return ofTypes(out, r.question_types);
}

/** Decoded images by path; undecodable ones are skipped, counted and reported, past the rate the run stops. */
export async function decodeImages(paths: readonly string[], maxErrorRate: number): Promise<Map<string, RgbImage>> {
  const unique = [...new Set(paths)].sort();
  const errors = new SkipCounter("images", { maxErrorRate, setting: "max_error_rate in the recipe" });
  errors.expectTotal(unique.length);
  const decoded = await decodeBatch(unique.map((path) => ({ image: { kind: "file" as const, path }, source: { file: path, record: "image" } })), { errors });
  errors.finish();
  if (errors.skipped > 0) console.error(errors.summary());
  const out = new Map<string, RgbImage>();
  unique.forEach((p, i) => { if (decoded[i]) out.set(p, decoded[i]!); });
  return out;
}

/** A right-padded batch of a published family: ids, labels, mask, and its images through the family's processor. */
export interface FamilyBatch { inputIds: Tensor; labels: Tensor; attentionMask: Tensor; pixels?: PixelInputs }

export function collateFamily(vlm: Vlm, images: ReadonlyMap<string, RgbImage>, padId: number) {
  return (batch: { ids: number[]; labels: number[]; images: string[] }[]): FamilyBatch => {
    const p = padRight(batch, padId);
    const paths = batch.flatMap((b) => b.images);
    return {
      inputIds: torch.tensor(p.ids, { dtype: "int64" }),
      labels: torch.tensor(p.labels, { dtype: "int64" }),
      attentionMask: torch.tensor(p.mask, { dtype: "int64" }),
      ...(paths.length > 0 ? { pixels: vlm.processor.process(paths.map((q) => images.get(q)!)) } : {}),
    };
  };
}

/** The next-token loss of a family's batch (labels mask everything but answers). */
export function familyLoss(vlm: Vlm, b: FamilyBatch): Tensor {
  const { logits } = vlm.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask, ...(b.pixels ? { pixels: b.pixels } : {}) });
  return nextTokenCrossEntropy(logits, b.labels);
}

/** finetune of a published family (Qwen2.5-VL, LLaVA, InternVL): the same recipe, the family's processor per batch. */
async function finetuneFamily(r: FinetuneRecipe, vlm: Vlm, tok: Tokenizer, opts: StageOptions): Promise<{ modelDir: string; result: TrainResult; examples: number; questionIds: string[] }> {
  vlm.freezeVision();
  const all = await datasetQuestions(r);
  const images = await decodeImages(all.flatMap((q) => q.images), r.max_error_rate);
  const qa = sampleFraction(all.filter((q) => q.images.every((p) => images.has(p))), r.fraction, r.seed);
  const examples = qa.map((q) => {
    const counts = q.images.map((p) => vlm.processor.tokensFor(images.get(p)!));
    return { ...buildExample(tok, { images: q.images.length, text: q.text, answer: q.answer, imagesAfterText: vlm.imagesAfterText }, counts, vlm.promptFormat), images: q.images, task: q.task };
  });
  const loader = finetuneLoader(examples, r, collateFamily(vlm, images, tok.specialTokenIds.pad ?? 0));
  torch.manualSeed(r.seed);
  const result = await train({ model: vlm.module, loader: loader as DataLoader<unknown, FamilyBatch>, step: (b) => ({ loss: familyLoss(vlm, b) }) },
    trainConfig(r.out, r.train, r.seed), trainOptions(opts));
  stopIfInterrupted(result, r.out);
  const modelDir = join(r.out, "model");
  onLeadRank(() => {
    vlm.savePretrained(modelDir);
    tok.save(modelDir);
    copyFileSync(join(r.model, "preprocessor_config.json"), join(modelDir, "preprocessor_config.json"));
    markDone(modelDir, { stage: "finetune", fraction: r.fraction, examples: examples.length, steps: result.steps, lastLoss: result.lastLoss });
  });
  vlm.dispose();
  return { modelDir, result, examples: examples.length, questionIds: qa.map((q) => q.id) };
}
