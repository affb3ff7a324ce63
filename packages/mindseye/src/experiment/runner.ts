// `mindseye experiment --config configs/demo.yaml`: the study of the proposal from one command.
//
//   world → world-encoder → vlm-base ─┬─────────────────────────────── baseline ─┐
//                                     ├─ latent-pretrain (λ_sim = λ_align = 0) ─ control ─┼→ finetune × fraction × seed → eval
//                                     └─ latent-pretrain (full loss) ─────────── latent ──┘
//   + the blind control: each arm's largest-fraction models evaluated with shuffled images
//   + finetune.instruct: an instruction phase per arm × seed on whole task families, before the
//     fine-tunes at each fraction (finetune/<arm>/instruct/seed-<s>)
//   + benchmark_world: the fine-tunes at each fraction and the evaluations on a world of their own
//     (benchmark-world/), apart from the one the stages before them train on
//   + replicate (pretrain | base): each seed runs its own caption stages (and its own base VLM), so
//     that the intervals over seeds count their variance; the study seed's stay in stages/
//   + ablations: cells of the latent arm with some latent-pretraining keys changed (a full product
//     `grids` or named `variants`), each pre-trained from the same base VLM on a target cache of its
//     pooling (stages/targets/<pool>, shared by the cells that pool alike), fine-tuned at the
//     study's (or the section's) fractions and seeds, and evaluated like an arm named after the cell
//
// `planStudy` lists every step with what a run would do to it (skip, run, or stop on a change)
// without running or writing anything.
//
// Every step (steps.ts) writes its outputs under the study folder and a marker (steps/<its folder>.json)
// holding the fingerprint of the settings that made it and of the steps it read. A finished step whose
// fingerprint still matches is skipped, so an interrupted study resumes where it stopped; an
// unfinished one resumes (training runs from their checkpoints). A step made with other
// settings — or from an upstream step that was redone — is never reused silently: the study
// stops and names it, and `force` redoes it and everything after it. The report
// (results.json / .csv / .md) is rewritten from the evaluations.
//
// A recipe of real-model steps (configs/paper/small.yaml: `steps:`) is the paper study, paper.ts.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { loadRecipe, setPath, validate } from "../config/recipe.js";
import { ConfigError } from "../config/errors.js";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { runWorldEncoder, runVlmBase, WorldEncoderRecipe, VlmBaseRecipe, LatentPretrainRecipe, FinetuneRecipe } from "../train/stages/index.js";
import { TASK_FAMILIES } from "../train/stages/finetune.js";
import { checkReadout } from "../train/stages/latent_pretrain.js";
import { BASE_MIX_SETTINGS } from "../train/stages/vlm_base.js";
import type { RetrievalResults } from "../analysis/retrieval.js";
import { blindBaselines } from "./baselines.js";
import { parsePool, pooledCount } from "../objectives/index.js";
import { analyzeStudy } from "../analysis/study.js";
import { writeHtmlReport } from "./report_html.js";
import { StudyJobs } from "./jobs.js";
import { machineRecord } from "../util/environment.js";
import { stepRunner, studySeconds, studyMachines, modelToken, readPredictions, skippedLine, type PlannedStep, type StepKind } from "./steps.js";
import { writeReport, ARMS, type Baseline, type EvalRun, type RetrievalSummary, type AblationSummary, type CaptionLoss, type CaptionLosses } from "./report.js";
import { tInterval } from "../eval/stats.js";
import { readMetricsFile } from "../train/metrics.js";

const common = { stage: true, world: true, out: true, seed: true } as const;

/** The study's latent_pretrain section: the stage's recipe without what the study decides. */
// The study runs on the world with its own model family: real-dataset and published-family keys are not study settings.
const StudyLatentPretrain = LatentPretrainRecipe.omit({ ...common, encoder: true, base: true, targets: true, captions: true, vision_layer: true });
type StudyLatentPretrain = z.output<typeof StudyLatentPretrain>;

/**
 * The study's finetune section: the stage's recipe without what the study decides, and an optional
 * instruction phase before it.
 */
const StudyFinetune = FinetuneRecipe.omit({ ...common, model: true, fraction: true, datasets: true }).extend({
  /**
   * A first fine-tuning phase on all the training questions of the task families it names, on the
   * study's world, before the fine-tunes on the study's tasks at each fraction, as published VLMs
   * are instruction-tuned before they are fine-tuned on ScienceQA (configs/sqa.yaml: world_gqa,
   * then world_sqa). One run per arm × seed (finetune/<arm>/instruct/seed-<s>) that the arm's
   * fine-tunes at every fraction start from; it takes the section's harness and max_error_rate.
   * Absent: none.
   * ```yaml
   * instruct: { tasks: [gqa], train: { steps: 400, batch_size: 16, lr: 7.0e-4, warmup_steps: 10 } }
   * ```
   */
  instruct: FinetuneRecipe.pick({ question_types: true, task_sampling: true, train: true })
    .extend({ tasks: z.array(z.enum(TASK_FAMILIES)).min(1) }).strict().optional(),
});
type StudyFinetune = z.output<typeof StudyFinetune>;

