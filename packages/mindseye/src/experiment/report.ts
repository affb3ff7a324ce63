// The study's report: accuracy per arm × fraction × task, paired comparisons between arms,
// the controls that show whether the study can detect anything at all, the blind baselines, and
// how concentrated each model's answers are. Written as results.json / .csv / .md.
//
// Intervals (95%) are hierarchical bootstraps (eval/stats.ts): every resample draws training
// seeds with replacement and then questions with replacement, so they count the variance
// between seeds as well as the sampling of test questions. Comparisons and controls are paired:
// the same seeds (fine-tuning subset and order) and the same questions on both sides.
//
// results.json (users script against it; the README documents it):
//   cells[]        {arm, fraction, task: "task/split", seeds, accuracy: {mean, low, high, n}, perSeed[]}
//   comparisons[]  {a, b, fraction, task, difference: {mean, low, high, n}, perSeed[]}: latent − baseline,
//                  latent − control and control − baseline (what the captions alone do)
//   interactions[] {a, b, task, from, to, difference, perSeed[]}: each comparison at the largest fraction
//                  (`to`) minus the same at the smallest (`from`), paired: does it change with data?
//   controls[]     {kind: "fraction" | "blind", arm, task, difference, perSeed[], ...}
//                  fraction: largest fraction − smallest (`from`, `to`), the positive control;
//                  blind: accuracy with images shuffled across questions − with the right images
//                  (`fraction`, `accuracy` of the blind model), the control that the image is used
//   baselines      {"task/split": {chance, majority, textOnly, n}} blind predictors on the split
//   byType[]       {task, fraction, type, n, accuracy: {baseline, control, latent}, comparisons: [{b, difference,
//                  perSeed[]}]}: the arms on each question type's questions alone, latent − baseline and
//                  latent − control paired as above (where the latent arm gains or loses)
//   concentration[] {arm, fraction, seed, task, byType: {type: {answer, share}}, flagged[]}:
//                  each model's share of its most common answer per question type (flagged > 80%)
//   replicate      "finetune" | "pretrain" | "base": the stages each seed trained for itself, i.e. which
//                  variance the intervals count (runner.ts StudyConfig.replicate)
//   instruct       (studies with finetune.instruct) {tasks, steps}: the instruction phase every model
//                  went through on all of those families' training questions before its fraction
//   benchmarkWorld (studies with benchmark_world) {scenes, seed}: the world of the fine-tunes at each
//                  fraction and of the evaluations, apart from the one the earlier stages trained on
//   retrieval      the latent arm's alignment before fine-tuning (recall@k, median rank, collapse); with
//                  replicate, of the study seed's caption stage
//   captionLoss    {control, latent, difference?}: each pretraining stage's caption next-token loss at
//                  its end, {mean, steps[], values[]} (its last logged training steps, metrics.jsonl
//                  `ce`), and latent − control {mean, low, high, n}: a paired 95% t-interval over
//                  those steps (both arms read the same batches in the same order)
//   stagesPerSeed[] (replicate pretrain or base) {seed, retrieval?, captionLoss?}: each seed's own
//                  caption stages, as `retrieval` and `captionLoss` give the study seed's
//   ablations[]    (studies with an ablations section) {name, folder, set: {"loss.lambda_sim": 0.5, …},
//                  readout, sameAs, fractions?, seeds?, retrieval?}: each cell of the latent arm, the
//                  keys it changes, the arm it equals when its settings are the same (then not run),
//                  and its alignment (readout queries only). A run cell is an arm named `name` in
//                  cells[], concentration[], and comparisons[] as a = name, b = "baseline" and b = "latent".
//   machines       {machines: [{cpu, vector, cores, blas, libtorch, steps}], unrecorded}: what made the
//                  study's finished steps, by the steps' markers (steps.ts studyMachines)
//   seconds        the study's wall time across its sittings (steps.ts studySeconds)
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { hierarchicalBootstrap, type Interval } from "../eval/stats.js";
import type { StudyMachines } from "./steps.js";

export const ARMS = ["baseline", "control", "latent"] as const;
export type Arm = (typeof ARMS)[number];
const ARM_NAMES: Record<Arm, string> = { baseline: "baseline", control: "text control", latent: "latent" };

/** One evaluated model: which arm (or ablation cell), fraction, seed and task/split, and its per-question outcomes. */
export interface EvalRun {
  /** One of ARMS, or an ablation cell's name. */
  arm: string;
  fraction: number;
  seed: number;
  /** e.g. "world_gqa/test" */
  task: string;
  /** Evaluated with the images shuffled across questions (the blind control). */
  blind?: boolean;
  /** question id -> correct */
  outcomes: Map<string, boolean>;
  /** Each question's type and the model's answer (for answer concentration). */
  answers?: { type: string; prediction: string }[];
  /** question id -> its question type (for the per-type breakdown) */
  types?: Map<string, string>;
  /** question id -> its prompt and reference answer (to check that two studies asked the same questions) */
  questions?: Map<string, string>;
}

