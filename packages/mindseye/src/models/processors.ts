// Image processors of the vision towers, reproducing transformers' (slow, PIL-based) processors
// on decoded 8-bit RGB images:
//
//   CLIP      resize shortest edge (bicubic) ─► center crop ─► ×1/255 ─► (x − mean) / std  [3, H, W]
//   LLaVA     pad to a square with the mean colour (expand2square) ─► CLIP
//   SigLIP    resize to a fixed size (bicubic) ─► ×1/255 ─► (x − 0.5) / 0.5               [3, H, W]
//   Qwen2-VL  smart_resize (multiples of 28 within a pixel budget) ─► bicubic ─► ×1/255 ─► CLIP
//             mean/std ─► the image twice (temporal patch 2) cut into 14-px patches in 2×2-merge
//             order ─► pixel_values [patches, 3·2·14·14], image_grid_thw [1, 3]
//
// Sources: transformers' image_transforms.py (resize, center_crop, rescale, normalize),
// models/clip/image_processing_clip.py, models/siglip/image_processing_siglip.py,
// models/qwen2_vl/image_processing_qwen2_vl.py; LLaVA's llava/mm_utils.py (expand2square);
// Pillow's src/libImaging/Resample.c, whose 8-bit two-pass bicubic resize HF calls and which
// resizeBicubic reproduces bit for bit. Arithmetic is done as numpy does it (float64 rescale then
// float32, float32 normalisation), so outputs equal HF's exactly. Newer transformers versions may
// default to the torchvision-based "fast" processors, whose resize differs slightly; these are
// the reference (slow) ones.
import { torch, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { hfField, ensure, type HfJson } from "../config/hf.js";

/** A decoded 8-bit RGB image: row-major, 3 bytes per pixel (sharp's `.raw()` output for 3 channels). */
export interface RgbImage {
  readonly data: Uint8Array; // [H, W, 3]
  readonly width: number;
  readonly height: number;
}

export type Rgb = readonly [number, number, number];

/** OpenAI CLIP's normalisation (transformers' OPENAI_CLIP_MEAN / OPENAI_CLIP_STD). */
export const CLIP_MEAN: Rgb = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: Rgb = [0.26862954, 0.26130258, 0.27577711];
/** SigLIP's normalisation (IMAGENET_STANDARD_MEAN / _STD): pixels to [-1, 1]. */
export const HALF: Rgb = [0.5, 0.5, 0.5];

function checkImage(img: RgbImage, where: string): void {
  const { width: w, height: h, data } = img;
  if (!Number.isInteger(w) || !Number.isInteger(h) || w <= 0 || h <= 0) throw new RangeError(`${where}: image size must be positive integers, got ${w}×${h}`);
  if (!(data instanceof Uint8Array)) throw new TypeError(`${where}: image data must be a Uint8Array of RGB bytes`);
  if (data.length !== w * h * 3) {
    throw new RangeError(`${where}: a ${w}×${h} RGB image needs ${w * h * 3} bytes, got ${data.length} (decode to 3-channel RGB, e.g. sharp(...).removeAlpha().raw())`);
  }
}

// ---------------------------------------------------------------------------------------------
// Pillow's bicubic resize (Resample.c), for 8-bit RGB

/** Fixed-point bits of the integer coefficients: 32 − 8 (pixel) − 2 (overshoot headroom). */
const PRECISION_BITS = 22;
const ONE = 1 << PRECISION_BITS;

/** Keys' cubic convolution kernel with a = −0.5 (support 2), as Pillow writes it. */
function bicubicFilter(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

interface Coefficients {
  /** Taps per output sample (the buffer stride). */
  ksize: number;
  /** First input index and tap count per output sample. */
  bounds: Int32Array;
  /** Integer weights, ksize per output sample, summing to ≈ 2^22. */
  kk: Int32Array;
}

/**
 * precompute_coeffs + normalize_coeffs_8bpc: when shrinking, the kernel is stretched by the
 * scale (antialiasing), weights are normalised to sum 1 in float64, then rounded half away
 * from zero to 22-bit fixed point.
 */
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2), kk = new Int32Array(outSize * ksize);
  const inv = 1 / filterscale;
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0); // C's (int) cast truncates
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      w[x] = bicubicFilter((x + xmin - center + 0.5) * inv);
      ww += w[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0 ? w[x]! / ww : w[x]!;
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

/** clip8: drop the fixed-point bits (arithmetic shift) and clamp to a byte. */
function clip8(ss: number): number {
  const v = Math.floor(ss / ONE);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** One horizontal pass: [h, w, 3] -> [h, outW, 3], rounded to 8 bits as Pillow does between passes. */
function resampleHorizontal(src: Uint8Array, w: number, h: number, outW: number): Uint8Array {
  const { ksize, bounds, kk } = coefficients(w, outW);
  const out = new Uint8Array(h * outW * 3);
  for (let y = 0; y < h; y++) {
    const row = y * w * 3;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2]!, xmax = bounds[xx * 2 + 1]!, k = xx * ksize;
      let s0 = ONE / 2, s1 = ONE / 2, s2 = ONE / 2;
      for (let x = 0; x < xmax; x++) {
        const p = row + (x + xmin) * 3, c = kk[k + x]!;
        s0 += src[p]! * c;
        s1 += src[p + 1]! * c;
        s2 += src[p + 2]! * c;
      }
      const o = (y * outW + xx) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return out;
}

/** One vertical pass: [h, w, 3] -> [outH, w, 3]. */
function resampleVertical(src: Uint8Array, w: number, h: number, outH: number): Uint8Array {
  const { ksize, bounds, kk } = coefficients(h, outH);
  const out = new Uint8Array(outH * w * 3);
  const stride = w * 3;
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2]!, ymax = bounds[yy * 2 + 1]!, k = yy * ksize;
    for (let i = 0; i < stride; i++) {
      let s = ONE / 2;
      for (let y = 0; y < ymax; y++) s += src[(y + ymin) * stride + i]! * kk[k + y]!;
      out[yy * stride + i] = clip8(s);
    }
  }
  return out;
}

