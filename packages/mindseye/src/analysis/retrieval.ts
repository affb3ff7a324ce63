// Alignment by retrieval (DESIGN.md §6): a latent-pretrained model "imagines" a caption and the
// imagined latents are looked up among the frozen encoder's latents of real images.
//
//   caption ─► tokens + <|latent_0|>…<|latent_{K-1}|> (as latent pretraining builds them: no chat
//              template, left padding) ─► LM ─► latent head ─► ẑ [K, D]
//   gallery image ─► frozen encoder ─► pool (the recipe's, e.g. grid:4) ─► target_norm ─► z [K, D]
//   similarity(ẑ, z) = (1/K) Σ_k cos(ẑ_k, z_k)          the mean over the K latents of the cosine
//
// How the targets were pooled and normalised is read from the latent-pretrain run's
// recipe.resolved.json (beside model/); the gallery's features are extracted once into a target
// cache (data/targets.ts) keyed by the encoder's fingerprint.
//
// `world_retrieval` (evaluateRetrieval): every caption of a world split ranks all of the split's
// images. Output, in `out`:
//   predictions.jsonl   one line per caption: {id, image_id, caption, rank, cosine, top}
//                       (rank: 1-based rank of its own image; cosine: the similarity to it; top: the
//                       10 best image ids)
//   results.json        recall@1/5/10 and the mean similarity to the true image with bootstrap 95%
//                       intervals over captions, median rank, chance recall, settings, model and
//                       encoder fingerprints, time
// A rank counts every image that scores at least as high as the true one (ties count against the
// caption), so a model that predicts one constant latent for everything ranks last, not first.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync, appendFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { torch, F, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { MindsEyeVLM } from "../models/vlm.js";
import { Tokenizer } from "../data/tokenizer.js";
import { TargetCache, extractTargets, loadEncoder, encoderFingerprint } from "../data/targets.js";
import { readPairs, didYouMean } from "../data/formats/index.js";
import { collapseStats, normalizeTargets, parsePool, type CollapseStats, type PoolSpec, type TargetNorm, type TargetStats } from "../objectives/index.js";
import { LatentPretrainRecipe } from "../train/stages/index.js";
import { latentInput, readTargetStats } from "../train/stages/latent_pretrain.js";
import { bootstrapMean, type Interval } from "../eval/stats.js";
import { modelFingerprint } from "../eval/run.js";
import { RETRIEVAL_TASK } from "../eval/tasks.js";
import { Progress } from "../util/progress.js";

/** The encoder layer the targets come from: latent pretraining extracts at the default, the last layer. */
export const TARGET_FEATURE_LAYER = -1;
/** The k of recall@k. */
export const RECALL_AT = [1, 5, 10] as const;

// ---- where a latent model and its training settings are --------------------------------------

export interface LatentRun {
  /** The model directory (config.json with a latent head, tokenizer files). */
  modelDir: string;
  /** The latent-pretrain run folder (recipe.resolved.json, model/). */
  runDir: string;
  /** How the targets were pooled (recipe `pool`). */
  pool: PoolSpec;
  /** How the targets were normalised (recipe `loss.target_norm`). */
  targetNorm: TargetNorm;
  /** The frozen encoder whose features were the targets. */
  encoderDir: string;
  /** The world the model was trained on (the default gallery). */
  worldDir: string;
  /** The training target cache (its fingerprint must match the encoder in use). */
  targetsDir: string;
  /** The study folder when the run was given as one (gallery caches go there). */
  studyDir: string | null;
}

const RUN_FORMS = "a latent-pretrained model directory (config.json with latent_head), its run folder (recipe.resolved.json + model/), or a study folder (study.resolved.json)";

/**
 * Finds a latent model and how it was trained. `run` is a model directory (its run folder, the
 * parent, holds recipe.resolved.json), a latent-pretrain run folder, or a study folder (then
 * stages/pretrain-latent, the study's world and its world encoder). `encoder` overrides the
 * recipe's encoder.
 * ```ts
 * const r = resolveLatentRun("runs/demo");   // { modelDir: "runs/demo/stages/pretrain-latent/model", pool: "grid:4", targetNorm: "layernorm", … }
 * ```
 */
