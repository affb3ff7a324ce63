// Image processors: Pillow's bicubic resize, HF's CLIP / SigLIP / Qwen2-VL processors and
// LLaVA's pad-to-square and InternVL2.5's load_image (tiles + thumbnail) against
// fixtures/models/make_processor_golden.py (Pillow + numpy following transformers and the
// InternVL model card step by step), smart_resize and Python's round, configs, errors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { torch, io, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import {
  resizeBicubic, centerCrop, expandToSquare, llavaBackground, shortestEdgeSize, smartResize, pyRound,
  processClip, processSiglip, processQwen2VL, processorConfigFromHf, validateProcessorConfig, PROCESSOR_PRESETS,
  CLIP_MEAN, CLIP_STD, type RgbImage, type ClipProcessorConfig, type SiglipProcessorConfig, type Qwen2VLProcessorConfig,
} from "./processors.js";
import { internVLProcessor } from "./family.js";
import { dynamicTiles } from "./internvl.js";

// dist/models/processors.test.js -> <repo>/fixtures/models/
const GOLDEN = fileURLToPath(new URL("../../../../fixtures/models/processor_golden.safetensors", import.meta.url));
const REGENERATE = "regenerate it with /usr/bin/python3 fixtures/models/make_processor_golden.py";
const fixture = io.loadFile(GOLDEN);
const meta = io.loadMetadata(GOLDEN) ?? {};

function header<T>(key: string): T {
  const v = meta[key];
  if (v === undefined) assert.fail(`${GOLDEN}: __metadata__ has no "${key}"; ${REGENERATE}`);
  return JSON.parse(v) as T;
}
function get(name: string): Tensor {
  return fixture.get(name) ?? assert.fail(`${GOLDEN} has no tensor "${name}"; ${REGENERATE}`);
}

/** The fixture's procedural image (make_image in the Python script), in the same integer arithmetic. */
function makeImage(w: number, h: number, seed: number): RgbImage {
  const data = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let c = 0; c < 3; c++) {
    const noise = Math.floor((((x * 31 + y * 17 + c * 7 + seed * 101) * 2654435761) % 4294967296) / 2 ** 24);
    const ramp = c === 0 ? Math.floor((x * 255) / Math.max(w - 1, 1)) : c === 1 ? Math.floor((y * 255) / Math.max(h - 1, 1)) : Math.floor(((x + y) * 255) / Math.max(w + h - 2, 1));
    const block = (Math.floor(x / 3) + Math.floor(y / 4)) % 2 === 0 ? 255 : 0;
    const hard = (Math.floor(x / 6) + Math.floor(y / 5)) % 3 === 0;
    data[(y * w + x) * 3 + c] = hard ? block : Math.floor((ramp + noise + 2 * block) / 4);
  }
  return { data, width: w, height: h };
}

/** max |a − b| over two equally long arrays. */
function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

const clipCfg = (shortestEdge: number, [cropHeight, cropWidth]: [number, number], padToSquare = false): ClipProcessorConfig =>
  ({ ...PROCESSOR_PRESETS["clip-224"], shortestEdge, cropHeight, cropWidth, padToSquare });

test("golden: resizeBicubic equals PIL's Image.resize(BICUBIC) byte for byte", () => {
  let worst = 0;
  for (const [name, w, h, seed, ow, oh] of header<[string, number, number, number, number, number][]>("resizes")) {
    const want = get(`resize.${name}`);
    assert.deepEqual(want.shape, [oh, ow, 3], name);
    const got = resizeBicubic(makeImage(w, h, seed), ow, oh);
    assert.deepEqual([got.width, got.height], [ow, oh]);
    const d = maxAbs(got.data, want.toTypedArray() as Uint8Array);
    worst = Math.max(worst, d);
    assert.equal(d, 0, `resize.${name} (${w}×${h} -> ${ow}×${oh}): max difference ${d} uint8 levels`);
  }
  console.log(`PIL bicubic resize: max |diff| ${worst} uint8 levels`);
});

test("golden: CLIP, LLaVA pad-to-square and SigLIP processors equal HF's pixel_values", () => {
  let worst = 0;
  const check = (key: string, got: Tensor) => {
    const want = get(key);
    assert.deepEqual(got.shape, [1, ...want.shape], key);
    const d = maxAbs(got.toFloat32Array(), want.toFloat32Array());
    worst = Math.max(worst, d);
    assert.equal(d, 0, `${key}: max |diff| ${d}`);
  };
  for (const [name, w, h, seed, edge, crop] of header<[string, number, number, number, number, [number, number]][]>("clips")) {
    check(`clip.${name}`, processClip(makeImage(w, h, seed), clipCfg(edge, crop)));
  }
  assert.deepEqual(llavaBackground(CLIP_MEAN), header<number[]>("llava_background"));
  for (const [name, w, h, seed, edge, crop] of header<[string, number, number, number, number, [number, number]][]>("llavas")) {
    check(`llava.${name}`, processClip(makeImage(w, h, seed), clipCfg(edge, crop, true)));
  }
  for (const [name, w, h, seed, height, width] of header<[string, number, number, number, number, number][]>("siglips")) {
    const cfg: SiglipProcessorConfig = { ...PROCESSOR_PRESETS["siglip-224"], height, width };
    check(`siglip.${name}`, processSiglip(makeImage(w, h, seed), cfg));
  }
  console.log(`CLIP / LLaVA / SigLIP pixel_values: max |diff| ${worst}`);
});

