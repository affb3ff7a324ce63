// Stage 3, latent-pretrain: from vlm-base, the LM reads a caption (no image) followed by K
// latent query tokens; the head maps its hidden states there to predicted latents, trained
// against the frozen encoder's pooled features of the captioned image (the target cache), with
// L = λ_nt·CE + λ_sim·S + λ_align·A. The text control is this recipe with λ_sim = λ_align = 0:
// the same captions, no latents.
//
// Inputs use the chat template, as every other stage does: the user turn is the caption (no
// image), the assistant turn the K latent queries (latentInput). Targets are standardised by
// default with the training set's mean and std per latent and dimension (target_norm
// standardize), saved beside the model (TARGET_STATS_FILE) so that retrieval normalises its
// gallery the same way.
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { torch, nn, io, type Tensor } from "@mindseye/torch";
import { MindsEyeVLM } from "../../models/vlm.js";
import { latentTokens } from "../../models/latent_head.js";
import { DataLoader } from "../../data/loader.js";
import { TargetCache, extractTargets, loadEncoder, encoderFingerprint } from "../../data/targets.js";
import { latentObjective, termValues, collapseStats, pooledCount, parsePool, targetStats, IGNORE_INDEX, TARGET_NORMS, type ObjectiveConfig, type TargetStats } from "../../objectives/index.js";
import type { Tokenizer } from "../../data/tokenizer.js";
import type { TargetNorm } from "../../objectives/instance.js";
import { train, type TrainResult } from "../trainer.js";
import { captionPairs } from "./vlm_base.js";
import { TrainSection, trainConfig, loadTokenizer, copyCompanions, markDone, writeResolved, stopIfInterrupted, trainOptions, MaxErrorRate, type StageOptions } from "./common.js";

export const LatentPretrainRecipe = z.strictObject({
  stage: z.literal("latent-pretrain"),
  seed: z.number().int().min(0).default(0),
  world: z.string(),
  /** The frozen encoder whose features are the targets. */
  encoder: z.string(),
  /** The vlm-base model directory to start from. */
  base: z.string(),
  out: z.string(),
  /** Where the target cache is (extracted there first if absent). */
  targets: z.string(),
  pool: z.string().default("grid:4"),
  head: z.strictObject({ type: z.enum(["linear", "mlp"]).default("mlp"), hidden_size: z.number().int().positive().optional() }).default({ type: "mlp" }),
  loss: z.strictObject({
    lambda_nt: z.number().min(0).default(1),
    lambda_sim: z.number().min(0).default(1),
    lambda_align: z.number().min(0).default(0.1),
    similarity: z.enum(["cosine", "l2", "smooth_l1"]).default("cosine"),
    target_norm: z.enum(TARGET_NORMS as [TargetNorm, ...TargetNorm[]]).default("standardize"),
    alignment: z.enum(["infonce", "siglip", "none"]).default("infonce"),
    /** InfoNCE temperature (learned when learn_temperature). */
    temperature: z.number().positive().default(0.1),
    learn_temperature: z.boolean().default(false),
    smooth_l1_beta: z.number().positive().default(1),
  }).default({ lambda_nt: 1, lambda_sim: 1, lambda_align: 0.1, similarity: "cosine", target_norm: "standardize", alignment: "infonce", temperature: 0.1, learn_temperature: false, smooth_l1_beta: 1 }),
  max_error_rate: MaxErrorRate,
  train: TrainSection,
});
export type LatentPretrainRecipe = z.output<typeof LatentPretrainRecipe>;

interface LatentExample { ids: number[]; labels: number[]; image: string }
interface LatentBatch { inputIds: Tensor; labels: Tensor; attentionMask: Tensor; targets: Tensor | null }