export function resolveLatentRun(run: string, opts: { encoder?: string } = {}): LatentRun {
  let runDir: string, modelDir: string, studyDir: string | null = null;
  if (existsSync(join(run, "study.resolved.json"))) {
    studyDir = run;
    runDir = join(run, "stages", "pretrain-latent");
    modelDir = join(runDir, "model");
    if (!existsSync(join(modelDir, "config.json"))) throw new ConfigError(`${run} is a study folder without a latent model yet (${modelDir}); run \`mindseye experiment\` to the end of stage 3`);
  } else if (existsSync(join(run, "config.json"))) {
    modelDir = run;
    runDir = dirname(resolve(run));
  } else if (existsSync(join(run, "model", "config.json"))) {
    runDir = run;
    modelDir = join(run, "model");
  } else {
    throw new ConfigError(`${run}: not ${RUN_FORMS}`);
  }

  const recipePath = join(runDir, "recipe.resolved.json");
  if (!existsSync(recipePath)) {
    throw new ConfigError(`${recipePath} not found: the pooling and target normalisation the model was trained with are unknown (the latent-pretrain stage writes recipe.resolved.json in its run folder, beside model/; keep the model inside its run folder)`);
  }
  const json = JSON.parse(readFileSync(recipePath, "utf8")) as { stage?: unknown };
  if (json.stage !== "latent-pretrain") {
    throw new ConfigError(`${recipePath}: this is a ${JSON.stringify(json.stage)} run, not latent-pretrain; imagine and world_retrieval need a latent-pretrained model (e.g. STUDY/stages/pretrain-latent)`);
  }
  const parsed = LatentPretrainRecipe.safeParse(json);
  if (!parsed.success) {
    throw new ConfigError(`${recipePath}: not a valid latent-pretrain recipe (${parsed.error.issues.map((i) => `${i.path.join(".") || "(top)"}: ${i.message}`).join("; ")})`);
  }
  const r = parsed.data;
  if (studyDir === null && (r.world === undefined || r.encoder === undefined || r.targets === undefined)) {
    throw new ConfigError(`${recipePath}: imagine and world_retrieval need a model pre-trained on the world (world, encoder and targets in its recipe); this one read ${r.captions ? "captions datasets" : "no world"}`);
  }
  const stages = studyDir === null ? null : join(studyDir, "stages");
  const encoderDir = opts.encoder ?? (stages ? join(stages, "world-encoder", "encoder") : r.encoder!);
  if (!existsSync(join(encoderDir, "config.json"))) {
    const from = opts.encoder !== undefined ? "--encoder" : stages ? "the study's stage 1" : `${recipePath} "encoder"`;
    throw new ConfigError(`the frozen encoder ${encoderDir} (from ${from}) has no config.json; pass --encoder DIR (the encoder the model's targets came from)`);
  }
  return {
    modelDir, runDir, pool: parsePool(r.pool), targetNorm: r.loss.target_norm, encoderDir,
    worldDir: studyDir !== null ? join(studyDir, "world") : r.world!,
    targetsDir: stages ? join(stages, `targets-${r.pool.replace(":", "")}`) : r.targets!,
    studyDir,
  };
}

// ---- imagining --------------------------------------------------------------------------------

export interface Imaginer {
  model: MindsEyeVLM;
  tokenizer: Tokenizer;
  /** <|latent_0|>…<|latent_{K-1}|>, from config.json's latent_token_ids. */
  latentIds: number[];
  padId: number;
}

/** Loads a latent-pretrained model directory for inference (eval mode, weights kept until disposeImaginer). */
export function loadImaginer(modelDir: string): Imaginer {
  const model = MindsEyeVLM.fromPretrained(modelDir);
  if (model.latent_head === null) {
    model.parameters().forEach((p) => p.dispose());
    throw new ConfigError(`${modelDir} has no latent head (config.json latent_head): it is not a latent-pretrained model (the text control and fine-tuned models have none); use the latent arm's model, e.g. STUDY/stages/pretrain-latent/model`);
  }
  model.eval();
  const tokenizer = Tokenizer.fromPretrained(modelDir);
  return { model, tokenizer, latentIds: [...model.config.latentTokenIds], padId: tokenizer.specialTokenIds.pad ?? 0 };
}

export function disposeImaginer(im: Imaginer): void {
  im.model.parameters().forEach((p) => p.dispose());
}

/** A caption's input ids as latent pretraining builds them (latentInput: the chat template, then the K latent queries). */
export function imagineInput(im: Pick<Imaginer, "tokenizer" | "latentIds">, caption: string): number[] {
  return latentInput(im.tokenizer, caption, im.latentIds).ids;
}

