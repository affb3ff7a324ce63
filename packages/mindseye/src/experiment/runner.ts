// `mindseye experiment --config configs/demo.yaml`: the study of the proposal from one command.
//
//   world → world-encoder → vlm-base ─┬─────────────────────────────── baseline ─┐
//                                     ├─ latent-pretrain (λ_sim = λ_align = 0) ─ control ─┼→ finetune × fraction × seed → eval
//                                     └─ latent-pretrain (full loss) ─────────── latent ──┘
//
// Every step writes its outputs under the study folder and is skipped when they exist, so an
// interrupted study resumes where it stopped. The report (results.json / .csv / .md) is
// rewritten from whatever evaluations exist.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { loadRecipe } from "../config/recipe.js";
import { generateWorld, resolveWorldOptions } from "../world/generate.js";
import { runWorldEncoder, runVlmBase, runLatentPretrain, runFinetune, WorldEncoderRecipe, VlmBaseRecipe, LatentPretrainRecipe, FinetuneRecipe } from "../train/stages/index.js";
import { isDone } from "../train/stages/common.js";
import { evaluate } from "../eval/run.js";
import { evaluateRetrieval, type RetrievalResults } from "../analysis/retrieval.js";
import { writeReport, ARMS, type Arm, type EvalRun } from "./report.js";

const common = { stage: true, world: true, out: true, seed: true } as const;

export const StudyConfig = z.strictObject({
  name: z.string().default("study"),
  /** The study folder: everything it makes goes here. */
  out: z.string(),
  seed: z.number().int().min(0).default(0),
  world: z.strictObject({
    scenes: z.number().int().positive(),
    seed: z.number().int().min(0).default(0),
    size: z.number().int().positive().default(32),
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
  }).default({ tasks: ["world_gqa", "world_sqa", "world_jigsaw"], splits: ["test", "test_novel"], limit: null, batch_size: 32 }),
});
export type StudyConfig = z.output<typeof StudyConfig>;

export function loadStudy(path: string, overrides: string[] = []): StudyConfig {
  return loadRecipe(path, StudyConfig, overrides);
}

export interface StudyResult { dir: string; markdown: string; evaluations: number }