const AblationValue = z.union([z.string(), z.number(), z.boolean(), z.null()]);
type AblationValue = z.output<typeof AblationValue>;

/**
 * Cells of the latent arm, each with some latent_pretrain keys (dotted: loss.lambda_sim, pool,
 * head.type, readout, …) set otherwise. A cell whose settings equal the latent arm's (or the text
 * control's, or an earlier cell's) is not run again: the report names what it equals.
 * ```yaml
 * ablations:
 *   grids: [{ loss.lambda_sim: [0.1, 0.5, 2] }]                    # latent[lambda_sim=0.1], …
 *   variants: [{ name: mirage, set: { readout: last_token, head.type: identity, pool: mean } }]
 *   fractions: [0.05]                                              # default: the study's
 * ```
 */
export const AblationsSection = z.strictObject({
  /** Full products: every combination of the values listed is one cell, named latent[key=value,…]. */
  grids: z.array(z.record(z.string(), z.array(AblationValue).min(1))).default([]),
  /** Named cells: the latent arm with `set` applied. */
  variants: z.array(z.strictObject({
    name: z.string().regex(/^[A-Za-z][\w.-]*$/, "a name of letters, digits, _ . - (it names the cell's folders)"),
    set: z.record(z.string(), AblationValue),
  })).default([]),
  /** The fractions each cell is fine-tuned at: a subset of the study's (null: all of them). */
  fractions: z.array(z.number().gt(0).max(1)).min(1).nullable().default(null),
  /** The seeds each cell is fine-tuned with: a subset of the study's (null: all of them). */
  seeds: z.array(z.number().int().min(0)).min(1).nullable().default(null),
}).default({ grids: [], variants: [], fractions: null, seeds: null });

/** One ablation cell: its arm name, folder name, the keys it sets and its resolved latent_pretrain. */
export interface AblationCell {
  name: string;
  folder: string;
  set: Record<string, AblationValue>;
  recipe: StudyLatentPretrain;
  /** The arm or earlier cell with exactly these settings (then the cell is not run), or null. */
  sameAs: string | null;
}

const DOTTED = /^[A-Za-z_]\w*(\.\w+)*$/;

/**
 * The two pretraining arms' caption next-token loss at their ends: the `ce` of each run's last 5
 * logged training steps (one logged step is one batch, too noisy alone), and latent − control as a
 * paired t-interval over those steps: both arms read the same captions in the same batches, so a
 * step's difference cancels how hard its batch was. Nothing when either run logged none.
 */
function captionLosses(controlRun: string, latentRun: string): { captionLoss?: CaptionLosses } {
  const end = (run: string): CaptionLoss | null => {
    const rows = readMetricsFile(join(run, "metrics.jsonl")).filter((m) => m.split === "train" && typeof m.ce === "number").slice(-5);
    const values = rows.map((m) => m.ce as number);
    return rows.length === 0 ? null : { mean: values.reduce((sum, v) => sum + v, 0) / values.length, steps: rows.map((m) => m.step), values };
  };
  const control = end(controlRun), latent = end(latentRun);
  if (!control || !latent) return {};
  const paired = control.steps.length === latent.steps.length && control.steps.every((s, i) => s === latent.steps[i]);
  return { captionLoss: { control, latent, ...(paired ? { difference: tInterval(latent.values.map((v, i) => v - control.values[i]!)) } : {}) } };
}

/** `make` called once per distinct arguments: a step that several readers ask for is scheduled once. */
function once<A extends unknown[], V>(make: (...args: A) => V): (...args: A) => V {
  const made = new Map<string, V>();
  return (...args) => {
    const key = JSON.stringify(args);
    if (!made.has(key)) made.set(key, make(...args));
    return made.get(key)!;
  };
}

/** A grid cell's name: latent[lambda_sim=0.5,pool=mean] (keys under loss. without the prefix). */
function gridCellName(set: Record<string, AblationValue>): string {
  return `latent[${Object.entries(set).map(([k, v]) => `${k.replace(/^loss\./, "")}=${String(v)}`).join(",")}]`;
}