/**
 * PIL's `Image.resize((width, height), Image.BICUBIC)` of an RGB image, bit for bit: separable,
 * horizontal pass then vertical (each only when that side changes), with 8-bit rounding and
 * clamping after each pass. Images more than 100× taller than wide that shrink vertically are
 * resized vertically first, as Pillow ≥ 12.2 does.
 * ```ts
 * const small = resizeBicubic(img, 224, 168);
 * ```
 */
export function resizeBicubic(img: RgbImage, width: number, height: number): RgbImage {
  checkImage(img, "resizeBicubic");
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`resizeBicubic: target size must be positive integers, got ${width}×${height}`);
  }
  const { width: w, height: h } = img;
  let data = img.data;
  if (h > w * 100 && height < h) {
    if (height !== h) data = resampleVertical(data, w, h, height);
    if (width !== w) data = resampleHorizontal(data, w, height, width);
  } else {
    if (width !== w) data = resampleHorizontal(data, w, h, width);
    if (height !== h) data = resampleVertical(data, width, h, height);
  }
  return { data: data === img.data ? data.slice() : data, width, height };
}

// ---------------------------------------------------------------------------------------------
// Geometry: HF's shortest-edge size, center crop, LLaVA's pad to square, Qwen2-VL's smart_resize

/**
 * get_resize_output_image_size(default_to_square=False): the shorter side becomes `size`, the
 * longer keeps the aspect ratio, truncated (Python's int()).
 */
export function shortestEdgeSize(width: number, height: number, size: number): { width: number; height: number } {
  const [short, long] = width <= height ? [width, height] : [height, width];
  const newLong = Math.trunc((size * long) / short);
  return width <= height ? { width: size, height: newLong } : { width: newLong, height: size };
}

/**
 * image_transforms.center_crop: the centred cropWidth×cropHeight window, offsets floored; an
 * image smaller than the crop is first padded with zeros (centred, extra pixel after), as HF does.
 */