export async function runLatentPretrain(r: LatentPretrainRecipe, opts: StageOptions = {}): Promise<{ modelDir: string; result: TrainResult }> {
  mkdirSync(r.out, { recursive: true });
  writeResolved(r.out, r);
  const latentArm = r.loss.lambda_sim > 0 || (r.loss.lambda_align > 0 && r.loss.alignment !== "none");
  const tok = loadTokenizer(r.world);
  const model = MindsEyeVLM.fromPretrained(r.base);
  model.vision_tower.requiresGrad_(false);
  const pool = parsePool(r.pool);
  const grid = model.config.vision.gridSize;
  const k = pooledCount(pool, grid * grid);
  const latentIds = latentTokens(k).map((t) => {
    const id = tok.tokenToId(t);
    if (id === null) throw new Error(`the tokenizer has no ${t}; pooling ${r.pool} needs ${k} latent tokens (generate the world with --latents ${k} or more)`);
    return id;
  });

  // Targets: the frozen encoder's pooled features of each captioned image, from the cache.
  let cache: TargetCache | null = null;
  let stats: TargetStats | null = null;
  let pairs = await captionPairs(r.world, "train");
  const imageIds = imageIdsByPath(r.world);
  if (latentArm) {
    const annotations = join(r.world, "captions_train.json");
    if (!isCacheComplete(r.targets)) {
      await extractTargets({ encoderDir: r.encoder, data: { format: "coco", annotations, images: join(r.world, "images") }, out: r.targets, pool: r.pool, quiet: opts.quiet ?? false, maxErrorRate: r.max_error_rate });
    }
    const enc = loadEncoder(r.encoder);
    const fingerprint = encoderFingerprint(enc.model, enc.config, enc.preprocessing);
    enc.model.parameters().forEach((p) => p.dispose());
    cache = new TargetCache(r.targets, { expectFingerprint: fingerprint });
    if (cache.manifest.pooling !== pool) throw new Error(`${r.targets} holds ${cache.manifest.pooling} targets; this recipe pools ${r.pool}`);
    // Images the extraction skipped (undecodable; counted in its manifest) have no target.
    const withTarget = pairs.filter((p) => cache!.has(imageIds.get(p.image)!));
    if (withTarget.length < pairs.length) console.error(`latent-pretrain: ${pairs.length - withTarget.length} captions left out: their images were skipped by the target extraction (${r.targets}/manifest.json lists them)`);
    pairs = withTarget;
    if (r.loss.target_norm === "standardize") {
      const all = cache.get([...new Set(pairs.map((p) => imageIds.get(p.image)!))]); // [n, K, D]
      stats = targetStats(all);
      all.dispose();
    }
    torch.manualSeed(r.seed);
    model.attachLatentHead({ type: r.head.type, inputSize: model.config.text.hiddenSize, hiddenSize: r.head.hidden_size ?? model.config.text.hiddenSize, latentSize: cache.manifest.d, bias: true },
      latentIds, { generator: new torch.Generator(r.seed) });
  }

  // The caption as a user turn, then the K latent queries; CE on the caption only.
  const examples: LatentExample[] = pairs.map((p) => ({ ...latentInput(tok, p.caption, latentArm ? latentIds : []), image: p.image }));
  const pad = tok.specialTokenIds.pad ?? 0;
  const loader = new DataLoader({ length: examples.length, get: (i: number) => examples[i]! }, {
    batchSize: r.train.batch_size, seed: r.seed,
    collate: (batch: LatentExample[]): LatentBatch => {
      // Left padding keeps every sequence's latent queries at the end, where the head reads them.
      const T = Math.max(...batch.map((b) => b.ids.length));
      const left = (row: number[], v: number) => [...Array<number>(T - row.length).fill(v), ...row];
      return {
        inputIds: torch.tensor(batch.map((b) => left(b.ids, pad)), { dtype: "int64" }),
        labels: torch.tensor(batch.map((b) => left(b.labels, IGNORE_INDEX)), { dtype: "int64" }),
        attentionMask: torch.tensor(batch.map((b) => left(b.ids.map(() => 1), 0)), { dtype: "int64" }),
        targets: cache ? cache.get(batch.map((b) => imageIds.get(b.image)!)) : null,
      };
    },
  });

  const objective: ObjectiveConfig = {
    lambdaNt: r.loss.lambda_nt, lambdaSim: latentArm ? r.loss.lambda_sim : 0, lambdaAlign: latentArm ? r.loss.lambda_align : 0,
    similarity: r.loss.similarity, targetNorm: r.loss.target_norm, alignment: r.loss.alignment, smoothL1Beta: r.loss.smooth_l1_beta,
    ...(stats ? { targetStats: stats } : {}),
  };
  // A learned temperature is parameterised by its log, kept positive (as CLIP's logit scale).
  const logTemperature = r.loss.learn_temperature ? new nn.Parameter(torch.tensor([Math.log(r.loss.temperature)])) : null;
  let lastLatents: Tensor | null = null;
  const result = await train({
    model,
    loader: loader as DataLoader<unknown, LatentBatch>,
    extraParameters: logTemperature ? [logTemperature] : [],
    step: (b) => {
      const out = latentArm ? model.predictLatents(b.inputIds, b.attentionMask) : { logits: model.language_model.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask }).logits, latents: null };
      const temperature = logTemperature ? logTemperature.exp() : r.loss.temperature;
      const terms = latentObjective(objective, { logits: out.logits, labels: b.labels, pred: out.latents, targets: b.targets }, { temperature, scale: 10, bias: -10 });
      if (out.latents) {
        lastLatents?.dispose();
        lastLatents = torch.keep(out.latents.detach());
      }
      const { loss: _loss, ...logged } = termValues(terms);
      return { loss: terms.loss, metrics: logged };
    },
    onLog: (_step, values) => {
      if (!lastLatents) return;
      const c = collapseStats(lastLatents);
      Object.assign(values, { pred_std: c.stdMean, pred_effective_rank: c.effectiveRank, pred_mean_cosine: c.meanPairwiseCosine });
    },
  }, trainConfig(r.out, r.train, r.seed), trainOptions(opts));
  stopIfInterrupted(result, r.out);
  (lastLatents as Tensor | null)?.dispose();
  cache?.dispose();
  logTemperature?.dispose();
  const modelDir = join(r.out, "model");
  model.savePretrained(modelDir);
  copyCompanions(modelDir, [r.base]);
  if (stats) {
    io.saveFile(join(modelDir, TARGET_STATS_FILE), new Map([["mean", stats.mean], ["std", stats.std]]));
    stats.mean.dispose();
    stats.std.dispose();
  }
  markDone(modelDir, { stage: "latent-pretrain", arm: latentArm ? "latent" : "text-control", steps: result.steps, lastLoss: result.lastLoss });
  model.parameters().forEach((p) => p.dispose());
  return { modelDir, result };
}

