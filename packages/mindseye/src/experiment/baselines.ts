// Blind baselines on exactly the questions a study evaluates: chance, the split's majority
// answer, and the best text-only predictor fitted on the training questions (the majority
// answer of the question's type, or of its exact prompt text — world/stats.ts's two). Computed
// through the evaluation's task readers and prompts, so they see what the models see minus the
// image. Chance per GQA question comes from the world's stats.json (per question type).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SkipCounter } from "../data/formats/index.js";
import type { Harness } from "../eval/harness.js";
import { getTask, promptFor, type EvalItem } from "../eval/tasks.js";
import { splitStats, type StatItem } from "../world/stats.js";
import type { Baseline } from "./report.js";

const STATS_KEY: Record<string, "gqa" | "scienceqa" | "blink"> = { world_gqa: "gqa", world_sqa: "scienceqa", world_jigsaw: "blink" };

async function readItems(world: string, task: string, split: string, limit: number | null): Promise<EvalItem[]> {
  const items: EvalItem[] = [];
  for await (const item of getTask(task).items(world, split, new SkipCounter(`${task} ${split}`))) {
    items.push(item);
    if (limit !== null && items.length >= limit) break;
  }
  return items;
}

/** Baselines of `task` on the first `limit` questions of each split (all with null). */
export async function blindBaselines(world: string, task: string, splits: readonly string[], limit: number | null, harness: Harness): Promise<Record<string, Baseline>> {
  const statsPath = join(world, "stats.json");
  const typeChance = new Map<string, number>();
  if (existsSync(statsPath) && STATS_KEY[task]) {
    const stats = JSON.parse(readFileSync(statsPath, "utf8")) as Record<string, Record<string, { byType: Record<string, { chance: number }> }>>;
    for (const [type, b] of Object.entries(stats[STATS_KEY[task]]?.train?.byType ?? {})) typeChance.set(type, b.chance);
  }
  const asStat = (it: EvalItem): StatItem => ({
    type: it.type, text: promptFor(it, harness), answer: String(it.answer),
    chance: it.kind === "gqa" ? typeChance.get(it.type) ?? NaN : 1 / it.choices.length,
  });
  const train = (await readItems(world, task, "train", null)).map(asStat);
  const out: Record<string, Baseline> = {};
  for (const split of splits) {
    const s = splitStats((await readItems(world, task, split, limit)).map(asStat), train).overall;
    out[`${task}/${split}`] = { chance: s.chance, majority: s.majority, textOnly: Math.max(s.trainTypeMajority ?? 0, s.trainQuestionPrior ?? 0), n: s.n };
  }
  return out;
}
