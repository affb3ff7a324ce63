// `mindseye eval --model RUN --task T --data DIR [--harness lmms-eval|vlmevalkit] [--split S]
// [--limit N] [--batch-size N] [--max-new-tokens N] [--shuffle-images SEED] [--out DIR]`: a model
// answers a task's questions and the harness's rules score them (eval/run.ts documents the
// outputs); with --shuffle-images, each question is shown another's images (the blind control).
// `--task world_retrieval [--encoder DIR] [--captions first|all]` ranks images by imagined latents
// instead (analysis/retrieval.ts).
import { join } from "node:path";
import type { Command } from "commander";
import { ConfigError } from "../config/errors.js";
import { evaluate, HARNESSES, MAX_NEW_TOKENS_CAP, type EvalResults } from "../eval/run.js";
import { TASKS, RETRIEVAL_TASK, getTask, resolveSplit } from "../eval/tasks.js";
import { evaluateRetrieval, formatRetrieval } from "../analysis/retrieval.js";
import type { Harness } from "../eval/harness.js";
import type { Interval } from "../eval/stats.js";
import { parseRate } from "./targets.js";
import { nonNegativeInt, positiveInt } from "./options.js";


const pct = (x: number) => (100 * x).toFixed(1);

/** The short table the command prints: overall, per-type and (where the task has them) per-form accuracy with 95% intervals. */
export function formatResults(r: EvalResults, out: string): string {
  const rows: [string, Interval][] = [["overall", r.accuracy], ...Object.entries(r.byType), ...Object.entries(r.byForm ?? {}).map(([k, v]): [string, Interval] => [`form ${k}`, v])];
  const w = Math.max(...rows.map(([k]) => k.length), 4);
  const line = (k: string, n: string, acc: string, ci: string) => `  ${k.padEnd(w)}  ${n.padStart(6)}  ${acc.padStart(8)}  ${ci}`;
  const skipped = r.skipped.records + r.skipped.images + r.skipped.items > 0
    ? [
      `skipped: ${r.skipped.records} malformed records, ${r.skipped.images} undecodable images (${r.skipped.items} questions; all listed in results.json "skipped.list")`,
      ...r.skipped.list.slice(0, 10).map((e) => `  ${e.kind} ${e.file} ${e.record}: ${e.reason}`),
      ...(r.skipped.list.length > 10 ? [`  … and ${r.skipped.list.length - 10} more`] : []),
    ].join("\n")
    : "skipped: none";
  return [
    `${r.task} ${r.split} (${r.harness})${r.shuffledImages === null ? "" : `, images shuffled across questions (seed ${r.shuffledImages})`}: ${r.n} questions, ${r.itemsPerSecond.toFixed(1)} items/s, model ${r.model.path} (${r.model.fingerprint.slice(0, 12)})`,
    line("type", "n", "accuracy", "95% CI"),
    ...rows.map(([k, v]) => line(k, String(v.n), `${pct(v.mean)}%`, `[${pct(v.low)}, ${pct(v.high)}]`)),
    `${r.truncated} answers reached the ${r.generation.maxNewTokens}-token limit`,
    skipped,
    `predictions.jsonl and results.json in ${out}`,
  ].join("\n");
}

export function registerEvalCommand(program: Command): void {
  program
    .command("eval")
    .description("evaluate a VLM on a benchmark task with a public harness's prompts and exact scoring")
    .requiredOption("--model <dir>", "a MindsEye VLM directory (config.json, model.safetensors, preprocessor_config.json, tokenizer files), a run folder holding one in model/, one of its training checkpoints (checkpoints/step-N, read with the run's model/ files), or a Hugging Face id in the local hub cache")
    .requiredOption("--task <name>", `one of ${[...TASKS.keys(), RETRIEVAL_TASK.name].join(", ")}`)
    .requiredOption("--data <dir>", "the world directory for world_* tasks; the dataset root for gqa (questions1.2/, images/), scienceqa_img (data/scienceqa) and blink_jigsaw (Jigsaw/*.parquet)")
    .option("--harness <name>", HARNESSES.join(" | "), "lmms-eval")
    .option("--split <name>", "default: test (world tasks), testdev (gqa), test (scienceqa_img), val (blink_jigsaw)")
    .option("--limit <n>", "only the first N questions")
    .option("--batch-size <n>", "questions per generation batch", "16")
    .option("--max-new-tokens <n>", `new tokens per answer (default: the harness's, at most ${MAX_NEW_TOKENS_CAP})`)
    .option("--shuffle-images <seed>", "the blind control: each question is shown the images of another (a seeded derangement), so accuracy falls to what the text allows")
    .option("--out <dir>", "output folder (default: MODEL/eval/TASK-SPLIT-HARNESS, with -shuffled-SEED under --shuffle-images; world_retrieval: MODEL/eval/world_retrieval-SPLIT)")
    .option("--encoder <dir>", "world_retrieval: the frozen encoder of the targets (default: the one the latent-pretrain recipe names)")
    .option("--captions <which>", "world_retrieval: first | all captions per image", "first")
    .option("--max-error-rate <fraction>", "stop when more than this fraction of the task's records, or of its distinct images, is bad", "0.01")
    .action(async (o: { model: string; task: string; data: string; harness: string; split?: string; limit?: string; batchSize: string; maxNewTokens?: string; shuffleImages?: string; out?: string; encoder?: string; captions: string; maxErrorRate: string }) => {
      if (o.task === RETRIEVAL_TASK.name) {
        if (o.shuffleImages !== undefined) throw new ConfigError("--shuffle-images is for question tasks: world_retrieval ranks images by captions and has no blind control; leave it out");
        if (o.captions !== "first" && o.captions !== "all") throw new ConfigError(`--captions must be first or all, got "${o.captions}"`);
        const split = o.split ?? RETRIEVAL_TASK.defaultSplit;
        const out = o.out ?? join(o.model, "eval", `${o.task}-${split}`);
        const r = await evaluateRetrieval({
          modelDir: o.model, dataDir: o.data, split, out, captions: o.captions, batchSize: positiveInt("--batch-size", o.batchSize),
          ...(o.encoder === undefined ? {} : { encoderDir: o.encoder }),
        });
        console.log(formatRetrieval(r, out));
        return;
      }
      if (!(HARNESSES as readonly string[]).includes(o.harness)) throw new ConfigError(`--harness must be ${HARNESSES.join(" or ")}, got "${o.harness}"`);
      const split = resolveSplit(getTask(o.task), o.split);
      const shuffleImages = o.shuffleImages === undefined ? undefined : nonNegativeInt("--shuffle-images", o.shuffleImages);
      const out = o.out ?? join(o.model, "eval", `${o.task}-${split}-${o.harness}${shuffleImages === undefined ? "" : `-shuffled-${shuffleImages}`}`);
      const r = await evaluate({
        modelDir: o.model, task: o.task, harness: o.harness as Harness, split, dataDir: o.data, out,
        batchSize: positiveInt("--batch-size", o.batchSize), maxErrorRate: parseRate("--max-error-rate", o.maxErrorRate),
        ...(o.limit === undefined ? {} : { limit: positiveInt("--limit", o.limit) }),
        ...(o.maxNewTokens === undefined ? {} : { maxNewTokens: positiveInt("--max-new-tokens", o.maxNewTokens) }),
        ...(shuffleImages === undefined ? {} : { shuffleImages }),
      });
      console.log(formatResults(r, out));
    });
}