/**
 * Predicted latents ẑ of captions, one forward: [n, K, D]. Left padding, as in training, keeps
 * every row's latent queries at the end.
 * ```ts
 * const zHat = imagineLatents(loadImaginer("runs/demo/stages/pretrain-latent/model"), ["a red circle"]); // [1, 4, 64]
 * ```
 */
export function imagineLatents(im: Imaginer, captions: readonly string[]): Tensor {
  if (captions.length === 0) throw new RangeError("imagineLatents: no captions");
  const rows = captions.map((c) => imagineInput(im, c));
  const T = Math.max(...rows.map((r) => r.length));
  const left = (row: number[], v: number) => [...Array<number>(T - row.length).fill(v), ...row];
  return torch.noGrad(() => torch.scope(() => {
    const inputIds = torch.tensor(rows.map((r) => left(r, im.padId)), { dtype: "int64" });
    const attentionMask = torch.tensor(rows.map((r) => left(r.map(() => 1), 0)), { dtype: "int64" });
    return im.model.predictLatents(inputIds, attentionMask).latents; // [n, K, D]
  }));
}

// ---- similarity and ranks (pure) ---------------------------------------------------------------

/**
 * The mean over the K latents of the cosine between ẑ_k and z_k, for every pair:
 * pred [Q, K, D], gallery [N, K, D] -> [Q, N].
 */
export function latentSimilarity(pred: Tensor, gallery: Tensor): Tensor {
  const [Q, K, D] = pred.shape as [number, number, number];
  const [N, Kg, Dg] = gallery.shape as [number, number, number];
  if (pred.ndim !== 3 || gallery.ndim !== 3 || K !== Kg || D !== Dg) {
    throw new RangeError(`latentSimilarity: predictions [${pred.shape}] and gallery latents [${gallery.shape}] must both be [n, K, D] with the same K and D`);
  }
  return torch.scope(() => {
    const p = F.normalize(pred, { dim: -1 }).reshape(Q, K * D);
    const g = F.normalize(gallery, { dim: -1 }).reshape(N, K * D);
    return p.matmul(g.t()).div(K); // Σ_k <ẑ_k/|ẑ_k|, z_k/|z_k|> / K
  });
}

export interface Scored {
  /** 1-based rank of each query's true image: the images scoring at least as high, itself included. */
  ranks: number[];
  /** Similarity of each query to its true image. */
  cosines: number[];
  /** Gallery indices of each query's best `top` images, best first. */
  top: number[][];
}

/**
 * Ranks a gallery for each query. pred [Q, K, D]; gallery [N, K, D] (already normalised as the
 * targets were); truth[q] = the gallery index of query q's image.
 */
export function scoreRetrieval(pred: Tensor, gallery: Tensor, truth: readonly number[], top = 10): Scored {
  const N = gallery.shape[0]!;
  if (truth.length !== pred.shape[0]) throw new RangeError(`scoreRetrieval: ${truth.length} true indices for ${pred.shape[0]} queries`);
  for (const t of truth) if (!Number.isInteger(t) || t < 0 || t >= N) throw new RangeError(`scoreRetrieval: true index ${t} is not in the gallery of ${N}`);
  return torch.scope(() => {
    const sim = latentSimilarity(pred, gallery); // [Q, N]
    const own = sim.gather(1, torch.tensor(truth.map((t) => [t]), { dtype: "int64" })); // [Q, 1]
    const ranks = Array.from(sim.ge(own).sum(1).toTypedArray(), Number);
    const best = sim.topk(Math.min(top, N), 1).indices.tolist() as number[][];
    return { ranks, cosines: Array.from(own.reshape(-1).toTypedArray(), Number), top: best };
  });
}

export interface RetrievalMetrics {
  /** Queries. */
  n: number;
  /** recall@k: the share of queries whose true image is among the top k, with its bootstrap 95% interval. */
  recall: Record<string, Interval>;
  /** Median of the 1-based ranks (the mean of the two middle ones for an even count). */
  medianRank: number;
  /** Mean similarity between ẑ and its true image's z, with its bootstrap 95% interval. */
  meanCosine: Interval;
}