export async function runStudy(c: StudyConfig, opts: { log?: (line: string) => void; quiet?: boolean } = {}): Promise<StudyResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const quiet = opts.quiet ?? true;
  const dir = c.out;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "study.resolved.json"), JSON.stringify(c, null, 2) + "\n");
  const t0 = performance.now();
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;
  const step = async <T>(what: string, done: boolean, fn: () => Promise<T>): Promise<void> => {
    if (done) { log(`[skip] ${what} (already done)`); return; }
    log(`[run ] ${what} …`);
    await fn();
    log(`[done] ${what} (${elapsed()})`);
  };

  // 1. The world.
  const world = join(dir, "world");
  await step(`world: ${c.world.scenes} scenes`, existsSync(join(world, "manifest.json")), () =>
    generateWorld(resolveWorldOptions({ out: world, scenes: c.world.scenes, seed: c.world.seed, size: c.world.size, latents: c.world.latents, log: () => {} })));

  // 2. The frozen encoder, the base VLM, and the two pretraining arms.
  const stages = join(dir, "stages");
  const encoder = join(stages, "world-encoder", "encoder");
  await step("stage 1: world-encoder", isDone(encoder), () =>
    runWorldEncoder(WorldEncoderRecipe.parse({ ...c.world_encoder, stage: "world-encoder", seed: c.seed, world, out: join(stages, "world-encoder") }), { quiet }));
  const base = join(stages, "vlm-base", "model");
  await step("stage 2: vlm-base (captioning)", isDone(base), () =>
    runVlmBase(VlmBaseRecipe.parse({ ...c.vlm_base, stage: "vlm-base", seed: c.seed, world, encoder, out: join(stages, "vlm-base") }), { quiet }));
  const pretrain = (arm: "control" | "latent") => {
    const loss = arm === "control" ? { ...c.latent_pretrain.loss, lambda_sim: 0, lambda_align: 0 } : c.latent_pretrain.loss;
    return LatentPretrainRecipe.parse({
      ...c.latent_pretrain, loss, stage: "latent-pretrain", seed: c.seed, world, encoder, base,
      targets: join(stages, `targets-${c.latent_pretrain.pool.replace(":", "")}`), out: join(stages, `pretrain-${arm}`),
    });
  };
  for (const arm of ["control", "latent"] as const) {
    await step(`stage 3: latent-pretrain, ${arm === "control" ? "text control (λ_sim = λ_align = 0)" : "latent (full loss)"}`, isDone(join(stages, `pretrain-${arm}`, "model")), () => runLatentPretrain(pretrain(arm), { quiet }));
  }
  // Alignment of the latent arm: retrieval of each test image from its imagined latents.
  const retrievalDir = join(dir, "eval", "retrieval-test");
  await step("eval: world_retrieval of the latent arm (test captions)", existsSync(join(retrievalDir, "results.json")), () =>
    evaluateRetrieval({ modelDir: join(stages, "pretrain-latent", "model"), dataDir: world, encoderDir: encoder, out: retrievalDir, cacheRoot: join(dir, "gallery"), quiet }));
  const retrieval = JSON.parse(readFileSync(join(retrievalDir, "results.json"), "utf8")) as RetrievalResults;

  const start: Record<Arm, string> = { baseline: base, control: join(stages, "pretrain-control", "model"), latent: join(stages, "pretrain-latent", "model") };

  // 3. Fine-tune every arm × fraction × seed, and evaluate each.
  const runs: EvalRun[] = [];
  for (const fraction of c.fractions) {
    for (const seed of c.seeds) {
      for (const arm of ARMS) {
        const ftDir = join(dir, "finetune", arm, `fraction-${fraction}`, `seed-${seed}`);
        await step(`stage 4: finetune ${arm}, fraction ${fraction}, seed ${seed}`, isDone(join(ftDir, "model")), () =>
          runFinetune(FinetuneRecipe.parse({ ...c.finetune, stage: "finetune", seed, world, model: start[arm], fraction, out: ftDir }), { quiet }));
        for (const task of c.eval.tasks) {
          for (const split of c.eval.splits) {
            const out = join(dir, "eval", arm, `fraction-${fraction}`, `seed-${seed}`, `${task}-${split}`);
            await step(`eval ${arm} f=${fraction} s=${seed} ${task}/${split}`, existsSync(join(out, "results.json")), () =>
              evaluate({
                modelDir: join(ftDir, "model"), task, split, dataDir: world, out, harness: c.finetune.harness, batchSize: c.eval.batch_size,
                ...(c.eval.limit !== null ? { limit: c.eval.limit } : {}), quiet,
              }));
            runs.push({ arm, fraction, seed, task: `${task}/${split}`, outcomes: readOutcomes(join(out, "predictions.jsonl")) });
          }
        }
      }
    }
  }

  // 4. The report.
  const { markdown } = writeReport(dir, runs, {
    name: c.name, seeds: c.seeds, fractions: c.fractions, harness: c.finetune.harness, tasks: c.eval.tasks, splits: c.eval.splits,
    retrieval: { n: retrieval.n, recall: retrieval.recall, chance: retrieval.chance, medianRank: retrieval.medianRank, galleryImages: retrieval.gallery.images },
    seconds: (performance.now() - t0) / 1000,
  });
  log(`study finished in ${elapsed()}: ${runs.length} evaluations`);
  return { dir, markdown, evaluations: runs.length };
}

function readOutcomes(path: string): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const line of readFileSync(path, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const p = JSON.parse(line) as { id: string; correct: boolean };
    out.set(p.id, p.correct);
  }
  return out;
}
