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
//
// `readout` says where the predictions are read; two settings reproduce the alignment baselines
// of the recent literature as variants of this recipe:
//   queries      the method: hidden states at the K latent query tokens -> head -> ẑ [B, K, D].
//   last_token   Mirage-style (Yang et al., "Machine Mental Imagery: Empower Multimodal Reasoning
//                with Latent Visual Tokens", arXiv:2506.17218): no query tokens; the LM's last hidden
//                state at the prompt's last position — the one Mirage recasts as its next, latent
//                visual token — is the prediction itself (head.type identity, a projection only
//                because our LM and encoder widths differ), distilled towards the pooled image
//                embedding (K = 1) alongside next-token CE.
//   image_tokens VIRAL-style (Yoon et al., "Visual Representation Alignment for Multimodal Large
//                Language Models", arXiv:2509.07979): the model reads the IMAGE and its caption (a
//                captioning step, CE on the caption), and the hidden states of an intermediate LM
//                layer (readout_layer) at the image tokens' positions go through a trainable
//                projector (the head) and are aligned to the frozen encoder's patch features
//                (pool all) by λ_sim-weighted cosine distance. This variant needs images during
//                latent pretraining; the others read captions only.
// Heads of the last two readouts are not part of the saved model (it has no query tokens); they are
// written beside it (LATENT_READOUT_FILE + .json) for analysis.
//
// Any VLM family (models/family.ts: loadVlm) starts here. mindseye_vlm reads the world with the
// target cache of `encoder`, as above. A published family (qwen2_5_vl, llava, internvl_chat) reads
// captions from `captions` (datasets by format: coco, cc3m, laion, webdataset) and/or the world, and
// its targets are its OWN frozen vision tower's features at `vision_layer` (Qwen2.5-VL: after the
// PatchMerger, "merger", or before it, "pre_merger"), pooled per image on its own 2-D grid; the
// latent query tokens are added to its tokenizer when missing and its embeddings grow as
// resize_token_embeddings does; only the queries readout is offered there. Those targets live in a
// fingerprinted cache on disk (`targets`, default <out>/targets; familyTargetCache): made in
// bounded memory (64 images decoded, 8 through the tower at a time, one shard held), bound to the
// tower's weights, processor, config, vision_layer, pool and the caption datasets, reused whole
// when it matches, resumed when a run stopped while making it, refused when made otherwise; the
// trainer reads each batch's rows from the shard files.
//
// Under train.lora only the adapters train, so a head in the model (readout queries) would stay
// at its random init, and so would the latent query tokens' embedding rows. The stage therefore
// adds the head to modules_to_save (trained whole, saved in the adapter as PEFT does) and makes
// the query tokens' rows trainable (PEFT's trainable_token_indices: those rows only, the rest of
// the embedding frozen and bit-identical), and says so in the log (latentLoraSettings).
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { torch, nn, io, type Tensor } from "@mindseye/torch";
import { imageTokenCount, type MindsEyeVLM } from "../../models/vlm.js";
import { loadVlm, MindsEyeVlm, poolImageFeatures, disposePixels, type Vlm } from "../../models/family.js";
import { readPairs, SkipCounter, type DatasetSpec } from "../../data/formats/index.js";
import { makeOutputDir } from "../../util/output_dir.js";
import { LatentHead, latentTokens, gatherLastPosition, gatherImagePositions, latentHeadToHfConfig, LATENT_HEAD_TYPES } from "../../models/latent_head.js";
import { buildExample, renderUserTurn, CHATML, type PromptFormat } from "../../data/vlm_inputs.js";
import { ConfigError } from "../../config/errors.js";
import { resolveModelRef } from "../../config/hub.js";
import { DataLoader } from "../../data/loader.js";
import { TargetCache, extractTargets, loadEncoder, encoderFingerprint, dataSource, dataDifferences, canonicalJson, writeManifest, writeTargetShards, type TargetItem, type CacheManifestCore, type DataSource, type ShardEntry, type SkippedEntry } from "../../data/targets.js";
import { latentObjective, termValues, collapseStats, pooledCount, parsePool, targetStats, IGNORE_INDEX, TARGET_NORMS, type ObjectiveConfig, type TargetStats, type PoolSpec } from "../../objectives/index.js";
import type { Tokenizer } from "../../data/tokenizer.js";
import type { TargetNorm } from "../../objectives/instance.js";
import { train, type TrainResult, type TrainConfig } from "../trainer.js";
import { basePairs, baseExamples, captionPairs, collateVlm, vlmLoss, type VlmBatch } from "./vlm_base.js";
import { Rng } from "../../world/rng.js";
import { TrainSection, trainConfig, loadTokenizer, readPreprocessor, loadUsable, copyCompanions, markDone, writeResolved, stopIfInterrupted, trainOptions, MaxErrorRate, dataShard, onLeadRank, type StageOptions, refuseFinetuneOnlyKeys } from "./common.js";

/** Where the predictions are read (see the header). */
export const READOUTS = ["queries", "last_token", "image_tokens"] as const;
export type Readout = (typeof READOUTS)[number];

