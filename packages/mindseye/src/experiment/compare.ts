// `mindseye compare A B`: what changed between two studies of the same world that differ in one
// setting (fine-tuning length, a recipe, a base): each arm's accuracy, B − A, and the change of the
// latent arm's gain over the baseline and the text control, (latent − b) in B − (latent − b) in A.
// Both are paired as the report pairs arms: the same seeds (by number: the same fine-tuning subset
// and order) and the same questions (by id), with a hierarchical bootstrap over seeds and questions
// (eval/stats.ts). The two studies must have asked the same questions: same world settings, and
// every shared question id the same prompt and answer; anything else is refused, naming it.
//
//   const c = compareStudies(readStudyEvaluations("runs/study"), readStudyEvaluations("runs/study-3600"));
//   c.arms[0];  // {arm: "baseline", fraction: 1, task: "world_gqa/test", a, b, difference, perSeed}
//   c.gains[0]; // {a: "latent", b: "baseline", fraction: 1, task, before, after, change, perSeed}
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { ConfigError } from "../config/errors.js";
import { hierarchicalBootstrap, type Interval } from "../eval/stats.js";
import { ARMS, groupBy, interval, matrix, pairedContrast, pairedDifference, seedsOf, starred, type Arm, type EvalRun } from "./report.js";
import { readPredictions } from "./steps.js";

/** One arm (or ablation cell, or named model) at one fraction and task: its accuracy in A and in B, and B − A. */
export interface ArmShift { arm: string; fraction: number; task: string; a: Interval; b: Interval; difference: Interval; perSeed: number[] }
/** The latent arm's gain over `b` in A (`before`) and in B (`after`), and its change: after − before. */
export interface GainShift { a: "latent"; b: Exclude<Arm, "latent">; fraction: number; task: string; before: Interval; after: Interval; change: Interval; perSeed: number[] }
export interface StudyComparison { arms: ArmShift[]; gains: GainShift[] }

/**
 * Every evaluation (with the right images) a study folder holds, read from
 * eval/<arm>/fraction-<f>/seed-<s>/<task>-<split>/predictions.jsonl (a named model's arm is its
 * folder's last part, eval/models/<name>/…).
 */
export function readStudyEvaluations(study: string): EvalRun[] {
  if (!existsSync(join(study, "study.resolved.json"))) throw new ConfigError(`${study}: not a study folder (no study.resolved.json); give a folder \`mindseye experiment\` wrote`);
  const root = join(study, "eval");
  if (!existsSync(root)) return [];
  const runs: EvalRun[] = [];
  for (const file of readdirSync(root, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(`${sep}predictions.jsonl`)).sort()) {
    const parts = relative(root, join(root, file)).split(sep).slice(0, -1); // [...arm folder, fraction-F, seed-S, task-split]
    const [fractionPart, seedPart, taskPart] = parts.slice(-3);
    const fraction = /^fraction-(.+)$/.exec(fractionPart ?? "")?.[1], seed = /^seed-(\d+)$/.exec(seedPart ?? "")?.[1];
    const dash = taskPart?.lastIndexOf("-") ?? -1;
    if (parts.length < 4 || fraction === undefined || !Number.isFinite(Number(fraction)) || seed === undefined || dash <= 0) continue; // not an evaluation of the study's layout
    runs.push({
      arm: parts[parts.length - 4]!, fraction: Number(fraction), seed: Number(seed), task: `${taskPart!.slice(0, dash)}/${taskPart!.slice(dash + 1)}`,
      ...readPredictions(join(root, file)),
    });
  }
  return runs;
}

/** Refuses two studies whose worlds differ, or whose evaluations gave one question id two different questions. */
export function checkSameQuestions(a: { dir: string; runs: readonly EvalRun[] }, b: { dir: string; runs: readonly EvalRun[] }): void {
  const worldOf = (dir: string) => JSON.stringify((JSON.parse(readFileSync(join(dir, "study.resolved.json"), "utf8")) as { world?: unknown }).world ?? null);
  const [worldA, worldB] = [worldOf(a.dir), worldOf(b.dir)];
  if (worldA !== worldB) {
    throw new ConfigError(`${a.dir} and ${b.dir} were run on different worlds (study.resolved.json "world": ${worldA} against ${worldB}); their questions do not pair. Compare studies of the same world`);
  }
  const seen = new Map<string, string>(); // "task\tid" -> question
  for (const run of [...a.runs, ...b.runs]) {
    for (const [id, question] of run.questions ?? []) {
      const key = `${run.task}\t${id}`, before = seen.get(key);
      if (before === undefined) seen.set(key, question);
      else if (before !== question) throw new ConfigError(`${run.task} question ${id} differs between the evaluations of ${a.dir} and ${b.dir} ("${before}" against "${question}"); their questions do not pair`);
    }
  }
}