export interface Cell { arm: string; fraction: number; task: string; seeds: number; accuracy: Interval; perSeed: number[] }
export interface Comparison { a: string; b: Arm; fraction: number; task: string; difference: Interval; perSeed: number[] }
/** `arm`: one of ARMS, or a model the study names (its `models` section). */
export type Control =
  | { kind: "fraction"; arm: string; task: string; from: number; to: number; difference: Interval; perSeed: number[] }
  | { kind: "blind"; arm: string; task: string; fraction: number; accuracy: Interval; difference: Interval; perSeed: number[] };
/**
 * Whether a paired difference between two arms changes with the amount of data: (a − b at the
 * largest fraction `to`) − (a − b at the smallest `from`), the same seeds and questions throughout.
 * The proposal's "helps most where data are scarce" predicts latent − baseline's to be negative.
 */
export interface Interaction { a: string; b: Arm; task: string; from: number; to: number; difference: Interval; perSeed: number[] }
export interface Baseline { chance: number; majority: number; textOnly: number; n: number }
/** The arms on the questions of one type: each arm's accuracy and the latent arm's paired differences. */
export interface TypeBreakdown { task: string; fraction: number; type: string; n: number; accuracy: Partial<Record<Arm, Interval>>; comparisons: { b: Arm; difference: Interval; perSeed: number[] }[] }
export interface Concentration { arm: string; fraction: number; seed: number; task: string; byType: Record<string, { answer: string; share: number }>; flagged: string[] }

/** Share above which a model's most common answer to a question type is flagged. */
export const CONCENTRATION_FLAG = 0.8;

const isArm = (name: string): name is Arm => (ARMS as readonly string[]).includes(name);
/** The three arms first, in their order, then the ablation cells by name. */
const armOrder = (x: string, y: string) => (isArm(x) ? ARMS.indexOf(x) : ARMS.length) - (isArm(y) ? ARMS.indexOf(y) : ARMS.length) || x.localeCompare(y);
const armName = (arm: string) => (isArm(arm) ? ARM_NAMES[arm] : arm);

export const accuracyOf = (r: EvalRun) => [...r.outcomes.values()].filter(Boolean).length / Math.max(1, r.outcomes.size);

/** Seeds × questions matrix of 0/1 outcomes over the questions every run answered. */
export function matrix(runs: readonly EvalRun[]): number[][] {
  const ids = [...runs[0]!.outcomes.keys()].filter((id) => runs.every((r) => r.outcomes.has(id)));
  return runs.map((r) => ids.map((id) => (r.outcomes.get(id) ? 1 : 0)));
}

/** Paired a − b: seeds matched by seed number, questions by id. Null when nothing pairs. */
export function pairedDifference(a: readonly EvalRun[], b: readonly EvalRun[], seed: number): { difference: Interval; perSeed: number[] } | null {
  return pairedContrast([a, b], [1, -1], seed);
}

/**
 * Σ weights[i] · outcome of groups[i], paired: the seeds every group evaluated (by seed number)
 * and the questions every such run answered (by id); a hierarchical bootstrap of the seeds ×
 * questions matrix. Null when nothing pairs. A difference of differences is
 * `pairedContrast([a1, b1, a0, b0], [1, -1, -1, 1], seed)`.
 */
export function pairedContrast(groups: readonly (readonly EvalRun[])[], weights: readonly number[], seed: number): { difference: Interval; perSeed: number[] } | null {
  if (groups.length === 0 || groups.length !== weights.length) throw new RangeError(`pairedContrast: ${groups.length} groups and ${weights.length} weights`);
  const tuples = groups[0]!.map((x) => [x, ...groups.slice(1).map((g) => g.find((y) => y.seed === x.seed))])
    .filter((t): t is EvalRun[] => t.every((r) => r !== undefined)).sort((p, q) => p[0]!.seed - q[0]!.seed);
  if (tuples.length === 0) return null;
  const ids = [...tuples[0]![0]!.outcomes.keys()].filter((id) => tuples.every((t) => t.every((r) => r.outcomes.has(id))));
  if (ids.length === 0) return null;
  const rows = tuples.map((t) => ids.map((id) => t.reduce((sum, r, i) => sum + weights[i]! * (r.outcomes.get(id) ? 1 : 0), 0)));
  return { difference: hierarchicalBootstrap(rows, { seed }), perSeed: rows.map((r) => r.reduce((s, v) => s + v, 0) / r.length) };
}

export function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const i of items) {
    const k = key(i);
    (out.get(k) ?? out.set(k, []).get(k)!).push(i);
  }
  return out;
}

/** Each model's most common answer per question type, and its share. */
export function concentration(runs: readonly EvalRun[]): Concentration[] {
  return runs.filter((r) => !r.blind && r.answers).map((r) => {
    const byType: Concentration["byType"] = {};
    for (const [type, answers] of groupBy(r.answers!, (a) => a.type)) {
      const counts = groupBy(answers, (a) => a.prediction);
      const [answer, top] = [...counts].sort((x, y) => y[1].length - x[1].length || (x[0] < y[0] ? -1 : 1))[0]!;
      byType[type] = { answer, share: top.length / answers.length };
    }
    const flagged = Object.keys(byType).filter((t) => byType[t]!.share > CONCENTRATION_FLAG).sort();
    return { arm: r.arm, fraction: r.fraction, seed: r.seed, task: r.task, byType, flagged };
  });
}

/** A run restricted to the questions of one type. */
const ofType = (r: EvalRun, type: string): EvalRun => ({ ...r, outcomes: new Map([...r.outcomes].filter(([id]) => r.types?.get(id) === type)) });