export const LatentPretrainRecipe = z.strictObject({
  stage: z.literal("latent-pretrain"),
  seed: z.number().int().min(0).default(0),
  /** The synthetic world (its training captions). Absent: `captions`. */
  world: z.string().optional(),
  /** Image–caption datasets by format ({format: coco, annotations, images}, cc3m, laion, webdataset); published families only. */
  captions: z.array(z.looseObject({ format: z.string() })).min(1).optional(),
  /** The frozen encoder whose features are the targets (mindseye_vlm; a published family uses its own tower). */
  encoder: z.string().optional(),
  /** The model directory to start from (vlm-base's, or any family's: models/family.ts). */
  base: z.string(),
  out: z.string(),
  /** Where the target cache is (extracted there first if absent). A published family: its own tower's targets, default <out>/targets. */
  targets: z.string().optional(),
  /** A published family's tower layer the targets are read at (Qwen2.5-VL: merger | pre_merger; absent: the family's default). */
  vision_layer: z.string().optional(),
  pool: z.string().default("grid:4"),
  head: z.strictObject({ type: z.enum(LATENT_HEAD_TYPES).default("mlp"), hidden_size: z.number().int().positive().optional() }).default({ type: "mlp" }),
  // The two readout keys are left out rather than defaulted when not given, so that the settings
  // (and the study's step fingerprints) of recipes written before them are unchanged.
  /** Where the predictions are read: the K latent queries (the method; when absent), the prompt's last position (Mirage-style), the image tokens (VIRAL-style). */
  readout: z.enum(READOUTS).optional(),
  /** readout image_tokens: the LM hidden state read (0 the embeddings … L the last layer's normed output; negative from the end; absent: the middle, L/2). */
  readout_layer: z.number().int().optional(),
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
  /**
   * Rehearsal of the base's own mix (absent: none): each step also draws `batch_size` examples of
   * vlm-base's training pairs (captions answered to their images, grounding questions; basePairs,
   * named as `grounding_descriptions` says, with `grounding_relations` the relation lookups, with
   * `grounding_readouts` the read-outs and with `grounding_absent` those that find nothing) and
   * adds `weight` × their next-token loss. The caption stage reads text only, and at the demo's
   * 2e-3 it wears away the lookups the base learnt (the demo base's "where" questions: 97.5%
   * answered, 0.0% after the text control's stage, 97.8% after the same stage with replay; `npm run
   * bench:grounding -- --kind where --descriptions minimal --model M`); rehearsal keeps them, as
   * continual pretraining mixes in its earlier data. Both arms draw the same examples (the draw is seeded by the seed and the caption
   * batch), so the text control stays the latent arm without the latent terms. In a study the
   * grounding settings are the study's vlm_base's.
   */
  replay: z.strictObject({
    batch_size: z.number().int().positive(),
    weight: z.number().positive().default(1),
    grounding_descriptions: z.enum(["full", "minimal"]).optional(),
    grounding_relations: z.boolean().optional(),
    grounding_readouts: z.boolean().optional(),
    grounding_absent: z.boolean().optional(),
  }).optional(),
  max_error_rate: MaxErrorRate,
  train: TrainSection,
});
export type LatentPretrainRecipe = z.output<typeof LatentPretrainRecipe>;

interface LatentExample { ids: number[]; labels: number[]; image: string }
interface LatentBatch { inputIds: Tensor; labels: Tensor; attentionMask: Tensor; targets: Tensor | null; pixels?: Tensor; /** The base's examples rehearsed beside the batch (recipe.replay). */ replay?: VlmBatch }

/**
 * The readout's settings that only clash with the pooling and the LM's depth, as ConfigErrors
 * naming the key (the study checks each ablation cell with it before anything runs).
 * `k` is the pooling's number of latents, `layers` the LM's.
 */
export function checkReadout(r: Pick<LatentPretrainRecipe, "pool" | "readout" | "readout_layer">, k: number, layers: number): void {
  const readout = r.readout ?? "queries";
  if (readout === "last_token" && k !== 1) {
    throw new ConfigError(`readout last_token predicts one latent (the prompt's last position): pool must give K = 1 (mean or grid:1), got pool ${r.pool} (K = ${k})`);
  }
  if (readout === "image_tokens" && r.pool !== "all") {
    throw new ConfigError(`readout image_tokens aligns each image token to its own patch's feature: pool must be all, got ${r.pool}`);
  }
  if (r.readout_layer !== undefined) {
    if (readout !== "image_tokens") throw new ConfigError(`readout_layer is read by readout image_tokens only (readout is ${readout}); remove it`);
    if (r.readout_layer > layers || r.readout_layer < -(layers + 1)) throw new ConfigError(`readout_layer ${r.readout_layer} is not a hidden state of a ${layers}-layer LM (0 … ${layers}, or -1 … -${layers + 1})`);
  }
}

/** The hidden-state index readout image_tokens reads, in 0 … L. */
export function readoutLayerIndex(layer: number | undefined, layers: number): number {
  if (layer === undefined) return Math.floor(layers / 2);
  return layer < 0 ? layers + 1 + layer : layer;
}

/** The frozen encoder's pooled features of the world's training images, into a target cache at `out`. */
export async function extractWorldTargets(o: { world: string; encoder: string; out: string; pool: string; maxErrorRate: number; quiet: boolean }): Promise<void> {
  await extractTargets({
    encoderDir: o.encoder, data: { format: "coco", annotations: join(o.world, "captions_train.json"), images: join(o.world, "images") },
    out: o.out, pool: o.pool, quiet: o.quiet, maxErrorRate: o.maxErrorRate,
  });
}

