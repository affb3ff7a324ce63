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
import { availableParallelism } from "node:os";
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
 * input order, null where an image was skipped.
 * ```ts
 * const errors = new SkipCounter("images");
 * const pixels = await decodeBatch(pairs.map((p) => ({ image: p.image, source: p.source })), { errors });
 * ```
 */
export async function decodeBatch(items: readonly DecodeItem[], options: { errors: SkipCounter; concurrency?: number }): Promise<(RgbImage | null)[]> {
  const concurrency = options.concurrency ?? Math.min(4, availableParallelism());
  if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`decodeBatch: concurrency must be a positive integer, got ${concurrency}`);
  const out = new Array<RgbImage | null>(items.length).fill(null);
  let next = 0;
  let stopped = false; // after an error (ErrorRateExceeded) the other workers stop too
  const worker = async (): Promise<void> => {
    while (!stopped && next < items.length) {
      const i = next++;
      try {
        out[i] = await decodeOrSkip(items[i]!, options.errors);
      } catch (e) {
        stopped = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}
