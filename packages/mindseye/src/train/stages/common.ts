// What the four stages share: the synthetic world on disk, decoded and preprocessed images
// held in memory (the world is small), model directories in HF layout, and the recipe sections
// every stage has.
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { torch, distributed, type Tensor } from "@mindseye/torch";
import { decodeBatch } from "../../data/images.js";
import { preprocess } from "../../data/targets.js";
import { SkipCounter, type SkippedRecord } from "../../data/formats/index.js";
import { processorConfigFromHf, type ImageProcessorConfig, type RgbImage } from "../../models/processors.js";
import { Tokenizer } from "../../data/tokenizer.js";
import type { Scene } from "../../world/scene.js";
import type { ResumeOverrides, TrainConfig, TrainResult } from "../trainer.js";
import { launchShard, Ranks } from "../distributed.js";
import { LORA_DEFAULTS } from "../../models/lora.js";
import { ConfigError } from "../../config/errors.js";

/** The `train` section of every recipe (TrainConfig in snake_case, with defaults). */
export const TrainSection = z.strictObject({
  steps: z.number().int().positive(),
  batch_size: z.number().int().positive().default(32),
  lr: z.number().positive().default(1e-3),
  min_lr_ratio: z.number().min(0).max(1).default(0.1),
  warmup_steps: z.number().int().min(0).default(20),
  schedule: z.enum(["cosine", "linear", "constant"]).default("cosine"),
  weight_decay: z.number().min(0).default(0.01),
  grad_accum: z.number().int().positive().default(1),
  clip_grad_norm: z.number().min(0).default(1),
  checkpoint_every: z.number().int().positive().default(200),
  log_every: z.number().int().positive().default(20),
  // The keys below are left out rather than defaulted when not given, so that the resolved
  // recipes (and the study's step fingerprints) of recipes written before them do not change.
  /** Recompute each decoder layer / ViT block in backward instead of keeping its activations (absent: false). */
  gradient_checkpointing: z.boolean().optional(),
  /** Train LoRA adapters (PEFT layout, saved to <out>/adapter) instead of the model's weights (absent: no LoRA). */
  lora: z.strictObject({
    r: z.number().int().positive().default(LORA_DEFAULTS.r),
    alpha: z.number().positive().default(LORA_DEFAULTS.loraAlpha),
    dropout: z.number().min(0).lt(1).default(LORA_DEFAULTS.loraDropout),
    /** Module names (exact, or the last dotted parts) or one regular expression over whole names. */
    target_modules: z.union([z.array(z.string().min(1)).min(1), z.string().min(1)]).default([...LORA_DEFAULTS.targetModules]),
    /** Fold the trained adapters into the weights of the saved model (else it keeps the base weights). */
    merge: z.boolean().default(true),
    /** Modules trained whole and saved in the adapter (PEFT's modules_to_save; names as target_modules' list). Absent: none; latent-pretrain adds its latent head. */
    modules_to_save: z.array(z.string().min(1)).optional(),
  }).optional(),
  /** With several ranks: a rank that waits this long for another (dead or hung) fails (absent: 1800, PyTorch's 30 minutes). */
  dist_timeout_s: z.number().positive().optional(),
  /** With several ranks, 1 shards AdamW's state over them (ZeRO-1, ~1/world size of it per rank), 2 the gradients too (ZeRO-2); 0 keeps a full copy on each (absent: 0). One process trains plainly either way. */
  zero_stage: z.union([z.literal(0), z.literal(1), z.literal(2)]).optional(),
  /** Checkpoints kept, the newest (absent: 2); 0 keeps every one (learning curves: `mindseye eval --model RUN/checkpoints/step-N`). */
  keep_checkpoints: z.number().int().min(0).optional(),
  /** finetune: batches of examples of similar lengths, as Hugging Face Trainer's group_by_length, so less compute goes to padding (absent: false). */
  group_by_length: z.boolean().optional(),
});
export type TrainSection = z.output<typeof TrainSection>;

