// Image decoding: any JPEG, PNG or WebP a reader found → 8-bit RGB pixels, row-major HWC.
// Resizing and normalisation belong to each model's processor (models/processors.ts); this file
// only decodes, and it decodes the way the Python side does, so pixels match PIL's:
// - Alpha is flattened onto white: out = a·rgb + (1 − a)·255. That is what qwen-vl-utils'
//   to_rgb (Qwen2.5-VL's own loader, used by lmms-eval) and transformers' newer convert_to_rgb
//   (idefics2, mllama) do. Dropping alpha (PIL's plain convert("RGB")) would show whatever colour
//   the transparent pixels happen to hold, often black, which ruins diagrams (ScienceQA).
// - Greyscale is replicated to three channels; CMYK is converted to sRGB through a CMYK profile
//   (libvips'; PIL's naive convert("RGB") gives slightly different colours for these rare files).
// - Embedded ICC profiles of RGB images are ignored, as PIL.Image.open ignores them: the stored
//   values are what the encoders saw in training.
// - EXIF orientation is not applied (PIL.Image.open does not; COCO's annotators saw raw pixels).
// - 16-bit images are scaled to 8 bits; animated images give their first frame.
// A corrupt or truncated image is a counted skip, never a crash.
import { createHash } from "node:crypto";
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import sharp from "sharp";
import type { ImageRef } from "./formats/index.js";
import { messageOf, type RecordSource, type SkipCounter } from "./formats/errors.js";

import type { RgbImage } from "../models/processors.js";

/** Decoded pixels (`data[(y * width + x) * 3 + c]`, c = R, G, B), what the model processors take. */
export type { RgbImage };

/** An image that could not be decoded; the message names it. */
export class ImageDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageDecodeError";
  }
}

const WHITE = { r: 255, g: 255, b: 255 };

function describe(input: ImageRef | Uint8Array): string {
  if (input instanceof Uint8Array) return `image bytes (${input.length} bytes)`;
  return input.kind === "file" ? input.path : `${input.name} (${input.bytes.length} bytes)`;
}

/**
 * Decodes one image to RGB uint8. Throws ImageDecodeError for data that is not a complete JPEG,
 * PNG or WebP (or another format libvips reads).
 * ```ts
 * const { data, width, height } = await decodeImage({ kind: "file", path: "val2017/000000000139.jpg" });
 * ```
 */
export async function decodeImage(input: ImageRef | Uint8Array): Promise<RgbImage> {
  const src = input instanceof Uint8Array ? input : input.kind === "file" ? input.path : input.bytes;
  try {
    // failOn "error": corrupt or truncated data aborts; mere warnings (common in web JPEGs that PIL reads) do not
    const { data, info } = await sharp(src, { failOn: "error", ignoreIcc: true })
      .flatten({ background: WHITE })
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return { data, width: info.width, height: info.height };
  } catch (e) {
    throw new ImageDecodeError(`cannot decode ${describe(input)}: ${messageOf(e)}`);
  }
}

/** One image to decode, with the record it belongs to (for the skip report). */
export interface DecodeItem {
  readonly image: ImageRef | Uint8Array;
  readonly source: RecordSource;
}

/**
 * Decodes, or counts a skip in `errors` (naming the record) and returns null. Past the counter's
 * error rate it throws ErrorRateExceeded: a dataset whose images are mostly broken stops the run.
 */
export async function decodeOrSkip(item: DecodeItem, errors: SkipCounter): Promise<RgbImage | null> {
  let image: RgbImage;
  try {
    image = await decodeImage(item.image);
  } catch (e) {
    if (!(e instanceof ImageDecodeError)) throw e;
    errors.skip(item.source, e.message);
    return null;
  }
  errors.ok();
  return image;
}

/**
 * Decodes a batch with at most `concurrency` images in flight (sharp works on libuv's thread
 * pool, so more than its size, UV_THREADPOOL_SIZE = 4 by default, only queues). Results are in
 * input order, null where an image was skipped. Every item counts once in `errors`; when records
 * share images, use DistinctImages so that each image counts once.
 * ```ts
 * const errors = new SkipCounter("images");
 * const pixels = await decodeBatch(pairs.map((p) => ({ image: p.image, source: p.source })), { errors });
 * ```
 */
export async function decodeBatch(items: readonly DecodeItem[], options: { errors: SkipCounter; concurrency?: number }): Promise<(RgbImage | null)[]> {
  return inParallel(items, options.concurrency, (item) => decodeOrSkip(item, options.errors));
}

/** Runs `work` over items with at most `concurrency` in flight; results in input order. */
async function inParallel<T, R>(items: readonly T[], concurrency: number | undefined, work: (item: T) => Promise<R>): Promise<R[]> {
  const n = concurrency ?? Math.min(4, availableParallelism());
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`decodeBatch: concurrency must be a positive integer, got ${n}`);
  const out = new Array<R>(items.length);
  let next = 0;
  let stopped = false; // after an error (ErrorRateExceeded) the other workers stop too
  const worker = async (): Promise<void> => {
    while (!stopped && next < items.length) {
      const i = next++;
      try {
        out[i] = await work(items[i]!);
      } catch (e) {
        stopped = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/** What makes two references the same image: a file's resolved path, or the bytes' content. */
export function imageKey(ref: ImageRef | Uint8Array): string {
  if (ref instanceof Uint8Array) return `bytes:${createHash("sha1").update(ref).digest("hex")}`;
  return ref.kind === "file" ? `file:${resolve(ref.path)}` : `bytes:${createHash("sha1").update(ref.bytes).digest("hex")}`;
}

/**
 * Decodes images that many records may share (GQA asks many questions about one image) and counts
 * each distinct image once in `errors`, under the first record that used it: one corrupt image
 * is one skip, however many questions it spoils. It remembers which images failed, not pixels.
 * ```ts
 * const images = new DistinctImages(new SkipCounter("images"));
 * images.errors.expectTotal(DistinctImages.count(items.flatMap((it) => it.images)));
 * const pixels = await images.decodeBatch(batch.flatMap((it) => it.images.map((image) => ({ image, source: it.source }))));
 * ```
 */
export class DistinctImages {
  /** key → whether it decoded (and was counted). */
  private readonly verdict = new Map<string, boolean>();

  constructor(readonly errors: SkipCounter) {}

  /** Distinct images among refs (the input's size for SkipCounter.expectTotal). */
  static count(refs: readonly ImageRef[]): number {
    return new Set(refs.map(imageKey)).size;
  }

  /** Like decodeBatch, but an image already counted is not counted again, and one that failed is not retried. */
  async decodeBatch(items: readonly DecodeItem[], options: { concurrency?: number } = {}): Promise<(RgbImage | null)[]> {
    const keys = items.map((it) => imageKey(it.image));
    // one decode per distinct image of the batch
    const first = new Map<string, number>();
    keys.forEach((k, i) => { if (!first.has(k) && this.verdict.get(k) !== false) first.set(k, i); });
    const todo = [...first.entries()];
    const decoded = await inParallel(todo, options.concurrency, async ([key, i]) => {
      const item = items[i]!;
      let image: RgbImage;
      try {
        image = await decodeImage(item.image);
      } catch (e) {
        if (!(e instanceof ImageDecodeError)) throw e;
        this.verdict.set(key, false);
        this.errors.skip(item.source, e.message);
        return null;
      }
      if (!this.verdict.has(key)) {
        this.verdict.set(key, true);
        this.errors.ok();
      }
      return image;
    });
    const byKey = new Map(todo.map(([key], j) => [key, decoded[j]!]));
    return keys.map((k) => byKey.get(k) ?? null);
  }
}
