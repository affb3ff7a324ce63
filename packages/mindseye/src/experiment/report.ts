// The study's report: accuracy per arm × fraction × task as the mean over seeds with a 95%
// interval, and paired comparisons latent vs baseline and latent vs text control.
//
// Intervals: with a handful of seeds a t-interval over seeds is uninformative (t₀.₉₇₅ = 12.7
// for two), so the interval is a bootstrap over questions with the seeds averaged per question:
// it says how sure we are for this test set and these seeds. Comparisons are paired by
// question (the same questions, each arm's seeds averaged), bootstrapped the same way.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { bootstrapMean, type Interval } from "../eval/stats.js";

export const ARMS = ["baseline", "control", "latent"] as const;
export type Arm = (typeof ARMS)[number];

/** One evaluated model: which arm, fraction, seed and task/split, and its per-question outcomes. */
export interface EvalRun {
  arm: Arm;
  fraction: number;
  seed: number;
  /** e.g. "world_gqa/test" */
  task: string;
  /** question id -> correct */
  outcomes: Map<string, boolean>;
}

export interface Cell { arm: Arm; fraction: number; task: string; seeds: number; accuracy: Interval; perSeed: number[] }
export interface Comparison { a: Arm; b: Arm; fraction: number; task: string; difference: Interval }

/** Per question, the mean correctness over the runs (seeds) given. */
function perQuestion(runs: EvalRun[]): Map<string, number> {
  const sums = new Map<string, number[]>();
  for (const r of runs) for (const [id, ok] of r.outcomes) (sums.get(id) ?? sums.set(id, []).get(id)!).push(ok ? 1 : 0);
  return new Map([...sums].map(([id, v]) => [id, v.reduce((a, b) => a + b, 0) / v.length]));
}

export function summarize(runs: EvalRun[], seed = 0): { cells: Cell[]; comparisons: Comparison[] } {
  const key = (arm: string, fraction: number, task: string) => `${arm}|${fraction}|${task}`;
  const groups = new Map<string, EvalRun[]>();
  for (const r of runs) (groups.get(key(r.arm, r.fraction, r.task)) ?? groups.set(key(r.arm, r.fraction, r.task), []).get(key(r.arm, r.fraction, r.task))!).push(r);
  const cells: Cell[] = [];
  for (const group of groups.values()) {
    const { arm, fraction, task } = group[0]!;
    const pq = perQuestion(group);
    cells.push({
      arm, fraction, task, seeds: group.length,
      accuracy: bootstrapMean([...pq.values()], { seed }),
      perSeed: group.sort((x, y) => x.seed - y.seed).map((r) => [...r.outcomes.values()].filter(Boolean).length / Math.max(1, r.outcomes.size)),
    });
  }
  cells.sort((x, y) => x.task.localeCompare(y.task) || x.fraction - y.fraction || ARMS.indexOf(x.arm) - ARMS.indexOf(y.arm));
  const comparisons: Comparison[] = [];
  for (const c of cells.filter((c) => c.arm === "latent")) {
    for (const other of ["baseline", "control"] as const) {
      const a = groups.get(key("latent", c.fraction, c.task)), b = groups.get(key(other, c.fraction, c.task));
      if (!a || !b) continue;
      const pa = perQuestion(a), pb = perQuestion(b);
      const diffs = [...pa].filter(([id]) => pb.has(id)).map(([id, v]) => v - pb.get(id)!);
      comparisons.push({ a: "latent", b: other, fraction: c.fraction, task: c.task, difference: bootstrapMean(diffs, { seed }) });
    }
  }
  return { cells, comparisons };
}

const pct = (x: number) => (100 * x).toFixed(1);
const interval = (i: Interval) => `${pct(i.mean)} [${pct(i.low)}, ${pct(i.high)}]`;
const signed = (i: Interval) => `${i.mean >= 0 ? "+" : ""}${pct(i.mean)} [${pct(i.low)}, ${pct(i.high)}]`;

