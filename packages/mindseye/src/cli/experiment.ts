// `mindseye experiment --config configs/demo.yaml`: the whole study, resumable. A recipe of
// `steps:` (configs/paper/small.yaml) is the paper study on published models and real data.
import type { Command } from "commander";
import { loadStudy, runStudy, planStudy, type PlannedStep } from "../experiment/runner.js";
import { defaultJobs } from "../experiment/jobs.js";
import { positiveInt } from "./options.js";
import { isPaperStudy, loadPaperStudy, planPaperStudy, runPaperStudy } from "../experiment/paper.js";

export function registerExperimentCommand(program: Command): void {
  program
    .command("experiment")
    .description("run the study (world → stages → three arms × fractions × seeds → evaluation → report; or a paper study's steps → evaluation → report); skips what is done; SIGINT/SIGTERM stop it after the current training step, and the same command resumes it")
    .requiredOption("--config <study.yaml>", "the study (configs/demo.yaml), or a paper study of steps (configs/paper/small.yaml)")
    .option("--set <key=value...>", "override values by dotted key, e.g. --set seeds=[0] out=runs/quick", [])
    .option("--progress", "show each training run's progress")
    .option("--force", "redo steps whose settings (or the steps they read) changed since they ran, and every step after them")
    .option("--dry-run", "list every step with what a run would do to it (done, run, changed), and run nothing")
    .option("--jobs <n>", "run up to N of the steps after the study seed's base VLM at once, each in its own process (1: all in this process, in order)", String(defaultJobs()))
    .action(async (o: { config: string; set: string[]; progress?: boolean; force?: boolean; dryRun?: boolean; jobs: string }) => {
      if (isPaperStudy(o.config)) {
        const paper = loadPaperStudy(o.config, o.set);
        if (o.dryRun) {
          console.log(formatPlan(await planPaperStudy(paper), paper.study.out));
          return;
        }
        const r = await runPaperStudy(paper, { quiet: !(o.progress ?? false), force: o.force ?? false });
        console.log(`\n${r.markdown}\n`);
        console.log(`study folder: ${r.dir} (results.md, results.json; each step's run folder, each evaluation's predictions in eval/)`);
        return;
      }
      const study = loadStudy(o.config, o.set);
      if (o.dryRun) {
        console.log(formatPlan(await planStudy(study), study.out));
        return;
      }
      const r = await runStudy(study, { quiet: !(o.progress ?? false), force: o.force ?? false, jobs: positiveInt("--jobs", o.jobs) });
      console.log(`\n${r.markdown}\n`);
      console.log(`study folder: ${r.dir} (results.md, results.csv, results.json, analysis.json; each run's metrics, checkpoints and predictions)`);
      console.log(`report: ${r.report}`);
    });
}

/** The plan as lines: each step's status and name, then the counts per kind of step. */
export function formatPlan(plan: readonly PlannedStep[], dir: string): string {
  const lines = plan.map((p) => `${p.status.padEnd(7)} ${p.what}`);
  const kinds = [...new Set(plan.map((p) => p.kind))];
  const count = (kind: string, status: PlannedStep["status"]) => plan.filter((p) => p.kind === kind && p.status === status).length;
  lines.push("", `${dir}: ${plan.length} steps; per kind (to run / changed / done):`);
  for (const kind of kinds) lines.push(`  ${kind.padEnd(16)} ${count(kind, "run")} / ${count(kind, "changed")} / ${count(kind, "done")}`);
  if (plan.some((p) => p.status === "changed")) lines.push("changed steps stop a run: rerun with --force to redo them and every step after them, or use another --set out=…");
  return lines.join("\n");
}