/** Recall@k, median rank and mean true-pair similarity, with bootstrap intervals over queries. */
export function retrievalMetrics(ranks: readonly number[], cosines: readonly number[], opts: { ks?: readonly number[]; seed?: number } = {}): RetrievalMetrics {
  if (ranks.length !== cosines.length) throw new RangeError(`retrievalMetrics: ${ranks.length} ranks but ${cosines.length} cosines`);
  const seed = opts.seed ?? 0;
  const sorted = [...ranks].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const medianRank = sorted.length === 0 ? NaN : sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return {
    n: ranks.length,
    recall: Object.fromEntries((opts.ks ?? RECALL_AT).map((k) => [String(k), bootstrapMean(ranks.map((r) => (r <= k ? 1 : 0)), { seed })])),
    medianRank,
    meanCosine: bootstrapMean([...cosines], { seed }),
  };
}

// ---- the gallery ------------------------------------------------------------------------------

/** Images to search: a COCO captions file's images, or every image file of a folder. */
export type GallerySpec = CocoGallery | FolderGallery;
export interface CocoGallery { kind: "coco"; annotations: string; images: string; /** Names its cache folder. */ name: string }
export interface FolderGallery { kind: "folder"; dir: string; /** Image file names, sorted. */ files: string[]; name: string }

const IMAGE_EXTENSIONS = /\.(png|jpe?g|webp)$/i;

/** A world split's images (captions_{split}.json). */
export function worldGallery(world: string, split: string): CocoGallery {
  const annotations = join(world, `captions_${split}.json`);
  if (!existsSync(annotations)) {
    const splits = existsSync(world) ? readdirSync(world).filter((f) => /^captions_.+\.json$/.test(f)).map((f) => f.slice(9, -5)) : [];
    throw new ConfigError(`${world}: no captions_${split}.json${didYouMean(split, splits)} (a world directory from \`mindseye world generate\`${splits.length ? `; its splits: ${splits.join(", ")}` : ""})`);
  }
  return { kind: "coco", annotations, images: join(world, "images"), name: `world-${split}` };
}

/** --gallery DIR: a world directory (its `split`'s images) or a folder of PNG/JPEG/WebP images. */
export function galleryFromDir(dir: string, split: string): GallerySpec {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ConfigError(`gallery ${dir}: not a directory (a world directory or a folder of images)`);
  if (existsSync(join(dir, "manifest.json")) && existsSync(join(dir, `captions_${split}.json`))) return worldGallery(dir, split);
  const files = readdirSync(dir).filter((f) => IMAGE_EXTENSIONS.test(f)).sort();
  if (files.length === 0) throw new ConfigError(`gallery ${dir}: no .png, .jpg or .webp images in it, and it is not a world directory with captions_${split}.json`);
  return { kind: "folder", dir, files, name: basename(resolve(dir)).replace(/[^A-Za-z0-9_.-]/g, "_") };
}

export interface Gallery {
  /** Record ids in gallery order (COCO image ids; a folder's images are numbered in name order). */
  ids: string[];
  paths: string[];
  /** The encoder's pooled features, normalised as the targets were: [N, K, D]. */
  latents: Tensor;
  encoderFingerprint: string;
  cacheDir: string;
  /** Images that could not be decoded (left out). */
  skipped: number;
}

/** The gallery as a COCO captions file: a folder's images are listed with their names as captions. */
function cocoListing(spec: FolderGallery): string {
  const images = spec.files.map((f, id) => ({ id, file_name: f }));
  return JSON.stringify({ images, annotations: images.map((im) => ({ id: im.id, image_id: im.id, caption: im.file_name })) });
}

/** What decides a gallery's content: the captions file's bytes, or the folder's names, sizes and times. */
function galleryKey(spec: GallerySpec): string {
  const h = createHash("sha256");
  if (spec.kind === "coco") {
    h.update(resolve(spec.images));
    h.update(readFileSync(spec.annotations));
  } else {
    h.update(resolve(spec.dir));
    for (const f of spec.files) {
      const s = statSync(join(spec.dir, f));
      h.update(`${f}\t${s.size}\t${s.mtimeMs}\n`);
    }
  }
  return h.digest("hex").slice(0, 12);
}

/** Default root of gallery caches: the study's gallery/ folder, else one in the system temp dir. */
export function defaultCacheRoot(run: LatentRun): string {
  return run.studyDir !== null ? join(run.studyDir, "gallery") : join(tmpdir(), "mindseye-gallery");
}

/**
 * The encoder's pooled, normalised features of every gallery image, extracted once into
 * CACHE_ROOT/<encoder fingerprint>/<name>-<pool>-<content hash> and read from there after.
 * `checkEncoder` sees the encoder's fingerprint before anything is extracted (and may throw).
 */
