// Stage 4, finetune: image + question → answer, loss on the answer tokens only, on a seeded
// `fraction` of the world's training questions (all three task families, mixed), with the
// prompts the evaluation harness will use. Any arm's model (base, text control, latent) starts
// here; the latent head is not used (the claim under test is that pretraining shaped the LM).
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { torch } from "@mindseye/torch";
import type { ImageProcessorConfig } from "../../models/processors.js";
import { MindsEyeVLM, imageTokenCount } from "../../models/vlm.js";
import { DataLoader } from "../../data/loader.js";
import { buildExample } from "../../data/vlm_inputs.js";
import type { Harness } from "../../eval/harness.js";
import { getTask, promptFor, answerText } from "../../eval/tasks.js";
import { SkipCounter } from "../../data/formats/index.js";
import { mulberry32, shuffleInPlace } from "../../util/random.js";
import { train, type TrainResult } from "../trainer.js";
import { collateVlm, vlmLoss, type VlmBatch } from "./vlm_base.js";
import { ImageBank, TrainSection, trainConfig, readPreprocessor, loadTokenizer, copyCompanions, markDone, writeResolved, stopIfInterrupted, trainOptions, MaxErrorRate, type StageOptions } from "./common.js";

export const TASK_FAMILIES = ["gqa", "scienceqa", "jigsaw"] as const;

export const FinetuneRecipe = z.strictObject({
  stage: z.literal("finetune"),
  seed: z.number().int().min(0).default(0),
  world: z.string(),
  /** The model directory to fine-tune (any arm). */
  model: z.string(),
  out: z.string(),
  /** The seeded fraction of each task family's training questions used (data-efficiency curves). */
  fraction: z.number().gt(0).max(1).default(1),
  tasks: z.array(z.enum(TASK_FAMILIES)).min(1).default([...TASK_FAMILIES]),
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
export interface QaExample { task: (typeof TASK_FAMILIES)[number]; id: string; images: string[]; text: string; answer: string }

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
      out.push({ task, id: item.id, images, text: promptFor(item, harness), answer: answerText(item) });
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

export async function runFinetune(r: FinetuneRecipe, opts: StageOptions = {}): Promise<{ modelDir: string; result: TrainResult; examples: number; questionIds: string[] }> {
  mkdirSync(r.out, { recursive: true });
  writeResolved(r.out, r);
  const tok = loadTokenizer(r.model);
  const pre = readPreprocessor(r.model);
  const model = MindsEyeVLM.fromPretrained(r.model);
  if (model.latent_head) {
    model.latent_head.parameters().forEach((p) => p.dispose());
    model.latent_head = null;
    model.config = { ...model.config, latentHead: null, latentTokenIds: [] };
  }
  model.vision_tower.requiresGrad_(false);
  const all = await worldQuestions(r.world, "train", r.tasks, r.harness, r.max_error_rate);
  const bank = await sharedBank(all.flatMap((q) => q.images), pre, r.max_error_rate);
  if (bank.skipped.length > 0) console.error(bank.summary());
  const qa = sampleFraction(bank.keep(all, (q) => q.images), r.fraction, r.seed);
  const perImage = imageTokenCount(model.config);
  const imagesAfterText = model.config.imagePosition === "after_text";
  const examples = qa.map((q) => ({ ...buildExample(tok, { images: q.images.length, text: q.text, answer: q.answer, imagesAfterText }, perImage), images: q.images, task: q.task }));
  // One task family per batch: a jigsaw prompt (three images and BLINK's long text) is several
  // times a GQA question, and padding every mixed batch to it would cost most of the step.
  const batches = familyBatches(examples, r.train.batch_size, r.seed, r.task_sampling);
  const collate = collateVlm(bank, tok.specialTokenIds.pad ?? 0);
  const loader = new DataLoader({ length: batches.length, get: (i: number) => batches[i]! }, {
    batchSize: 1, seed: r.seed, collate: (b: (typeof examples)[]) => collate(b[0]!),
  });
  torch.manualSeed(r.seed);
  const result = await train({ model, loader: loader as DataLoader<unknown, VlmBatch>, step: (b) => ({ loss: vlmLoss(model, b) }) },
    trainConfig(r.out, r.train, r.seed), trainOptions(opts));
  stopIfInterrupted(result, r.out);
  const modelDir = join(r.out, "model");
  model.savePretrained(modelDir);
  copyCompanions(modelDir, [r.model]);
  markDone(modelDir, { stage: "finetune", fraction: r.fraction, examples: examples.length, steps: result.steps, lastLoss: result.lastLoss });
  model.parameters().forEach((p) => p.dispose());
  return { modelDir, result, examples: examples.length, questionIds: qa.map((q) => q.id) };
}