test("golden: Qwen2-VL pixel_values (patch order) and image_grid_thw equal HF's", () => {
  let worst = 0;
  for (const [name, w, h, seed, minPixels, maxPixels] of header<[string, number, number, number, number, number][]>("qwens")) {
    const cfg: Qwen2VLProcessorConfig = { ...PROCESSOR_PRESETS["qwen2.5-vl"], minPixels, maxPixels };
    const { pixelValues, imageGridThw } = processQwen2VL(makeImage(w, h, seed), cfg);
    assert.deepEqual(imageGridThw.tolist(), get(`qwen.${name}.image_grid_thw`).tolist(), name);
    const want = get(`qwen.${name}.pixel_values`);
    assert.deepEqual(pixelValues.shape, want.shape, name);
    const d = maxAbs(pixelValues.toFloat32Array(), want.toFloat32Array());
    worst = Math.max(worst, d);
    assert.equal(d, 0, `qwen.${name}: max |diff| ${d}`);
  }
  console.log(`Qwen2-VL pixel_values: max |diff| ${worst}`);
});

test("golden: InternVL2.5's tile plan and pixel_values (tiles row-major, then the thumbnail) equal load_image's", () => {
  // Exact (max |diff| 0), not a tolerance: the resizes are PIL's bicubic byte for byte, and
  // ToTensor's float32(x) / 255 equals HF's float32(float64(x) · (1/255)) for every byte (each
  // is the correctly rounded x/255), so the float32 normalisation sees the same operands.
  const grids = new Map(header<[string, number, number][]>("internvl_grids").map(([n, cols, rows]) => [n, [cols, rows]]));
  let worst = 0;
  for (const [name, w, h, seed, imageSize, maxNum] of header<[string, number, number, number, number, number][]>("internvls")) {
    const plan = dynamicTiles(w, h, { minNum: 1, maxNum, imageSize, useThumbnail: true });
    assert.deepEqual([plan.columns, plan.rows], grids.get(name), `${name}: grid (columns, rows)`);
    const tokensPerTile = 4;
    const proc = internVLProcessor({ kind: "internvl_tiles", imageSize, minNum: 1, maxNum, useThumbnail: true, tokensPerTile });
    const img = makeImage(w, h, seed);
    const { pixelValues, tokensPerImage } = proc.process([img]);
    const want = get(`internvl.${name}`); // [tiles (+ thumbnail), 3, S, S]
    assert.deepEqual(pixelValues.shape, want.shape, name);
    assert.deepEqual(tokensPerImage, [want.shape[0]! * tokensPerTile], name);
    assert.equal(proc.tokensFor(img), want.shape[0]! * tokensPerTile, name);
    const d = maxAbs(pixelValues.toFloat32Array(), want.toFloat32Array());
    worst = Math.max(worst, d);
    assert.equal(d, 0, `internvl.${name} (${w}×${h}, ${plan.columns}×${plan.rows} tiles of ${imageSize}): max |diff| ${d}`);
  }
  assert.deepEqual([...grids.values()].map((g) => g.join("×")), ["1×1", "3×1", "1×2", "1×1", "2×2", "2×1"], "the fixture covers one tile, a thumbnail, and both sides of the area tie rule");
  console.log(`InternVL2.5 pixel_values: max |diff| ${worst}`);
});

test("Qwen2-VL: several images concatenate their patches, one grid row each", () => {
  const cfg = PROCESSOR_PRESETS["qwen2.5-vl"];
  const a = makeImage(50, 81, 2), b = makeImage(60, 60, 3);
  const both = processQwen2VL([a, b], cfg), one = processQwen2VL(a, cfg), two = processQwen2VL(b, cfg);
  assert.deepEqual(both.imageGridThw.tolist(), [[1, 6, 4], [1, 4, 4]]);
  assert.deepEqual(both.pixelValues.shape, [24 + 16, 1176]);
  torch.scope(() => assert.equal(both.pixelValues.sub(torch.cat([one.pixelValues, two.pixelValues], 0)).abs().max().item(), 0));
  // Both frames of a patch are the image: the second half of each (C, T, 14, 14) block repeats the first.
  const row = one.pixelValues.select(0, 5).view(3, 2, 196);
  torch.scope(() => assert.equal(row.select(1, 0).sub(row.select(1, 1)).abs().max().item(), 0));
});

