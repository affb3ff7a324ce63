// `mindseye experiment --config configs/paper/small.yaml`: the proposal's study on published models
// and real datasets, from one command.
//
//   steps (stage recipes, in dependency order) ─► eval: every finetune step (× its seeds) and every
//   zero-shot model on each eval task ─► results.json / results.md (accuracy with 95% intervals,
//   the paired comparisons the recipe lists)
//
// The recipe (validated once; a bad key is named with its dotted path):
//   name, out        the study's name and folder: every step's `out` lies inside it; evaluations go
//                    to out/eval/<model>/seed-<N>/<task>-<split>, markers to out/steps/
//   steps            {NAME: a latent-pretrain or finetune recipe, exactly as `mindseye train` takes
//                    it, written out or given as {recipe: FILE, set: {dotted.key: value}} (FILE
//                    relative to the study's file)}. A step whose `base` (latent-pretrain) or `model`
//                    (finetune) is another step's `out` (or its out/model) runs after that step and
//                    reads what it made; any other model is a directory or a Hugging Face id in the
//                    hub cache. A finetune step may list `seeds: [0, 1, 2]` instead of `seed`: one
//                    run per seed, in out/seed-<N>.
//   launch           {nproc_per_node, master_port}: every stage runs as `mindseye launch
//                    --nproc-per-node N -- train --config <its recipe>` (one process per device,
//                    the recipe written to out/steps/); absent: in this process, as `mindseye train`
//   eval             {harness, tasks: [{task, data, split?}], batch_size, limit, max_new_tokens,
//                    max_error_rate}: the tasks of eval/tasks.ts with their data roots, scored by
//                    evaluate() (eval/run.ts), the code `mindseye eval` runs
//   zero_shot        [{name, model}]: models evaluated as they are (a directory, a Hub id, or a
//                    step's output); absent: none
//   compare          [{a, b}]: paired differences a − b on every task (names of finetune steps or
//                    zero-shot models; two finetune steps compared must share their seeds)
//
// Each step — a stage run, an evaluation — is fingerprinted, skipped when done, and refused when
// made with other settings unless `force` (steps.ts, the machinery the world study uses).
// Intervals are the world study's: a hierarchical bootstrap over seeds and questions (eval/stats.ts).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { dirname, isAbsolute, join, normalize, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import { parseOverrides, setPath, validate } from "../config/recipe.js";
import { ConfigError } from "../config/errors.js";
import { LatentPretrainRecipe, FinetuneRecipe, runRecipe, StageInterrupted } from "../train/stages/index.js";
import { evaluate, HARNESSES } from "../eval/run.js";
import { getTask, resolveSplit } from "../eval/tasks.js";
import type { Harness } from "../eval/harness.js";
import { stepRunner, studySeconds, stepMarkerPath, modelToken, readPredictions, skippedLine, type PlannedStep } from "./steps.js";
import { writePaperReport, type PaperModel } from "./paper_report.js";
import type { EvalRun } from "./report.js";

const NAME = z.string().regex(/^[A-Za-z][\w.-]*$/, "a name of letters, digits, _ . - (it names the model's folders)");

export const PaperStudy = z.strictObject({
  name: z.string().default("paper"),
  /** The study folder: every step's out lies inside it; evaluations, markers and the results go here. */
  out: z.string(),
  /** Stage recipes by name, each validated by its stage's schema (below). */
  steps: z.record(z.string(), z.record(z.string(), z.unknown())).refine((s) => Object.keys(s).length > 0, "list at least one step"),
  eval: z.strictObject({
    /** Whose prompts and scoring; the finetune steps train with the same (their `harness`). */
    harness: z.enum(HARNESSES as [Harness, ...Harness[]]).default("lmms-eval"),
    /** Each task with its data root (as `mindseye eval --data` takes it) and split (absent: the task's default). */
    tasks: z.array(z.strictObject({ task: z.string(), data: z.string(), split: z.string().optional() })).min(1),
    batch_size: z.number().int().positive().default(16),
    /** Only the first `limit` questions of each task (null: all). */
    limit: z.number().int().positive().nullable().default(null),
    /** New tokens per answer (absent: the harness's, capped as eval/run.ts says). */
    max_new_tokens: z.number().int().positive().optional(),
    max_error_rate: z.number().min(0).max(1).default(0.01),
  }),
  /** Each stage as `mindseye launch --nproc-per-node N -- train` (absent: in this process). */
  launch: z.strictObject({
    nproc_per_node: z.number().int().positive(),
    /** The port of rank 0's TCPStore (torchrun's default). */
    master_port: z.number().int().min(1).max(65535).default(29500),
  }).optional(),
  zero_shot: z.array(z.strictObject({ name: NAME, model: z.string().min(1) })).default([]),
  compare: z.array(z.strictObject({ a: z.string(), b: z.string() })).default([]),
});
export type PaperStudy = z.output<typeof PaperStudy>;