export async function loadGallery(o: {
  spec: GallerySpec; encoderDir: string; pool: PoolSpec; targetNorm: TargetNorm; cacheRoot: string; checkEncoder?: (fingerprint: string) => void; quiet?: boolean;
  /** The model's training-target statistics (target_norm standardize). */
  targetStats?: TargetStats;
}): Promise<Gallery> {
  const enc = loadEncoder(o.encoderDir);
  const fingerprint = encoderFingerprint(enc.model, enc.config, enc.preprocessing);
  enc.model.parameters().forEach((p) => p.dispose());
  o.checkEncoder?.(fingerprint);
  const cacheDir = join(o.cacheRoot, fingerprint.slice(0, 16), `${o.spec.name}-${o.pool.replace(":", "")}-${galleryKey(o.spec)}`);
  mkdirSync(cacheDir, { recursive: true });
  let coco: { annotations: string; images: string };
  if (o.spec.kind === "coco") {
    coco = { annotations: o.spec.annotations, images: o.spec.images };
  } else {
    coco = { annotations: join(cacheDir, "gallery.json"), images: o.spec.dir };
    writeFileSync(coco.annotations, cocoListing(o.spec));
  }
  const data = { format: "coco", ...coco };
  if (!isComplete(cacheDir)) {
    await extractTargets({ encoderDir: o.encoderDir, data, out: cacheDir, pool: o.pool, featureLayer: TARGET_FEATURE_LAYER, quiet: o.quiet ?? true });
  }

  const cache = new TargetCache(cacheDir, { expectFingerprint: fingerprint });
  try {
    const ids: string[] = [], paths: string[] = [];
    for await (const p of readPairs(data)) {
      if (!cache.has(p.id) || p.image.kind !== "file") continue; // undecodable: counted in manifest.skipped
      ids.push(p.id);
      paths.push(p.image.path);
    }
    if (ids.length === 0) throw new Error(`gallery ${o.spec.name}: no image could be read (${cache.manifest.skipped} skipped)`);
    const latents = torch.scope(() => normalizeTargets(cache.get(ids), o.targetNorm, o.targetStats).contiguous()); // [N, K, D]
    return { ids, paths, latents, encoderFingerprint: fingerprint, cacheDir, skipped: cache.manifest.skipped };
  } finally {
    cache.dispose();
  }
}

function isComplete(cacheDir: string): boolean {
  const path = join(cacheDir, "manifest.json");
  return existsSync(path) && (JSON.parse(readFileSync(path, "utf8")) as { complete: boolean }).complete;
}

/** The encoder in use must be the one the training targets came from (when that cache is at hand). */
export function checkTrainingEncoder(run: LatentRun, fingerprint: string): void {
  const manifest = join(run.targetsDir, "manifest.json");
  if (!existsSync(manifest)) return;
  const trained = (JSON.parse(readFileSync(manifest, "utf8")) as { fingerprint: string }).fingerprint;
  if (trained !== fingerprint) {
    throw new ConfigError(`the encoder ${run.encoderDir} (fingerprint ${fingerprint.slice(0, 12)}…) is not the one the model's training targets came from (${run.targetsDir}: ${trained.slice(0, 12)}…); pass the training encoder with --encoder`);
  }
}

// ---- world_retrieval --------------------------------------------------------------------------

export interface RetrievalOptions {
  /** A latent-pretrained model directory, its run folder, or a study folder (resolveLatentRun). */
  modelDir: string;
  /** The world directory whose captions and images are used. */
  dataDir: string;
  /** World split (default test). */
  split?: string;
  /** The frozen encoder (default: the one the latent-pretrain recipe names). */
  encoderDir?: string;
  /** "first": one caption per image (default); "all": every caption. */
  captions?: "first" | "all";
  /** Where predictions.jsonl and results.json go (created). */
  out: string;
  /** Captions per forward (default 64). */
  batchSize?: number;
  /** Root of the gallery feature cache (default: the study's gallery/ or a temp dir). */
  cacheRoot?: string;
  quiet?: boolean;
}