/**
 * The three arms question type by question type (each task × fraction whose runs know their
 * questions' types): each arm's accuracy on that type's questions and the latent arm's paired
 * differences from the baseline and the text control, intervals as everywhere (seeds, then questions).
 */
export function typeBreakdown(runs: readonly EvalRun[], seed = 0): TypeBreakdown[] {
  const armRuns = runs.filter((r) => !r.blind && isArm(r.arm) && r.types);
  const out: TypeBreakdown[] = [];
  for (const group of groupBy(armRuns, (r) => `${r.task}|${r.fraction}`).values()) {
    const { task, fraction } = group[0]!;
    for (const type of [...new Set(group.flatMap((r) => [...r.types!.values()]))].sort()) {
      const byArm = new Map(ARMS.map((a) => [a, group.filter((r) => r.arm === a).sort((x, y) => x.seed - y.seed).map((r) => ofType(r, type))]));
      const accuracy: TypeBreakdown["accuracy"] = {};
      for (const [a, runsOfArm] of byArm) if (runsOfArm.length > 0) accuracy[a] = hierarchicalBootstrap(matrix(runsOfArm), { seed });
      const comparisons: TypeBreakdown["comparisons"] = [];
      const latent = byArm.get("latent")!;
      for (const b of ["baseline", "control"] as const) {
        const d = latent.length > 0 && byArm.get(b)!.length > 0 ? pairedDifference(latent, byArm.get(b)!, seed) : null;
        if (d) comparisons.push({ b, ...d });
      }
      const n = Math.max(...[...byArm.values()].flat().map((r) => r.outcomes.size));
      out.push({ task, fraction, type, n, accuracy, comparisons });
    }
  }
  return out.sort((x, y) => x.task.localeCompare(y.task) || x.fraction - y.fraction || x.type.localeCompare(y.type));
}

function typeLines(rows: TypeBreakdown[]): string[] {
  if (rows.length === 0) return [];
  const diff = (r: TypeBreakdown, b: Arm) => {
    const c = r.comparisons.find((x) => x.b === b);
    return c ? starred(c.difference) : "–";
  };
  const acc = (i: Interval | undefined) => (i ? interval(i) : "–");
  return [
    "",
    "## By question type",
    "",
    `The arms on each question type's questions alone (same intervals, paired differences). With ${rows.length} rows and two differences each, about one interval in 20 excludes 0 by chance alone.`,
    "",
    "| task | fraction | type | questions | baseline | text control | latent | latent − baseline | latent − control |",
    "|---|---|---|---|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.task} | ${r.fraction} | ${r.type} | ${r.n} | ${acc(r.accuracy.baseline)} | ${acc(r.accuracy.control)} | ${acc(r.accuracy.latent)} | ${diff(r, "baseline")} | ${diff(r, "control")} |`),
  ];
}

export function summarize(runs: readonly EvalRun[], seed = 0): { cells: Cell[]; comparisons: Comparison[]; controls: Control[]; interactions: Interaction[] } {
  const seen = runs.filter((r) => !r.blind), blind = runs.filter((r) => r.blind);
  const key = (arm: string, fraction: number, task: string) => `${arm}|${fraction}|${task}`;
  const groups = groupBy(seen, (r) => key(r.arm, r.fraction, r.task));
  const bySeed = (g: EvalRun[]) => [...g].sort((x, y) => x.seed - y.seed);
  const cells: Cell[] = [];
  for (const group of groups.values()) {
    const { arm, fraction, task } = group[0]!;
    const sorted = bySeed(group);
    cells.push({ arm, fraction, task, seeds: group.length, accuracy: hierarchicalBootstrap(matrix(sorted), { seed }), perSeed: sorted.map(accuracyOf) });
  }
  cells.sort((x, y) => x.task.localeCompare(y.task) || x.fraction - y.fraction || armOrder(x.arm, y.arm));

  // The latent arm against the baseline and the control; the control against the baseline (what
  // the captions alone do); each ablation cell against the baseline and the latent arm.
  const against = (arm: string): readonly Arm[] => arm === "latent" ? ["baseline", "control"] : arm === "control" ? ["baseline"] : ["baseline", "latent"];
  const comparisons: Comparison[] = [];
  for (const c of cells.filter((c) => c.arm !== "baseline")) {
    for (const other of against(c.arm)) {
      const b = groups.get(key(other, c.fraction, c.task));
      const d = b && pairedDifference(groups.get(key(c.arm, c.fraction, c.task))!, b, seed);
      if (d) comparisons.push({ a: c.arm, b: other, fraction: c.fraction, task: c.task, ...d });
    }
  }

  const fractions = [...new Set(seen.map((r) => r.fraction))].sort((a, b) => a - b);
  const lo = fractions[0]!, hi = fractions[fractions.length - 1]!;

  // Each comparison made at both the largest and the smallest fraction: does it change with data?
  const interactions: Interaction[] = [];
  for (const c of comparisons.filter((x) => lo !== hi && x.fraction === hi)) {
    const four = [key(c.a, hi, c.task), key(c.b, hi, c.task), key(c.a, lo, c.task), key(c.b, lo, c.task)].map((k) => groups.get(k));
    const d = four.every((g) => g !== undefined) ? pairedContrast(four, [1, -1, -1, 1], seed) : null;
    if (d) interactions.push({ a: c.a, b: c.b, task: c.task, from: lo, to: hi, ...d });
  }
  // Per task, in the results table's column order: latent − baseline, latent − control, control − baseline, then the rest.
  const columns = ["latent|baseline", "latent|control", "control|baseline"];
  const column = (x: Interaction) => {
    const i = columns.indexOf(`${x.a}|${x.b}`);
    return i < 0 ? columns.length : i;
  };
  interactions.sort((x, y) => x.task.localeCompare(y.task) || column(x) - column(y) || armOrder(x.a, y.a));

  // Controls for the arms and for every model evaluated blind too (the study's named models);
  // ablation cells have none.
  const controls: Control[] = [];
  const controlled = [...new Set<string>([...ARMS, ...blind.map((r) => r.arm)])].sort(armOrder);
  for (const task of [...new Set(seen.map((r) => r.task))].sort()) {
    for (const arm of controlled) {
      const top = groups.get(key(arm, hi, task));
      if (!top) continue;
      const low = groups.get(key(arm, lo, task));
      const f = lo !== hi && low ? pairedDifference(top, low, seed) : null;
      if (f) controls.push({ kind: "fraction", arm, task, from: lo, to: hi, ...f });
      const shuffled = blind.filter((r) => r.arm === arm && r.task === task && r.fraction === hi);
      const b = shuffled.length > 0 ? pairedDifference(shuffled, top, seed) : null;
      if (b) controls.push({ kind: "blind", arm, task, fraction: hi, accuracy: hierarchicalBootstrap(matrix(bySeed(shuffled)), { seed }), ...b });
    }
  }
  return { cells, comparisons, controls, interactions };
}