export async function runLatentPretrain(recipe: LatentPretrainRecipe, opts: StageOptions = {}): Promise<{ modelDir: string; result: TrainResult }> {
  refuseFinetuneOnlyKeys("latent-pretrain", recipe.train);
  const r = { ...recipe, base: resolveModelRef(recipe.base) }; // a directory, or a Hugging Face id in the hub cache
  mkdirSync(r.out, { recursive: true });
  writeResolved(r.out, r);
  const latentArm = r.loss.lambda_sim > 0 || (r.loss.lambda_align > 0 && r.loss.alignment !== "none");
  const vlm = loadVlm(r.base);
  if (!(vlm instanceof MindsEyeVlm)) {
    if (r.replay) throw new ConfigError(`latent-pretrain: replay rehearses a mindseye_vlm base's mix on the world; ${r.base} is a ${vlm.modelType} (remove replay)`);
    return latentPretrainFamily(r, vlm, latentArm, opts);
  }
  if (r.world === undefined || r.encoder === undefined || r.targets === undefined || r.captions !== undefined || r.vision_layer !== undefined) {
    throw new ConfigError(`latent-pretrain: ${r.base} is a mindseye_vlm, pre-trained on the world (world, encoder, targets); captions and vision_layer are for the published families`);
  }
  const [world, encoder, targets] = [r.world, r.encoder, r.targets];
  const tok = loadTokenizer(world);
  const model = vlm.model;
  model.vision_tower.requiresGrad_(false);
  const pool: PoolSpec = parsePool(r.pool);
  const grid = model.config.vision.gridSize;
  const k = pooledCount(pool, grid * grid);
  const layers = model.config.text.numHiddenLayers;
  checkReadout(r, k, layers);
  const readout: Readout = r.readout ?? "queries";
  if (readout === "image_tokens" && imageTokenCount(model.config) !== k) {
    throw new ConfigError(`readout image_tokens: the model reads ${imageTokenCount(model.config)} image tokens but pool all gives ${k} patch targets (a class token kept by vision_feature_select_strategy full?)`);
  }
  const latentIds = readout !== "queries" ? [] : latentTokens(k).map((t) => {
    const id = tok.tokenToId(t);
    if (id === null) throw new Error(`the tokenizer has no ${t}; pooling ${r.pool} needs ${k} latent tokens (generate the world with --latents ${k} or more)`);
    return id;
  });

  // Targets: the frozen encoder's pooled features of each captioned image, from the cache.
  let cache: TargetCache | null = null;
  let stats: TargetStats | null = null;
  let head: LatentHead | null = null; // the head of readouts last_token and image_tokens (outside the model)
  let pairs = await captionPairs(world, "train");
  const imageIds = imageIdsByPath(world);
  if (latentArm) {
    if (!isCacheComplete(targets)) {
      await extractWorldTargets({ world: world, encoder: encoder, out: targets, pool: r.pool, quiet: opts.quiet ?? false, maxErrorRate: r.max_error_rate });
    }
    const enc = loadEncoder(encoder);
    const fingerprint = encoderFingerprint(enc.model, enc.config, enc.preprocessing);
    enc.model.parameters().forEach((p) => p.dispose());
    cache = new TargetCache(targets, { expectFingerprint: fingerprint });
    if (cache.manifest.pooling !== pool) throw new Error(`${targets} holds ${cache.manifest.pooling} targets; this recipe pools ${r.pool}`);
    // Images the extraction skipped (undecodable; counted in its manifest) have no target.
    const withTarget = pairs.filter((p) => cache!.has(imageIds.get(p.image)!));
    if (withTarget.length < pairs.length) console.error(`latent-pretrain: ${pairs.length - withTarget.length} captions left out: their images were skipped by the target extraction (${targets}/manifest.json lists them)`);
    pairs = withTarget;
    if (r.loss.target_norm === "standardize") {
      const all = cache.get([...new Set(pairs.map((p) => imageIds.get(p.image)!))]); // [n, K, D]
      stats = targetStats(all);
      all.dispose();
    }
    torch.manualSeed(r.seed);
    const headConfig = { type: r.head.type, inputSize: model.config.text.hiddenSize, hiddenSize: r.head.hidden_size ?? model.config.text.hiddenSize, latentSize: cache.manifest.d, bias: true };
    if (readout === "queries") model.attachLatentHead(headConfig, latentIds, { generator: new torch.Generator(r.seed) });
    else head = new LatentHead(headConfig, { generator: new torch.Generator(r.seed) });
  }

  // queries / last_token: the caption as a user turn, then the K latent queries (none for
  // last_token); CE on the caption only. image_tokens: the image, answered by its caption.
  const pad = tok.specialTokenIds.pad ?? 0;
  const targetsOf = (batch: LatentExample[]) => (cache ? cache.get(batch.map((b) => imageIds.get(b.image)!)) : null);
  const replay = r.replay ? await replayStream({ ...r.replay, world, seed: r.seed, encoder, maxErrorRate: r.max_error_rate }, model, tok) : null;
  const replayOf = (indices: number[]) => (replay ? { replay: replay.batch(indices) } : {});
  let loader: DataLoader<LatentExample, LatentBatch>;
  let dispose = () => {};
  if (readout === "image_tokens") {
    const { bank, usable } = await loadUsable(pairs, (p) => [p.image], readPreprocessor(encoder), r.max_error_rate, console.error);
    dispose = () => bank.dispose();
    const imagesAfterText = model.config.imagePosition === "after_text";
    const examples = usable.map((p) => ({ ...buildExample(tok, { images: 1, text: "", answer: p.caption, imagesAfterText }, imageTokenCount(model.config)), image: p.image }));
    const collate = collateVlm(bank, pad);
    loader = new DataLoader({ length: examples.length, get: (i: number) => examples[i]! }, {
      batchSize: r.train.batch_size, seed: r.seed, ...dataShard(),
      collate: (batch: LatentExample[], indices): LatentBatch => ({ ...collate(batch.map((b) => ({ ...b, images: [b.image] }))), targets: targetsOf(batch), ...replayOf(indices) }),
    });
  } else {
    const examples: LatentExample[] = pairs.map((p) => ({ ...latentInput(tok, p.caption, latentArm ? latentIds : []), image: p.image }));
    loader = new DataLoader({ length: examples.length, get: (i: number) => examples[i]! }, {
      batchSize: r.train.batch_size, seed: r.seed, ...dataShard(),
      collate: (batch: LatentExample[], indices): LatentBatch => {
        // Left padding keeps every sequence's latent queries at the end, where the head reads them.
        const T = Math.max(...batch.map((b) => b.ids.length));
        const left = (row: number[], v: number) => [...Array<number>(T - row.length).fill(v), ...row];
        return {
          inputIds: torch.tensor(batch.map((b) => left(b.ids, pad)), { dtype: "int64" }),
          labels: torch.tensor(batch.map((b) => left(b.labels, IGNORE_INDEX)), { dtype: "int64" }),
          attentionMask: torch.tensor(batch.map((b) => left(b.ids.map(() => 1), 0)), { dtype: "int64" }),
          targets: targetsOf(batch),
          ...replayOf(indices),
        };
      },
    });
  }

  const layer = readoutLayerIndex(r.readout_layer, layers);
  /** logits [B, T, V] and, in the latent arm, the predicted latents [B, K, D]. */
  const forward = (b: LatentBatch): { logits: Tensor; latents: Tensor | null } => {
    if (!latentArm) {
      const logits = b.pixels ? model.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask, pixelValues: b.pixels }).logits
        : model.language_model.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask }).logits;
      return { logits, latents: null };
    }
    if (readout === "queries") return model.predictLatents(b.inputIds, b.attentionMask);
    if (readout === "last_token") {
      const out = model.language_model.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask });
      return { logits: out.logits, latents: head!.forward(gatherLastPosition(out.lastHiddenState, b.attentionMask)) }; // [B, 1, D]
    }
    const out = model.language_model.forward({ inputsEmbeds: model.embed(b.inputIds, b.pixels), attentionMask: b.attentionMask, outputHiddenStates: true });
    const h = gatherImagePositions(out.hiddenStates![layer]!, b.inputIds, model.config.imageTokenId); // [B, N, H]
    return { logits: out.logits, latents: head!.forward(h) }; // [B, N, D]
  };

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
    extraParameters: [...(logTemperature ? [logTemperature] : []), ...(head ? head.parameters() : [])],
    step: (b) => {
      const out = forward(b);
      const temperature = logTemperature ? logTemperature.exp() : r.loss.temperature;
      const terms = latentObjective(objective, { logits: out.logits, labels: b.labels, pred: out.latents, targets: b.targets }, { temperature, scale: 10, bias: -10 });
      if (out.latents) {
        lastLatents?.dispose();
        lastLatents = torch.keep(out.latents.detach());
      }
      const { loss: _loss, ...logged } = termValues(terms);
      if (!b.replay) return { loss: terms.loss, metrics: logged };
      const replayCe = vlmLoss(model, b.replay);
      return { loss: terms.loss.add(replayCe.mul(r.replay!.weight)), metrics: { ...logged, replay_ce: replayCe } };
    },
    onLog: (_step, values) => {
      if (!lastLatents) return;
      const c = collapseStats(lastLatents);
      Object.assign(values, { pred_std: c.stdMean, pred_effective_rank: c.effectiveRank, pred_mean_cosine: c.meanPairwiseCosine });
    },
  }, latentTrainConfig(r, model, readout === "queries" && latentArm ? latentIds : null), trainOptions(opts));
  stopIfInterrupted(result, r.out);
  (lastLatents as Tensor | null)?.dispose();
  cache?.dispose();
  dispose();
  replay?.dispose();
  logTemperature?.dispose();
  const modelDir = join(r.out, "model");
  onLeadRank(() => {
    model.savePretrained(modelDir);
    copyCompanions(modelDir, [r.base]);
    if (stats) io.saveFile(join(modelDir, TARGET_STATS_FILE), new Map([["mean", stats.mean], ["std", stats.std]]));
    if (head) {
      io.saveFile(join(modelDir, LATENT_READOUT_FILE), head.stateDict());
      const info = { readout, ...(readout === "image_tokens" ? { readout_layer: layer } : {}), pool: r.pool, head: latentHeadToHfConfig(head.config) };
      writeFileSync(join(modelDir, `${LATENT_READOUT_FILE.replace(/\.safetensors$/, "")}.json`), JSON.stringify(info, null, 2) + "\n");
    }
    markDone(modelDir, { stage: "latent-pretrain", arm: latentArm ? "latent" : "text-control", readout, steps: result.steps, lastLoss: result.lastLoss });
  });
  stats?.mean.dispose();
  stats?.std.dispose();
  head?.parameters().forEach((p) => p.dispose());
  model.parameters().forEach((p) => p.dispose());
  return { modelDir, result };
}