export function centerCrop(img: RgbImage, cropWidth: number, cropHeight: number): RgbImage {
  checkImage(img, "centerCrop");
  if (!Number.isInteger(cropWidth) || !Number.isInteger(cropHeight) || cropWidth <= 0 || cropHeight <= 0) {
    throw new RangeError(`centerCrop: crop size must be positive integers, got ${cropWidth}×${cropHeight}`);
  }
  // Per axis: `pad` zeros before the image (0 when the crop fits) and the first row/column
  // taken in padded coordinates. HF pads an axis by ceil((crop − size) / 2) before.
  const axis = (size: number, crop: number) => {
    const start = Math.floor((size - crop) / 2); // Python's // floors
    if (start >= 0) return { pad: 0, first: start };
    const pad = Math.ceil((crop - size) / 2);
    return { pad, first: Math.max(0, start + pad) };
  };
  const ay = axis(img.height, cropHeight), ax = axis(img.width, cropWidth);
  const out = new Uint8Array(cropWidth * cropHeight * 3);
  for (let y = 0; y < cropHeight; y++) {
    const sy = ay.first + y - ay.pad;
    if (sy < 0 || sy >= img.height) continue;
    for (let x = 0; x < cropWidth; x++) {
      const sx = ax.first + x - ax.pad;
      if (sx < 0 || sx >= img.width) continue;
      const s = (sy * img.width + sx) * 3, o = (y * cropWidth + x) * 3;
      out[o] = img.data[s]!;
      out[o + 1] = img.data[s + 1]!;
      out[o + 2] = img.data[s + 2]!;
    }
  }
  return { data: out, width: cropWidth, height: cropHeight };
}

/** LLaVA's background for expand2square: `tuple(int(x * 255) for x in image_processor.image_mean)`. */
export function llavaBackground(mean: Rgb = CLIP_MEAN): Rgb {
  return [Math.trunc(mean[0] * 255), Math.trunc(mean[1] * 255), Math.trunc(mean[2] * 255)];
}

/**
 * LLaVA's expand2square: the image pasted on a square of its longer side filled with
 * `background`, centred on the padded axis (offset floored); a square image is returned as is.
 */
export function expandToSquare(img: RgbImage, background: Rgb): RgbImage {
  checkImage(img, "expandToSquare");
  const { width: w, height: h } = img;
  if (w === h) return img;
  const side = Math.max(w, h);
  const ox = w > h ? 0 : Math.floor((h - w) / 2), oy = w > h ? Math.floor((w - h) / 2) : 0;
  const out = new Uint8Array(side * side * 3);
  for (let i = 0; i < side * side; i++) out.set(background, i * 3);
  for (let y = 0; y < h; y++) out.set(img.data.subarray(y * w * 3, (y + 1) * w * 3), ((y + oy) * side + ox) * 3);
  return { data: out, width: side, height: side };
}