export interface RetrievalResults {
  task: string;
  split: string;
  captions: "first" | "all";
  /** Captions ranked. */
  n: number;
  recall: Record<string, Interval>;
  /** recall@k of a random ranking: k / gallery size. */
  chance: Record<string, number>;
  medianRank: number;
  /** Mean similarity to the true image. */
  meanCosine: Interval;
  similarity: string;
  gallery: { images: number; skipped: number; cache: string };
  latents: { k: number; d: number; pool: PoolSpec; targetNorm: TargetNorm };
  /** Collapse monitors (each caption's or image's K latents as one sample) of imagined and real latents. */
  collapse: { predicted: CollapseSummary; targets: CollapseSummary };
  model: { path: string; fingerprint: string };
  encoder: { path: string; fingerprint: string };
  data: string;
  seconds: number;
  finished: string;
}

export interface CollapseSummary { effectiveRank: number; meanPairwiseCosine: number; stdMean: number }
const collapseSummary = (c: CollapseStats): CollapseSummary => ({ effectiveRank: c.effectiveRank, meanPairwiseCosine: c.meanPairwiseCosine, stdMean: c.stdMean });

/** The standardisation statistics of a latent run (target_norm standardize), else none. */
export function runTargetStats(run: LatentRun): { targetStats?: TargetStats } {
  return run.targetNorm === "standardize" ? { targetStats: readTargetStats(run.modelDir) } : {};
}

/** One line of predictions.jsonl. */
export interface RetrievalLine { id: string; image_id: string; caption: string; rank: number; cosine: number; top: string[] }

export const SIMILARITY_TEXT = "mean over the K latents of cos(ẑ_k, z_k); z = the frozen encoder's pooled features normalised with the recipe's target_norm";

/**
 * Ranks a world split's images by imagined latents for each of its captions, and writes
 * predictions.jsonl and results.json to `out`.
 * ```ts
 * const r = await evaluateRetrieval({ modelDir: "runs/demo", dataDir: "runs/demo/world", out: "runs/demo/eval/world_retrieval-test" });
 * console.log(r.recall["1"].mean, r.medianRank);
 * ```
 */
