// `mindseye train --config recipe.yaml --set a.b=value`: one stage of the study.
import type { Command } from "commander";
import { loadStageRecipe, runRecipe } from "../train/stages/index.js";

export function registerTrainCommand(program: Command): void {
  program
    .command("train")
    .description("run one stage (world-encoder, vlm-base, latent-pretrain, finetune) from a recipe; resumes from its last checkpoint")
    .requiredOption("--config <recipe.yaml>", "the recipe (configs/*.yaml)")
    .option("--set <key=value...>", "override recipe values by dotted key, e.g. --set train.steps=100 loss.lambda_sim=0", [])
    .option("--quiet", "no progress output")
    .action(async (o: { config: string; set: string[]; quiet?: boolean }) => {
      const recipe = loadStageRecipe(o.config, o.set);
      const out = await runRecipe(recipe, { quiet: o.quiet ?? false });
      console.log(`${recipe.stage}: done; output in ${out}`);
    });
}