// Tables show accuracies and differences in %: "49.3 [47.7, 51.1]", "+1.6 [0.3, 2.8]", per seed "52.0 / 48.9".
const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(1) : "–");
export const interval = (i: Interval) => `${pct(i.mean)} [${pct(i.low)}, ${pct(i.high)}]`;
export const signed = (i: Interval) => `${i.mean >= 0 ? "+" : ""}${pct(i.mean)} [${pct(i.low)}, ${pct(i.high)}]`;
export const seedsOf = (v: readonly number[]) => v.map(pct).join(" / ");
export const excludesZero = (i: Interval) => i.low > 0 || i.high < 0;
/** A difference with its interval, starred when the interval excludes 0: "+1.6 [0.3, 2.8] *". */
export const starred = (i: Interval) => `${signed(i)}${excludesZero(i) ? " *" : ""}`;

/** The results table: one row per task × fraction, one column per arm (with per-seed values), then the differences. */
export function markdownTable(cells: Cell[], comparisons: Comparison[], baselines: Record<string, Baseline> = {}): string {
  const rows = [...new Set(cells.filter((c) => isArm(c.arm)).map((c) => `${c.task}|${c.fraction}`))];
  const lines = [
    "| task | fraction | text-only | baseline | text control | latent | latent − baseline | latent − control | control − baseline |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const row of rows) {
    const [task, f] = row.split("|") as [string, string];
    const fraction = Number(f);
    const cell = (arm: Arm) => cells.find((c) => c.task === task && c.fraction === fraction && c.arm === arm);
    const cmp = (b: Arm, a: Arm = "latent") => comparisons.find((c) => c.task === task && c.fraction === fraction && c.a === a && c.b === b);
    const show = (x: Cell | undefined) => (x ? `${interval(x.accuracy)}<br>(${seedsOf(x.perSeed)})` : "–");
    const diff = (x: Comparison | undefined) => (x ? `${starred(x.difference)}<br>(${seedsOf(x.perSeed)})` : "–");
    const base = baselines[task];
    lines.push(`| ${task} | ${fraction} | ${base ? pct(base.textOnly) : "–"} | ${show(cell("baseline"))} | ${show(cell("control"))} | ${show(cell("latent"))} | ${diff(cmp("baseline"))} | ${diff(cmp("control"))} | ${diff(cmp("baseline", "control"))} |`);
  }
  return lines.join("\n");
}

/**
 * The interactions' table: each difference between arms at the smallest and the largest fraction,
 * and its change between them (a difference of differences, paired).
 */
export function interactionLines(interactions: Interaction[], comparisons: Comparison[]): string[] {
  if (interactions.length === 0) return [];
  const { from, to } = interactions[0]!;
  const at = (x: Interaction, fraction: number) => {
    const c = comparisons.find((y) => y.a === x.a && y.b === x.b && y.task === x.task && y.fraction === fraction);
    return c ? starred(c.difference) : "–";
  };
  return [
    "",
    "## Does a difference change with the amount of data?",
    "",
    `Each difference between arms at fraction ${to} minus the same difference at ${from}: a difference of differences, paired (the same seeds and questions in all four groups). Below 0 for latent − baseline: the latent arm's lead is larger with less data, as the proposal expects.`,
    "",
    `| task | difference | at ${from} | at ${to} | change (${to} − ${from}) | per seed |`,
    "|---|---|---|---|---|---|",
    ...interactions.map((x) => `| ${x.task} | ${armName(x.a)} − ${armName(x.b)} | ${at(x, from)} | ${at(x, to)} | ${starred(x.difference)} | ${seedsOf(x.perSeed)} |`),
  ];
}

