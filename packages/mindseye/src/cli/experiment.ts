// `mindseye experiment --config configs/demo.yaml`: the whole study, resumable.
import type { Command } from "commander";
import { loadStudy, runStudy } from "../experiment/runner.js";

export function registerExperimentCommand(program: Command): void {
  program
    .command("experiment")
    .description("run the study (world → stages → three arms × fractions × seeds → evaluation → report); skips what is done; SIGINT/SIGTERM stop it after the current training step, and the same command resumes it")
    .requiredOption("--config <study.yaml>", "the study (configs/demo.yaml)")
    .option("--set <key=value...>", "override values by dotted key, e.g. --set seeds=[0] out=runs/quick", [])
    .option("--progress", "show each training run's progress")
    .option("--force", "redo steps whose settings (or the steps they read) changed since they ran, and every step after them")
    .action(async (o: { config: string; set: string[]; progress?: boolean; force?: boolean }) => {
      const study = loadStudy(o.config, o.set);
      const r = await runStudy(study, { quiet: !(o.progress ?? false), force: o.force ?? false });
      console.log(`\n${r.markdown}\n`);
      console.log(`study folder: ${r.dir} (results.md, results.csv, results.json, analysis.json; each run's metrics, checkpoints and predictions)`);
      console.log(`report: ${r.report}`);
    });
}