test("smart_resize: the fixture's table (ties to even, both pixel limits) and HF's errors", () => {
  for (const [h, w, factor, minPixels, maxPixels, want] of header<[number, number, number, number, number, [number, number] | string][]>("smart_resize")) {
    const run = () => smartResize(h, w, { factor, minPixels, maxPixels });
    if (typeof want === "string") {
      const re = want.startsWith("absolute aspect ratio") ? /aspect ratio must be smaller than 200/ : new RegExp(`height:${h} or width:${w} must be larger than factor:${factor}`);
      assert.throws(run, re, `${h}×${w}`);
    } else {
      assert.deepEqual(run(), { height: want[0], width: want[1] }, `${h}×${w} factor ${factor} [${minPixels}, ${maxPixels}]`);
    }
  }
  assert.deepEqual(smartResize(70, 126), { height: 56, width: 112 }, "2.5 and 4.5 round down to even");
  assert.deepEqual(smartResize(98, 154), { height: 112, width: 168 }, "3.5 and 5.5 round up to even");
  assert.deepEqual(smartResize(28, 5600), { height: 28, width: 5600 }, "an aspect ratio of exactly 200 is allowed");
  assert.throws(() => smartResize(28, 5601), /absolute aspect ratio must be smaller than 200, got 200\.03/);
  assert.throws(() => smartResize(28, 5000, { maxPixels: 3136 }), /leaves a side below 28 px/);
});

test("pyRound is Python's round: ties to even", () => {
  const cases: [number, number][] = [[0.5, 0], [1.5, 2], [2.5, 2], [3.5, 4], [-0.5, 0], [-1.5, -2], [-2.5, -2], [2.4999999, 2], [2.5000001, 3], [7, 7], [1e15 + 0.5, 1e15]];
  for (const [x, want] of cases) assert.equal(pyRound(x), want, String(x));
});

test("geometry helpers: shortest edge, center crop with HF's zero padding, LLaVA's expand2square", () => {
  assert.deepEqual(shortestEdgeSize(400, 300, 224), { width: 298, height: 224 });
  assert.deepEqual(shortestEdgeSize(81, 50, 336), { width: 544, height: 336 });
  assert.deepEqual(shortestEdgeSize(300, 300, 224), { width: 224, height: 224 });

  const img: RgbImage = { data: Uint8Array.from({ length: 2 * 3 * 3 }, (_, i) => i + 1), width: 3, height: 2 };
  const cropped = centerCrop(img, 1, 1); // top = (2−1)//2 = 0, left = (3−1)//2 = 1
  assert.deepEqual([...cropped.data], [4, 5, 6]);
  const padded = centerCrop(img, 5, 4); // pads ceil(2/2) = 1 row above, 1 column left
  assert.deepEqual([padded.width, padded.height], [5, 4]);
  const px = (im: RgbImage, x: number, y: number) => [...im.data.subarray((y * im.width + x) * 3, (y * im.width + x) * 3 + 3)];
  assert.deepEqual(px(padded, 0, 0), [0, 0, 0]);
  assert.deepEqual(px(padded, 1, 1), [1, 2, 3]);
  assert.deepEqual(px(padded, 3, 2), [16, 17, 18]);
  assert.deepEqual(px(padded, 4, 3), [0, 0, 0]);

  const bg = llavaBackground();
  assert.deepEqual(bg, [122, 116, 104]);
  const sq = expandToSquare(img, bg); // 3×2 -> 3×3, pasted at y = (3−2)//2 = 0
  assert.deepEqual([sq.width, sq.height], [3, 3]);
  assert.deepEqual(px(sq, 0, 0), [1, 2, 3]);
  assert.deepEqual(px(sq, 2, 2), [122, 116, 104]);
  const tall = expandToSquare({ data: new Uint8Array(1 * 4 * 3).fill(9), width: 1, height: 4 }, bg); // pasted at x = (4−1)//2 = 1
  assert.deepEqual([px(tall, 0, 0), px(tall, 1, 0), px(tall, 2, 3)], [[122, 116, 104], [9, 9, 9], [122, 116, 104]]);
  const square = makeImage(4, 4, 1);
  assert.equal(expandToSquare(square, bg), square);
});