/** "20× more data" for fractions 0.05 → 1. */
function moreData(from: number, to: number): string {
  return `${Number((to / from).toPrecision(3))}× more data`;
}

function controlsTable(controls: Control[], baselines: Record<string, Baseline>): string[] {
  if (controls.length === 0) return [];
  const lines = [
    "| control | arm | task | effect | per seed | reads |",
    "|---|---|---|---|---|---|",
  ];
  for (const c of controls) {
    const what = c.kind === "fraction" ? `fraction ${c.to} − ${c.from}` : `shuffled images − right images (fraction ${c.fraction})`;
    const reads = c.kind === "fraction"
      ? (excludesZero(c.difference) && c.difference.mean > 0 ? "more data helps: the study can detect an effect" : `no detectable effect of ${moreData(c.from, c.to)}`)
      : `blind accuracy ${interval(c.accuracy)}${baselines[c.task] ? ` vs text-only ${pct(baselines[c.task]!.textOnly)}` : ""}`;
    lines.push(`| ${what} | ${armName(c.arm)} | ${c.task} | ${signed(c.difference)} | ${seedsOf(c.perSeed)} | ${reads} |`);
  }
  return lines;
}

function concentrationLines(conc: Concentration[]): string[] {
  if (conc.length === 0) return [];
  const groups = groupBy(conc, (c) => `${c.arm}|${c.fraction}|${c.task}`);
  const lines = [
    `Answer concentration: each model's share of its most common answer within a question type (the largest over types, per seed); types above ${pct(CONCENTRATION_FLAG)}% are flagged — a model that answers without looking repeats itself.`,
    "",
    "| arm | fraction | task | largest share per seed | flagged types |",
    "|---|---|---|---|---|",
  ];
  for (const g of groups.values()) {
    const worst = g.map((c) => Math.max(...Object.values(c.byType).map((t) => t.share)));
    const flagged = [...new Set(g.flatMap((c) => c.flagged))];
    lines.push(`| ${armName(g[0]!.arm)} | ${g[0]!.fraction} | ${g[0]!.task} | ${seedsOf(worst)} | ${flagged.length ? `⚠ ${flagged.join(", ")}` : "none"} |`);
  }
  return lines;
}

export interface ReportMeta {
  name: string;
  seeds: number[];
  /** The stages each seed trained for itself (absent: finetune, the fine-tunes only). */
  replicate?: "finetune" | "pretrain" | "base";
  fractions: number[];
  harness: string;
  /** The instruction phase before the fraction fine-tunes (absent: none). */
  instruct?: { tasks: string[]; steps: number };
  /** The world of the fraction fine-tunes and the evaluations, when it is not the study's (absent: the study's). */
  benchmarkWorld?: { scenes: number; seed: number };
  baselines: Record<string, Baseline>;
  /** One line per evaluation that skipped bad records or images (none: every question was scored). */
  skipped?: string[];
  retrieval?: RetrievalSummary;
  /** The caption next-token loss that each latent-pretraining arm ends with. */
  captionLoss?: CaptionLosses;
  /** With replicate, each seed's own caption stages: their alignment and caption losses. */
  stagesPerSeed?: { seed: number; retrieval?: RetrievalSummary; captionLoss?: CaptionLosses }[];
  ablations?: AblationSummary[];
  /** The published models the study fine-tuned beside the arms (its `models` section). */
  models?: readonly { name: string; model: string }[];
  /** The machines that made the study's steps (steps.ts studyMachines). */
  machines?: StudyMachines;
  [key: string]: unknown;
}

/** The report's line on the machines that made the study's steps, or none when no step recorded one. */
export function machinesLine(m: StudyMachines | undefined): string[] {
  if (m === undefined || m.machines.length === 0) return [];
  const total = m.machines.reduce((n, x) => n + x.steps, 0) + m.unrecorded;
  const each = m.machines.map((x) => `${x.cpu} (${x.vector}, ${x.cores} cores), ${x.blas}, libtorch ${x.libtorch}: ${x.steps === total ? `all ${total} steps` : `${x.steps} of ${total} steps`}`);
  if (m.unrecorded > 0) each.push(`${m.unrecorded} ${m.unrecorded === 1 ? "step" : "steps"} made before machines were recorded`);
  return [`Made on: ${each.join("; ")}. A trained model's weights depend on the machine's arithmetic (its CPU kernels, BLAS and thread counts): on another machine the same config makes other draws of each model.`];
}

/**
 * The named models' table: one row per task × fraction × model, its accuracy and its paired
 * differences from the baseline and from the latent arm.
 */
export function modelsTable(cells: Cell[], comparisons: Comparison[], models: readonly { name: string; model: string }[]): string[] {
  const byName = new Map(models.map((m) => [m.name, m.model]));
  const rows = cells.filter((c) => byName.has(c.arm));
  if (rows.length === 0) return [];
  const diff = (x: Comparison | undefined) => (x ? starred(x.difference) : "–");
  return [
    "| task | fraction | model | accuracy | − baseline | − latent |",
    "|---|---|---|---|---|---|",
    ...rows.map((c) => {
      const cmp = (b: Arm) => comparisons.find((x) => x.a === c.arm && x.b === b && x.task === c.task && x.fraction === c.fraction);
      return `| ${c.task} | ${c.fraction} | ${c.arm} (${byName.get(c.arm)}) | ${interval(c.accuracy)}<br>(${seedsOf(c.perSeed)}) | ${diff(cmp("baseline"))} | ${diff(cmp("latent"))} |`;
    }),
  ];
}

