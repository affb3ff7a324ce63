// Imagining a caption (`mindseye imagine`, and the study report's contact sheets): the model
// predicts the caption's latents ẑ and the gallery images whose encoder latents z are closest
// are shown.
//
// The run is a latent-pretrained model directory, its run folder, or a study folder (then the
// study's latent arm, its world's test images and its world encoder); analysis/retrieval.ts
// explains how the latents are built and compared. The similarity is the mean over the K latents
// of cos(ẑ_k, z_k). The top k images are written as a contact sheet PNG, best first, each scaled
// to a 128-px cell with its rank and similarity drawn under it in a built-in pixel font (no
// system fonts needed).
import { existsSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import sharp from "sharp";
import { torch } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { decodeImage } from "../data/images.js";
import {
  resolveLatentRun, loadGallery, galleryFromDir, worldGallery, defaultCacheRoot, checkTrainingEncoder, runTargetStats, loadImaginer, disposeImaginer,
  imagineInput, imagineLatents, latentSimilarity, type LatentRun, type Imaginer,
} from "./retrieval.js";

export interface ImagineOptions {
  /** A latent-pretrained model directory, its run folder, or a study folder. */
  run: string;
  caption: string;
  /** A world directory or a folder of images (default: the model's world). */
  galleryDir?: string;
  /** The world split used as the gallery (default test). */
  split?: string;
  /** The frozen encoder (default: the one the latent-pretrain recipe names). */
  encoderDir?: string;
  /** How many images to show (default 8). */
  k?: number;
  /** The contact sheet's path (default: imagine-<caption>.png in the working directory). */
  out?: string;
  /** Root of the gallery feature cache (default: the study's gallery/ or a temp dir). */
  cacheRoot?: string;
  quiet?: boolean;
}

export interface ImagineResult {
  caption: string;
  run: LatentRun;
  /** Caption tokens (the K latent queries not counted) and how many of them are the tokenizer's unknown token. */
  tokens: number;
  unknownTokens: number;
  latents: { k: number; d: number };
  gallery: { name: string; images: number; skipped: number; cache: string; encoderFingerprint: string };
  top: { rank: number; id: string; path: string; similarity: number }[];
  sheet: string;
}

/**
 * Imagines a caption and finds the closest gallery images; writes their contact sheet.
 * ```ts
 * const r = await imagine({ run: "runs/demo", caption: "a small red circle", k: 4 });
 * r.top[0]; // { rank: 1, id: "2731", path: "runs/demo/world/images/000000002731.png", similarity: 0.71 }
 * ```
 */
export async function imagine(o: ImagineOptions): Promise<ImagineResult> {
  const k = o.k ?? 8;
  if (!Number.isInteger(k) || k < 1) throw new ConfigError(`--k must be a positive integer, got ${k}`);
  const split = o.split ?? "test";
  const run = resolveLatentRun(o.run, o.encoderDir !== undefined ? { encoder: o.encoderDir } : {});
  if (o.galleryDir === undefined && !existsSync(run.worldDir)) {
    throw new ConfigError(`the model's world ${run.worldDir} (its default gallery) is not there; pass --gallery DIR (a world directory or a folder of images)`);
  }
  const spec = o.galleryDir !== undefined ? galleryFromDir(o.galleryDir, split) : worldGallery(run.worldDir, split);
  const gallery = await loadGallery({
    spec, encoderDir: run.encoderDir, pool: run.pool, targetNorm: run.targetNorm, cacheRoot: o.cacheRoot ?? defaultCacheRoot(run),
    checkEncoder: (fp) => checkTrainingEncoder(run, fp), quiet: o.quiet ?? true, ...runTargetStats(run),
  });
  let im: Imaginer | null = null;
  let top: ImagineResult["top"], tokens: number, unknownTokens: number, latents: ImagineResult["latents"];
  try {
    const imaginer = (im = loadImaginer(run.modelDir));
    const [N, K, D] = gallery.latents.shape as [number, number, number];
    if (imaginer.latentIds.length !== K || imaginer.model.config.latentHead!.latentSize !== D) {
      throw new ConfigError(`${run.modelDir} predicts [${imaginer.latentIds.length}, ${imaginer.model.config.latentHead!.latentSize}] latents but the encoder's ${run.pool} features are [${K}, ${D}]`);
    }
    latents = { k: K, d: D };
    const ids = imagineInput(imaginer, o.caption).slice(0, -K);
    tokens = ids.length;
    const unk = imaginer.tokenizer.specialTokenIds.unk;
    unknownTokens = unk === null ? 0 : ids.filter((t) => t === unk).length;
    const best = torch.scope(() => {
      const sim = latentSimilarity(imagineLatents(imaginer, [o.caption]), gallery.latents).reshape(-1); // [N]
      const t = sim.topk(Math.min(k, N));
      return { values: Array.from(t.values.toTypedArray(), Number), indices: Array.from(t.indices.toTypedArray(), Number) };
    });
    top = best.indices.map((g, i) => ({ rank: i + 1, id: gallery.ids[g]!, path: gallery.paths[g]!, similarity: best.values[i]! }));
  } finally {
    if (im !== null) disposeImaginer(im);
    gallery.latents.dispose();
  }
  const sheet = o.out ?? `imagine-${slug(o.caption)}.png`;
  await contactSheet(top, sheet);
  return {
    caption: o.caption, run, tokens, unknownTokens, latents,
    gallery: { name: spec.name, images: gallery.ids.length, skipped: gallery.skipped, cache: gallery.cacheDir, encoderFingerprint: gallery.encoderFingerprint },
    top, sheet,
  };
}

function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 48).replace(/-+$/, "") || "caption";
}