/** `size` indices into `n` rehearsed examples (with replacement), a function of the seed and the caption batch's record indices only. */
function replayDraw(seed: number, indices: readonly number[], n: number, size: number): number[] {
  const rng = new Rng(seed, "replay", indices.join(","));
  return Array.from({ length: size }, () => rng.int(n));
}

/**
 * The rehearsed examples of recipe.replay: the base's training pairs on the world, with their
 * images, and each caption batch's draw of `batch_size` of them (with replacement), seeded by the
 * seed and the batch's record indices, so that a resumed run and both arms draw the same.
 */
async function replayStream(o: NonNullable<LatentPretrainRecipe["replay"]> & { world: string; seed: number; encoder: string; maxErrorRate: number }, model: MindsEyeVLM, tok: Tokenizer): Promise<{ batch: (indices: number[]) => VlmBatch; dispose: () => void }> {
  const pairs = await basePairs({ ...o, grounding: true });
  const { bank, usable } = await loadUsable(pairs, (p) => [p.image], readPreprocessor(o.encoder), o.maxErrorRate, console.error);
  const examples = baseExamples(tok, model, usable);
  const collate = collateVlm(bank, tok.specialTokenIds.pad ?? 0);
  return {
    batch: (indices) => collate(replayDraw(o.seed, indices, examples.length, o.batch_size).map((i) => examples[i]!)),
    dispose: () => bank.dispose(),
  };
}