/** An ablation cell as results.json lists it (see the header). */
export interface AblationSummary {
  name: string;
  /** Its folder under stages/ablations, finetune/ and eval/. */
  folder: string;
  /** The latent_pretrain keys it sets (dotted) and their values. */
  set: Record<string, string | number | boolean | null>;
  readout: string;
  /** The arm or earlier cell with the same settings (then it was not run), or null. */
  sameAs: string | null;
  fractions?: readonly number[];
  seeds?: readonly number[];
  /** Alignment before fine-tuning (cells that read latent queries). */
  retrieval?: RetrievalSummary;
}

/**
 * The ablation table: one row per task × fraction × cell (the latent arm first, as the reference),
 * each cell's accuracy and its paired differences from the baseline and from the latent arm, and
 * its alignment before fine-tuning (recall@1, median rank).
 */
export function ablationTable(cells: Cell[], comparisons: Comparison[], ablations: readonly AblationSummary[], latentRetrieval?: RetrievalSummary): string[] {
  const byName = new Map(ablations.map((a) => [a.name, a]));
  const rows = cells.filter((c) => c.arm === "latent" || byName.has(c.arm));
  if (rows.length === 0) return [];
  const lines = [
    "| task | fraction | cell | sets | accuracy | − baseline | − latent | recall@1 | median rank |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  const fractions = new Set(rows.filter((c) => c.arm !== "latent").map((c) => `${c.task}|${c.fraction}`));
  for (const c of rows) {
    if (!fractions.has(`${c.task}|${c.fraction}`)) continue; // the latent arm where no cell was fine-tuned
    const cmp = (b: Arm) => comparisons.find((x) => x.a === c.arm && x.b === b && x.task === c.task && x.fraction === c.fraction);
    const diff = (x: Comparison | undefined) => (x ? starred(x.difference) : "–");
    const a = byName.get(c.arm);
    const r = a ? a.retrieval : latentRetrieval;
    const r1 = r ? Object.entries(r.recall).find(([k]) => k.replace(/^\D*/, "") === "1")?.[1] : undefined;
    const sets = a ? Object.entries(a.set).map(([k, v]) => `${k}=${String(v)}`).join(", ") : "(the latent arm)";
    lines.push(`| ${c.task} | ${c.fraction} | ${c.arm} | ${sets} | ${interval(c.accuracy)}<br>(${seedsOf(c.perSeed)}) | ${diff(cmp("baseline"))} | ${c.arm === "latent" ? "–" : diff(cmp("latent"))} | ${r1 ? pct(r1.mean) : "–"} | ${r ? r.medianRank : "–"} |`);
  }
  const same = ablations.filter((a) => a.sameAs !== null);
  if (same.length > 0) lines.push("", `Not run (the same settings as another arm or cell): ${same.map((a) => `${a.name} = ${a.sameAs}`).join("; ")}.`);
  return lines;
}

/** Whether the study can see anything: the baseline's positive control excludes 0 on world_gqa/test. */
export function studyIsMeaningful(controls: Control[]): boolean | null {
  const c = controls.find((x) => x.kind === "fraction" && x.arm === "baseline" && x.task === "world_gqa/test");
  return c ? c.difference.low > 0 : null;
}

export function writeReport(dir: string, runs: EvalRun[], meta: ReportMeta): { markdown: string } {
  const { cells, comparisons, controls, interactions } = summarize(runs);
  const conc = concentration(runs);
  const types = typeBreakdown(runs);
  const meaningful = studyIsMeaningful(controls);
  const markdown = [
    `# Results: ${meta.name}`,
    "",
    "Accuracy (%) on held-out questions: the mean over seeds, a 95% interval from a hierarchical bootstrap (seeds resampled, then questions), and each seed's value in brackets below.",
    "Differences are paired (same seeds, same questions); * marks an interval that excludes 0. Splits: `test` (the training distribution), `test_novel` (colour×shape pairs never seen in training).",
    "Text-only: the better of two predictors fitted on the training questions without images (the majority answer of the question's type, or of its exact text).",
    "",
    markdownTable(cells, comparisons, meta.baselines),
    "",
    `Seeds: ${JSON.stringify(meta.seeds)}; fractions of the training questions: ${JSON.stringify(meta.fractions)}; harness: ${meta.harness}.`,
    replicatedLine(meta.replicate ?? "finetune"),
    ...machinesLine(meta.machines),
    ...(meta.benchmarkWorld ? [`Benchmark world: the fine-tunes at each fraction and the evaluations are on a world of their own (${meta.benchmarkWorld.scenes} scenes, seed ${meta.benchmarkWorld.seed}), apart from the world the encoder, the base and the caption stages${meta.instruct ? " and the instruction phase" : ""} trained on.`] : []),
    ...(meta.instruct ? [`Instruction phase: every model was first fine-tuned for ${meta.instruct.steps} steps on all the training questions of ${meta.instruct.tasks.join(", ")}, then on its fraction of the study's; the fractions are of the second phase's questions.`] : []),
    ...interactionLines(interactions, comparisons),
    "",
    "## Controls",
    "",
    "Positive control: each arm's largest fraction against its smallest. Blind control: each arm's largest-fraction models answering with the images shuffled across questions.",
    meaningful === null ? "" : meaningful
      ? "The baseline's positive control on world_gqa/test excludes 0: the study can detect an effect of this size."
      : `⚠ The baseline's positive control on world_gqa/test does not exclude 0: at this size the study cannot detect even the effect of ${moreData(Math.min(...meta.fractions), Math.max(...meta.fractions))}, and its comparisons mean little.`,
    "",
    ...controlsTable(controls, meta.baselines),
    "",
    "## Blind baselines",
    "",
    "| task | questions | chance | majority | text-only |",
    "|---|---|---|---|---|",
    ...Object.entries(meta.baselines).map(([t, b]) => `| ${t} | ${b.n} | ${pct(b.chance)} | ${pct(b.majority)} | ${pct(b.textOnly)} |`),
    "",
    ...concentrationLines(conc),
    ...typeLines(types),
    "",
    meta.skipped && meta.skipped.length > 0 ? `Skipped input (each evaluation's results.json lists it):\n\n${meta.skipped.map((l) => `- ${l}`).join("\n")}` : "Skipped input: none (every evaluated question and image was read).",
    ...retrievalLines(meta.retrieval),
    ...captionLossLines(meta.captionLoss),
    ...stagesPerSeedLines(meta.stagesPerSeed),
    ...(meta.ablations && meta.ablations.length > 0 ? [
      "",
      "## Ablations",
      "",
      "Cells of the latent arm with some latent-pretraining keys changed, each fine-tuned and evaluated like an arm. Differences are paired (same seeds, same questions); * marks an interval that excludes 0. Recall@1 and median rank: the cell's test captions retrieving their images from imagined latents before fine-tuning (– for readouts without latent queries).",
      "",
      ...ablationTable(cells, comparisons, meta.ablations, meta.retrieval),
    ] : []),
    ...(meta.models && meta.models.length > 0 ? [
      "",
      "## Other models",
      "",
      "Published models fine-tuned and evaluated with the arms' settings (fractions, seeds, fine-tuning, evaluation, controls above), compared, paired, with the baseline and the latent arm; * marks an interval that excludes 0.",
      "",
      ...modelsTable(cells, comparisons, meta.models),
    ] : []),
  ].join("\n");
  writeFileSync(join(dir, "results.md"), markdown + "\n");
  writeFileSync(join(dir, "results.json"), JSON.stringify({
    ...meta,
    intervals: "95%, hierarchical bootstrap: seeds resampled with replacement, then questions (paired for differences)",
    meaningful, cells, comparisons, interactions, controls, byType: types, concentration: conc,
  }, null, 2) + "\n");
  // Cell names may hold commas (latent[similarity=l2,alignment=siglip]): quoted as RFC 4180 does.
  const q = (field: string) => (/[",\n]/.test(field) ? `"${field.replace(/"/g, '""')}"` : field);
  const csv = ["task,fraction,arm,seeds,accuracy,low,high,per_seed", ...cells.map((c) => `${c.task},${c.fraction},${q(c.arm)},${c.seeds},${c.accuracy.mean},${c.accuracy.low},${c.accuracy.high},${c.perSeed.join(";")}`)];
  csv.push("", "task,fraction,comparison,difference,low,high,per_seed", ...comparisons.map((c) => `${c.task},${c.fraction},${q(`${c.a}-${c.b}`)},${c.difference.mean},${c.difference.low},${c.difference.high},${c.perSeed.join(";")}`));
  csv.push("", "task,from,to,interaction,difference,low,high,per_seed", ...interactions.map((c) => `${c.task},${c.from},${c.to},${q(`${c.a}-${c.b}`)},${c.difference.mean},${c.difference.low},${c.difference.high},${c.perSeed.join(";")}`));
  csv.push("", "task,control,arm,difference,low,high,per_seed", ...controls.map((c) => `${c.task},${c.kind},${c.arm},${c.difference.mean},${c.difference.low},${c.difference.high},${c.perSeed.join(";")}`));
  writeFileSync(join(dir, "results.csv"), csv.join("\n") + "\n");
  return { markdown };
}

export interface RetrievalSummary {
  n: number;
  recall: Record<string, Interval>;
  chance: Record<string, number>;
  medianRank: number;
  galleryImages: number;
  /** Collapse monitors of the imagined latents next to the real ones'. */
  collapse?: { predicted: CollapseSummary; targets: CollapseSummary };
}
interface CollapseSummary { effectiveRank: number; meanPairwiseCosine: number }

/** A pretraining run's caption next-token loss at its end: its last logged training steps, their values and mean. */
export interface CaptionLoss { mean: number; steps: number[]; values: number[] }
/** Both arms' caption losses at the end of their stages, and latent − control paired over those steps. */
export interface CaptionLosses { control: CaptionLoss; latent: CaptionLoss; difference?: Interval }

/** What a seed replicates, so what the intervals count. */
function replicatedLine(replicate: NonNullable<ReportMeta["replicate"]>): string {
  switch (replicate) {
    case "finetune": return "The seeds are fine-tuning seeds: every model starts from the study's one base VLM and, per arm, one run of its caption stage, so the intervals do not count the variance between bases or caption-stage runs (`replicate: pretrain` or `base` makes them count; the README's paragraph \"What the intervals do not count\" measures both).";
    case "pretrain": return "Each seed ran its own caption stages (both arms, and each ablation cell) from the study's one base VLM, then its fine-tunes: the intervals count the variance between caption-stage runs, not between bases (`replicate: base`). Retrieval and the caption loss below are the study seed's stages'.";
    case "base": return "Each seed trained its own base VLM, its own caption stages from it (both arms, and each ablation cell), then its fine-tunes: the intervals count the variance between bases and between caption-stage runs. Retrieval and the caption loss below are the study seed's stages'.";
  }
}

/** The two pretraining arms' final caption losses, side by side (the latent objective's cost to language modelling). */
function captionLossLines(c: ReportMeta["captionLoss"]): string[] {
  if (!c) return [];
  const steps = (x: CaptionLoss) => (x.steps.length > 1 ? `steps ${x.steps[0]}–${x.steps[x.steps.length - 1]}` : `step ${x.steps[0]}`);
  const d = c.difference ?? { mean: c.latent.mean - c.control.mean, low: NaN, high: NaN, n: 0 };
  const digits = Math.abs(d.mean) < 0.001 ? 4 : 3;
  const signed = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(digits)}`;
  const verdict = !Number.isFinite(d.low) ? (d.mean > 0 ? "above the control's; no interval: the steps of the two runs differ" : "no worse than the control")
    : d.low > 0 ? "the latent objective costs caption modelling"
    : d.high < 0 ? "below the control's"
    : "no detectable cost: the interval includes 0";
  return [
    "",
    `Caption next-token loss at the end of latent pretraining (mean of the last ${c.latent.steps.length} logged training steps): ` +
      `text control ${c.control.mean.toFixed(3)} (${steps(c.control)}), latent ${c.latent.mean.toFixed(3)} (${steps(c.latent)}); ` +
      `latent − control ${signed(d.mean)}${Number.isFinite(d.low) ? ` [${signed(d.low)}, ${signed(d.high)}] (paired over the steps, 95% t-interval)` : ""} (${verdict}).`,
  ];
}

/** The recall columns' heads, "recall@1 | recall@5 | …", from results.json's recall keys. */
const recallHeads = (ks: string[]) => ks.map((k) => `recall@${k.replace(/^\D*/, "")}`).join(" | ");

/** With replicate, each seed's caption stages side by side: does the latent objective work in every run of it? */
function stagesPerSeedLines(perSeed: ReportMeta["stagesPerSeed"]): string[] {
  if (!perSeed || perSeed.length === 0) return [];
  const ks = Object.keys(perSeed.find((s) => s.retrieval)?.retrieval?.recall ?? {});
  const signed = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(4)}`;
  return [
    "",
    "Each seed's own caption stages: its latent arm's test captions retrieving their images, and the two arms' caption next-token loss at the stage's end (latent − control, paired over the last logged steps).",
    "",
    `| seed | ${recallHeads(ks)} | median rank | caption loss: latent − control |`,
    `|---|${ks.map(() => "---|").join("")}---|---|`,
    ...perSeed.map(({ seed, retrieval: r, captionLoss: c }) => {
      const d = c?.difference;
      const loss = !c ? "–" : d && Number.isFinite(d.low) ? `${signed(d.mean)} [${signed(d.low)}, ${signed(d.high)}]` : signed(c.latent.mean - c.control.mean);
      return `| ${seed} | ${ks.map((k) => (r?.recall[k] ? pct(r.recall[k]!.mean) : "–")).join(" | ")} | ${r ? r.medianRank : "–"} | ${loss} |`;
    }),
  ];
}

/** The latent arm's alignment: test images retrieved from their captions' imagined latents. */
function retrievalLines(r: RetrievalSummary | undefined): string[] {
  if (!r) return [];
  const ks = Object.keys(r.recall);
  const collapse = r.collapse
    ? [
      "",
      "| latents | effective rank | mean pairwise cosine |",
      "|---|---|---|",
      `| imagined (from captions) | ${r.collapse.predicted.effectiveRank.toFixed(1)} | ${r.collapse.predicted.meanPairwiseCosine.toFixed(3)} |`,
      `| real (the frozen encoder's) | ${r.collapse.targets.effectiveRank.toFixed(1)} | ${r.collapse.targets.meanPairwiseCosine.toFixed(3)} |`,
    ]
    : [];
  return [
    "",
    "## Alignment",
    "",
    `The latent arm before fine-tuning: each of ${r.n} test captions imagines latents, and its image is ranked among ${r.galleryImages} test images.`,
    "",
    `| ${recallHeads(ks)} | median rank |`,
    `|${ks.map(() => "---|").join("")}---|`,
    `| ${ks.map((k) => `${interval(r.recall[k]!)} (chance ${pct(r.chance[k] ?? NaN)})`).join(" | ")} | ${r.medianRank} |`,
    ...collapse,
  ];
}
