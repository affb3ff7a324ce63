// `mindseye world generate --out DIR --scenes N --seed S [--size PX] [--latents K] [--gqa-draws D]`: the
// synthetic world (world/generate.ts documents the output layout).
import type { Command } from "commander";
import { ConfigError } from "../config/errors.js";
import { WORLD_DEFAULTS, generateWorld, resolveWorldOptions } from "../world/generate.js";

/** A whole non-negative decimal number, or a ConfigError naming the option. */
function integer(name: string, text: string): number {
  if (!/^\d+$/.test(text.trim())) throw new ConfigError(`--${name} must be a non-negative integer, got "${text}"`);
  return Number(text);
}

export function registerWorldCommand(program: Command): void {
  const world = program.command("world").description("the synthetic world: scenes, captions and benchmark-format tasks");
  world
    .command("generate")
    .description("render scenes and write captions (COCO), questions (GQA), problems (ScienceQA), jigsaw items (BLINK), a tokenizer and baselines")
    .requiredOption("--out <dir>", "output directory (new or empty)")
    .requiredOption("--scenes <n>", "number of scenes")
    .option("--seed <n>", "random seed", "0")
    .option("--size <px>", "image side in pixels", String(WORLD_DEFAULTS.size))
    .option("--latents <k>", "number of latent query tokens <|latent_i|> in the tokenizer", String(WORLD_DEFAULTS.latents))
    .option("--gqa-draws <d>", "draws of each GQA question family per training scene (1: about 5.5 questions per scene; real GQA has about 13 per image)", String(WORLD_DEFAULTS.gqaDraws))
    .option("--workers <n>", "render threads (0: render in the main thread; default: cores, for 2,000 scenes or more)")
    .option("--force", "replace a world already in --out")
    .action(async (o: { out: string; scenes: string; seed: string; size: string; latents: string; gqaDraws: string; workers?: string; force?: boolean }) => {
      const opts = resolveWorldOptions({
        out: o.out,
        scenes: integer("scenes", o.scenes),
        seed: integer("seed", o.seed),
        size: integer("size", o.size),
        latents: integer("latents", o.latents),
        gqaDraws: integer("gqa-draws", o.gqaDraws),
        ...(o.workers === undefined ? {} : { workers: integer("workers", o.workers) }),
        force: o.force ?? false,
        log: (line) => console.log(line),
        progress: true,
      });
      await generateWorld(opts);
    });
}
