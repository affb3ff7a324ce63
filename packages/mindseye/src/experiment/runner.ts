// `mindseye experiment --config configs/demo.yaml`: the study of the proposal from one command.
//
//   world → world-encoder → vlm-base ─┬─────────────────────────────── baseline ─┐
//                                     ├─ latent-pretrain (λ_sim = λ_align = 0) ─ control ─┼→ finetune × fraction × seed → eval
//                                     └─ latent-pretrain (full loss) ─────────── latent ──┘
//   + the blind control: each arm's largest-fraction models evaluated with shuffled images
//
// Every step writes its outputs under the study folder and a marker (steps/<its folder>.json)
// holding the fingerprint of the settings that made it and of the steps it read. A finished step whose
// fingerprint still matches is skipped, so an interrupted study resumes where it stopped; an
// unfinished one resumes (training runs from their checkpoints). A step made with other
// settings — or from an upstream step that was redone — is never reused silently: the study
// stops and names it, and `force` redoes it and everything after it. The report
// (results.json / .csv / .md) is rewritten from the evaluations.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { z } from "zod";
import { loadRecipe } from "../config/recipe.js";
import { ConfigError } from "../config/errors.js";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { runWorldEncoder, runVlmBase, runLatentPretrain, runFinetune, WorldEncoderRecipe, VlmBaseRecipe, LatentPretrainRecipe, FinetuneRecipe } from "../train/stages/index.js";
import { evaluate } from "../eval/run.js";
import { evaluateRetrieval, type RetrievalResults } from "../analysis/retrieval.js";
import { blindBaselines } from "./baselines.js";
import { parsePool, pooledCount } from "../objectives/index.js";
import { writeReport, ARMS, type Arm, type Baseline, type EvalRun } from "./report.js";

const common = { stage: true, world: true, out: true, seed: true } as const;

export const StudyConfig = z.strictObject({
  name: z.string().default("study"),
  /** The study folder: everything it makes goes here. */
  out: z.string(),
  seed: z.number().int().min(0).default(0),
  world: z.strictObject({
    scenes: z.number().int().positive(),
    seed: z.number().int().min(0).default(0),
    size: z.number().int().positive().default(48),
    latents: z.number().int().positive().default(16),
  }),
  /** Each stage's recipe without what the study decides (stage, world, out, seed, inputs). */
  world_encoder: WorldEncoderRecipe.omit(common),
  vlm_base: VlmBaseRecipe.omit({ ...common, encoder: true }),
  latent_pretrain: LatentPretrainRecipe.omit({ ...common, encoder: true, base: true, targets: true }),
  finetune: FinetuneRecipe.omit({ ...common, model: true, fraction: true }),
  fractions: z.array(z.number().gt(0).max(1)).min(1),
  seeds: z.array(z.number().int().min(0)).min(1),
  eval: z.strictObject({
    tasks: z.array(z.string()).min(1).default(["world_gqa", "world_sqa", "world_jigsaw"]),
    splits: z.array(z.string()).min(1).default(["test", "test_novel"]),
    limit: z.number().int().positive().nullable().default(null),
    batch_size: z.number().int().positive().default(32),
    /** Also evaluate each arm's largest-fraction models with images shuffled across questions (on the first split). */
    blind: z.boolean().default(true),
  }).default({ tasks: ["world_gqa", "world_sqa", "world_jigsaw"], splits: ["test", "test_novel"], limit: null, batch_size: 32, blind: true }),
});
export type StudyConfig = z.output<typeof StudyConfig>;

export function loadStudy(path: string, overrides: string[] = []): StudyConfig {
  return checkStudy(loadRecipe(path, StudyConfig, overrides));
}

/**
 * What the schemas cannot see: the settings that only clash across sections. Checked before
 * anything runs, so a bad pooling is not found after stages 1–2 have trained.
 */