/** Python 3's round(): to the nearest integer, ties to even (round(2.5) = 2, round(3.5) = 4). */
export function pyRound(x: number): number {
  const f = Math.floor(x), d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export interface SmartResizeOptions {
  /** Both sides become multiples of this (patch 14 × merge 2 = 28). */
  factor?: number;
  /** Fewest pixels after resizing (HF default 56·56). */
  minPixels?: number;
  /** Most pixels after resizing (HF default 28·28·1280). */
  maxPixels?: number;
}

/**
 * Qwen2-VL's smart_resize: each side rounded (ties to even) to a multiple of `factor`, then
 * scaled down (floor) or up (ceil) by one common factor to fit [minPixels, maxPixels].
 * Errors as HF: a side below `factor`, or an aspect ratio above 200.
 * ```ts
 * smartResize(480, 640); // { height: 476, width: 644 }
 * ```
 */
export function smartResize(height: number, width: number, o: SmartResizeOptions = {}): { height: number; width: number } {
  const factor = o.factor ?? 28, minPixels = o.minPixels ?? 56 * 56, maxPixels = o.maxPixels ?? 28 * 28 * 1280;
  if (height < factor || width < factor) {
    throw new RangeError(`smart_resize: height:${height} or width:${width} must be larger than factor:${factor} (upscale or pad tiny images first)`);
  }
  const ratio = Math.max(height, width) / Math.min(height, width);
  if (ratio > 200) throw new RangeError(`smart_resize: absolute aspect ratio must be smaller than 200, got ${ratio} (${width}×${height}); crop or pad the image`);
  let h = pyRound(height / factor) * factor, w = pyRound(width / factor) * factor;
  if (h * w > maxPixels) {
    const beta = Math.sqrt((height * width) / maxPixels);
    h = Math.floor(height / beta / factor) * factor;
    w = Math.floor(width / beta / factor) * factor;
  } else if (h * w < minPixels) {
    const beta = Math.sqrt(minPixels / (height * width));
    h = Math.ceil((height * beta) / factor) * factor;
    w = Math.ceil((width * beta) / factor) * factor;
  }
  if (h === 0 || w === 0) {
    throw new RangeError(`smart_resize: ${width}×${height} within maxPixels ${maxPixels} leaves a side below ${factor} px (HF's PIL resize would fail); raise maxPixels or crop the image`);
  }
  return { height: h, width: w };
}

// ---------------------------------------------------------------------------------------------
// Rescale and normalise (numpy's arithmetic)

/**
 * [H, W, 3] bytes -> [3, H, W] float32 as HF: rescale = float32(float64(x) · factor), then
 * normalise in float32: (x − float32(mean)) / float32(std).
 */
function toChw(img: RgbImage, c: { doRescale: boolean; rescaleFactor: number; doNormalize: boolean; imageMean: Rgb; imageStd: Rgb }): Float32Array {
  const { width: w, height: h, data } = img, n = w * h;
  const out = new Float32Array(3 * n);
  const mean = c.imageMean.map(Math.fround), std = c.imageStd.map(Math.fround);
  for (let ch = 0; ch < 3; ch++) {
    const m = mean[ch]!, s = std[ch]!;
    for (let i = 0; i < n; i++) {
      let v = data[i * 3 + ch]!;
      if (c.doRescale) v = Math.fround(v * c.rescaleFactor);
      if (c.doNormalize) v = Math.fround(Math.fround(v - m) / s);
      out[ch * n + i] = v;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Processor configs

interface Common {
  /** Whether to resize (HF do_resize). */
  doResize: boolean;
  /** Multiply bytes by rescaleFactor (HF do_rescale). */
  doRescale: boolean;
  /** 1/255 in every release (HF rescale_factor). */
  rescaleFactor: number;
  /** Subtract imageMean and divide by imageStd per channel (HF do_normalize). */
  doNormalize: boolean;
  /** Per-channel mean, RGB (HF image_mean). */
  imageMean: Rgb;
  /** Per-channel standard deviation, RGB (HF image_std). */
  imageStd: Rgb;
}

/** CLIPImageProcessor, plus LLaVA's pad-to-square. */
export interface ClipProcessorConfig extends Common {
  kind: "clip";
  /** The shorter side after resizing, in pixels (HF size.shortest_edge). */
  shortestEdge: number;
  /** Whether to center crop (HF do_center_crop). */
  doCenterCrop: boolean;
  /** Crop size in pixels (HF crop_size). */
  cropHeight: number;
  cropWidth: number;
  /** LLaVA's image_aspect_ratio "pad": expand2square with the mean colour first (not in HF's processor). */
  padToSquare: boolean;
}

/** SiglipImageProcessor. */
export interface SiglipProcessorConfig extends Common {
  kind: "siglip";
  /** The fixed size every image is resized to (HF size.height / size.width). */
  height: number;
  width: number;
}

/** Qwen2VLImageProcessor (used by Qwen2-VL and Qwen2.5-VL). */
export interface Qwen2VLProcessorConfig extends Common {
  kind: "qwen2_vl";
  /** Pixel budget of smart_resize (HF min_pixels / size.shortest_edge, max_pixels / size.longest_edge). */
  minPixels: number;
  maxPixels: number;
  /** Spatial patch side (14). */
  patchSize: number;
  /** Frames per patch (2: an image is repeated). */
  temporalPatchSize: number;
  /** Side of the patch square merged into one LLM token (2); smart_resize's factor is patchSize·mergeSize. */
  mergeSize: number;
}

export type ImageProcessorConfig = ClipProcessorConfig | SiglipProcessorConfig | Qwen2VLProcessorConfig;

const common = { doResize: true, doRescale: true, rescaleFactor: 1 / 255, doNormalize: true } as const;

/** Presets from each model's preprocessor_config.json. */
export const PROCESSOR_PRESETS = Object.freeze({
  /** openai/clip-vit-base-patch16. */
  "clip-224": { kind: "clip", ...common, imageMean: CLIP_MEAN, imageStd: CLIP_STD, shortestEdge: 224, doCenterCrop: true, cropHeight: 224, cropWidth: 224, padToSquare: false },
  /** openai/clip-vit-large-patch14-336. */
  "clip-336": { kind: "clip", ...common, imageMean: CLIP_MEAN, imageStd: CLIP_STD, shortestEdge: 336, doCenterCrop: true, cropHeight: 336, cropWidth: 336, padToSquare: false },
  /** LLaVA-1.5 (image_aspect_ratio "pad") over openai/clip-vit-large-patch14-336's processor. */
  "llava-1.5": { kind: "clip", ...common, imageMean: CLIP_MEAN, imageStd: CLIP_STD, shortestEdge: 336, doCenterCrop: true, cropHeight: 336, cropWidth: 336, padToSquare: true },
  /** google/siglip-base-patch16-224. */
  "siglip-224": { kind: "siglip", ...common, imageMean: HALF, imageStd: HALF, height: 224, width: 224 },
  /** google/siglip-so400m-patch14-384. */
  "siglip-384": { kind: "siglip", ...common, imageMean: HALF, imageStd: HALF, height: 384, width: 384 },
  /** Qwen/Qwen2.5-VL-7B-Instruct (max 16384 tokens of 28×28 px; formats.md §3.4). */
  "qwen2.5-vl": { kind: "qwen2_vl", ...common, imageMean: CLIP_MEAN, imageStd: CLIP_STD, minPixels: 3136, maxPixels: 12845056, patchSize: 14, temporalPatchSize: 2, mergeSize: 2 },
} satisfies Record<string, ImageProcessorConfig>);

/** Checks a processor config once; every error names the field. */
export function validateProcessorConfig<C extends ImageProcessorConfig>(c: C, where = "image processor"): C {
  ensure(typeof c.rescaleFactor === "number" && c.rescaleFactor > 0, `${where}.rescaleFactor`, `must be a positive number, got ${JSON.stringify(c.rescaleFactor)}`);
  for (const k of ["imageMean", "imageStd"] as const) {
    const v = c[k];
    ensure(Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === "number" && Number.isFinite(x)), `${where}.${k}`, `must be 3 numbers (R, G, B), got ${JSON.stringify(v)}`);
  }
  ensure(c.imageStd.every((s) => s > 0), `${where}.imageStd`, `must be positive, got ${JSON.stringify(c.imageStd)}`);
  const positive = (k: string, v: number) => ensure(Number.isInteger(v) && v > 0, `${where}.${k}`, `must be a positive integer, got ${JSON.stringify(v)}`);
  switch (c.kind) {
    case "clip": positive("shortestEdge", c.shortestEdge); positive("cropHeight", c.cropHeight); positive("cropWidth", c.cropWidth); break;
    case "siglip": positive("height", c.height); positive("width", c.width); break;
    case "qwen2_vl":
      for (const k of ["minPixels", "maxPixels", "patchSize", "temporalPatchSize", "mergeSize"] as const) positive(k, c[k]);
      ensure(c.minPixels <= c.maxPixels, `${where}.minPixels`, `${c.minPixels} exceeds maxPixels ${c.maxPixels}`);
      break;
    default: throw new ConfigError(`${where}.kind: unknown processor kind ${JSON.stringify((c as { kind: unknown }).kind)} (expected "clip", "siglip" or "qwen2_vl")`);
  }
  return c;
}

/**
 * Reads a preprocessor_config.json: CLIPImageProcessor, SiglipImageProcessor or
 * Qwen2VLImageProcessor (also named Qwen2_5_VLImageProcessor). Only bicubic resampling
 * (resample 3) is implemented. LLaVA's pad-to-square lives in the model config: pass
 * `{ padToSquare: image_aspect_ratio === "pad" }`.
 */
export function processorConfigFromHf(json: HfJson, opts: { padToSquare?: boolean } = {}, where = "preprocessor_config.json"): ImageProcessorConfig {
  // Older files (e.g. openai/clip-*) name a feature extractor; AutoImageProcessor maps
  // XFeatureExtractor to XImageProcessor.
  const legacy = hfField<string | undefined>(json, "feature_extractor_type", "string", where, "");
  const type = hfField<string>(json, "image_processor_type", "string", where, legacy ? legacy.replace("FeatureExtractor", "ImageProcessor") : undefined);
  const resample = hfField<number>(json, "resample", "integer", where, 3);
  ensure(resample === 3, `${where}.resample`, `only bicubic (3) is implemented, got ${resample}`);
  const rgb = (key: string, fallback: Rgb): Rgb => {
    const v = hfField<number[]>(json, key, "array", where, [...fallback]);
    ensure(v.length === 3 && v.every((x) => typeof x === "number"), `${where}.${key}`, `must be 3 numbers, got ${JSON.stringify(v)}`);
    return [v[0]!, v[1]!, v[2]!];
  };
  const base = (mean: Rgb, std: Rgb): Common => ({
    doResize: hfField(json, "do_resize", "boolean", where, true),
    doRescale: hfField(json, "do_rescale", "boolean", where, true),
    rescaleFactor: hfField(json, "rescale_factor", "number", where, 1 / 255),
    doNormalize: hfField(json, "do_normalize", "boolean", where, true),
    imageMean: rgb("image_mean", mean),
    imageStd: rgb("image_std", std),
  });
  const sizeDict = (key: string, fallback: HfJson): HfJson => {
    const v = json[key];
    if (typeof v === "number") return key === "size" ? { shortest_edge: v } : { height: v, width: v }; // get_size_dict of an int
    return hfField<HfJson>(json, key, "object", where, fallback);
  };
  if (opts.padToSquare && type !== "CLIPImageProcessor") throw new ConfigError(`${where}: padToSquare (LLaVA) applies to a CLIPImageProcessor, not ${type}`);
  switch (type) {
    case "CLIPImageProcessor": {
      const size = sizeDict("size", { shortest_edge: 224 }), crop = sizeDict("crop_size", { height: 224, width: 224 });
      return validateProcessorConfig({
        kind: "clip", ...base(CLIP_MEAN, CLIP_STD),
        shortestEdge: hfField(size, "shortest_edge", "integer", `${where} size`),
        doCenterCrop: hfField(json, "do_center_crop", "boolean", where, true),
        cropHeight: hfField(crop, "height", "integer", `${where} crop_size`),
        cropWidth: hfField(crop, "width", "integer", `${where} crop_size`),
        padToSquare: opts.padToSquare ?? false,
      }, where);
    }
    case "SiglipImageProcessor": {
      const size = sizeDict("size", { height: 224, width: 224 });
      return validateProcessorConfig({
        kind: "siglip", ...base(HALF, HALF),
        height: hfField(size, "height", "integer", `${where} size`), width: hfField(size, "width", "integer", `${where} size`),
      }, where);
    }
    case "Qwen2VLImageProcessor": case "Qwen2_5_VLImageProcessor": {
      // Newer files carry size {shortest_edge, longest_edge}; min_pixels / max_pixels override it (HF).
      const size = hfField<HfJson>(json, "size", "object", where, { shortest_edge: 56 * 56, longest_edge: 28 * 28 * 1280 });
      return validateProcessorConfig({
        kind: "qwen2_vl", ...base(CLIP_MEAN, CLIP_STD),
        minPixels: hfField(json, "min_pixels", "integer", where, hfField(size, "shortest_edge", "integer", `${where} size`)),
        maxPixels: hfField(json, "max_pixels", "integer", where, hfField(size, "longest_edge", "integer", `${where} size`)),
        patchSize: hfField(json, "patch_size", "integer", where, 14),
        temporalPatchSize: hfField(json, "temporal_patch_size", "integer", where, 2),
        mergeSize: hfField(json, "merge_size", "integer", where, 2),
      }, where);
    }
    default:
      throw new ConfigError(`${where}: image_processor_type ${JSON.stringify(type)} is not implemented (expected CLIPImageProcessor, SiglipImageProcessor or Qwen2VLImageProcessor)`);
  }
}

// ---------------------------------------------------------------------------------------------
// Processors

const list = (images: RgbImage | RgbImage[]): RgbImage[] => (Array.isArray(images) ? images : [images]);

function stackChw(chws: Float32Array[], sizes: { width: number; height: number }[], where: string): Tensor {
  const { width: w, height: h } = sizes[0]!;
  for (const s of sizes) {
    if (s.width !== w || s.height !== h) throw new RangeError(`${where}: images came out at different sizes (${w}×${h} and ${s.width}×${s.height}); enable center crop or process them one by one`);
  }
  const all = new Float32Array(chws.length * 3 * w * h);
  chws.forEach((c, i) => all.set(c, i * c.length));
  return torch.tensor(all, { shape: [chws.length, 3, h, w] });
}

/** One image through CLIPImageProcessor's steps (after LLaVA's pad when asked): bytes before rescaling. */
export function clipGeometry(img: RgbImage, cfg: ClipProcessorConfig): RgbImage {
  checkImage(img, "CLIP processor");
  let x = cfg.padToSquare ? expandToSquare(img, llavaBackground(cfg.imageMean)) : img;
  if (cfg.doResize) {
    const s = shortestEdgeSize(x.width, x.height, cfg.shortestEdge);
    x = resizeBicubic(x, s.width, s.height);
  }
  if (cfg.doCenterCrop) x = centerCrop(x, cfg.cropWidth, cfg.cropHeight);
  return x;
}

/**
 * CLIPImageProcessor (and LLaVA-1.5's pad-to-square with `padToSquare`): pixel_values [B, 3, H, W].
 * ```ts
 * const pixels = processClip(images, PROCESSOR_PRESETS["llava-1.5"]); // [B, 3, 336, 336]
 * ```
 */
export function processClip(images: RgbImage | RgbImage[], cfg: ClipProcessorConfig): Tensor {
  const out = list(images).map((img) => clipGeometry(img, cfg));
  return stackChw(out.map((x) => toChw(x, cfg)), out, "CLIP processor");
}

/** SiglipImageProcessor: every image resized to height×width, pixel_values [B, 3, H, W] in [-1, 1]. */
export function processSiglip(images: RgbImage | RgbImage[], cfg: SiglipProcessorConfig): Tensor {
  const out = list(images).map((img) => {
    checkImage(img, "SigLIP processor");
    return cfg.doResize ? resizeBicubic(img, cfg.width, cfg.height) : img;
  });
  return stackChw(out.map((x) => toChw(x, cfg)), out, "SigLIP processor");
}

/**
 * Qwen2VLImageProcessor: each image smart-resized, normalised, repeated to temporalPatchSize
 * frames and cut into patches ordered by merge block (2×2 patches that become one LLM token are
 * consecutive); the images' patches are concatenated as HF does.
 * Returns pixel_values [Σ t·h·w, 3·T·P·P] (per-patch order: channel, frame, row, column) and
 * image_grid_thw [images, 3] (int64, in patches).
 */
export function processQwen2VL(images: RgbImage | RgbImage[], cfg: Qwen2VLProcessorConfig): { pixelValues: Tensor; imageGridThw: Tensor } {
  const P = cfg.patchSize, T = cfg.temporalPatchSize, m = cfg.mergeSize, dim = 3 * T * P * P;
  const chunks: Float32Array[] = [], grids: number[][] = [];
  for (const img of list(images)) {
    checkImage(img, "Qwen2-VL processor");
    let x = img;
    if (cfg.doResize) {
      const s = smartResize(img.height, img.width, { factor: P * m, minPixels: cfg.minPixels, maxPixels: cfg.maxPixels });
      x = resizeBicubic(img, s.width, s.height);
    }
    const { width: W, height: H } = x;
    if (H % (P * m) !== 0 || W % (P * m) !== 0) throw new RangeError(`Qwen2-VL processor: ${W}×${H} is not a multiple of ${P * m} px; keep doResize on`);
    const chw = toChw(x, cfg);
    const gh = H / P, gw = W / P;
    const out = new Float32Array(gh * gw * dim);
    let o = 0;
    // HF: reshape (t, T, C, gh/m, m, P, gw/m, m, P) -> transpose (0, 3, 6, 4, 7, 2, 1, 5, 8).
    for (let bh = 0; bh < gh / m; bh++) for (let bw = 0; bw < gw / m; bw++) for (let mh = 0; mh < m; mh++) for (let mw = 0; mw < m; mw++) {
      const y0 = (bh * m + mh) * P, x0 = (bw * m + mw) * P;
      for (let c = 0; c < 3; c++) for (let t = 0; t < T; t++) for (let py = 0; py < P; py++) {
        const row = c * H * W + (y0 + py) * W + x0; // every frame is the same image
        for (let px = 0; px < P; px++) out[o++] = chw[row + px]!;
      }
    }
    chunks.push(out);
    grids.push([1, gh, gw]);
  }
  const total = chunks.reduce((a, c) => a + c.length, 0);
  const all = new Float32Array(total);
  let at = 0;
  for (const c of chunks) { all.set(c, at); at += c.length; }
  return {
    pixelValues: torch.tensor(all, { shape: [total / dim, dim] }),
    imageGridThw: torch.tensor(grids, { dtype: "int64" }),
  };
}
