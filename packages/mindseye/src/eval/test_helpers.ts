// Test helper shared by the evaluation tests: a tiny random MindsEye VLM over a world's
// tokenizer, saved as a self-contained model directory (weights, config, tokenizer, preprocessing).
import { copyFileSync, writeFileSync } from "node:fs";
import { Command } from "commander";
import { registerEvalCommand } from "../cli/eval.js";
import { join } from "node:path";
import { torch } from "@mindseye/torch";
import { Tokenizer } from "../data/tokenizer.js";
import { MindsEyeVLM, type VlmConfig } from "../models/vlm.js";
import { resolveVitConfig } from "../models/vit.js";
import { qwen2Preset } from "../models/qwen2.js";

/**
 * Writes the model to `dir` for `size`-px images. `imageTokenId` overrides the tokenizer's
 * image pad (to test a mismatch); `projectorScale` multiplies the projector's output weights, so
 * that a random model's answers depend on its images.
 */
export function saveTinyEvalModel(dir: string, tokenizerDir: string, size: number, o: { imageTokenId?: number; projectorScale?: number } = {}): void {
  const tok = Tokenizer.fromPretrained(tokenizerDir);
  const config: VlmConfig = {
    vision: resolveVitConfig({ variant: "siglip", hiddenSize: 32, intermediateSize: 37, numHiddenLayers: 2, numAttentionHeads: 4, imageSize: size, patchSize: 8 }),
    text: qwen2Preset("tiny", { vocabSize: tok.vocabSize }),
    visionFeatureLayer: -1, visionFeatureSelectStrategy: "default",
    imageTokenId: o.imageTokenId ?? tok.specialTokenIds.imagePad!, latentHead: null, latentTokenIds: [],
  };
  torch.manualSeed(0);
  const model = new MindsEyeVLM(config);
  if (o.projectorScale !== undefined) torch.noGrad(() => model.multi_modal_projector.linear_2.weight.mul_(o.projectorScale!));
  model.savePretrained(dir);
  model.parameters().forEach((p) => p.dispose());
  writeFileSync(join(dir, "preprocessor_config.json"), JSON.stringify({
    image_processor_type: "SiglipImageProcessor", do_resize: true, size: { height: size, width: size }, resample: 3,
    do_rescale: true, rescale_factor: 1 / 255, do_normalize: true, image_mean: [0.5, 0.5, 0.5], image_std: [0.5, 0.5, 0.5],
  }));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(tokenizerDir, f), join(dir, f));
}

/** Runs `mindseye eval` with `runs(parse)` and returns what it printed (console.log), restored after. */
export async function captureEvalCli(runs: (parse: (args: string[]) => Promise<unknown>) => Promise<void>): Promise<string> {
  const printed: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => { printed.push(a.join(" ")); };
  try {
    const program = new Command().exitOverride();
    registerEvalCommand(program);
    await runs((args) => program.parseAsync(["eval", ...args], { from: "user" }));
  } finally {
    console.log = log;
  }
  return printed.join("\n");
}
