#!/usr/bin/env node
// The `mindseye` command.
import { Command } from "commander";
import { VERSION } from "../version.js";
import { printDoctor } from "./doctor.js";
import { runDemo } from "./demo.js";
import { registerTargetsCommand } from "./targets.js";
import { registerTrainCommand } from "./train.js";
import { registerWorldCommand } from "./world.js";
import { registerExperimentCommand } from "./experiment.js";
import { registerEvalCommand } from "./eval.js";
import { registerImagineCommand } from "./imagine.js";
import { registerModelCommand } from "./model.js";
import { registerPlanCommand } from "./plan.js";
import { registerAnalyzeCommand } from "./analyze.js";
import { registerCompareCommand } from "./compare.js";
import { registerLaunchCommand } from "./launch.js";

const program = new Command()
  .name("mindseye")
  .description("Latent-prediction pretraining of vision-language models")
  .version(VERSION, "-v, --version");

program
  .command("doctor")
  .description("report libtorch, BLAS, threads, CUDA and allocator settings")
  .option("--json", "print as JSON")
  .action((o: { json?: boolean }) => printDoctor(o.json ?? false));

program
  .command("demo")
  .description("a one-minute engine smoke run: a small decoder learns world-style captions (the study is `mindseye experiment`)")
  .option("--steps <n>", "training steps", "300")
  .option("--seed <n>", "random seed", "0")
  .action((o: { steps: string; seed: string }) => {
    const steps = Number(o.steps), seed = Number(o.seed);
    if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps must be a positive integer, got ${o.steps}`);
    if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${o.seed}`);
    runDemo({ steps, seed, log: (l) => console.log(l) });
  });

registerWorldCommand(program);
registerTargetsCommand(program);
registerTrainCommand(program);
registerEvalCommand(program);
registerExperimentCommand(program);
registerImagineCommand(program);
registerModelCommand(program);
registerPlanCommand(program);
registerAnalyzeCommand(program);
registerCompareCommand(program);
registerLaunchCommand(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  console.error(`mindseye: ${e instanceof Error ? e.message : String(e)}`);
  // A run stopped by SIGINT/SIGTERM keeps the conventional 130/143 the trainer set.
  process.exit(typeof process.exitCode === "number" && process.exitCode !== 0 ? process.exitCode : 1);
});