/** Each group restricted to the seeds every group evaluated (a study still running has fewer). */
function onCommonSeeds<T extends readonly (readonly EvalRun[])[]>(...groups: T): { [K in keyof T]: EvalRun[] } {
  const common = groups.map((g) => new Set(g.map((r) => r.seed))).reduce((x, y) => new Set([...x].filter((s) => y.has(s))));
  return groups.map((g) => g.filter((r) => common.has(r.seed))) as { [K in keyof T]: EvalRun[] };
}

const cellKey = (r: Pick<EvalRun, "arm" | "fraction" | "task">) => `${r.arm}\t${r.fraction}\t${r.task}`;
const groups = (runs: readonly EvalRun[]) => groupBy(runs.filter((r) => !r.blind), cellKey);

/** B − A, paired by seed and question: every arm × fraction × task both evaluated, and the latent arm's gains. */
export function compareStudies(a: readonly EvalRun[], b: readonly EvalRun[], seed = 0): StudyComparison {
  const ga = groups(a), gb = groups(b);
  const arms: ArmShift[] = [];
  const gains: GainShift[] = [];
  const accuracy = (runs: readonly EvalRun[]) => hierarchicalBootstrap(matrix(runs), { seed });
  for (const [key, allBefore] of ga) {
    const allAfter = gb.get(key);
    if (!allAfter) continue;
    const [before, after] = onCommonSeeds(allBefore, allAfter);
    const d = pairedDifference(after, before, seed);
    if (!d) continue;
    const { arm, fraction, task } = before[0]!;
    arms.push({ arm, fraction, task, a: accuracy(before), b: accuracy(after), difference: d.difference, perSeed: d.perSeed });
    if (arm !== "latent") continue;
    for (const other of ARMS.filter((x): x is Exclude<Arm, "latent"> => x !== "latent")) {
      const k = cellKey({ arm: other, fraction, task });
      const [otherBefore, otherAfter] = [ga.get(k), gb.get(k)];
      if (!otherBefore || !otherAfter) continue;
      const four = onCommonSeeds(allAfter, otherAfter, allBefore, otherBefore); // every figure of the row on the same seeds
      const change = pairedContrast(four, [1, -1, -1, 1], seed);
      const gainAfter = pairedDifference(four[0], four[1], seed), gainBefore = pairedDifference(four[2], four[3], seed);
      if (change && gainBefore && gainAfter) {
        gains.push({ a: "latent", b: other, fraction, task, before: gainBefore.difference, after: gainAfter.difference, change: change.difference, perSeed: change.perSeed });
      }
    }
  }
  const order = (x: { task: string; fraction: number }, y: { task: string; fraction: number }) => x.task.localeCompare(y.task) || x.fraction - y.fraction;
  arms.sort((x, y) => order(x, y) || ARMS.indexOf(x.arm as Arm) - ARMS.indexOf(y.arm as Arm) || x.arm.localeCompare(y.arm));
  gains.sort((x, y) => order(x, y) || ARMS.indexOf(x.b) - ARMS.indexOf(y.b));
  return { arms, gains };
}

/** The comparison as two markdown tables (accuracy in %, 95% intervals; * marks a difference whose interval excludes 0). */
export function comparisonMarkdown(c: StudyComparison, names: { a: string; b: string }): string {
  const lines = [
    `A = ${names.a}, B = ${names.b}; paired by seed and question, 95% hierarchical-bootstrap intervals (* excludes 0).`,
    "",
    "| arm | fraction | task | A | B | B − A | per seed |",
    "|---|---|---|---|---|---|---|",
    ...c.arms.map((r) => `| ${r.arm} | ${r.fraction} | ${r.task} | ${interval(r.a)} | ${interval(r.b)} | ${starred(r.difference)} | ${seedsOf(r.perSeed)} |`),
  ];
  if (c.gains.length > 0) {
    lines.push("", "| gain | fraction | task | in A | in B | change (B − A) | per seed |", "|---|---|---|---|---|---|---|",
      ...c.gains.map((g) => `| latent − ${g.b} | ${g.fraction} | ${g.task} | ${starred(g.before)} | ${starred(g.after)} | ${starred(g.change)} | ${seedsOf(g.perSeed)} |`));
  }
  return lines.join("\n");
}