/**
 * The trainer's settings; under train.lora, when the model holds a latent head (`latentIds`: its
 * query tokens; null: no head in the model), `latent_head` joins the recipe's modules_to_save and
 * the query tokens' rows of the input embedding become trainable_token_indices. Without lora:
 * trainConfig's settings, unchanged.
 */
export function latentTrainConfig(r: LatentPretrainRecipe, model: nn.Module, latentIds: readonly number[] | null): ReturnType<typeof trainConfig> {
  const cfg = trainConfig(r.out, r.train, r.seed);
  if (cfg.lora == null) return cfg;
  const lora: NonNullable<TrainConfig["lora"]> = { ...cfg.lora };
  if (latentIds !== null && latentIds.length > 0) {
    const embed = inputEmbeddingName(model);
    lora.modulesToSave = [...new Set([...(lora.modulesToSave ?? []), "latent_head"])];
    lora.trainableTokenIndices = { [embed]: [...latentIds] };
    onLeadRank(() => console.error(`latent-pretrain: train.lora trains the adapters and, as PEFT's modules_to_save, the new latent head (latent_head, saved in ${join(r.out, "adapter")}), ` +
      `and as trainable_token_indices the ${latentIds.length} latent query tokens' rows of ${embed} (the rest of the model stays frozen)`));
  }
  return { ...cfg, lora };
}

/** The full name of the LM's input embedding (`…embed_tokens`, InternLM2's `…tok_embeddings`). */
function inputEmbeddingName(model: nn.Module): string {
  const found = model.namedModules().filter(([n, m]) => m instanceof nn.Embedding && /(^|\.)(embed_tokens|tok_embeddings)$/.test(n)).map(([n]) => n);
  if (found.length !== 1) throw new Error(`latent-pretrain: expected one input embedding (embed_tokens) in ${model.constructor.name}, found ${found.length} (${found.join(", ")})`);
  return found[0]!;
}