/** The training targets' mean and std [K, D] (target_norm standardize), beside the model's weights. */
export const TARGET_STATS_FILE = "latent_target_stats.safetensors";

/** The standardisation statistics a latent model was trained with. */
export function readTargetStats(modelDir: string): TargetStats {
  const path = join(modelDir, TARGET_STATS_FILE);
  if (!existsSync(path)) throw new Error(`${path} is missing: the model was trained with target_norm standardize, and its targets' mean and std are needed to compare latents`);
  const m = io.loadFile(path);
  const mean = m.get("mean"), std = m.get("std");
  if (!mean || !std) throw new Error(`${path}: expected tensors "mean" and "std"`);
  return { mean, std };
}

/**
 * A caption as latent pretraining reads it: the chat template's user turn holding the caption
 * (no image), then the assistant's opening followed by the K latent queries. Labels: the
 * caption's tokens (next-token CE on the text t), IGNORE_INDEX elsewhere. With no latent ids
 * (the text control) the sequence ends at the assistant's opening.
 */
export function latentInput(tok: Tokenizer, caption: string, latentIds: readonly number[]): { ids: number[]; labels: number[] } {
  const SLOT = "\u0000caption\u0000";
  const text = tok.applyChatTemplate([{ role: "user", content: [{ type: "text", text: SLOT }] }], { addGenerationPrompt: true }) as string;
  const at = text.indexOf(SLOT);
  if (at < 0) throw new Error("the chat template dropped the user's text");
  const before = tok.encode(text.slice(0, at), { addSpecialTokens: false });
  const words = tok.encode(caption, { addSpecialTokens: false });
  const after = tok.encode(text.slice(at + SLOT.length), { addSpecialTokens: false });
  return {
    ids: [...before, ...words, ...after, ...latentIds],
    labels: [...before.map(() => IGNORE_INDEX), ...words, ...after.map(() => IGNORE_INDEX), ...latentIds.map(() => IGNORE_INDEX)],
  };
}

function isCacheComplete(dir: string): boolean {
  try {
    return (JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as { complete?: boolean }).complete === true;
  } catch {
    return false;
  }
}

/** COCO image ids by image path (the cache is keyed by the COCO image id). */
function imageIdsByPath(world: string): Map<string, string> {
  const coco = JSON.parse(readFileSync(join(world, "captions_train.json"), "utf8")) as { images: { id: number; file_name: string }[] };
  return new Map(coco.images.map((im) => [join(world, "images", im.file_name), String(im.id)]));
}
