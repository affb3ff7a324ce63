// `mindseye train --config recipe.yaml --set a.b=value`: one stage of the study. Rerunning the
// same command resumes from the run folder's latest checkpoint; `--override lr=1e-4` changes the
// lr (or warmup_steps) on that resume on purpose, e.g. after a divergence.
import type { Command } from "commander";
import { loadStageRecipe, runRecipe, StageInterrupted, type StageOptions } from "../train/stages/index.js";
import { DivergenceError, formatLr, type ResumeOverrides } from "../train/trainer.js";

interface TrainArgs { config: string; set: string[]; override: string[]; quiet?: boolean }

/** Recipe keys (`train.<key>`) a resume may override, and their trainer names. */
const OVERRIDABLE = { lr: "lr", warmup_steps: "warmupSteps" } as const;

/**
 * `--override lr=1e-4 warmup_steps=50` → the trainer's resume overrides, and the `--set train.*`
 * values that put them in the recipe (so that the recipe the stage writes shows the values in effect).
 */
export function parseResumeOverrides(args: string[]): { overrides: ResumeOverrides; sets: string[] } {
  const overrides: ResumeOverrides = {};
  for (const arg of args) {
    const eq = arg.indexOf("=");
    const key = arg.slice(0, eq), value = Number(arg.slice(eq + 1));
    if (eq < 0 || !(key in OVERRIDABLE)) throw new Error(`--override ${arg}: expected key=value with key one of ${Object.keys(OVERRIDABLE).join(", ")}`);
    if (!Number.isFinite(value) || arg.slice(eq + 1).trim() === "") throw new Error(`--override ${arg}: ${arg.slice(eq + 1)} is not a number`);
    overrides[OVERRIDABLE[key as keyof typeof OVERRIDABLE]] = value;
  }
  const sets = Object.entries(OVERRIDABLE).flatMap(([key, name]) => (overrides[name] === undefined ? [] : [`train.${key}=${overrides[name]}`]));
  return { overrides, sets };
}

const quote = (s: string) => (/^[\w./=:,@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The command line that reruns this run, with `override` replacing the --override values. */
export function trainCommand(o: TrainArgs, override = o.override): string {
  return ["mindseye", "train", "--config", quote(o.config), ...o.set.flatMap((s) => ["--set", quote(s)]), ...override.flatMap((s) => ["--override", quote(s)]), ...(o.quiet ? ["--quiet"] : [])].join(" ");
}

export function registerTrainCommand(program: Command): void {
  program
    .command("train")
    .description("run one stage (world-encoder, vlm-base, latent-pretrain, finetune) from a recipe; rerunning the same command resumes from its last checkpoint")
    .requiredOption("--config <recipe.yaml>", "the recipe (configs/*.yaml)")
    .option("--set <key=value...>", "override recipe values by dotted key, e.g. --set train.steps=100 loss.lambda_sim=0", [])
    .option("--override <key=value...>", "on a resume, change lr or warmup_steps although the checkpoint was trained with others (recorded in the run), e.g. --override lr=1e-4", [])
    .option("--quiet", "no progress output")
    .action(async (o: TrainArgs) => {
      const { overrides, sets } = parseResumeOverrides(o.override);
      const recipe = loadStageRecipe(o.config, [...o.set, ...sets]);
      const runOpts: StageOptions = { quiet: o.quiet ?? false, ...(o.override.length > 0 ? { overrides } : {}) };
      try {
        const out = await runRecipe(recipe, runOpts);
        console.log(`${recipe.stage}: done; output in ${out}`);
      } catch (e) {
        if (e instanceof StageInterrupted) {
          // The trainer has set the exit code (130 after SIGINT, 143 after SIGTERM).
          console.error(`${e.message}:\n  ${trainCommand(o)}`);
          return;
        }
        if (e instanceof DivergenceError && e.checkpoint !== null) {
          const lr = `lr=${formatLr(e.suggestedLr)}`;
          throw new Error(`${e.message}\nThat command:\n  ${trainCommand(o, [...o.override.filter((s) => !s.startsWith("lr=")), lr])}`);
        }
        throw e;
      }
    });
}