/** The head of readouts last_token and image_tokens, beside the model (with a .json of where it reads). */
export const LATENT_READOUT_FILE = "latent_readout.safetensors";

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
export function latentInput(tok: Tokenizer, caption: string, latentIds: readonly number[], format: PromptFormat = CHATML): { ids: number[]; labels: number[] } {
  const SLOT = "\u0000caption\u0000";
  const text = renderUserTurn(tok, format, [{ type: "text", text: SLOT }]);
  const at = text.indexOf(SLOT);
  if (at < 0) throw new Error("the chat template dropped the user's text");
  const before = tok.encode(text.slice(0, at), { addSpecialTokens: format.addSpecialTokens });
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

/** A caption of a published family's latent pretraining and the key of its image (the images are read by the target cache, not kept). */
interface CaptionPair { key: string; caption: string }

/** The captions of `captions` datasets (keys "d<i>:<id>") and of the world (keys: image paths). */
async function familyCaptions(r: LatentPretrainRecipe): Promise<CaptionPair[]> {
  const out: CaptionPair[] = [];
  for (const [i, spec] of (r.captions ?? []).entries()) {
    const errors = new SkipCounter(`captions[${i}] (${spec.format})`, { maxErrorRate: r.max_error_rate, setting: "max_error_rate in the recipe" });
    for await (const p of readPairs(spec, { errors })) for (const caption of p.captions) out.push({ key: `d${i}:${p.id}`, caption });
    errors.finish();
    if (errors.skipped > 0) console.error(errors.summary());
  }
  if (r.world !== undefined) for (const p of await captionPairs(r.world, "train")) out.push({ key: p.image, caption: p.caption });
  if (out.length === 0) throw new ConfigError("latent-pretrain: no captions (give world or captions)");
  return out;
}

/** The datasets a family's captions come from, in order: each `captions` spec, then the world's training captions (COCO layout). */
function familyDatasets(r: LatentPretrainRecipe): DatasetSpec[] {
  const specs: DatasetSpec[] = (r.captions ?? []).map((c) => c as DatasetSpec);
  if (r.world !== undefined) specs.push({ format: "coco", annotations: join(r.world, "captions_train.json"), images: join(r.world, "images") });
  return specs;
}

/** Each distinct caption image once, in dataset order, with the key familyCaptions gives its captions. */
async function* familyImages(r: LatentPretrainRecipe, errors: SkipCounter): AsyncGenerator<TargetItem> {
  const seen = new Set<string>();
  const specs = familyDatasets(r);
  for (const [i, spec] of specs.entries()) {
    const world = r.world !== undefined && i === specs.length - 1;
    for await (const p of readPairs(spec, { errors })) {
      // The world's captions are keyed by image path (captionPairs), the datasets' by "d<i>:<id>".
      const key = world ? (p.image.kind === "file" ? p.image.path : p.id) : `d${i}:${p.id}`;
      if (seen.has(key)) continue;
      seen.add(key);
      yield { id: key, image: p.image, source: p.source };
    }
  }
}

/** Version of a published family's target cache manifest. */
export const FAMILY_TARGETS_VERSION = 1;

/**
 * The manifest of a published family's target cache (DIR/manifest.json; shards as targets.ts
 * writes them: "targets" [n, K, D] float32, metadata "ids" = the n image keys). `fingerprint`
 * covers what the targets are a function of besides the settings beside it: the tower's weights
 * (every tensor of the vision tower as loaded: name, dtype, shape, bytes), the processor's
 * settings and the model's config.json (vision_feature_layer, select strategy, …).
 */
export interface FamilyTargetManifest extends CacheManifestCore {
  version: number;
  kind: "family";
  fingerprint: string;
  family: { base: string; modelType: string; processor: unknown; towerTensors: number };
  visionLayer: string;
  pooling: string;
  dtype: "float32";
  /** Images per shard at most (a shard is also cut at FAMILY_SHARD_BYTES). */
  shardSize: number;
  /** The caption datasets, in order (targets.ts's dataSource: resolved paths and sizes). */
  data: DataSource[];
  shards: ShardEntry[];
  complete: boolean;
  maxErrorRate: number;
  skipped: number;
  skippedList: SkippedEntry[];
}

/** Images decoded at a time, and run through the tower at a time, while a cache is made. */
export const FAMILY_DECODE_CHUNK = 64;
export const FAMILY_TOWER_BATCH = 8;
/** A shard is written when it holds this many images or this many bytes of targets. */
export const FAMILY_SHARD_SIZE = 4096;
export const FAMILY_SHARD_BYTES = 256 * 2 ** 20;

/** Tensors of the vision tower within a family's module (Qwen2.5-VL visual, LLaVA vision_tower, InternVL vision_model). */
const TOWER = /(^|\.)(visual|vision_tower|vision_model)\./;

/** sha256 over the tower's tensors (name, dtype, shape, bytes), the processor settings and config.json; and how many tensors. */
export function familyFingerprint(vlm: Vlm, base: string): { fingerprint: string; towerTensors: number } {
  const h = createHash("sha256");
  const tensors = vlm.module.namedParameters().filter(([n]) => TOWER.test(n)).sort(([a], [b]) => a.localeCompare(b));
  if (tensors.length === 0) throw new Error(`latent-pretrain: found no vision tower tensors in ${vlm.modelType} (names matching ${TOWER})`);
  for (const [name, t] of tensors) {
    h.update(name);
    h.update(t.dtype);
    h.update(JSON.stringify(t.shape));
    h.update(t.toBytes());
  }
  h.update(vlm.modelType);
  h.update(canonicalJson(vlm.processor.config));
  h.update(canonicalJson(JSON.parse(readFileSync(join(base, "config.json"), "utf8"))));
  return { fingerprint: h.digest("hex"), towerTensors: tensors.length };
}

/** Why an existing cache does not fit these settings, one line each; empty when it does. */
function familyCacheDifferences(old: FamilyTargetManifest, now: FamilyTargetManifest): string[] {
  if (old.version !== now.version || old.kind !== "family") return [`it is not a version ${now.version} family target cache (version ${old.version}, kind ${old.kind ?? "encoder"})`];
  const lines: string[] = [];
  if (old.fingerprint !== now.fingerprint) lines.push(`the vision tower's weights, processor or config differ (fingerprint ${old.fingerprint.slice(0, 12)}…, now ${now.fingerprint.slice(0, 12)}…)`);
  for (const k of ["visionLayer", "pooling", "dtype", "shardSize"] as const) if (old[k] !== now[k]) lines.push(`${k} was ${old[k]}, now ${now[k]}`);
  if (old.data.length !== now.data.length) lines.push(`${old.data.length} caption datasets, now ${now.data.length}`);
  else now.data.forEach((d, i) => lines.push(...dataDifferences(old.data[i]!, d).map((l) => `dataset ${i}: ${l}`)));
  return lines;
}

/**
 * The targets of a published family in a fingerprinted cache at `dir` (see FamilyTargetManifest):
 * each distinct caption image through the family's processor and frozen tower (at `vision_layer`),
 * pooled per image on its own grid. Memory stays bounded: FAMILY_DECODE_CHUNK images decoded at a
 * time, FAMILY_TOWER_BATCH through the tower at a time, one shard's targets held until written.
 * A complete cache made with the same tower, processor, layer, pooling and data is reused (no
 * tower forward); an incomplete one resumes at its first missing shard (finished shards' image
 * keys checked against the data); one made otherwise is refused, naming what differs.
 * Images that cannot be decoded are skipped and listed (past max_error_rate the run stops).
 * With several ranks rank 0 makes it and the others poll its manifest until it is complete.
 * Returns the cache (rows read from the files) and the number of images run through the tower.
 */
export async function familyTargetCache(vlm: Vlm, r: LatentPretrainRecipe, dir: string, o: { quiet?: boolean; chunk?: number; towerBatch?: number; shardSize?: number } = {}): Promise<{ cache: TargetCache<FamilyTargetManifest>; computed: number }> {
  const chunkSize = o.chunk ?? FAMILY_DECODE_CHUNK, towerBatch = o.towerBatch ?? FAMILY_TOWER_BATCH, shardSize = o.shardSize ?? FAMILY_SHARD_SIZE;
  const layer = r.vision_layer ?? vlm.visionLayers[0]!;
  if (!vlm.visionLayers.includes(layer)) throw new ConfigError(`vision_layer "${layer}" is not one ${vlm.modelType} offers (known: ${vlm.visionLayers.join(", ")})`);
  const pool = parsePool(r.pool);
  const data = familyDatasets(r).map(dataSource);
  const { fingerprint, towerTensors } = familyFingerprint(vlm, r.base);
  const manifest: FamilyTargetManifest = {
    version: FAMILY_TARGETS_VERSION, kind: "family", fingerprint, family: { base: r.base, modelType: vlm.modelType, processor: vlm.processor.config, towerTensors },
    visionLayer: layer, pooling: pool, dtype: "float32", k: 0, d: 0, shardSize, data, shards: [], complete: false,
    maxErrorRate: r.max_error_rate, skipped: 0, skippedList: [],
  };
  let computed = 0; // images run through the tower by this call
  const open = () => ({ cache: new TargetCache<FamilyTargetManifest>(dir, { expectFingerprint: fingerprint, readRows: true }), computed });
  const manifestPath = join(dir, "manifest.json");
  // With several ranks, rank 0 makes the cache; the others wait for its manifest to say complete.
  const { rank, worldSize } = dataShard();
  while (worldSize > 1 && rank !== 0 && !(existsSync(manifestPath) && (JSON.parse(readFileSync(manifestPath, "utf8")) as FamilyTargetManifest).complete)) {
    await new Promise((done) => setTimeout(done, 2000));
  }
  if (existsSync(manifestPath)) {
    const old = JSON.parse(readFileSync(manifestPath, "utf8")) as FamilyTargetManifest;
    const diff = familyCacheDifferences(old, manifest);
    if (diff.length > 0) {
      throw new ConfigError(`latent-pretrain: ${dir} holds targets made otherwise (${old.complete ? "complete" : `${old.shards?.length ?? 0} shards done`}):\n  ${diff.join("\n  ")}\n` +
        `Give another targets: DIR for these settings, or delete ${dir} to rebuild it.`);
    }
    if (old.complete) return open();
    for (const s of old.shards) {
      if (!existsSync(join(dir, s.file))) break; // the first missing shard and all after it are redone
      manifest.shards.push(s);
    }
    manifest.k = old.k;
    manifest.d = old.d;
  }
  makeOutputDir(dir, "the target cache (targets)");

  const policy = { maxErrorRate: r.max_error_rate, setting: "max_error_rate in the recipe" };
  const records = new SkipCounter("caption records", policy), images = new SkipCounter("caption images", policy);
  await writeTargetShards(dir, manifest, familyImages(r, records), {
    records, images, chunk: chunkSize, dtype: "float32", quiet: o.quiet ?? false, unit: "images",
    full: (n, bytes) => n >= shardSize || bytes >= FAMILY_SHARD_BYTES,
    // the tower towerBatch images at a time, each image pooled on its own grid
    compute: (decoded) => {
      const parts: Tensor[] = [];
      let k = manifest.k; // 0 until the first rows
      for (let at = 0; at < decoded.length; at += towerBatch) {
        const px = vlm.processor.process(decoded.slice(at, at + towerBatch));
        const f = vlm.visionFeatures(px, layer);
        disposePixels(px);
        const rows = f.features.map((x, i) => poolImageFeatures(x, f.grids[i]!, r.pool, f.hasClassToken)); // each [K, D]
        k ||= rows[0]!.shape[0]!;
        const odd = rows.find((t) => t.shape[0] !== k);
        if (odd) throw new ConfigError(`pool ${r.pool} gives ${k} latents for one image and ${odd.shape[0]} for another (their grids differ): use mean or grid:K`);
        parts.push(torch.stack(rows, 0)); // [b, K, D]
      }
      computed += decoded.length;
      return torch.cat(parts, 0);
    },
    changed: `the data changed since the cache was started — give another targets: DIR, or delete ${dir} to start over`,
  });
  if (images.skipped > 0) console.error(images.summary());
  if (manifest.shards.every((s) => s.count === 0)) throw new Error("latent-pretrain: no caption image could be decoded");
  manifest.complete = true;
  writeManifest(dir, manifest);
  return open();
}

/**
 * The standardisation statistics of a whole cache (targetStats' mean and std over images, per
 * latent and dimension), one shard in memory at a time: sums in float64.
 */
export function cacheTargetStats(cache: TargetCache<FamilyTargetManifest>): TargetStats {
  return torch.noGrad(() => torch.scope(() => {
    const { k, d } = cache.manifest;
    let sum = torch.zeros([k, d], { dtype: "float64" }), sq = torch.zeros([k, d], { dtype: "float64" }), n = 0;
    for (const s of cache.manifest.shards) {
      if (s.count === 0) continue;
      torch.scope(() => {
        const m = io.loadFile(join(cache.dir, s.file));
        const z = m.get("targets")!.to({ dtype: "float64" }); // [n, K, D]
        sum = torch.keep(sum.add(z.sum([0])));
        sq = torch.keep(sq.add(z.pow(2).sum([0])));
        for (const t of m.values()) t.dispose();
      });
      n += s.count;
    }
    const mean = sum.div(n);
    const std = sq.div(n).sub(mean.pow(2)).clamp(0).sqrt().to({ dtype: "float32" });
    return { mean: mean.to({ dtype: "float32" }), std: std.clamp(std.mean().item() * 1e-6 + 1e-12) };
  }));
}

/** Latent pretraining of a published family (see the header): its own tower's targets, its tokenizer grown by the latent queries. */
async function latentPretrainFamily(r: LatentPretrainRecipe, vlm: Vlm, latentArm: boolean, opts: StageOptions): Promise<{ modelDir: string; result: TrainResult }> {
  if ((r.readout ?? "queries") !== "queries" || r.readout_layer !== undefined) throw new ConfigError(`latent-pretrain: ${vlm.modelType} models are pre-trained with the queries readout only (remove readout / readout_layer)`);
  if (r.encoder !== undefined) throw new ConfigError(`latent-pretrain: a ${vlm.modelType} model's targets come from its own frozen vision tower; remove encoder (vision_layer picks the layer, targets where they are cached)`);
  const tok = loadTokenizer(r.base);
  vlm.freezeVision();
  parsePool(r.pool); // a bad pool fails before anything is read
  let pairs = await familyCaptions(r);
  let cache: TargetCache<FamilyTargetManifest> | null = null, stats: TargetStats | null = null;
  let latentIds: number[] = [];
  if (latentArm) {
    // Targets: the frozen tower's pooled features of each caption image, from the cache (made first when absent).
    const dir = r.targets ?? join(r.out, "targets");
    cache = (await familyTargetCache(vlm, r, dir, { quiet: opts.quiet ?? false })).cache;
    const withTarget = pairs.filter((p) => cache!.has(p.key));
    if (withTarget.length < pairs.length) console.error(`latent-pretrain: ${pairs.length - withTarget.length} captions left out: their images could not be decoded (${dir}/manifest.json lists them)`);
    pairs = withTarget;
    const { k, d } = cache.manifest;
    if (r.loss.target_norm === "standardize") stats = cacheTargetStats(cache);
    latentIds = tok.addTokens(latentTokens(k), { special: true });
    torch.manualSeed(r.seed);
    const head = { type: r.head.type, inputSize: vlm.textHiddenSize, hiddenSize: r.head.hidden_size ?? vlm.textHiddenSize, latentSize: d, bias: true };
    vlm.attachLatentHead(head, latentIds, { generator: new torch.Generator(r.seed) });
  }
  if (tok.vocabSize > vlm.vocabSize) throw new ConfigError(`${r.base}: the tokenizer has ${tok.vocabSize} tokens but the model's vocabulary ${vlm.vocabSize}`);

  const pad = tok.specialTokenIds.pad ?? 0;
  const examples = pairs.map((p) => ({ ...latentInput(tok, p.caption, latentIds, vlm.promptFormat), key: p.key }));
  const loader = new DataLoader({ length: examples.length, get: (i: number) => examples[i]! }, {
    batchSize: r.train.batch_size, seed: r.seed, ...dataShard(),
    collate: (batch: (typeof examples)[number][]): LatentBatch => {
      // Left padding keeps every sequence's latent queries at the end, where the head reads them.
      const T = Math.max(...batch.map((b) => b.ids.length));
      const left = (ids: number[], v: number) => [...Array<number>(T - ids.length).fill(v), ...ids];
      return {
        inputIds: torch.tensor(batch.map((b) => left(b.ids, pad)), { dtype: "int64" }),
        labels: torch.tensor(batch.map((b) => left(b.labels, IGNORE_INDEX)), { dtype: "int64" }),
        attentionMask: torch.tensor(batch.map((b) => left(b.ids.map(() => 1), 0)), { dtype: "int64" }),
        targets: cache ? cache.get(batch.map((b) => b.key)) : null, // [B, K, D], rows read from the shard files
      };
    },
  });
  const objective: ObjectiveConfig = {
    lambdaNt: r.loss.lambda_nt, lambdaSim: latentArm ? r.loss.lambda_sim : 0, lambdaAlign: latentArm ? r.loss.lambda_align : 0,
    similarity: r.loss.similarity, targetNorm: r.loss.target_norm, alignment: r.loss.alignment, smoothL1Beta: r.loss.smooth_l1_beta,
    ...(stats ? { targetStats: stats } : {}),
  };
  const logTemperature = r.loss.learn_temperature ? new nn.Parameter(torch.tensor([Math.log(r.loss.temperature)])) : null;
  const result = await train({
    model: vlm.module,
    loader: loader as DataLoader<unknown, LatentBatch>,
    ...(logTemperature ? { extraParameters: [logTemperature] } : {}),
    step: (b) => {
      const out = latentArm ? vlm.predictLatents(b.inputIds, b.attentionMask) : { logits: vlm.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask }).logits, latents: null };
      const temperature = logTemperature ? logTemperature.exp() : r.loss.temperature;
      const terms = latentObjective(objective, { logits: out.logits, labels: b.labels, pred: out.latents, targets: b.targets }, { temperature, scale: 10, bias: -10 });
      const { loss: _loss, ...logged } = termValues(terms);
      return { loss: terms.loss, metrics: logged };
    },
  }, latentTrainConfig(r, vlm.module, latentArm ? latentIds : null), trainOptions(opts));
  stopIfInterrupted(result, r.out);
  (cache as TargetCache<FamilyTargetManifest> | null)?.dispose();
  logTemperature?.dispose();
  const modelDir = join(r.out, "model");
  onLeadRank(() => {
    vlm.savePretrained(modelDir);
    tok.save(modelDir);
    copyFileSync(join(r.base, "preprocessor_config.json"), join(modelDir, "preprocessor_config.json"));
    if (stats) io.saveFile(join(modelDir, TARGET_STATS_FILE), new Map([["mean", stats.mean], ["std", stats.std]]));
    markDone(modelDir, { stage: "latent-pretrain", family: vlm.modelType, arm: latentArm ? "latent" : "text-control", readout: "queries", steps: result.steps, lastLoss: result.lastLoss });
  });
  stats?.mean.dispose();
  stats?.std.dispose();
  vlm.dispose();
  return { modelDir, result };
}
