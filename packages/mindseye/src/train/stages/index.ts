// The four stages of the study, each a recipe (configs/*.yaml) validated by its schema.
import { readFileSync } from "node:fs";
import { z } from "zod";
import { parse as parseYaml } from "yaml";
import { loadRecipe, parseOverrides } from "../../config/recipe.js";
import { ConfigError } from "../../config/errors.js";
import { WorldEncoderRecipe, runWorldEncoder } from "./world_encoder.js";
import { VlmBaseRecipe, runVlmBase } from "./vlm_base.js";
import { LatentPretrainRecipe, runLatentPretrain } from "./latent_pretrain.js";
import { FinetuneRecipe, runFinetune } from "./finetune.js";

export { WorldEncoderRecipe, runWorldEncoder, VlmBaseRecipe, runVlmBase, LatentPretrainRecipe, runLatentPretrain, FinetuneRecipe, runFinetune };
export { StageInterrupted, isDone, type StageOptions } from "./common.js";
import type { StageOptions } from "./common.js";

export const Recipe = z.discriminatedUnion("stage", [WorldEncoderRecipe, VlmBaseRecipe, LatentPretrainRecipe, FinetuneRecipe]);
export type Recipe = z.output<typeof Recipe>;

const STAGES = {
  "world-encoder": WorldEncoderRecipe, "vlm-base": VlmBaseRecipe, "latent-pretrain": LatentPretrainRecipe, finetune: FinetuneRecipe,
} as const;

/**
 * Loads a recipe file with `--set` overrides. Its `stage` picks the schema, so unknown keys and
 * wrong types are named with their dotted key against that stage's fields.
 */
export function loadStageRecipe(path: string, overrides: string[] = []): Recipe {
  let stage: unknown;
  try {
    stage = (parseYaml(readFileSync(path, "utf8")) as { stage?: unknown } | null)?.stage;
  } catch (e) {
    throw new ConfigError(`${path}: cannot read the recipe (${e instanceof Error ? e.message : String(e)})`);
  }
  for (const [key, value] of parseOverrides(overrides)) if (key.join(".") === "stage") stage = value;
  const schema = STAGES[stage as keyof typeof STAGES];
  if (schema === undefined) throw new ConfigError(`${path}: stage must be one of ${Object.keys(STAGES).join(", ")}, got ${JSON.stringify(stage)}`);
  return loadRecipe(path, schema, overrides);
}

/** Runs one stage; returns the directory of what it produced (an encoder or a model). */
export async function runRecipe(r: Recipe, opts: StageOptions = {}): Promise<string> {
  switch (r.stage) {
    case "world-encoder": return (await runWorldEncoder(r, opts)).encoderDir;
    case "vlm-base": return (await runVlmBase(r, opts)).modelDir;
    case "latent-pretrain": return (await runLatentPretrain(r, opts)).modelDir;
    case "finetune": return (await runFinetune(r, opts)).modelDir;
  }
}