export function trainConfig(runDir: string, t: TrainSection, seed: number): Partial<TrainConfig> & Pick<TrainConfig, "runDir" | "steps"> {
  return {
    runDir, steps: t.steps, lr: t.lr, minLrRatio: t.min_lr_ratio, warmupSteps: Math.min(t.warmup_steps, t.steps), schedule: t.schedule,
    weightDecay: t.weight_decay, gradAccum: t.grad_accum, clipGradNorm: t.clip_grad_norm, checkpointEvery: t.checkpoint_every,
    ...(t.keep_checkpoints === undefined ? {} : { keepCheckpoints: t.keep_checkpoints === 0 ? Number.MAX_SAFE_INTEGER : t.keep_checkpoints }),
    logEvery: Math.min(t.log_every, t.steps), seed, batchSize: t.batch_size,
    gradientCheckpointing: t.gradient_checkpointing ?? false,
    lora: t.lora === undefined ? null : { r: t.lora.r, alpha: t.lora.alpha, dropout: t.lora.dropout, targetModules: t.lora.target_modules, merge: t.lora.merge, ...(t.lora.modules_to_save ? { modulesToSave: t.lora.modules_to_save } : {}) },
    ...(t.dist_timeout_s === undefined ? {} : { distTimeoutMs: t.dist_timeout_s * 1000 }),
    ...(t.zero_stage === undefined ? {} : { zeroStage: t.zero_stage }),
  };
}

/** Keys of the train section that only the finetune stage reads: another stage refuses them rather than ignore them. */
export function refuseFinetuneOnlyKeys(stage: string, t: TrainSection): void {
  if (t.group_by_length !== undefined) throw new ConfigError(`${stage}: train.group_by_length batches fine-tuning examples by length; the ${stage} stage does not read it — remove it from this recipe`);
}

/**
 * This process's share of the data under `mindseye launch` / torchrun (RANK, WORLD_SIZE), for the
 * stage's DataLoader options; rank 0 of 1 otherwise. The trainer refuses a loader without it when
 * there are several ranks.
 * ```ts
 * new DataLoader(dataset, { batchSize: r.train.batch_size, seed: r.seed, ...dataShard(), collate });
 * ```
 */
export function dataShard(): { rank: number; worldSize: number } {
  return launchShard();
}

/**
 * Runs fn (writing the stage's outputs) on rank 0 only; with several ranks, the others wait until
 * it is done (and fail with it), so no rank reads or rewrites an output being written.
 * ```ts
 * onLeadRank(() => { model.savePretrained(modelDir); markDone(modelDir, info); });
 * ```
 */
export function onLeadRank(fn: () => void): void {
  const { rank, worldSize } = launchShard();
  if (worldSize === 1) return fn();
  const pg = distributed.defaultGroup();
  const ranks = new Ranks(pg, pg.backend === "nccl" ? `cuda:${pg.localRank}` : "cpu");
  ranks.collectively("writing the stage's outputs", () => { if (rank === 0) fn(); });
}

/**
 * The share of bad records (undecodable images, malformed questions) a stage tolerates before it
 * stops, judged on its whole input; each is skipped, counted and reported.
 */
export const MaxErrorRate = z.number().min(0).max(1).default(0.01);

/** Images of `examples` decoded once; examples whose images could not be decoded are dropped and reported. */
export async function loadUsable<T>(examples: readonly T[], imagesOf: (e: T) => readonly string[], pre: ImageProcessorConfig, maxErrorRate: number, log: (line: string) => void): Promise<{ bank: ImageBank; usable: T[] }> {
  const bank = await ImageBank.load(examples.flatMap(imagesOf), pre, { maxErrorRate, setting: "max_error_rate in the recipe" });
  if (bank.skipped.length > 0) log(bank.summary());
  return { bank, usable: bank.keep(examples, imagesOf) };
}

/** What every stage takes besides its recipe. */
export interface StageOptions {
  quiet?: boolean;
  /** Settings a resumed run may change despite its checkpoint (`mindseye train --override`), recorded in the run. */
  overrides?: ResumeOverrides;
}

/** The trainer's options of a stage: always resume from the run folder's last checkpoint. */
export function trainOptions(opts: StageOptions): { resume: true; quiet: boolean; overrides?: ResumeOverrides } {
  return { resume: true, quiet: opts.quiet ?? false, ...(opts.overrides ? { overrides: opts.overrides } : {}) };
}

/** The world directory's scenes (scenes.json). */
export function readScenes(worldDir: string): Scene[] {
  const path = join(worldDir, "scenes.json");
  if (!existsSync(path)) throw new Error(`${worldDir}: no scenes.json (make a world with \`mindseye world generate --out ${worldDir}\`)`);
  return (JSON.parse(readFileSync(path, "utf8")) as { scenes: Scene[] }).scenes;
}