export function checkStudy(c: StudyConfig): StudyConfig {
  const patch = c.world_encoder.encoder.patch_size;
  if (c.world.size % patch !== 0) throw new ConfigError(`world_encoder.encoder.patch_size ${patch} does not divide world.size ${c.world.size}`);
  let k: number;
  try {
    k = pooledCount(parsePool(c.latent_pretrain.pool), (c.world.size / patch) ** 2);
  } catch (e) {
    throw new ConfigError(`latent_pretrain.pool: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (k > c.world.latents) throw new ConfigError(`latent_pretrain.pool ${c.latent_pretrain.pool} needs ${k} latent tokens but world.latents is ${c.world.latents}; raise world.latents to ${k}`);
  const grid = c.world.size / patch, side = Math.sqrt(k);
  if (c.latent_pretrain.pool.startsWith("grid:") && side > grid) throw new ConfigError(`latent_pretrain.pool ${c.latent_pretrain.pool} pools a ${grid}×${grid} patch grid into ${side}×${side} cells; use grid:${grid * grid} or fewer`);
  return c;
}

export interface StudyResult { dir: string; markdown: string; evaluations: number }

/** What a study step records of itself, in STUDY/steps/<its output folder>.json. */
interface StepMarker { step: string; fingerprint: string; settings: unknown; complete: boolean; finished?: string }

const sha = (v: unknown) => createHash("sha256").update(JSON.stringify(v)).digest("hex").slice(0, 16);

/** The marker file of the step writing to `out`, inside study folder `dir`. */
export function stepMarkerPath(dir: string, out: string): string {
  return join(dir, "steps", `${relative(dir, out).split(sep).join("__")}.json`);
}

function readMarker(path: string): StepMarker | null {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as StepMarker;
  } catch {
    return null;
  }
}

/** Dotted keys whose values differ between two settings objects (for the message). */
function changedKeys(a: unknown, b: unknown, prefix = ""): string[] {
  if (JSON.stringify(a) === JSON.stringify(b)) return [];
  if (a && b && typeof a === "object" && typeof b === "object" && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => changedKeys((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k));
  }
  return [prefix || "(all)"];
}

export async function runStudy(c: StudyConfig, opts: { log?: (line: string) => void; quiet?: boolean; force?: boolean } = {}): Promise<StudyResult> {
  checkStudy(c);
  const log = opts.log ?? ((l: string) => console.log(l));
  const quiet = opts.quiet ?? true;
  const dir = c.out;
  mkdirSync(dir, { recursive: true });
  // The resolved settings describe the results: written for a new study, and again when a run
  // finishes — never over finished results by a run that then stops on a changed step.
  const resolved = join(dir, "study.resolved.json");
  if (!existsSync(resolved)) writeFileSync(resolved, JSON.stringify(c, null, 2) + "\n");
  const t0 = performance.now();
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;

  /**
   * Runs one step into `out` unless a finished one with the same fingerprint is there.
   * `settings` are what decide its output; `inputs` the tokens of the steps it reads. Returns
   * this step's token (its fingerprint and finish time: a redone step changes its readers').
   */
  const step = async (what: string, out: string, settings: unknown, inputs: string[], fn: () => Promise<unknown>): Promise<string> => {
    const fingerprint = sha({ settings, inputs });
    const markerPath = stepMarkerPath(dir, out);
    const marker = readMarker(markerPath);
    if (marker?.fingerprint === fingerprint && marker.complete) {
      log(`[skip] ${what} (done)`);
      return sha([fingerprint, marker.finished]);
    }
    if (existsSync(out) && readdirSync(out).length > 0 && marker?.fingerprint !== fingerprint) {
      const changed = marker === null ? [] : changedKeys(marker.settings, settings);
      const why = marker === null ? "holds outputs this study did not record"
        : changed.length > 0 ? `was made with other settings (changed: ${changed.join(", ")})`
          : "was made from earlier results of the steps it reads";
      if (!opts.force) {
        throw new ConfigError(`${what}: ${out} ${why}. Rerun with --force to redo it and every step after it, or give the study a new folder (--set out=…).`);
      }
      log(`[redo] ${what}: ${why}`);
      rmSync(out, { recursive: true, force: true });
    }
    const write = (m: StepMarker) => {
      mkdirSync(join(dir, "steps"), { recursive: true });
      writeFileSync(`${markerPath}.tmp`, JSON.stringify(m, null, 2) + "\n");
      renameSync(`${markerPath}.tmp`, markerPath);
    };
    write({ step: what, fingerprint, settings, complete: false });
    log(`[run ] ${what} …`);
    await fn();
    const finished = new Date().toISOString();
    write({ step: what, fingerprint, settings, complete: true, finished });
    log(`[done] ${what} (${elapsed()})`);
    return sha([fingerprint, finished]);
  };

  // 1. The world. Generation writes into an empty folder: a partial world is cleared first.
  const world = join(dir, "world");
  const worldToken = await step(`world: ${c.world.scenes} scenes`, world, c.world, [], async () => {
    rmSync(world, { recursive: true, force: true });
    await generateWorld(resolveWorldOptions({ out: world, scenes: c.world.scenes, seed: c.world.seed, size: c.world.size, latents: c.world.latents, log: () => {} }));
  });

  // 2. The frozen encoder, the base VLM, and the two pretraining arms.
  const stages = join(dir, "stages");
  const encoderRun = join(stages, "world-encoder"), encoder = join(encoderRun, "encoder");
  const encoderToken = await step("stage 1: world-encoder", encoderRun, [c.world_encoder, c.seed], [worldToken], () =>
    runWorldEncoder(WorldEncoderRecipe.parse({ ...c.world_encoder, stage: "world-encoder", seed: c.seed, world, out: encoderRun }), { quiet }));
  const baseRun = join(stages, "vlm-base"), base = join(baseRun, "model");
  const baseToken = await step("stage 2: vlm-base (captioning)", baseRun, [c.vlm_base, c.seed], [worldToken, encoderToken], () =>
    runVlmBase(VlmBaseRecipe.parse({ ...c.vlm_base, stage: "vlm-base", seed: c.seed, world, encoder, out: baseRun }), { quiet }));
  const targets = join(stages, `targets-${c.latent_pretrain.pool.replace(":", "")}`);
  const pretrainTokens = {} as Record<"control" | "latent", string>;
  for (const arm of ["control", "latent"] as const) {
    const loss = arm === "control" ? { ...c.latent_pretrain.loss, lambda_sim: 0, lambda_align: 0 } : c.latent_pretrain.loss;
    const recipe = LatentPretrainRecipe.parse({ ...c.latent_pretrain, loss, stage: "latent-pretrain", seed: c.seed, world, encoder, base, targets, out: join(stages, `pretrain-${arm}`) });
    pretrainTokens[arm] = await step(`stage 3: latent-pretrain, ${arm === "control" ? "text control (λ_sim = λ_align = 0)" : "latent (full loss)"}`, recipe.out,
      [c.latent_pretrain, loss, c.seed], [worldToken, encoderToken, baseToken], async () => {
        // The target cache belongs to this study's encoder and world: a stale one is remade.
        if (arm === "latent") rmSync(targets, { recursive: true, force: true });
        await runLatentPretrain(recipe, { quiet });
      });
  }
  // Alignment of the latent arm: retrieval of each test image from its imagined latents.
  const retrievalDir = join(dir, "eval", "retrieval-test");
  await step("eval: world_retrieval of the latent arm (test captions)", retrievalDir, "retrieval", [pretrainTokens.latent], async () => {
    rmSync(join(dir, "gallery"), { recursive: true, force: true });
    await evaluateRetrieval({ modelDir: join(stages, "pretrain-latent", "model"), dataDir: world, encoderDir: encoder, out: retrievalDir, cacheRoot: join(dir, "gallery"), quiet });
  });
  const retrieval = JSON.parse(readFileSync(join(retrievalDir, "results.json"), "utf8")) as RetrievalResults;

  const start: Record<Arm, { dir: string; token: string }> = {
    baseline: { dir: base, token: baseToken },
    control: { dir: join(stages, "pretrain-control", "model"), token: pretrainTokens.control },
    latent: { dir: join(stages, "pretrain-latent", "model"), token: pretrainTokens.latent },
  };

  // 3. Fine-tune every arm × fraction × seed, and evaluate each (the largest fraction also blind).
  const runs: EvalRun[] = [];
  const skips: string[] = []; // every evaluation's skipped records, for the report
  const largest = Math.max(...c.fractions);
  const evalSettings = { ...c.eval, harness: c.finetune.harness };
  for (const fraction of c.fractions) {
    for (const seed of c.seeds) {
      for (const arm of ARMS) {
        const ftDir = join(dir, "finetune", arm, `fraction-${fraction}`, `seed-${seed}`);
        const ftToken = await step(`stage 4: finetune ${arm}, fraction ${fraction}, seed ${seed}`, ftDir, [c.finetune, fraction, seed], [worldToken, start[arm].token], () =>
          runFinetune(FinetuneRecipe.parse({ ...c.finetune, stage: "finetune", seed, world, model: start[arm].dir, fraction, out: ftDir }), { quiet }));
        for (const task of c.eval.tasks) {
          for (const [i, split] of c.eval.splits.entries()) {
            for (const blind of fraction === largest && c.eval.blind && i === 0 ? [false, true] : [false]) {
              const out = join(dir, blind ? "eval-blind" : "eval", arm, `fraction-${fraction}`, `seed-${seed}`, `${task}-${split}`);
              await step(`eval ${arm} f=${fraction} s=${seed} ${task}/${split}${blind ? " (shuffled images)" : ""}`, out, [evalSettings, task, split, blind], [ftToken], () =>
                evaluate({
                  modelDir: join(ftDir, "model"), task, split, dataDir: world, out, harness: c.finetune.harness, batchSize: c.eval.batch_size,
                  ...(c.eval.limit !== null ? { limit: c.eval.limit } : {}), ...(blind ? { shuffleImages: seed } : {}), quiet,
                }));
              runs.push({ arm, fraction, seed, task: `${task}/${split}`, blind, ...readPredictions(join(out, "predictions.jsonl")) });
              const skipped = (JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as { skipped: { records: number; images: number; items: number } }).skipped;
              if (skipped.records + skipped.images + skipped.items > 0) skips.push(`eval ${arm} f=${fraction} s=${seed} ${task}/${split}: ${skipped.records} records, ${skipped.images} images, ${skipped.items} questions skipped`);
            }
          }
        }
      }
    }
  }

  // 4. The report.
  const baselines: Record<string, Baseline> = {};
  for (const task of c.eval.tasks) Object.assign(baselines, await blindBaselines(world, task, c.eval.splits, c.eval.limit, c.finetune.harness));
  const { markdown } = writeReport(dir, runs, {
    name: c.name, seeds: c.seeds, fractions: c.fractions, harness: c.finetune.harness, tasks: c.eval.tasks, splits: c.eval.splits, limit: c.eval.limit,
    baselines, skipped: skips,
    retrieval: {
      n: retrieval.n, recall: retrieval.recall, chance: retrieval.chance, medianRank: retrieval.medianRank, galleryImages: retrieval.gallery.images,
      ...(retrieval.collapse ? { collapse: retrieval.collapse } : {}),
    },
    seconds: (performance.now() - t0) / 1000,
  });
  writeFileSync(resolved, JSON.stringify(c, null, 2) + "\n");
  log(`study finished in ${elapsed()}: ${runs.length} evaluations`);
  return { dir, markdown, evaluations: runs.length };
}

/** An evaluation's per-question outcomes and answers (predictions.jsonl). */
function readPredictions(path: string): Pick<EvalRun, "outcomes" | "answers"> {
  const outcomes = new Map<string, boolean>();
  const answers: { type: string; prediction: string }[] = [];
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const p = JSON.parse(line) as { id: string; correct: boolean; type: string; prediction: string };
    outcomes.set(p.id, p.correct);
    answers.push({ type: p.type, prediction: p.prediction });
  }
  return { outcomes, answers };
}