export async function evaluateRetrieval(o: RetrievalOptions): Promise<RetrievalResults> {
  const t0 = performance.now();
  const split = o.split ?? RETRIEVAL_TASK.defaultSplit;
  if (!RETRIEVAL_TASK.splits.includes(split)) throw new ConfigError(`task ${RETRIEVAL_TASK.name} has no split "${split}"${didYouMean(split, RETRIEVAL_TASK.splits)}; its splits are ${RETRIEVAL_TASK.splits.join(", ")}`);
  const which = o.captions ?? "first";
  if (which !== "first" && which !== "all") throw new ConfigError(`captions must be "first" or "all", got ${JSON.stringify(which)}`);
  const batchSize = o.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new ConfigError(`batchSize must be a positive integer, got ${batchSize}`);

  // 1. The model's run, the gallery (every image of the split) and the captions.
  const run = resolveLatentRun(o.modelDir, o.encoderDir !== undefined ? { encoder: o.encoderDir } : {});
  const spec = worldGallery(o.dataDir, split);
  const gallery = await loadGallery({
    spec, encoderDir: run.encoderDir, pool: run.pool, targetNorm: run.targetNorm, cacheRoot: o.cacheRoot ?? defaultCacheRoot(run),
    checkEncoder: (fp) => checkTrainingEncoder(run, fp), quiet: o.quiet ?? false, ...runTargetStats(run),
  });
  let im: Imaginer | null = null;
  try {
    const fingerprint = await modelFingerprint(run.modelDir);
    const imaginer = (im = loadImaginer(run.modelDir));
    const [N, K, D] = gallery.latents.shape as [number, number, number];
    if (imaginer.latentIds.length !== K || imaginer.model.config.latentHead!.latentSize !== D) {
      throw new ConfigError(`${run.modelDir} predicts [${imaginer.latentIds.length}, ${imaginer.model.config.latentHead!.latentSize}] latents but the encoder's ${run.pool} targets are [${K}, ${D}]`);
    }
    const index = new Map(gallery.ids.map((id, i) => [id, i]));
    const queries: { id: string; imageId: string; caption: string; truth: number }[] = [];
    for await (const p of readPairs({ format: "coco", annotations: spec.annotations, images: spec.images })) {
      const truth = index.get(p.id);
      if (truth === undefined) continue; // its image could not be decoded
      (which === "first" ? p.captions.slice(0, 1) : p.captions).forEach((caption, j) => queries.push({ id: `${p.id}#${j}`, imageId: p.id, caption, truth }));
    }

    // 2. Imagine each batch of captions and rank the gallery.
    mkdirSync(o.out, { recursive: true });
    const predictionsPath = join(o.out, "predictions.jsonl");
    writeFileSync(predictionsPath, "");
    const ranks: number[] = [], cosines: number[] = [];
    const predictions: Tensor[] = [];
    const progress = new Progress(queries.length, 0, o.quiet ?? false, `eval ${RETRIEVAL_TASK.name}`, "captions");
    for (let start = 0; start < queries.length; start += batchSize) {
      const batch = queries.slice(start, start + batchSize);
      const pred = imagineLatents(imaginer, batch.map((q) => q.caption));
      const s = scoreRetrieval(pred, gallery.latents, batch.map((q) => q.truth));
      predictions.push(pred);
      ranks.push(...s.ranks);
      cosines.push(...s.cosines);
      appendFileSync(predictionsPath, batch.map((q, i): string => JSON.stringify({
        id: q.id, image_id: q.imageId, caption: q.caption, rank: s.ranks[i]!, cosine: s.cosines[i]!, top: s.top[i]!.map((g) => gallery.ids[g]!),
      } satisfies RetrievalLine) + "\n").join(""));
      progress.update(ranks.length, `R@1 ${(ranks.filter((r) => r === 1).length / ranks.length).toFixed(3)}`);
    }
    progress.stop(ranks.length);

    // 3. Metrics with intervals, written atomically; collapse monitors of the imagined latents
    // (one sample per caption, its K latents flattened) next to the real ones'.
    const m = retrievalMetrics(ranks, cosines);
    const perImage = (x: Tensor) => x.reshape(x.shape[0]!, -1);
    const all = torch.cat(predictions, 0);
    predictions.forEach((p) => p.dispose());
    const collapse = { predicted: collapseSummary(collapseStats(perImage(all))), targets: collapseSummary(collapseStats(perImage(gallery.latents))) };
    all.dispose();
    const results: RetrievalResults = {
      task: RETRIEVAL_TASK.name, split, captions: which, n: m.n, recall: m.recall,
      chance: Object.fromEntries(RECALL_AT.map((k) => [String(k), Math.min(1, k / N)])), medianRank: m.medianRank, meanCosine: m.meanCosine,
      similarity: SIMILARITY_TEXT, gallery: { images: N, skipped: gallery.skipped, cache: resolve(gallery.cacheDir) },
      latents: { k: K, d: D, pool: run.pool, targetNorm: run.targetNorm }, collapse,
      model: { path: resolve(run.modelDir), fingerprint }, encoder: { path: resolve(run.encoderDir), fingerprint: gallery.encoderFingerprint },
      data: resolve(o.dataDir), seconds: (performance.now() - t0) / 1000, finished: new Date().toISOString(),
    };
    const tmp = join(o.out, `results.json.tmp-${process.pid}`);
    writeFileSync(tmp, JSON.stringify(results, null, 2) + "\n");
    renameSync(tmp, join(o.out, "results.json"));
    return results;
  } finally {
    if (im !== null) disposeImaginer(im);
    gallery.latents.dispose();
  }
}

const pct = (x: number) => (100 * x).toFixed(1);

/** The short table `mindseye eval --task world_retrieval` prints. */
export function formatRetrieval(r: RetrievalResults, out: string): string {
  const line = (k: string, v: string, ci: string) => `  ${k.padEnd(14)} ${v.padStart(8)}  ${ci}`;
  return [
    `${r.task} ${r.split}: ${r.n} captions (${r.captions} per image) rank ${r.gallery.images} images; model ${r.model.path} (${r.model.fingerprint.slice(0, 12)})`,
    `similarity: ${r.similarity} (${r.latents.pool}, ${r.latents.targetNorm}; K=${r.latents.k}, D=${r.latents.d})`,
    line("metric", "value", "95% CI"),
    ...Object.entries(r.recall).map(([k, v]) => line(`recall@${k}`, `${pct(v.mean)}%`, `[${pct(v.low)}, ${pct(v.high)}]  chance ${pct(r.chance[k]!)}%`)),
    line("median rank", String(r.medianRank), ""),
    line("mean cosine", r.meanCosine.mean.toFixed(4), `[${r.meanCosine.low.toFixed(4)}, ${r.meanCosine.high.toFixed(4)}]  (to the true image)`),
    `skipped images: ${r.gallery.skipped}; predictions.jsonl and results.json in ${out}`,
  ].join("\n");
}