/** A SigLIP-style preprocessing for world images: resize to the world's size, scale to [-1, 1]. */
export function worldPreprocessorJson(size: number): Record<string, unknown> {
  return {
    image_processor_type: "SiglipImageProcessor", do_resize: true, size: { height: size, width: size }, resample: 3,
    do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5],
  };
}

export function readPreprocessor(dir: string): ImageProcessorConfig {
  const path = join(dir, "preprocessor_config.json");
  if (!existsSync(path)) throw new Error(`${dir}: no preprocessor_config.json`);
  return processorConfigFromHf(JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>, {}, path);
}

/**
 * Preprocessed images kept across ImageBank loads in one process. A study's process (`--jobs 1`)
 * or each of its worker processes runs many stages and evaluations, and each used to decode and
 * preprocess the same world images again (`make demo`'s 18 fine-tunes with their evaluations in one
 * process: 469 s before, 423 s with the cache). An entry is keyed by the path, the file's
 * size and modification time, and the preprocessing settings, so a rewritten file or another
 * processor decodes afresh. Bounded: past `maxBytes` (MINDSEYE_PIXEL_CACHE_MB, default 1024)
 * new images are not kept; images that fail to decode never are.
 */
export class PixelCache {
  private readonly entries = new Map<string, { data: Float32Array; shape: number[] }>();
  private bytes = 0;
  constructor(readonly maxBytes: number) {}

  key(path: string, cfg: ImageProcessorConfig): string {
    let stamp = "";
    try {
      const st = statSync(path);
      stamp = `${st.size}:${st.mtimeMs}`;
    } catch {
      stamp = "missing"; // decoding reports it
    }
    return `${path}\u0000${stamp}\u0000${JSON.stringify(cfg)}`;
  }

  get(key: string): { data: Float32Array; shape: number[] } | undefined {
    return this.entries.get(key);
  }

  put(key: string, data: Float32Array, shape: number[]): void {
    if (this.entries.has(key) || this.bytes + data.byteLength > this.maxBytes) return;
    this.entries.set(key, { data, shape });
    this.bytes += data.byteLength;
  }

  get size(): number { return this.entries.size; }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}

const PIXEL_CACHE = new PixelCache(Number(process.env.MINDSEYE_PIXEL_CACHE_MB ?? 1024) * 2 ** 20);
/** The process's cache (tests clear it and look at its size). */
export const pixelCache = (): PixelCache => PIXEL_CACHE;

/**
 * Images by path, decoded and preprocessed once and kept as one tensor [n, 3, H, W]: the world's
 * images are small, and every stage reads them many times. An image that cannot be decoded is
 * skipped and counted (each path once), not loaded; past `maxErrorRate` of the distinct images
 * the load stops (ErrorRateExceeded, naming them and the setting). Callers drop the examples
 * whose images were skipped and report the skips:
 * ```ts
 * const bank = await ImageBank.load(pairs.map((p) => p.image), pre, { maxErrorRate: r.max_error_rate });
 * const usable = bank.keep(pairs, (p) => [p.image]);
 * if (bank.skipped.length > 0) log(bank.summary());
 * ```
 */
export class ImageBank {
  private readonly index = new Map<string, number>();
  private pixels: Tensor | null = null;
  private readonly bad = new Set<string>();
  /** The images that could not be decoded: source.file is the path, reason says why. */
  readonly skipped: SkippedRecord[] = [];
  private report = "";