/** Folder-safe form of a cell name: latent[lambda_sim=0.5] -> latent_lambda_sim-0.5. */
function cellFolder(name: string): string {
  return name.replace(/\[|,/g, "_").replace(/=/g, "-").replace(/[^\w.-]/g, "");
}

/** Every combination of the grid's values, in the order written (the last key varies fastest). */
function product(grid: Record<string, AblationValue[]>): Record<string, AblationValue>[] {
  return Object.entries(grid).reduce<Record<string, AblationValue>[]>(
    (cells, [key, values]) => cells.flatMap((cell) => values.map((v) => ({ ...cell, [key]: v }))), [{}]);
}

/**
 * The study's ablation cells, each validated as a latent_pretrain section (an unknown key or a
 * value the schema refuses is a ConfigError naming the cell and the key) and against the study's
 * world, encoder and LM (pooling, readout).
 */
export function resolveAblations(c: StudyConfig): AblationCell[] {
  const a = c.ablations;
  const specs = [
    ...a.grids.flatMap((grid, i) => {
      if (Object.keys(grid).length === 0) throw new ConfigError(`ablations.grids.${i}: an empty grid; list at least one key with its values`);
      return product(grid).map((set) => ({ name: gridCellName(set), set }));
    }),
    ...a.variants.map((v) => ({ name: v.name, set: v.set })),
  ];
  const key = (r: StudyLatentPretrain) => JSON.stringify({ ...r, readout: r.readout ?? "queries" });
  const seen = new Map<string, string>([
    [key(c.latent_pretrain), "latent"],
    [key({ ...c.latent_pretrain, loss: { ...c.latent_pretrain.loss, lambda_sim: 0, lambda_align: 0 } }), "control"],
  ]);
  const names = new Set<string>(ARMS), folders = new Set<string>(ARMS);
  const cells: AblationCell[] = [];
  for (const { name, set } of specs) {
    const where = `ablations: ${name}`;
    const folder = cellFolder(name);
    if (names.has(name) || folders.has(folder)) throw new ConfigError(`${where}: the name${names.has(name) ? "" : ` (folder ${folder})`} is taken by an arm or another cell; rename the variant`);
    names.add(name);
    folders.add(folder);
    if (Object.keys(set).length === 0) throw new ConfigError(`${where}: sets no key (set: {loss.lambda_sim: 0.5, …})`);
    const data = structuredClone(c.latent_pretrain) as unknown as Parameters<typeof setPath>[0];
    for (const [k, v] of Object.entries(set)) {
      if (!DOTTED.test(k)) throw new ConfigError(`${where}: "${k}" is not a dotted key of latent_pretrain (e.g. loss.lambda_sim)`);
      try {
        setPath(data, k.split("."), v);
      } catch (e) {
        throw new ConfigError(`${where}: latent_pretrain.${k}: ${(e instanceof Error ? e.message : String(e)).replace(/^--set [^:]*: /, "")}`);
      }
    }
    const recipe = validate(StudyLatentPretrain, data, `${where} (keys of latent_pretrain)`);
    checkLatentPretrain(c, recipe, `${where}: latent_pretrain`);
    const sameAs = seen.get(key(recipe)) ?? null;
    if (sameAs === null) seen.set(key(recipe), name);
    cells.push({ name, folder, set, recipe, sameAs });
  }
  for (const [what, sub, all] of [["fractions", a.fractions, c.fractions], ["seeds", a.seeds, c.seeds]] as const) {
    const extra = (sub ?? []).filter((x) => !(all as readonly number[]).includes(x));
    if (extra.length > 0) throw new ConfigError(`ablations.${what}: ${extra.join(", ")} not among the study's ${what} ${JSON.stringify(all)}; each cell is compared with the arms at the same ${what}`);
  }
  return cells;
}

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
    /**
     * Draws of each GQA question family per training scene (world/generate.ts gqaDraws; absent: 1).
     * Optional rather than defaulted: a default would change every finished study's world fingerprint.
     */
    gqa_draws: z.number().int().min(1).max(100).optional(),
  }),
  /**
   * A world of its own for the fine-tunes at each fraction and their evaluations, apart from the
   * world that the encoder, the base, the caption stages and the instruction phase train on, as
   * the proposal pretrains on COCO or CC3M captions and fine-tunes on GQA and ScienceQA: the
   * study world's other settings (size, latents, gqa_draws) with these scenes and seed. The seed
   * must differ from the study world's: worlds of one seed share their scenes under other splits,
   * so that test scenes of one would be training scenes of the other. Absent: the study's world.
   */
  benchmark_world: z.strictObject({ scenes: z.number().int().positive(), seed: z.number().int().min(0) }).optional(),
  /** Each stage's recipe without what the study decides (stage, world, out, seed, inputs). */
  world_encoder: WorldEncoderRecipe.omit(common),
  vlm_base: VlmBaseRecipe.omit({ ...common, encoder: true }),
  latent_pretrain: StudyLatentPretrain,
  finetune: StudyFinetune,
  fractions: z.array(z.number().gt(0).max(1)).min(1),
  seeds: z.array(z.number().int().min(0)).min(1),
  /**
   * The stages each seed trains for itself, so that the intervals count their variance:
   * finetune — only the fine-tunes; every model starts from the one base VLM and the one run of each
   * caption stage (and ablation cell) that the study's `seed` makes;
   * pretrain — each seed also runs its own caption stages, all from the study's base;
   * base — each seed also trains its own base VLM, its caption stages starting from it.
   * The study seed's stages stay in stages/, the others' go to stages/seed-<s>/; the world and its
   * encoder (a published frozen encoder's stand-in) are shared.
   */
  replicate: z.enum(["finetune", "pretrain", "base"]).default("finetune"),
  eval: z.strictObject({
    tasks: z.array(z.string()).min(1).default(["world_gqa", "world_sqa", "world_jigsaw"]),
    splits: z.array(z.string()).min(1).default(["test", "test_novel"]),
    limit: z.number().int().positive().nullable().default(null),
    batch_size: z.number().int().positive().default(32),
    /** Also evaluate each arm's largest-fraction models with images shuffled across questions (on the first split). */
    blind: z.boolean().default(true),
  }).default({ tasks: ["world_gqa", "world_sqa", "world_jigsaw"], splits: ["test", "test_novel"], limit: null, batch_size: 32, blind: true }),
  ablations: AblationsSection,
  /**
   * Published models fine-tuned and evaluated beside the arms under the study's settings
   * (fractions, seeds, finetune, eval, blind control): the proposal's LLaVA and InternVL2.5
   * baselines. Each is a model directory or a Hugging Face id in the local hub cache, of any
   * family models/family.ts loads; it is compared, paired, with the baseline and the latent arm.
   * Absent: none.
   */
  models: z.array(z.strictObject({
    name: z.string().regex(/^[a-z][a-z0-9_.-]*$/, "a lowercase name (letters, digits, _ . -), e.g. llava-1.5-7b"),
    model: z.string().min(1),
  })).optional(),
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
  checkLatentPretrain(c, c.latent_pretrain, "latent_pretrain");
  if (c.replicate !== "finetune" && !c.seeds.includes(c.seed)) {
    throw new ConfigError(`replicate: ${c.replicate}: the study's seed ${c.seed} is not among seeds ${JSON.stringify(c.seeds)}; its stages are the ones retrieval and the caption loss report, so list it in seeds or set seed to one of them`);
  }
  if (c.benchmark_world && c.benchmark_world.seed === c.world.seed) {
    throw new ConfigError(`benchmark_world.seed ${c.benchmark_world.seed} is world.seed: worlds of one seed share their scenes under other splits, so the benchmark's test scenes would be scenes the base and caption stages trained on; give benchmark_world another seed`);
  }
  const taken = new Set<string>([...ARMS, ...resolveAblations(c).map((cell) => cell.name)]);
  for (const [i, m] of (c.models ?? []).entries()) {
    if (taken.has(m.name)) throw new ConfigError(`models.${i}: the name "${m.name}" is taken by an arm, an ablation cell or another model; rename it`);
    taken.add(m.name);
  }
  return c;
}

