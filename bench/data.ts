// bench:data — the data side of the method, in pipeline order:
//   (a) the synthetic world: generateWorld (world/generate.ts), 2,000 scenes of 64 px into a
//       temporary directory with its default render threads, in scenes/s;
//   (b) the image pipeline: decodeImage (data/images.ts, sharp; as decodeBatch runs it) of JPEG
//       and PNG files made here at COCO-like sizes, then CLIP's exact preprocessing to 224 px
//       (processClip with the clip-224 preset: bicubic shortest-edge resize, center crop,
//       rescale, normalise), in images/s;
//   (c) target extraction, as `mindseye targets extract` runs a batch: a ViT-B/16-shaped CLIP
//       tower (vit.ts preset clip-vit-b16, random weights from a seed), features(pixels, -1)
//       under noGrad, then grid:4 pooling (objectives/pooling.ts) — in MindsEye (its default
//       settings) and in PyTorch (bench/data_ref.py: HF's CLIP vision forward in plain PyTorch,
//       same libtorch, same weights and batch, at its best thread and allocator setting),
//       alternating rounds in one run.
//
//   npm run bench:data [-- --scenes 2000 --images 300 --batch 16 --rounds 8 --profile]
// --profile adds where the time of one extraction goes: every native call MindsEye makes (count,
// total ms) beside PyTorch's autograd profiler table.
// Last line: `target extraction ratio vs pytorch: R` (median MindsEye batch / median PyTorch batch).
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir, availableParallelism } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { PythonWorker, NativeProfiler, median, fmt } from "./common.js";
import { torch, io, type Tensor } from "@mindseye/torch";
// bench/tsconfig.json references packages/mindseye: `tsc -b bench` builds it first.
import { generateWorld, resolveWorldOptions } from "mindseye/dist/world/generate.js";
import { decodeBatch, type DecodeItem } from "mindseye/dist/data/images.js";
import { SkipCounter } from "mindseye/dist/data/formats/errors.js";
import { processClip, PROCESSOR_PRESETS, type RgbImage } from "mindseye/dist/models/processors.js";
import { VitVisionModel, vitPreset, vitConfigToHf } from "mindseye/dist/models/vit.js";
import { poolFeatures } from "mindseye/dist/objectives/pooling.js";
import { mulberry32 } from "mindseye/dist/util/random.js";

const args = parseArgs({
  options: {
    scenes: { type: "string", default: "2000" },
    images: { type: "string", default: "300" },
    batch: { type: "string", default: "16" },
    rounds: { type: "string", default: "8" },
    python: { type: "string", default: "/usr/bin/python3" },
    profile: { type: "boolean", default: false },
  },
}).values;
const SCENES = Number(args.scenes), IMAGES = Number(args.images), BATCH = Number(args.batch), ROUNDS = Number(args.rounds);
const WORLD_SIZE = 64;
const ENCODER = vitPreset("clip-vit-b16");
const PROCESSOR = PROCESSOR_PRESETS["clip-224"];
const POOL = "grid:4" as const;

// ---------------------------------------------------------------------------------------------
// (b) Test images

/** A photo-like test image (smooth gradients, a few discs, mild noise), so codecs work as on real photos. */
function syntheticPhoto(width: number, height: number, seed: number): RgbImage {
  const r = mulberry32(seed);
  const data = new Uint8Array(width * height * 3);
  const base = [r() * 255, r() * 255, r() * 255], slope = [r() - 0.5, r() - 0.5, r() - 0.5];
  const discs = Array.from({ length: 6 }, () => ({ x: r() * width, y: r() * height, rad: 20 + r() * 120, c: [r() * 255, r() * 255, r() * 255] }));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      let c0 = base[0]! + slope[0]! * (x + y) * 0.4, c1 = base[1]! + slope[1]! * (x - y) * 0.4, c2 = base[2]! + slope[2]! * y * 0.4;
      for (const d of discs) {
        const dx = x - d.x, dy = y - d.y;
        if (dx * dx + dy * dy < d.rad * d.rad) { c0 = d.c[0]!; c1 = d.c[1]!; c2 = d.c[2]!; }
      }
      const n = (r() - 0.5) * 16;
      data[o] = Math.max(0, Math.min(255, c0 + n));
      data[o + 1] = Math.max(0, Math.min(255, c1 + n));
      data[o + 2] = Math.max(0, Math.min(255, c2 + n));
    }
  }
  return { data, width, height };
}

