// The paper study's report (paper.ts): accuracy per model × task and the paired comparisons the
// recipe lists, written as results.json and results.md in the study folder.
//
// Intervals (95%) are the world study's (report.ts): a hierarchical bootstrap that draws training
// seeds with replacement and then questions, so they count the variance between seeds as well as
// the sampling of questions; with one seed it is the bootstrap over questions. A comparison a − b is
// paired: seeds matched by number, questions by id; a zero-shot model (no training seed) is paired
// with every seed of the other side.
//
// results.json:
//   tasks[]        {task, split, data}: what each model was evaluated on
//   models[]       {name, kind: "finetune" | "zero-shot", model, seeds, fraction}
//   cells[]        {model, task: "task/split", seeds, accuracy: {mean, low, high, n}, perSeed[]}
//   comparisons[]  {a, b, task, difference: {mean, low, high, n}, perSeed[]}
//   skipped[]      one line per evaluation that skipped bad records or images
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { hierarchicalBootstrap, type Interval } from "../eval/stats.js";
import { accuracyOf, interval, matrix, pairedDifference, seedsOf, starred, type EvalRun } from "./report.js";

export interface PaperModel { name: string; kind: "finetune" | "zero-shot"; model: string; seeds: number[] | null; fraction: number | null }
export interface PaperCell { model: string; task: string; seeds: number[]; accuracy: Interval; perSeed: number[] }
export interface PaperComparison { a: string; b: string; task: string; difference: Interval; perSeed: number[] }

/** Each model's accuracy per task, and the listed paired differences. */
export function summarizePaper(runs: readonly EvalRun[], models: readonly PaperModel[], compare: readonly { a: string; b: string }[], seed = 0): { cells: PaperCell[]; comparisons: PaperComparison[] } {
  const tasks = [...new Set(runs.map((r) => r.task))];
  const of = (model: string, task: string) => runs.filter((r) => r.arm === model && r.task === task).sort((x, y) => x.seed - y.seed);
  const cells: PaperCell[] = [];
  for (const m of models) {
    for (const task of tasks) {
      const group = of(m.name, task);
      if (group.length === 0) continue;
      cells.push({ model: m.name, task, seeds: group.map((r) => r.seed), accuracy: hierarchicalBootstrap(matrix(group), { seed }), perSeed: group.map(accuracyOf) });
    }
  }
  const zeroShot = new Set(models.filter((m) => m.kind === "zero-shot").map((m) => m.name));
  const comparisons: PaperComparison[] = [];
  for (const { a, b } of compare) {
    for (const task of tasks) {
      let [ra, rb] = [of(a, task), of(b, task)];
      // A zero-shot model's one evaluation stands for every seed of the other side.
      if (zeroShot.has(a) && !zeroShot.has(b)) ra = rb.map((x) => ({ ...ra[0]!, seed: x.seed }));
      if (zeroShot.has(b) && !zeroShot.has(a)) rb = ra.map((x) => ({ ...rb[0]!, seed: x.seed }));
      const d = ra.length > 0 && rb.length > 0 ? pairedDifference(ra, rb, seed) : null;
      if (d) comparisons.push({ a, b, task, ...d });
    }
  }
  return { cells, comparisons };
}


export interface PaperReportMeta {
  name: string;
  harness: string;
  tasks: readonly { task: string; split: string; data: string }[];
  models: readonly PaperModel[];
  compare: readonly { a: string; b: string }[];
  skipped: readonly string[];
  seconds: number;
}

/** Writes results.json and results.md into the study folder; returns the Markdown. */
export function writePaperReport(dir: string, runs: readonly EvalRun[], meta: PaperReportMeta): { markdown: string } {
  const { cells, comparisons } = summarizePaper(runs, meta.models, meta.compare);
  const tasks = [...new Set(cells.map((c) => c.task))];
  const from = (m: PaperModel) => (m.kind === "zero-shot" ? `zero-shot ${m.model}` : `fine-tuned from ${m.model}${m.fraction !== null && m.fraction < 1 ? ` (fraction ${m.fraction})` : ""}`);
  const cellText = (model: string, task: string) => {
    const c = cells.find((x) => x.model === model && x.task === task);
    return c ? `${interval(c.accuracy)}${c.perSeed.length > 1 ? `<br>(${seedsOf(c.perSeed)})` : ""}` : "–";
  };
  const markdown = [
    `# Results: ${meta.name}`,
    "",
    `Accuracy (%) with a 95% interval (hierarchical bootstrap: seeds resampled, then questions; each seed's value below when there are several); harness ${meta.harness}.`,
    "",
    `| model | from | ${tasks.join(" | ")} |`,
    `|---|---|${tasks.map(() => "---|").join("")}`,
    ...meta.models.map((m) => `| ${m.name} | ${from(m)}${m.seeds && m.seeds.length > 1 ? `, seeds ${m.seeds.join(", ")}` : ""} | ${tasks.map((t) => cellText(m.name, t)).join(" | ")} |`),
    ...(comparisons.length > 0 ? [
      "",
      "## Comparisons",
      "",
      "Paired differences (same seeds, same questions); * marks an interval that excludes 0.",
      "",
      "| a − b | task | difference | per seed |",
      "|---|---|---|---|",
      ...comparisons.map((c) => `| ${c.a} − ${c.b} | ${c.task} | ${starred(c.difference)} | ${seedsOf(c.perSeed)} |`),
    ] : []),
    "",
    meta.skipped.length > 0 ? `Skipped input (each evaluation's results.json lists it):\n\n${meta.skipped.map((l) => `- ${l}`).join("\n")}` : "Skipped input: none (every evaluated question and image was read).",
  ].join("\n");
  writeFileSync(join(dir, "results.md"), markdown + "\n");
  writeFileSync(join(dir, "results.json"), JSON.stringify({
    name: meta.name, harness: meta.harness, tasks: meta.tasks,
    intervals: "95%, hierarchical bootstrap: seeds resampled with replacement, then questions (paired for differences)",
    models: meta.models, cells, comparisons, skipped: meta.skipped, seconds: meta.seconds,
  }, null, 2) + "\n");
  return { markdown };
}