/** The Markdown results table: one row per task × fraction, one column per arm, then the differences. */
export function markdownTable(cells: Cell[], comparisons: Comparison[]): string {
  const rows = [...new Set(cells.map((c) => `${c.task}|${c.fraction}`))];
  const lines = [
    "| task | fraction | baseline | text control | latent | latent − baseline | latent − control |",
    "|---|---|---|---|---|---|---|",
  ];
  for (const row of rows) {
    const [task, f] = row.split("|") as [string, string];
    const fraction = Number(f);
    const cell = (arm: Arm) => cells.find((c) => c.task === task && c.fraction === fraction && c.arm === arm);
    const cmp = (b: Arm) => comparisons.find((c) => c.task === task && c.fraction === fraction && c.b === b);
    const show = (x: Cell | undefined) => (x ? interval(x.accuracy) : "–");
    const diff = (x: Comparison | undefined) => (x ? signed(x.difference) : "–");
    lines.push(`| ${task} | ${fraction} | ${show(cell("baseline"))} | ${show(cell("control"))} | ${show(cell("latent"))} | ${diff(cmp("baseline"))} | ${diff(cmp("control"))} |`);
  }
  return lines.join("\n");
}

export function writeReport(dir: string, runs: EvalRun[], meta: Record<string, unknown>): { markdown: string } {
  const { cells, comparisons } = summarize(runs);
  const table = markdownTable(cells, comparisons);
  const markdown = [
    `# Results: ${String(meta.name ?? "study")}`,
    "",
    "Accuracy (%) on held-out questions, mean over seeds, with a 95% bootstrap interval over questions (seeds averaged per question).",
    "Differences are paired by question. Splits: `test` (the training distribution), `test_novel` (colour×shape pairs never seen in training).",
    "",
    table,
    "",
    `Seeds: ${JSON.stringify(meta.seeds)}; fractions of the training questions: ${JSON.stringify(meta.fractions)}; harness: ${String(meta.harness)}.`,
    ...retrievalLines(meta.retrieval as RetrievalSummary | undefined),
  ].join("\n");
  writeFileSync(join(dir, "results.md"), markdown + "\n");
  writeFileSync(join(dir, "results.json"), JSON.stringify({ ...meta, cells, comparisons }, null, 2) + "\n");
  const csv = ["task,fraction,arm,seeds,accuracy,low,high,per_seed", ...cells.map((c) => `${c.task},${c.fraction},${c.arm},${c.seeds},${c.accuracy.mean},${c.accuracy.low},${c.accuracy.high},${c.perSeed.join(";")}`)];
  csv.push("", "task,fraction,comparison,difference,low,high", ...comparisons.map((c) => `${c.task},${c.fraction},${c.a}-${c.b},${c.difference.mean},${c.difference.low},${c.difference.high}`));
  writeFileSync(join(dir, "results.csv"), csv.join("\n") + "\n");
  return { markdown };
}

interface RetrievalSummary { n: number; recall: Record<string, Interval>; chance: Record<string, number>; medianRank: number; galleryImages: number }

/** The latent arm's alignment: test images retrieved from their captions' imagined latents. */
function retrievalLines(r: RetrievalSummary | undefined): string[] {
  if (!r) return [];
  const ks = Object.keys(r.recall);
  return [
    "",
    `Alignment (latent arm, before fine-tuning): each of ${r.n} test captions imagines latents, and its image is ranked among ${r.galleryImages} test images.`,
    "",
    `| ${ks.map((k) => `recall@${k.replace(/^\D*/, "")}`).join(" | ")} | median rank |`,
    `|${ks.map(() => "---|").join("")}---|`,
    `| ${ks.map((k) => `${interval(r.recall[k]!)} (chance ${pct(r.chance[k] ?? NaN)})`).join(" | ")} | ${r.medianRank} |`,
  ];
}
