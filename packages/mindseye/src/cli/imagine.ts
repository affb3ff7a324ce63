// `mindseye imagine --model RUN "a small red circle left of a large blue square" [--gallery DIR]
// [--split S] [--encoder DIR] [--k 8] [--out sheet.png]`: the command around analysis/imagine.ts,
// which imagines the caption and writes the contact sheet.
import type { Command } from "commander";
import { SIMILARITY_TEXT } from "../analysis/retrieval.js";
import { imagine, type ImagineResult } from "../analysis/imagine.js";
import { positiveInt } from "./options.js";

/** What the command prints. */
export function formatImagine(r: ImagineResult): string {
  const w = Math.max(...r.top.map((t) => t.path.length), 5);
  return [
    `imagined ${r.latents.k} latents × ${r.latents.d} for "${r.caption}" (${r.tokens} tokens${r.unknownTokens > 0 ? `, ${r.unknownTokens} unknown to the tokenizer` : ""}) with ${r.run.modelDir}`,
    `similarity: ${SIMILARITY_TEXT} (${r.run.pool}, ${r.run.targetNorm}), against ${r.gallery.images} images of ${r.gallery.name} (encoder ${r.run.encoderDir}, ${r.gallery.encoderFingerprint.slice(0, 12)})`,
    `  rank  similarity  ${"image".padEnd(w)}`,
    ...r.top.map((t) => `  ${String(t.rank).padStart(4)}  ${t.similarity.toFixed(4).padStart(10)}  ${t.path}`),
    `contact sheet: ${r.sheet}`,
  ].join("\n");
}

export function registerImagineCommand(program: Command): void {
  program
    .command("imagine")
    .description("imagine a caption with a latent-pretrained model and show the gallery images whose encoder latents are closest")
    .argument("<caption>", "the text to imagine")
    .requiredOption("--model <run>", "a latent-pretrained model directory, its run folder (recipe.resolved.json + model/), or a study folder")
    .option("--gallery <dir>", "a world directory or a folder of images (default: the model's world)")
    .option("--split <name>", "the world split whose images form the gallery", "test")
    .option("--encoder <dir>", "the frozen encoder of the targets (default: the one the latent-pretrain recipe names)")
    .option("--k <n>", "images to show", "8")
    .option("--out <png>", "contact sheet path (default: imagine-<caption>.png)")
    .action(async (caption: string, o: { model: string; gallery?: string; split: string; encoder?: string; k: string; out?: string }) => {
      const r = await imagine({
        run: o.model, caption, split: o.split, k: positiveInt("--k", o.k), quiet: false,
        ...(o.gallery === undefined ? {} : { galleryDir: o.gallery }),
        ...(o.encoder === undefined ? {} : { encoderDir: o.encoder }),
        ...(o.out === undefined ? {} : { out: o.out }),
      });
      console.log(formatImagine(r));
    });
}