  static async load(paths: readonly string[], cfg: ImageProcessorConfig, opts: { maxErrorRate?: number; setting?: string } = {}): Promise<ImageBank> {
    const bank = new ImageBank();
    const unique = [...new Set(paths)];
    const errors = new SkipCounter("images", {
      ...(opts.maxErrorRate === undefined ? {} : { maxErrorRate: opts.maxErrorRate }),
      setting: opts.setting ?? "max_error_rate in the stage's recipe",
    });
    errors.expectTotal(unique.length);
    // Each path's pixels, [3, H, W] flattened: from the process's cache, or decoded below.
    const rows = new Map<string, Float32Array>();
    let shape: number[] | null = null;
    const keys = new Map(unique.map((p) => [p, PIXEL_CACHE.key(p, cfg)]));
    for (const p of unique) {
      const hit = PIXEL_CACHE.get(keys.get(p)!);
      if (!hit) continue;
      rows.set(p, hit.data);
      shape = hit.shape;
      errors.ok();
    }
    const misses = unique.filter((p) => !rows.has(p));
    for (let i = 0; i < misses.length; i += 256) {
      const slice = misses.slice(i, i + 256);
      const images = await decodeBatch(slice.map((path) => ({ image: { kind: "file" as const, path }, source: { file: path, record: "image" } })), { errors });
      const ok = slice.filter((_, k) => images[k] !== null);
      if (ok.length === 0) continue;
      const chunk = torch.noGrad(() => preprocess(images.filter((x): x is RgbImage => x !== null), cfg)); // [n, 3, H, W]
      shape = chunk.shape.slice(1);
      const data = chunk.toFloat32Array(), size = data.length / ok.length;
      chunk.dispose();
      ok.forEach((p, k) => {
        const row = data.subarray(k * size, (k + 1) * size); // a view: the chunk's array is kept, not copied
        rows.set(p, row);
        PIXEL_CACHE.put(keys.get(p)!, row, shape!);
      });
    }
    errors.finish();
    // Rows in the order of the paths asked for, the skipped ones left out.
    for (const p of unique) if (rows.has(p)) bank.index.set(p, bank.index.size); else bank.bad.add(p);
    if (shape !== null) {
      const size = shape.reduce((a, b) => a * b, 1), all = new Float32Array(bank.index.size * size);
      for (const [p, i] of bank.index) all.set(rows.get(p)!, i * size);
      bank.pixels = torch.tensor(all, { shape: [bank.index.size, ...shape] });
    }
    bank.skipped.push(...errors.report().records);
    bank.report = errors.summary();
    return bank;
  }

  /** Whether the image was loaded (false for one that was skipped or never asked for). */
  has(path: string): boolean { return this.index.has(path); }

  /** Paths of the images that could not be decoded. */
  skippedPaths(): ReadonlySet<string> { return this.bad; }

  /** The examples whose images all loaded, in order (drop the others before batching). */
  keep<T>(examples: readonly T[], imagesOf: (example: T) => readonly string[]): T[] {
    return examples.filter((e) => imagesOf(e).every((p) => this.index.has(p)));
  }

  /** One paragraph for logs: how many images were skipped, and the first of them. */
  summary(): string { return this.report; }

  /** Pixels of the given images, in order: [n, 3, H, W]. */
  get(paths: string[]): Tensor {
    const rows = paths.map((p) => {
      const i = this.index.get(p);
      if (i === undefined) throw new Error(this.bad.has(p) ? `image ${p} was skipped (it could not be decoded); drop the examples that use it (ImageBank.keep)` : `image ${p} was not loaded`);
      return i;
    });
    return torch.scope(() => this.pixels!.indexSelect(0, torch.tensor(rows, { dtype: "int64" })));
  }

  dispose(): void { this.pixels?.dispose(); }
}

/** Tokenizer and preprocessing files a model directory carries so that it is self-contained. */
export const COMPANION_FILES = ["tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"];

/** Copies tokenizer and preprocessor files from `from` dirs (first found wins) into a model dir. */
export function copyCompanions(modelDir: string, from: string[]): void {
  for (const f of COMPANION_FILES) {
    const src = from.map((d) => join(d, f)).find(existsSync);
    if (src === undefined) throw new Error(`no ${f} in ${from.join(" or ")}: a model directory needs it`);
    copyFileSync(src, join(modelDir, f));
  }
}

export function loadTokenizer(dir: string): Tokenizer {
  return Tokenizer.fromPretrained(dir);
}

/** Writes the resolved recipe beside the run's outputs. */
export function writeResolved(runDir: string, recipe: unknown): void {
  writeFileSync(join(runDir, "recipe.resolved.json"), JSON.stringify(recipe, null, 2) + "\n");
}

/** The done-marker of a stage: its outputs exist and were completed. */
export function isDone(dir: string): boolean {
  return existsSync(join(dir, "DONE"));
}
export function markDone(dir: string, info: Record<string, unknown>): void {
  writeFileSync(join(dir, "DONE"), JSON.stringify({ finished: new Date().toISOString(), ...info }, null, 2) + "\n");
}

/** A stage whose training was interrupted (SIGINT/SIGTERM) stops here; rerunning resumes it. */
export class StageInterrupted extends Error {
  constructor(runDir: string) {
    super(`training in ${runDir} was interrupted; its checkpoint is saved — run the same command again to resume`);
    this.name = "StageInterrupted";
  }
}
export function stopIfInterrupted(result: TrainResult, runDir: string): void {
  if (result.interrupted) throw new StageInterrupted(runDir);
}