/** A latent_pretrain section whose replay rehearses the study's own base mix: vlm_base's grounding settings. */
export function withBaseReplay(c: StudyConfig, lp: StudyLatentPretrain): StudyLatentPretrain {
  if (!lp.replay) return lp;
  const mix = Object.fromEntries(BASE_MIX_SETTINGS.filter((k) => c.vlm_base[k] !== undefined).map((k) => [k, c.vlm_base[k]]));
  return { ...lp, replay: { ...lp.replay, ...mix } };
}

/** A latent_pretrain section (the study's or a cell's) against the world, its encoder and the LM. */
function checkLatentPretrain(c: StudyConfig, lp: StudyLatentPretrain, where: string): void {
  const replay = lp.replay;
  if (replay && BASE_MIX_SETTINGS.some((k) => replay[k] !== undefined)) {
    throw new ConfigError(`${where}.replay: in a study the rehearsed mix is the study's base's (${BASE_MIX_SETTINGS.map((k) => `vlm_base.${k}`).join(", ")}); remove ${BASE_MIX_SETTINGS.map((k) => `replay.${k}`).join(" / ")}`);
  }
  if (lp.replay && !c.vlm_base.grounding) throw new ConfigError(`${where}.replay rehearses the base's grounding questions, and vlm_base.grounding is false; set it true or remove replay`);
  const grid = c.world.size / c.world_encoder.encoder.patch_size;
  let k: number;
  try {
    const pool = parsePool(lp.pool);
    // The world's encoder is SigLIP-style (world_encoder.ts): it has no class token.
    if (pool === "cls") throw new Error("pooling cls: the world's encoder has no class token (use mean or grid:K)");
    k = pooledCount(pool, grid * grid);
  } catch (e) {
    throw new ConfigError(`${where}.pool: ${e instanceof Error ? e.message : String(e)}`);
  }
  if ((lp.readout ?? "queries") === "queries" && k > c.world.latents) throw new ConfigError(`${where}.pool ${lp.pool} needs ${k} latent tokens but world.latents is ${c.world.latents}; raise world.latents to ${k}`);
  const side = Math.sqrt(k);
  if (lp.pool.startsWith("grid:") && side > grid) throw new ConfigError(`${where}.pool ${lp.pool} pools a ${grid}×${grid} patch grid into ${side}×${side} cells; use grid:${grid * grid} or fewer`);
  try {
    checkReadout(lp, k, c.vlm_base.lm.layers);
  } catch (e) {
    throw new ConfigError(`${where}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

export interface StudyResult { dir: string; markdown: string; evaluations: number; /** The self-contained report.html. */ report: string }

export { stepMarkerPath, type PlannedStep, type StepKind } from "./steps.js";

/**
 * Every step of the study in order, with what a run would do to it, from the markers in the
 * study folder; nothing runs and nothing is written. A step downstream of one that would run is
 * "changed" when it was made before (a run redoes it), "run" when it never was.
 * ```ts
 * const steps = await planStudy(loadStudy("configs/ablations.yaml"));
 * steps.filter((s) => s.status !== "done").length;   // steps a run would do
 * ```
 */
export async function planStudy(c: StudyConfig): Promise<PlannedStep[]> {
  const plan: PlannedStep[] = [];
  await drive(c, { log: () => {}, quiet: true, force: false, plan, jobs: 1 });
  return plan;
}

/** Seconds a plan takes at `seconds` per step of each kind (a step already done costs nothing). */
export function estimateSeconds(plan: readonly PlannedStep[], seconds: Readonly<Record<StepKind, number>>): number {
  return plan.reduce((total, s) => total + (s.status === "done" ? 0 : seconds[s.kind]), 0);
}

/** Runs the study; `jobs` steps at a time (default 1: all in this process, one after another; see jobs.ts). */
export async function runStudy(c: StudyConfig, opts: { log?: (line: string) => void; quiet?: boolean; force?: boolean; jobs?: number } = {}): Promise<StudyResult> {
  return (await drive(c, { log: opts.log ?? ((l: string) => console.log(l)), quiet: opts.quiet ?? true, force: opts.force ?? false, plan: null, jobs: opts.jobs ?? 1 }))!;
}

/** The study, run — or, with `plan`, only listed into it (then nothing runs and null is returned). */
async function drive(c: StudyConfig, opts: { log: (line: string) => void; quiet: boolean; force: boolean; plan: PlannedStep[] | null; jobs: number }): Promise<StudyResult | null> {
  checkStudy(c);
  const cells = resolveAblations(c);
  const { log, quiet, plan } = opts;
  const dir = c.out;
  // The resolved settings describe the results: written for a new study, and again when a run
  // finishes — never over finished results by a run that then stops on a changed step.
  const resolved = join(dir, "study.resolved.json");
  if (!plan) {
    mkdirSync(dir, { recursive: true });
    if (!existsSync(resolved)) writeFileSync(resolved, JSON.stringify(c, null, 2) + "\n");
  }
  const t0 = performance.now();
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;
  const step = stepRunner({ dir, log, force: opts.force, plan, machine: machineRecord() });

  // 1. The world, and the benchmark's if it has its own. Generation writes into an empty folder: a partial world is cleared first.
  const makeWorld = (settings: StudyConfig["world"], out: string, what: string) => step("world", what, out, settings, [], async () => {
    rmSync(out, { recursive: true, force: true });
    await generateWorld(resolveWorldOptions({ out, scenes: settings.scenes, seed: settings.seed, size: settings.size, latents: settings.latents, ...(settings.gqa_draws === undefined ? {} : { gqaDraws: settings.gqa_draws }), log: () => {} }));
  });
  const world = join(dir, "world");
  const worldToken = await makeWorld(c.world, world, `world: ${c.world.scenes} scenes`);
  const benchDir = join(dir, "benchmark-world");
  const bench = c.benchmark_world === undefined ? { dir: world, token: worldToken }
    : { dir: benchDir, token: await makeWorld({ ...c.world, ...c.benchmark_world }, benchDir, `benchmark world: ${c.benchmark_world.scenes} scenes, seed ${c.benchmark_world.seed}`) };

  // 2. The frozen encoder, the base VLM, and the two pretraining arms. The study's `seed` makes
  // them in stages/; with `replicate`, each other seed makes its own in stages/seed-<s>/ (the
  // encoder stays shared: it stands for a published frozen encoder).
  const stages = join(dir, "stages");
  const encoderRun = join(stages, "world-encoder"), encoder = join(encoderRun, "encoder");
  const encoderToken = await step("world-encoder", "stage 1: world-encoder", encoderRun, [c.world_encoder, c.seed], [worldToken], () =>
    runWorldEncoder(WorldEncoderRecipe.parse({ ...c.world_encoder, stage: "world-encoder", seed: c.seed, world, out: encoderRun }), { quiet }));
  const baseRun = join(stages, "vlm-base"), base = join(baseRun, "model");
  const baseToken = await step("vlm-base", "stage 2: vlm-base (captioning)", baseRun, [c.vlm_base, c.seed], [worldToken, encoderToken], () =>
    runVlmBase(VlmBaseRecipe.parse({ ...c.vlm_base, stage: "vlm-base", seed: c.seed, world, encoder, out: baseRun }), { quiet }));
  // From here steps run `opts.jobs` at a time (jobs.ts): each is a task that waits for the steps it reads.
  const jobs = new StudyJobs(plan ? 1 : opts.jobs);
  interface Made { dir: string; token: Promise<string> }
  /** The seed whose caption stages a seed's models start from: its own with replicate, else the study's. */
  const stageSeed = (seed: number) => (c.replicate === "finetune" ? c.seed : seed);
  const stagesOf = (seed: number) => (seed === c.seed ? stages : join(stages, `seed-${seed}`));
  const ofSeed = (what: string, seed: number) => (seed === c.seed ? what : `${what}, seed ${seed}`);
  /** The base VLM that a seed's models start from: the study's, or with replicate: base, the seed's own. */
  const baseOf = once((seed: number): Made => {
    if (c.replicate !== "base" || seed === c.seed) return { dir: base, token: Promise.resolve(baseToken) };
    const out = join(stagesOf(seed), "vlm-base"), what = ofSeed("stage 2: vlm-base (captioning)", seed);
    const recipe = VlmBaseRecipe.parse({ ...c.vlm_base, stage: "vlm-base", seed, world, encoder, out });
    return { dir: join(out, "model"), token: jobs.task(() => jobs.slot(what, () => step("vlm-base", what, out, [c.vlm_base, seed], [worldToken, encoderToken], () => jobs.run({ kind: "train", recipe, quiet }, what)))) };
  });
  // The caches of the encoder's pooled features of the training images that the ablation cells and
  // the other seeds' latent arms read: one per pooling (stages/targets/<pool>), made once by its own step.
  const targetCaches = new Map<string, Made>();
  const sharedTargets = (pool: string): Made => {
    if (!targetCaches.has(pool)) {
      const cache = join(stages, "targets", pool.replace(":", "")), what = `targets: the encoder's ${pool} features of the training images`;
      targetCaches.set(pool, { dir: cache, token: jobs.task(() => jobs.slot(what, () => step("targets", what, cache, pool, [worldToken, encoderToken], async () => {
        rmSync(cache, { recursive: true, force: true });
        await jobs.run({ kind: "targets", options: { world, encoder, out: cache, pool, maxErrorRate: c.latent_pretrain.max_error_rate, quiet } }, what);
      }))) });
    }
    return targetCaches.get(pool)!;
  };
  /**
   * A caption stage of `seed` (an arm's or an ablation cell's) into `out`, reading the target cache
   * `targets`: awaited when made by a step (`token`), cleared and remade by this stage (`remake`), or
   * neither (the text control reads no targets).
   */
  const pretrain = (seed: number, lp: StudyLatentPretrain, out: string, what: string, settings: unknown, targets: { dir: string; token: Promise<string> | null; remake: boolean }): Made => {
    const from = baseOf(seed);
    const recipe = LatentPretrainRecipe.parse({ ...withBaseReplay(c, lp), stage: "latent-pretrain", seed, world, encoder, base: from.dir, targets: targets.dir, out });
    const token = jobs.task(async () => {
      const inputs = [worldToken, encoderToken, await from.token, ...(targets.token ? [await targets.token] : [])];
      return jobs.slot(what, () => step("latent-pretrain", what, out, settings, inputs, async () => {
        if (targets.remake) rmSync(targets.dir, { recursive: true, force: true });
        await jobs.run({ kind: "train", recipe, quiet }, what);
      }));
    });
    return { dir: join(out, "model"), token };
  };
  // The study seed's latent arm makes its own target cache (it belongs to this study's encoder and
  // world: a stale one is remade); the other seeds' latent arms read the shared one.
  const armTargets = join(stages, `targets-${c.latent_pretrain.pool.replace(":", "")}`);
  /** A seed's pretraining arm; without replicate, every seed's is the study seed's (stages/pretrain-<arm>). */
  const armOf = (arm: "control" | "latent", seed: number) => pretrainArm(arm, stageSeed(seed));
  const pretrainArm = once((arm: "control" | "latent", seed: number): Made => {
    const loss = arm === "control" ? { ...c.latent_pretrain.loss, lambda_sim: 0, lambda_align: 0 } : c.latent_pretrain.loss;
    const what = ofSeed(`stage 3: latent-pretrain, ${arm === "control" ? "text control (λ_sim = λ_align = 0)" : "latent (full loss)"}`, seed);
    const targets = arm === "control" ? { dir: armTargets, token: null, remake: false }
      : seed === c.seed ? { dir: armTargets, token: null, remake: true } : { ...sharedTargets(c.latent_pretrain.pool), remake: false };
    return pretrain(seed, { ...c.latent_pretrain, loss }, join(stagesOf(seed), `pretrain-${arm}`), what, [c.latent_pretrain, loss, seed], targets);
  });
  const pretrainTokens = { control: armOf("control", c.seed).token, latent: armOf("latent", c.seed).token };
  // Alignment: each test image retrieved among the others from its caption's imagined latents.
  // The latent arm's retrieval makes the gallery cache (the encoder's test features) the others read.
  const gallery = join(dir, "gallery");
  let galleryMade: Promise<unknown> = Promise.resolve();
  const retrievalOf = (what: string, modelDir: string, out: string, token: Promise<string>, keep: (r: RetrievalSummary) => void) => {
    const after = galleryMade;
    return jobs.task(async () => {
      const [t] = await Promise.all([token, after]);
      await jobs.slot(what, () => step("retrieval", what, out, "retrieval", [t], async () => {
        if (out === join(dir, "eval", "retrieval-test")) rmSync(gallery, { recursive: true, force: true });
        await jobs.run({ kind: "retrieval", options: { modelDir, dataDir: world, encoderDir: encoder, out, cacheRoot: gallery, quiet } }, what);
      }));
      if (plan) return;
      const r = JSON.parse(readFileSync(join(out, "results.json"), "utf8")) as RetrievalResults;
      keep({ n: r.n, recall: r.recall, chance: r.chance, medianRank: r.medianRank, galleryImages: r.gallery.images, ...(r.collapse ? { collapse: r.collapse } : {}) });
    });
  };
  const alignment: { retrieval?: RetrievalSummary } = {};
  galleryMade = retrievalOf("eval: world_retrieval of the latent arm (test captions)", join(stages, "pretrain-latent", "model"), join(dir, "eval", "retrieval-test"), pretrainTokens.latent,
    (r) => { alignment.retrieval = r; });
  // With replicate, every seed's base and caption stages are scheduled here, in the seeds' order,
  // and each other seed's latent arm is retrieved as the study seed's is (eval/retrieval-test-seed-<s>).
  const retrievalBySeed = new Map<number, RetrievalSummary>();
  if (c.replicate !== "finetune") {
    for (const seed of c.seeds) for (const arm of ["control", "latent"] as const) armOf(arm, seed);
    for (const seed of c.seeds.filter((s) => s !== c.seed)) {
      const latent = armOf("latent", seed);
      void retrievalOf(`eval: world_retrieval of the latent arm, seed ${seed} (test captions)`, latent.dir, join(dir, "eval", `retrieval-test-seed-${seed}`), latent.token,
        (r) => { retrievalBySeed.set(seed, r); });
    }
  }

  // 3. The ablation cells: each cell's pretraining (per seed with replicate) and its alignment.
  interface Start { name: string; folder: string; from: (seed: number) => Made; fractions: readonly number[]; seeds: readonly number[]; blind: boolean }
  const starts: Start[] = [
    { name: "baseline", folder: "baseline", from: baseOf, fractions: c.fractions, seeds: c.seeds, blind: true },
    ...(["control", "latent"] as const).map((arm) => ({ name: arm, folder: arm, from: (seed: number) => armOf(arm, seed), fractions: c.fractions, seeds: c.seeds, blind: true })),
  ];
  const ablations: AblationSummary[] = [];
  for (const cell of cells) {
    const readout = cell.recipe.readout ?? "queries";
    const summary: AblationSummary = { name: cell.name, folder: cell.folder, set: cell.set, readout, sameAs: cell.sameAs };
    ablations.push(summary);
    if (cell.sameAs !== null) {
      log(`[same] ablation ${cell.name}: the settings of ${cell.sameAs}`);
      continue;
    }
    const cellAt = once((seed: number): Made =>
      pretrain(seed, cell.recipe, join(stagesOf(seed), "ablations", cell.folder), ofSeed(`stage 3: latent-pretrain, ablation ${cell.name}`, seed),
        { latent_pretrain: cell.recipe, seed }, { ...sharedTargets(cell.recipe.pool), remake: false }));
    const cellOf = (seed: number) => cellAt(stageSeed(seed));
    const lead = cellOf(c.seed);
    // Retrieval reads the latent queries; the other readouts have none (their heads lie beside the model).
    if (readout === "queries") {
      void retrievalOf(`eval: world_retrieval of ablation ${cell.name} (test captions)`, lead.dir, join(dir, "eval", cell.folder, "retrieval-test"), lead.token, (r) => { summary.retrieval = r; });
    }
    const fractions = c.ablations.fractions ?? c.fractions, seeds = c.ablations.seeds ?? c.seeds;
    Object.assign(summary, { fractions, seeds });
    starts.push({ name: cell.name, folder: cell.folder, from: cellOf, fractions, seeds, blind: false });
  }

  // 3b. The published models the study names, fine-tuned and evaluated like the arms. A model's
  // identity is its resolved directory and its files' names, sizes and times: a model replaced
  // in place makes its fine-tunes "changed" (refused without --force), without hashing 16 GB.
  for (const m of c.models ?? []) {
    const { dir: modelDir, token } = modelToken(m.model, `models: ${m.name}`);
    const made = { dir: modelDir, token: Promise.resolve(token) };
    starts.push({ name: m.name, folder: join("models", m.name), from: () => made, fractions: c.fractions, seeds: c.seeds, blind: true });
  }

  // 4. Fine-tune every arm and cell × fraction × seed, and evaluate each (the arms' largest fraction
  // also blind): one task per fine-tuned model, holding a slot through its fine-tune and evaluations.
  const largest = Math.max(...c.fractions);
  const evalSettings = { ...c.eval, harness: c.finetune.harness };
  const models: Promise<{ runs: EvalRun[]; skips: string[] }>[] = [];
  const { instruct, ...finetuneSettings } = c.finetune;
  /** A start's instruction phase for a seed (finetune.instruct): the model its fine-tunes at every fraction start from. */
  const instructed = (s: Start, seed: number, phase: NonNullable<StudyFinetune["instruct"]>): Made => {
    const out = join(dir, "finetune", s.folder, "instruct", `seed-${seed}`);
    const what = `stage 4: instruction phase ${s.name} (${phase.tasks.join(", ")}), seed ${seed}`;
    const start = s.from(seed);
    const recipe = FinetuneRecipe.parse({ harness: c.finetune.harness, max_error_rate: c.finetune.max_error_rate, ...phase, stage: "finetune", seed, world, model: start.dir, fraction: 1, out });
    const token = jobs.task(async () => {
      const startToken = await start.token;
      return jobs.slot(what, () => step("finetune", what, out, [phase, c.finetune.harness, c.finetune.max_error_rate, seed], [worldToken, startToken], () => jobs.run({ kind: "train", recipe, quiet }, what)));
    });
    return { dir: join(out, "model"), token };
  };
  for (const s of starts) {
    const startOf = instruct === undefined ? s.from : once((seed: number) => instructed(s, seed, instruct));
    for (const fraction of s.fractions) {
      for (const seed of s.seeds) {
        const ftDir = join(dir, "finetune", s.folder, `fraction-${fraction}`, `seed-${seed}`);
        const ftWhat = `stage 4: finetune ${s.name}, fraction ${fraction}, seed ${seed}`;
        const start = startOf(seed);
        models.push(jobs.task(async () => {
          const startToken = await start.token;
          return jobs.slot(ftWhat, async () => {
            const recipe = FinetuneRecipe.parse({ ...finetuneSettings, stage: "finetune", seed, world: bench.dir, model: start.dir, fraction, out: ftDir });
            const ftToken = await step("finetune", ftWhat, ftDir, [c.finetune, fraction, seed], [bench.token, startToken], () => jobs.run({ kind: "train", recipe, quiet }, ftWhat));
            const runs: EvalRun[] = [], skips: string[] = [];
            for (const task of c.eval.tasks) {
              for (const [i, split] of c.eval.splits.entries()) {
                for (const blind of fraction === largest && s.blind && c.eval.blind && i === 0 ? [false, true] : [false]) {
                  const out = join(dir, blind ? "eval-blind" : "eval", s.folder, `fraction-${fraction}`, `seed-${seed}`, `${task}-${split}`);
                  const what = `eval ${s.name} f=${fraction} s=${seed} ${task}/${split}${blind ? " (shuffled images)" : ""}`;
                  await step("eval", what, out, [evalSettings, task, split, blind], [ftToken], () => jobs.run({
                    kind: "eval", options: {
                      modelDir: join(ftDir, "model"), task, split, dataDir: bench.dir, out, harness: c.finetune.harness, batchSize: c.eval.batch_size,
                      ...(c.eval.limit !== null ? { limit: c.eval.limit } : {}), ...(blind ? { shuffleImages: seed } : {}), quiet,
                    },
                  }, what));
                  if (plan) continue;
                  runs.push({ arm: s.name, fraction, seed, task: `${task}/${split}`, blind, ...readPredictions(join(out, "predictions.jsonl")) });
                  const skipped = skippedLine(`eval ${s.name} f=${fraction} s=${seed} ${task}/${split}`, join(out, "results.json"));
                  if (skipped !== null) skips.push(skipped);
                }
              }
            }
            return { runs, skips };
          });
        }));
      }
    }
  }
  try {
    await jobs.settle();
  } finally {
    jobs.close();
  }
  // Every evaluation in the study's order, whatever order they finished in.
  const evaluated = await Promise.all(models);
  const runs = evaluated.flatMap((m) => m.runs), skips = evaluated.flatMap((m) => m.skips);
  if (plan) return null;

  // 5. The report.
  const baselines: Record<string, Baseline> = {};
  for (const task of c.eval.tasks) Object.assign(baselines, await blindBaselines(bench.dir, task, c.eval.splits, c.eval.limit, c.finetune.harness));
  const { markdown } = writeReport(dir, runs, {
    name: c.name, seeds: c.seeds, replicate: c.replicate, fractions: c.fractions, harness: c.finetune.harness, tasks: c.eval.tasks, splits: c.eval.splits, limit: c.eval.limit,
    ...(instruct ? { instruct: { tasks: instruct.tasks, steps: instruct.train.steps } } : {}),
    ...(c.benchmark_world ? { benchmarkWorld: c.benchmark_world } : {}),
    baselines, skipped: skips,
    ...alignment,
    ...captionLosses(join(stages, "pretrain-control"), join(stages, "pretrain-latent")),
    ...(c.replicate === "finetune" ? {} : {
      stagesPerSeed: c.seeds.map((seed) => ({
        seed,
        ...(seed === c.seed ? alignment : retrievalBySeed.has(seed) ? { retrieval: retrievalBySeed.get(seed)! } : {}),
        ...captionLosses(join(stagesOf(seed), "pretrain-control"), join(stagesOf(seed), "pretrain-latent")),
      })),
    }),
    ...(ablations.length > 0 ? { ablations } : {}),
    ...(c.models && c.models.length > 0 ? { models: c.models } : {}),
    seconds: studySeconds(dir, step, (performance.now() - t0) / 1000),
    machines: studyMachines(dir),
  });
  writeFileSync(resolved, JSON.stringify(c, null, 2) + "\n");
  // The analysis (alignment, collapse, probes, clustering, correlations) reads results.json, and
  // report.html reads both: always redone, they take seconds and follow the evaluations.
  await analyzeStudy({ study: dir, log });
  const report = await writeHtmlReport(dir);
  log(`study finished in ${elapsed()}: ${runs.length} evaluations`);
  return { dir, markdown, evaluations: runs.length, report };
}