/** n files: two JPEGs (quality 90) for every PNG, at sizes COCO images have. */
async function makeTestImages(dir: string, n: number): Promise<string[]> {
  const sizes = [[640, 480], [480, 640], [640, 427], [500, 375], [375, 500]] as const;
  const paths: string[] = [];
  for (let i = 0; i < n; i += 8) {
    await Promise.all(Array.from({ length: Math.min(8, n - i) }, async (_, j) => {
      const k = i + j, [w, h] = sizes[k % sizes.length]!;
      const img = syntheticPhoto(w, h, k + 1);
      const png = k % 3 === 2;
      const path = join(dir, `${String(k).padStart(6, "0")}.${png ? "png" : "jpg"}`);
      const s = sharp(img.data, { raw: { width: w, height: h, channels: 3 } });
      await (png ? s.png() : s.jpeg({ quality: 90 })).toFile(path);
      paths[k] = path;
    }));
  }
  return paths;
}

interface PipelineTimes { decodeS: number; processS: number; firstBatch: RgbImage[] }

/** Decode in batches (decodeBatch, as extractTargets), then processClip per batch; seconds in each part and the first batch's images. */
async function runPipeline(paths: string[]): Promise<PipelineTimes> {
  const errors = new SkipCounter("bench images");
  let decodeS = 0, processS = 0;
  let firstBatch: RgbImage[] = [];
  for (let i = 0; i < paths.length; i += BATCH) {
    const items: DecodeItem[] = paths.slice(i, i + BATCH).map((p, j) => ({ image: { kind: "file", path: p }, source: { file: p, record: String(i + j) } }));
    const t0 = performance.now();
    const decoded = await decodeBatch(items, { errors });
    const t1 = performance.now();
    const ok = decoded.filter((x): x is RgbImage => x !== null);
    if (ok.length !== items.length) throw new Error(`bench images: ${items.length - ok.length} test image(s) failed to decode`);
    processClip(ok, PROCESSOR).dispose(); // [b, 3, 224, 224]
    processS += (performance.now() - t1) / 1000;
    decodeS += (t1 - t0) / 1000;
    if (i === 0) firstBatch = ok;
  }
  return { decodeS, processS, firstBatch };
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const settings = torch.getThreads();
  console.log(`MindsEye: libtorch ${torch.buildInfo().torchVersion}, intra-op threads ${settings.intraOp}, BLAS threads ${settings.blas}, ${availableParallelism()} cores`);
  const dir = mkdtempSync(join(tmpdir(), "mindseye-bench-data-"));
  try {
    // (a) World generation.
    const world = resolveWorldOptions({ out: join(dir, "world"), scenes: SCENES, seed: 0, size: WORLD_SIZE });
    const summary = await generateWorld(world);
    console.log(`(a) world generation: ${SCENES} scenes of ${WORLD_SIZE} px (captions, questions, jigsaw and ScienceQA images included), ${world.workers} render threads: `
      + `${fmt(summary.seconds, 2)} s, ${fmt(summary.scenesPerSecond, 0)} scenes/s`);
    rmSync(world.out, { recursive: true, force: true });

    // (b) Image pipeline: decode + CLIP preprocessing to 224 px. The faster of two passes.
    const imageDir = join(dir, "images");
    mkdirSync(imageDir);
    const paths = await makeTestImages(imageDir, IMAGES);
    await runPipeline(paths.slice(0, BATCH)); // warm-up: sharp's and V8's first calls
    const passes = [await runPipeline(paths), await runPipeline(paths)];
    const best = (f: (p: PipelineTimes) => number) => Math.min(...passes.map(f));
    const dec = best((p) => p.decodeS), pre = best((p) => p.processS), both = best((p) => p.decodeS + p.processS);
    console.log(`(b) image pipeline, ${IMAGES} images (JPEG q90 and PNG, 375-640 px, 2 of 3 JPEG) in batches of ${BATCH}: `
      + `decode ${fmt(IMAGES / dec, 0)} images/s, resize + crop + normalise to 224 px ${fmt(IMAGES / pre, 0)} images/s, together ${fmt(IMAGES / both, 0)} images/s`);

    // (c) Target extraction. Same weights and batch on both sides: written here, read by the worker.
    const pixels = torch.noGrad(() => processClip(passes[0]!.firstBatch, PROCESSOR)); // [B, 3, 224, 224]
    const model = new VitVisionModel(ENCODER, { generator: new torch.Generator(0) }).eval();
    model.requiresGrad_(false); // a frozen encoder, as the target cache uses it
    const weights = join(dir, "encoder.safetensors");
    const state = new Map<string, Tensor>(model.stateDict());
    state.set("pixels", pixels);
    io.saveFile(weights, state);
    console.log(`(c) target extraction: CLIP ViT-B/16 shape (${(model.numParameters() / 1e6).toFixed(1)} M parameters, random weights), `
      + `batch ${BATCH} × 3 × 224 × 224, last layer's features, ${POOL} pooling, no grad`);

    const extract = (): Tensor => torch.noGrad(() => torch.scope(() => {
      const features = model.features(pixels, -1); // [B, 197, 768]
      return poolFeatures(features, POOL, { hasClassToken: true }).contiguous(); // [B, 4, 768]
    }));
    const mindseyeRuns = (n: number): number[] => {
      const ms: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        extract().dispose();
        ms.push(performance.now() - t0);
      }
      return ms;
    };

    let py = new PythonWorker("data_ref.py", args.python);
    const init = { cmd: "init", config: vitConfigToHf(ENCODER), weights, pool: POOL };
    const info = await py.call({ ...init, threads: 1 });
    console.log(`PyTorch:  ${String(info.torch)} (Python, same libtorch)`);
    const pyRuns = async (n: number) => (await py.call({ cmd: "steps", n })).ms as number[];

    // 1. Same computation: the outputs agree (same weights, inputs and kernels).
    const mine = extract();
    const theirs = await py.call({ cmd: "output" });
    const ref = new Float32Array(Buffer.from(theirs.data as string, "base64").buffer.slice(0));
    const got = mine.toTypedArray() as Float32Array;
    if (ref.length !== got.length) throw new Error(`outputs differ in size: MindsEye [${mine.shape.join(", ")}], PyTorch [${(theirs.shape as number[]).join(", ")}]`);
    let maxDiff = 0, maxAbs = 0;
    for (let i = 0; i < got.length; i++) { maxDiff = Math.max(maxDiff, Math.abs(got[i]! - ref[i]!)); maxAbs = Math.max(maxAbs, Math.abs(ref[i]!)); }
    console.log(`outputs [${mine.shape.join(", ")}]: max abs diff ${maxDiff.toExponential(2)} (largest |value| ${fmt(maxAbs, 3)})`);
    mine.dispose();

    // 2. PyTorch at its best setting: 1 or all intra-op threads, with glibc's default allocator
    //    and then with MindsEye's allocator tuning (mallopt cannot be undone, so it goes last).
    const cores = availableParallelism();
    await pyRuns(1); // the first runs are cold (allocations, page faults)
    let bestSetting = { threads: 1, allocator: "glibc default", ms: Infinity };
    for (const allocator of ["glibc default", "MindsEye tuning"]) {
      if (allocator !== "glibc default") await py.call({ cmd: "allocator", mmap: 32 << 20, trim: 1 << 30, topPad: 64 << 20 });
      for (const threads of [...new Set([1, cores])]) {
        await py.call({ cmd: "threads", threads });
        const ms = Math.min(...(await pyRuns(2))); // the faster of two: less sensitive to outside load
        console.log(`PyTorch warm-up, torch.set_num_threads(${threads}), ${allocator} allocator: ${fmt(ms)} ms/batch`);
        if (ms < bestSetting.ms) bestSetting = { threads, allocator, ms };
      }
    }
    if (bestSetting.allocator === "glibc default") {
      // The tuning is in effect now and cannot be reverted in-process: restart the worker plain.
      py.close();
      py = new PythonWorker("data_ref.py", args.python);
      await py.call({ ...init, threads: bestSetting.threads });
      await pyRuns(2);
    }
    await py.call({ cmd: "threads", threads: bestSetting.threads });
    mindseyeRuns(2); // warm-up

    // 3. Alternating rounds, one batch each.
    const a: number[] = [], b: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const x = mindseyeRuns(1), y = await pyRuns(1);
      a.push(...x);
      b.push(...y);
      console.log(`round ${r + 1}/${ROUNDS}: MindsEye ${fmt(x[0]!, 0)} ms, PyTorch ${fmt(y[0]!, 0)} ms; medians so far ${fmt(median(a))} / ${fmt(median(b))} ms`);
    }

    if (args.profile) {
      const profiler = new NativeProfiler();
      profiler.run(() => extract().dispose());
      console.log(`MindsEye native calls, one batch (${fmt(profiler.totalMs)} ms with timing on):\n${profiler.report(25, { msDigits: 2, phases: false })}`);
      const prof = await py.call({ cmd: "profile", n: 1, rows: 25 });
      console.log(`PyTorch autograd profiler, one batch, by self CPU time (${String(prof.top_level)} ops called from Python):\n${String(prof.table)}`);
    }
    py.close();
    for (const p of model.parameters()) p.dispose();
    pixels.dispose();

    const m = median(a), p = median(b);
    console.log(`median batch: MindsEye ${fmt(m)} ms (${fmt(BATCH / (m / 1000), 1)} images/s), PyTorch ${fmt(p)} ms (${fmt(BATCH / (p / 1000), 1)} images/s) `
      + `with torch.set_num_threads(${bestSetting.threads}) and the ${bestSetting.allocator} allocator`);
    console.log(`target extraction ratio vs pytorch: ${(m / p).toFixed(3)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