test("processors: batch shapes, value ranges, and clear errors", () => {
  const imgs = [makeImage(37, 23, 1), makeImage(50, 81, 2)];
  const clip = processClip(imgs, PROCESSOR_PRESETS["clip-336"]);
  assert.deepEqual(clip.shape, [2, 3, 336, 336]);
  const sig = processSiglip(imgs, PROCESSOR_PRESETS["siglip-384"]);
  assert.deepEqual(sig.shape, [2, 3, 384, 384]);
  const values = sig.toFloat32Array();
  assert.ok(values.every((v) => v >= -1 && v <= 1), "SigLIP pixels lie in [-1, 1]");
  const noCrop = { ...clipCfg(24, [24, 24]), doCenterCrop: false };
  assert.throws(() => processClip(imgs, noCrop), /images came out at different sizes \(38×24 and 24×38\)/);
  assert.throws(() => processClip({ data: new Uint8Array(10), width: 2, height: 2 }, PROCESSOR_PRESETS["clip-224"]), /a 2×2 RGB image needs 12 bytes, got 10/);
  assert.throws(() => resizeBicubic(makeImage(4, 4, 1), 0, 3), /target size must be positive integers, got 0×3/);
  assert.throws(() => processQwen2VL(makeImage(20, 40, 1), PROCESSOR_PRESETS["qwen2.5-vl"]), /height:40 or width:20 must be larger than factor:28/);
});

test("processor configs: real preprocessor_config.json files give the presets; errors name the field", () => {
  // openai/clip-vit-large-patch14-336 (legacy feature-extractor file with integer sizes)
  const clip = processorConfigFromHf({
    crop_size: 336, do_center_crop: true, do_normalize: true, do_resize: true, feature_extractor_type: "CLIPFeatureExtractor",
    image_mean: [...CLIP_MEAN], image_std: [...CLIP_STD], resample: 3, size: 336,
  });
  assert.deepEqual(clip, PROCESSOR_PRESETS["clip-336"]);
  assert.deepEqual(processorConfigFromHf({ image_processor_type: "CLIPImageProcessor", size: { shortest_edge: 336 }, crop_size: { height: 336, width: 336 } }, { padToSquare: true }), PROCESSOR_PRESETS["llava-1.5"]);
  // google/siglip-so400m-patch14-384
  const siglip = processorConfigFromHf({
    do_normalize: true, do_rescale: true, do_resize: true, image_mean: [0.5, 0.5, 0.5], image_processor_type: "SiglipImageProcessor",
    image_std: [0.5, 0.5, 0.5], processor_class: "SiglipProcessor", resample: 3, rescale_factor: 0.00392156862745098, size: { height: 384, width: 384 },
  });
  assert.deepEqual(siglip, PROCESSOR_PRESETS["siglip-384"]);
  // Qwen/Qwen2.5-VL-7B-Instruct
  const qwen = processorConfigFromHf({
    min_pixels: 3136, max_pixels: 12845056, patch_size: 14, temporal_patch_size: 2, merge_size: 2, image_mean: [...CLIP_MEAN],
    image_std: [...CLIP_STD], image_processor_type: "Qwen2VLImageProcessor", processor_class: "Qwen2_5_VLProcessor",
  });
  assert.deepEqual(qwen, PROCESSOR_PRESETS["qwen2.5-vl"]);
  const newer = processorConfigFromHf({ image_processor_type: "Qwen2VLImageProcessor", size: { shortest_edge: 200704, longest_edge: 1605632 } });
  assert.deepEqual([newer.kind === "qwen2_vl" && newer.minPixels, newer.kind === "qwen2_vl" && newer.maxPixels], [200704, 1605632]);
  for (const preset of Object.values(PROCESSOR_PRESETS)) validateProcessorConfig(preset);

  const bad: [() => unknown, RegExp][] = [
    [() => processorConfigFromHf({ image_processor_type: "CLIPImageProcessor", resample: 2 }), /resample: only bicubic \(3\) is implemented, got 2/],
    [() => processorConfigFromHf({ image_processor_type: "ViTImageProcessor" }), /image_processor_type "ViTImageProcessor" is not implemented/],
    [() => processorConfigFromHf({}), /missing required field "image_processor_type"/],
    [() => processorConfigFromHf({ image_processor_type: "SiglipImageProcessor" }, { padToSquare: true }), /padToSquare \(LLaVA\) applies to a CLIPImageProcessor/],
    [() => processorConfigFromHf({ image_processor_type: "CLIPImageProcessor", image_mean: [0.5, 0.5] }), /image_mean: must be 3 numbers/],
    [() => processorConfigFromHf({ image_processor_type: "Qwen2VLImageProcessor", min_pixels: 5000, max_pixels: 4000 }), /minPixels: 5000 exceeds maxPixels 4000/],
    [() => validateProcessorConfig({ ...PROCESSOR_PRESETS["siglip-224"], height: 0 }), /image processor\.height: must be a positive integer, got 0/],
  ];
  for (const [fn, re] of bad) assert.throws(fn, (e: Error) => e instanceof ConfigError && re.test(e.message), String(re));
});