const STEP_STAGES = { "latent-pretrain": LatentPretrainRecipe, finetune: FinetuneRecipe.extend({ seeds: z.array(z.number().int().min(0)).min(1).optional() }) } as const;

/** One step of the study, resolved: its recipe, its seeds (finetune; else its one seed) and the step it reads. */
export interface PaperStep {
  name: string;
  recipe: LatentPretrainRecipe | FinetuneRecipe;
  /** Finetune steps listing `seeds`: one run each, in out/seed-N; otherwise null (one run, in out). */
  seeds: number[] | null;
  /** The model it starts from (base or model, as written). */
  reads: string;
  /** The step whose output that is, or null (a directory or Hub id). */
  after: string | null;
}

/** A model the study evaluates: a finetune step's runs, or a zero-shot model. */
export interface EvaluatedModel { name: string; kind: "finetune" | "zero-shot"; model: string; after: string | null; seeds: number[] | null; fraction: number | null }

export interface ResolvedPaperStudy { study: PaperStudy; steps: PaperStep[]; models: EvaluatedModel[] }

/** Whether a recipe file is a paper study (a `steps:` map) rather than a world study. */
export function isPaperStudy(path: string): boolean {
  return "steps" in readData(path);
}

function readData(path: string): Record<string, unknown> {
  let data: unknown;
  try {
    // merge: small.yaml's finetune steps share their settings through `<<: *finetune`.
    data = parseYaml(readFileSync(path, "utf8"), { merge: true }) ?? {};
  } catch (e) {
    throw new ConfigError(`${path}: cannot read the recipe (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) throw new ConfigError(`${path}: a recipe is a YAML mapping of sections`);
  return data as Record<string, unknown>;
}

/**
 * Reads a paper study with `--set` overrides (e.g. `steps.qwen2_5_vl_3b_latent.train.steps=10`,
 * `eval.limit=100`) and validates it whole, before anything runs.
 * ```ts
 * const s = loadPaperStudy("configs/paper/small.yaml", ["eval.limit=100"]);
 * s.steps.map((st) => st.name);   // in the order they run
 * ```
 */
export function loadPaperStudy(path: string, overrides: string[] = []): ResolvedPaperStudy {
  const data = readData(path);
  expandReferences(data, path);
  for (const [key, value] of parseOverrides(overrides)) setPath(data as Parameters<typeof setPath>[0], key, value);
  return resolvePaperStudy(validate(PaperStudy, data, path), path);
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const DOTTED = /^[A-Za-z_]\w*(\.\w+)*$/;

/**
 * Steps given as `{recipe: FILE, set: {dotted.key: value}}` replaced by the stage recipe in FILE
 * (relative to the study's file) with `set` applied, so that --set and validation see one recipe.
 */
function expandReferences(data: Record<string, unknown>, path: string): void {
  if (!isMap(data.steps)) return; // validation names it
  for (const [name, step] of Object.entries(data.steps)) {
    if (!isMap(step) || !("recipe" in step)) continue;
    const where = `${path} steps.${name}`;
    const extra = Object.keys(step).filter((k) => k !== "recipe" && k !== "set");
    if (extra.length > 0) throw new ConfigError(`${where}: a step given by recipe takes only set beside it (set: {${extra[0]}: …}), not ${extra.join(", ")}`);
    if (typeof step.recipe !== "string") throw new ConfigError(`${where}.recipe: a stage recipe file (relative to ${path}), got ${JSON.stringify(step.recipe)}`);
    const recipe = readData(resolve(dirname(path), step.recipe));
    const set = step.set ?? {};
    if (!isMap(set)) throw new ConfigError(`${where}.set: a mapping of dotted keys to values (set: {train.steps: 100}), got ${JSON.stringify(set)}`);
    for (const [key, value] of Object.entries(set)) {
      if (!DOTTED.test(key)) throw new ConfigError(`${where}.set: "${key}" is not a dotted key of the recipe (e.g. train.steps)`);
      setPath(recipe as Parameters<typeof setPath>[0], key.split("."), value as Parameters<typeof setPath>[2]);
    }
    data.steps[name] = recipe;
  }
}

const inside = (dir: string, path: string) => {
  const r = relative(dir, path);
  return r !== "" && !r.startsWith("..") && !isAbsolute(r);
};

/** The study's steps validated by their stages' schemas and put in the order they run; its models and comparisons checked. */
export function resolvePaperStudy(study: PaperStudy, source = "the paper study"): ResolvedPaperStudy {
  const steps: PaperStep[] = [];
  const outs = new Map<string, string>(); // normalised step out -> step name
  for (const [name, raw] of Object.entries(study.steps)) {
    const where = `${source} steps.${name}`;
    if (!NAME.safeParse(name).success) throw new ConfigError(`${where}: a step name is letters, digits, _ . - (it names the step's folders)`);
    const schema = STEP_STAGES[raw.stage as keyof typeof STEP_STAGES];
    if (schema === undefined) throw new ConfigError(`${where}.stage: must be one of ${Object.keys(STEP_STAGES).join(", ")} (a paper study runs published models on real data), got ${JSON.stringify(raw.stage)}`);
    if ("seeds" in raw && "seed" in raw) throw new ConfigError(`${where}: give seed or seeds, not both`);
    const parsed = validate(schema, raw, where);
    const { seeds, ...recipe } = "seeds" in parsed ? parsed : { ...parsed, seeds: undefined };
    const out = normalize(recipe.out);
    if (!inside(study.out, out)) throw new ConfigError(`${where}.out: ${recipe.out} does not lie inside the study folder out (${study.out}); every step writes under it`);
    for (const reserved of ["eval", "steps"]) {
      const r = join(study.out, reserved);
      if (out === normalize(r) || inside(r, out)) throw new ConfigError(`${where}.out: ${recipe.out} lies in ${r}, which holds the study's ${reserved === "eval" ? "evaluations" : "step markers"}; choose another folder`);
    }
    for (const [other, name2] of outs) {
      if (other === out || inside(other, out) || inside(out, other)) throw new ConfigError(`${where}.out: ${recipe.out} ${other === out ? "is" : "overlaps"} the out of steps.${name2}; every step needs its own folder`);
    }
    outs.set(out, name);
    steps.push({ name, recipe: recipe as LatentPretrainRecipe | FinetuneRecipe, seeds: seeds ?? null, reads: recipe.stage === "finetune" ? recipe.model : (recipe as LatentPretrainRecipe).base, after: null });
  }
  const byName = new Map(steps.map((s) => [s.name, s]));
  /** The step whose output `ref` is (its out, or out/model), or null. */
  const producer = (ref: string, where: string): string | null => {
    const r = normalize(ref);
    for (const s of steps) {
      const out = normalize(s.recipe.out);
      if (r !== out && r !== join(out, "model")) continue;
      if (s.seeds !== null) throw new ConfigError(`${where}: ${ref} is the output of steps.${s.name}, which runs several seeds (in out/seed-N); a step that others read runs one (seed: N)`);
      return s.name;
    }
    return null;
  };
  for (const s of steps) s.after = producer(s.reads, `${source} steps.${s.name}.${s.recipe.stage === "finetune" ? "model" : "base"}`);

  // Dependency order: a step runs once the step it reads has; otherwise in the order written.
  const ordered: PaperStep[] = [];
  const placed = new Set<string>();
  while (ordered.length < steps.length) {
    const next = steps.find((s) => !placed.has(s.name) && (s.after === null || placed.has(s.after)));
    if (next === undefined) {
      const left = steps.filter((s) => !placed.has(s.name));
      const cycle = left.filter((s) => left.some((t) => t.after === s.name)).map((s) => `steps.${s.name} reads steps.${s.after}`);
      throw new ConfigError(`${source}: the steps read each other in a cycle (${cycle.join("; ")}); no order runs them`);
    }
    ordered.push(next);
    placed.add(next.name);
  }

  // Every finetune step trains the prompts it will be scored with.
  for (const s of steps) {
    if (s.recipe.stage === "finetune" && s.recipe.harness !== study.eval.harness) {
      throw new ConfigError(`${source} steps.${s.name}.harness: ${s.recipe.harness} prompts are trained, but eval.harness is ${study.eval.harness}; fine-tune with the harness the study scores`);
    }
  }
  for (const [i, t] of study.eval.tasks.entries()) {
    try {
      resolveSplit(getTask(t.task), t.split);
    } catch (e) {
      throw new ConfigError(`${source} eval.tasks.${i}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  const models: EvaluatedModel[] = steps.filter((s) => s.recipe.stage === "finetune").map((s) => ({
    name: s.name, kind: "finetune" as const, model: s.reads, after: s.name, seeds: s.seeds ?? [s.recipe.seed], fraction: (s.recipe as FinetuneRecipe).fraction,
  }));
  for (const [i, z0] of study.zero_shot.entries()) {
    if (byName.has(z0.name) || models.some((m) => m.name === z0.name)) throw new ConfigError(`${source} zero_shot.${i}.name: "${z0.name}" is taken by a step or another zero-shot model; rename it`);
    models.push({ name: z0.name, kind: "zero-shot", model: z0.model, after: producer(z0.model, `${source} zero_shot.${i}.model`), seeds: null, fraction: null });
  }
  const evaluated = new Map(models.map((m) => [m.name, m]));
  for (const [i, c] of study.compare.entries()) {
    for (const side of ["a", "b"] as const) {
      if (!evaluated.has(c[side])) {
        const what = byName.has(c[side]) ? ` (steps.${c[side]} is a latent-pretrain step; list its model under zero_shot to evaluate it)` : "";
        throw new ConfigError(`${source} compare.${i}.${side}: "${c[side]}" is not an evaluated model${what}; evaluated: ${[...evaluated.keys()].join(", ")}`);
      }
    }
    const [a, b] = [evaluated.get(c.a)!, evaluated.get(c.b)!];
    if (a.seeds && b.seeds && JSON.stringify([...a.seeds].sort()) !== JSON.stringify([...b.seeds].sort())) {
      throw new ConfigError(`${source} compare.${i}: ${c.a} (seeds ${JSON.stringify(a.seeds)}) and ${c.b} (seeds ${JSON.stringify(b.seeds)}) are fine-tuned with other seeds; a paired comparison matches seeds`);
    }
  }
  return { study, steps: ordered, models };
}

/**
 * The data paths of the steps and the evaluation that do not exist: checked before anything
 * runs, so a missing evaluation set is not found after the training is done.
 */
export function missingData(r: ResolvedPaperStudy): string[] {
  const paths: [string, string][] = r.study.eval.tasks.map((t, i) => [`eval.tasks.${i}.data`, t.data]);
  for (const s of r.steps) {
    const where = `steps.${s.name}`;
    if (s.recipe.stage === "finetune") (s.recipe.datasets ?? []).forEach((d, i) => paths.push([`${where}.datasets.${i}.data`, d.data]));
    else {
      // A caption dataset's paths are its string fields (annotations, images, tsv, metadata, shards).
      (s.recipe.captions ?? []).forEach((c, i) => {
        for (const [k, v] of Object.entries(c)) {
          if (k === "format") continue;
          for (const p of typeof v === "string" ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []) paths.push([`${where}.captions.${i}.${k}`, p]);
        }
      });
    }
    if (s.recipe.world !== undefined) paths.push([`${where}.world`, s.recipe.world]);
  }
  return paths.filter(([, p]) => !existsSync(p)).map(([key, p]) => `${key}: ${p} does not exist`);
}

export interface PaperResult { dir: string; markdown: string; evaluations: number }

/** The study, run: each step skipped when done, refused when changed (unless force); then the report. */
export async function runPaperStudy(r: ResolvedPaperStudy, opts: { log?: (line: string) => void; quiet?: boolean; force?: boolean } = {}): Promise<PaperResult> {
  return (await drivePaper(r, { log: opts.log ?? ((l: string) => console.log(l)), quiet: opts.quiet ?? true, force: opts.force ?? false, plan: null }))!;
}

/** Every step of the study in order with what a run would do to it; nothing runs or is written. */
export async function planPaperStudy(r: ResolvedPaperStudy): Promise<PlannedStep[]> {
  const plan: PlannedStep[] = [];
  await drivePaper(r, { log: () => {}, quiet: true, force: false, plan });
  return plan;
}

/** One trained (or given) model: its directory, seed and token. */
interface ModelRun { seed: number; dir: string; token: string }

async function drivePaper(r: ResolvedPaperStudy, opts: { log: (line: string) => void; quiet: boolean; force: boolean; plan: PlannedStep[] | null }): Promise<PaperResult | null> {
  const { study, steps, models } = r;
  const { log, quiet, plan } = opts;
  const dir = study.out;
  const t0 = performance.now();
  // The resolved settings describe the results: written for a new study, and again when a run finishes.
  const resolved = join(dir, "study.resolved.json");
  if (!plan) {
    const missing = missingData(r);
    if (missing.length > 0) throw new ConfigError(`the study reads data that is not there (paths relative to ${process.cwd()}):\n${missing.map((m) => `  ${m}`).join("\n")}`);
    mkdirSync(dir, { recursive: true });
    if (!existsSync(resolved)) writeFileSync(resolved, JSON.stringify(study, null, 2) + "\n");
  }
  const step = stepRunner({ dir, log, force: opts.force, plan, elsewhere: "write the changed step to another folder inside the study's (--set steps.<name>.out=…, and the steps that read it)" });

  // 1. The stages, in dependency order, through the entry point `mindseye train` uses.
  const made = new Map<string, ModelRun[]>();
  const tokenOf = (ref: string, after: string | null, where: string): string => (after === null ? modelToken(ref, where).token : made.get(after)![0]!.token);
  for (const s of steps) {
    const input = tokenOf(s.reads, s.after, `steps.${s.name}`);
    const runs: ModelRun[] = [];
    for (const seed of s.seeds ?? [s.recipe.seed]) {
      const out = s.seeds === null ? s.recipe.out : join(s.recipe.out, `seed-${seed}`);
      const recipe = { ...s.recipe, seed, out };
      const what = `${s.recipe.stage} ${s.name}${s.seeds === null ? "" : `, seed ${seed}`}`;
      // Ranks multiply the global batch (batch_size is per rank): they are part of the settings.
      const settings = study.launch === undefined ? recipe : { ...recipe, ranks: study.launch.nproc_per_node };
      const token = await step(s.recipe.stage, what, out, settings, [input], () => (study.launch === undefined
        ? runRecipe(recipe, { quiet })
        : runLaunched(recipe, stepMarkerPath(dir, out).replace(/\.json$/, ".recipe.json"), study.launch, quiet, what)));
      runs.push({ seed, dir: join(out, "model"), token });
    }
    made.set(s.name, runs);
  }

  // 2. Every finetuned (or zero-shot) model on every task, with the code `mindseye eval` runs.
  const e = study.eval;
  const evalSettings = { harness: e.harness, batch_size: e.batch_size, limit: e.limit, max_new_tokens: e.max_new_tokens ?? null, max_error_rate: e.max_error_rate };
  const runs: EvalRun[] = [];
  const skips: string[] = [];
  for (const m of models) {
    const trained: ModelRun[] = m.kind === "finetune" ? made.get(m.name)!
      : [{ seed: 0, dir: m.model, token: tokenOf(m.model, m.after, `zero_shot: ${m.name}`) }];
    for (const run of trained) {
      for (const t of e.tasks) {
        const split = resolveSplit(getTask(t.task), t.split);
        const out = join(dir, "eval", m.name, m.kind === "finetune" ? `seed-${run.seed}` : "", `${t.task}-${split}`);
        const what = `eval ${m.name}${m.kind === "finetune" ? ` seed ${run.seed}` : ""} ${t.task}/${split}`;
        await step("eval", what, out, [evalSettings, t.task, split, t.data], [run.token], () => evaluate({
          modelDir: run.dir, task: t.task, split, dataDir: t.data, out, harness: e.harness, batchSize: e.batch_size, maxErrorRate: e.max_error_rate, quiet,
          ...(e.limit !== null ? { limit: e.limit } : {}), ...(e.max_new_tokens !== undefined ? { maxNewTokens: e.max_new_tokens } : {}),
        }));
        if (plan) continue;
        runs.push({ arm: m.name, fraction: m.fraction ?? 0, seed: run.seed, task: `${t.task}/${split}`, ...readPredictions(join(out, "predictions.jsonl")) });
        const skipped = skippedLine(what, join(out, "results.json"));
        if (skipped !== null) skips.push(skipped);
      }
    }
  }
  if (plan) return null;

  // 3. The report.
  const described: PaperModel[] = models.map((m) => ({ name: m.name, kind: m.kind, model: m.model, seeds: m.seeds, fraction: m.fraction }));
  const { markdown } = writePaperReport(dir, runs, {
    name: study.name, harness: e.harness, tasks: e.tasks.map((t) => ({ task: t.task, split: resolveSplit(getTask(t.task), t.split), data: t.data })), models: described, compare: study.compare, skipped: skips, seconds: studySeconds(dir, step, (performance.now() - t0) / 1000),
  });
  writeFileSync(resolved, JSON.stringify(study, null, 2) + "\n");
  log(`study finished in ${((performance.now() - t0) / 1000).toFixed(0)} s: ${runs.length} evaluations`);
  return { dir, markdown, evaluations: runs.length };
}

const MAIN = fileURLToPath(new URL("../cli/main.js", import.meta.url));
const STOPS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * One stage as `mindseye launch --nproc-per-node N -- train --config <recipe>`: its recipe written
 * to `recipePath`, one process per device. This process's stop signals are passed on (launch
 * forwards one to every rank, which saves a checkpoint and stops); a stopped stage throws
 * StageInterrupted with the exit code set, a failed one names the command.
 */
async function runLaunched(recipe: LatentPretrainRecipe | FinetuneRecipe, recipePath: string, l: NonNullable<PaperStudy["launch"]>, quiet: boolean, what: string): Promise<void> {
  mkdirSync(dirname(recipePath), { recursive: true });
  writeFileSync(recipePath, JSON.stringify(recipe, null, 2) + "\n");
  const args = ["launch", "--nproc-per-node", String(l.nproc_per_node), "--master-port", String(l.master_port), "--", "train", "--config", recipePath, ...(quiet ? ["--quiet"] : [])];
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: "inherit" });
  const pass = (sig: NodeJS.Signals) => { child.kill(sig); };
  for (const sig of STOPS) process.on(sig, pass);
  const code = await new Promise<number>((resolve) => {
    child.on("error", () => resolve(1));
    child.on("close", (c, signal) => resolve(c ?? (signal !== null ? 128 + osConstants.signals[signal] : 1)));
  });
  for (const sig of STOPS) process.off(sig, pass);
  if (STOPS.some((sig) => code === 128 + osConstants.signals[sig])) {
    process.exitCode = code;
    throw new StageInterrupted(recipe.out);
  }
  if (code !== 0) throw new Error(`${what}: \`mindseye ${args.join(" ")}\` exited with code ${code} (its output is above)`);
}