// ---- the contact sheet -------------------------------------------------------------------------

/** 3×5 pixel glyphs, rows top to bottom, for what a label needs: "#12 0.734", "-0.051". */
const GLYPHS: Readonly<Record<string, readonly string[]>> = {
  "0": ["111", "101", "101", "101", "111"], "1": ["010", "110", "010", "010", "111"], "2": ["111", "001", "111", "100", "111"],
  "3": ["111", "001", "111", "001", "111"], "4": ["101", "101", "111", "001", "001"], "5": ["111", "100", "111", "001", "111"],
  "6": ["111", "100", "111", "101", "111"], "7": ["111", "001", "001", "001", "001"], "8": ["111", "101", "111", "101", "111"],
  "9": ["111", "101", "111", "001", "111"], ".": ["000", "000", "000", "000", "010"], "-": ["000", "000", "111", "000", "000"],
  "#": ["101", "111", "101", "111", "101"], " ": ["000", "000", "000", "000", "000"],
};

export const SHEET = { cell: 128, gap: 6, margin: 6, fontScale: 2, maxColumns: 8, background: 236, ink: 20 } as const;

/** Draws `text` into an RGB buffer of width `w` at (x, y) in the pixel font, `scale` px per font pixel. */
export function drawText(buf: Buffer, w: number, x: number, y: number, text: string, scale: number, ink: number): void {
  [...text].forEach((ch, i) => {
    const g = GLYPHS[ch];
    if (g === undefined) throw new RangeError(`drawText: no glyph for ${JSON.stringify(ch)} (the pixel font has digits, ".", "-", "#" and space)`);
    for (let r = 0; r < 5; r++) {
      for (let c = 0; c < 3; c++) {
        if (g[r]![c] !== "1") continue;
        for (let dy = 0; dy < scale; dy++) {
          for (let dx = 0; dx < scale; dx++) {
            const at = ((y + r * scale + dy) * w + x + (i * 4 + c) * scale + dx) * 3;
            buf[at] = buf[at + 1] = buf[at + 2] = ink;
          }
        }
      }
    }
  });
}

/** The label under an image: "#rank similarity". */
export function sheetLabel(rank: number, similarity: number): string {
  return `#${rank} ${similarity.toFixed(3)}`;
}

/**
 * Writes the images, best first, left to right and then in rows of at most 8, each fit into a
 * 128-px cell (nearest-neighbour when enlarged, so small world images stay sharp), with
 * "#rank similarity" under it. Returns the sheet's size.
 */
export async function contactSheet(items: readonly { rank: number; path: string; similarity: number }[], out: string): Promise<{ width: number; height: number }> {
  if (items.length === 0) throw new RangeError("contactSheet: no images");
  const { cell, gap, margin, fontScale, maxColumns, background, ink } = SHEET;
  const strip = 5 * fontScale + 2 * gap;
  const cols = Math.min(items.length, maxColumns), rows = Math.ceil(items.length / maxColumns);
  const width = 2 * margin + cols * cell + (cols - 1) * gap;
  const height = 2 * margin + rows * (cell + strip) + (rows - 1) * gap;
  const sheet = Buffer.alloc(width * height * 3, background);
  for (const [i, item] of items.entries()) {
    const img = await decodeImage({ kind: "file", path: item.path });
    const enlarge = Math.max(img.width, img.height) <= cell;
    const { data, info } = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
      .resize(cell, cell, { fit: "inside", kernel: enlarge ? "nearest" : "lanczos3" })
      .raw().toBuffer({ resolveWithObject: true });
    const x0 = margin + (i % maxColumns) * (cell + gap), y0 = margin + Math.floor(i / maxColumns) * (cell + strip + gap);
    const ox = x0 + ((cell - info.width) >> 1), oy = y0 + ((cell - info.height) >> 1); // centred in its cell
    for (let y = 0; y < info.height; y++) data.copy(sheet, ((oy + y) * width + ox) * 3, y * info.width * 3, (y + 1) * info.width * 3);
    drawText(sheet, width, x0, y0 + cell + gap, sheetLabel(item.rank, item.similarity), fontScale, ink);
  }
  mkdirSync(dirname(resolve(out)), { recursive: true });
  await sharp(sheet, { raw: { width, height, channels: 3 } }).png().toFile(out);
  return { width, height };
}
