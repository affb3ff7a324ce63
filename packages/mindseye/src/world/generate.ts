// `mindseye world generate`: the synthetic world, written in the real datasets' formats so the
// real-format readers read it. Everything is a function of (seed, scenes, size, latents, gqaDraws):
// the same arguments give byte-identical files, whatever the number of render threads.
//
// Output layout (DIR = --out):
//   DIR/manifest.json                      name, version, seed, size, counts per split and task, held-out pairs, vocabulary
//   DIR/scenes.json                        {"version", "scenes": [{id, imageId, file_name, split, width, height,
//                                            objects: [{id, shape, color, size, material, x, y, r, row, col}]}]}
//                                          (x, y: centre, r: half the box side, as fractions of the image side; row/col: 3×3 grid cell)
//   DIR/images/{imageId}.png               every scene (imageId = 12-digit scene id, as COCO 2017 names files)
//   DIR/captions_{split}.json              COCO captions JSON: info, licenses, images[{id, file_name, ...}], annotations[{id, image_id, caption}]
//   DIR/gqa/{split}_balanced_questions.json  GQA questions JSON: {questionId: {imageId, question, answer, fullAnswer, isBalanced,
//                                            groups, entailed, equivalent, types, annotations, semantic, semanticStr}};
//                                            images are DIR/images/{imageId}.png
//   DIR/scienceqa/problems.json            ScienceQA: {pid: {question, choices, answer, hint, image, task, grade, subject,
//                                            topic, category, skill, lecture, solution, split}}
//   DIR/scienceqa/pid_splits.json          {"train": [pid], "val": [...], "test": [...], "test_novel": [...]}
//   DIR/scienceqa/images/{split}/{pid}/image.png
//   DIR/blink/Jigsaw/{split}.jsonl         one BLINK record per line: {idx, question, sub_task, image_1, image_2, image_3,
//                                            image_4, choices, answer, prompt, explanation}; image_N are paths relative to
//                                            DIR/blink/Jigsaw/ (images/{idx}_{N}.png), image_4 is null
//   DIR/tokenizer.json, DIR/tokenizer_config.json   word-level HF tokenizer with chat template and <|latent_i|> tokens
//   DIR/stats.json                         chance, majority and text-only baselines per task, split and question type
// Splits: train, val, test (same distribution) and test_novel (scenes with held-out colour×shape pairs).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import { ConfigError } from "../config/errors.js";
import { Rng } from "./rng.js";
import { COLORS, HELD_OUT, MATERIALS, SHAPES, SIZES, SPLITS, sampleScene, type Scene, type Split } from "./scene.js";
import { CAPTIONS_PER_SCENE, cocoCaptions, sceneCaptions } from "./captions.js";
import { QuestionGenerator, gqaChance, type GqaQuestion } from "./questions.js";
import { ScienceGenerator, type ScienceProblem } from "./science.js";
import { JigsawGenerator, type JigsawRecord } from "./jigsaw.js";
import { MIN_SCENES, SPLIT_FRACTIONS, assignSplits } from "./splits.js";
import { DEFAULT_LATENTS, buildTokenizer } from "./tokenizer_json.js";
import { formatStats, splitStats, type SplitStats, type StatItem } from "./stats.js";
import { runRenderJob, type RenderJob, type WorkerData } from "./render_worker.js";
import { WORLD_VERSION } from "./version.js";
import { Progress } from "../util/progress.js";

export interface WorldOptions {
  /** Output directory; must be empty or absent (or hold a world, with `force`). */
  out: string;
  /** Number of scenes (at least MIN_SCENES, so that every split has one). */
  scenes: number;
  /** Seed of everything (non-negative safe integer). */
  seed: number;
  /** Image side in pixels (even: jigsaw patches are quadrants). */
  size: number;
  /** Number of latent query tokens <|latent_0|>… in the tokenizer. */
  latents: number;
  /**
   * Draws of each GQA question family per training scene (1: one question per family, ~5.5 per
   * scene; real GQA's balanced split has about 13 per image). Draws after the first are new,
   * distinct questions about the same scenes, appended to the train split; the other splits,
   * and the first draw, are the same whatever the number.
   */
  gqaDraws: number;
  /** Render threads; 0 renders in the calling thread. Does not change the output. */
  workers: number;
  /** Replace an existing world in `out`. */
  force: boolean;
  /** Summary lines (settings, baselines, time). */
  log: (line: string) => void;
  /** Show rendering progress on stderr (a bar on a terminal, lines elsewhere). */
  progress: boolean;
}

// 48 px: with 16 px patches each patch is one cell of the 3×3 layout (scene.ts), so an object never straddles two vision tokens.
export const WORLD_DEFAULTS = { size: 48, latents: DEFAULT_LATENTS, gqaDraws: 1, force: false } as const;
const MAX_SCENES = 10_000_000;

/** Defaults filled in and every field checked; errors name the option and the fix. */
export function resolveWorldOptions(p: Partial<WorldOptions> & Pick<WorldOptions, "out" | "scenes" | "seed">): Readonly<WorldOptions> {
  const o: WorldOptions = {
    size: WORLD_DEFAULTS.size, latents: WORLD_DEFAULTS.latents, gqaDraws: WORLD_DEFAULTS.gqaDraws, force: WORLD_DEFAULTS.force,
    workers: p.scenes >= 2000 ? Math.min(availableParallelism(), 8) : 0,
    log: () => {},
    progress: false,
    ...p,
  };
  const int = (name: string, v: number, lo: number, hi: number, what: string) => {
    if (!Number.isSafeInteger(v) || v < lo || v > hi) throw new ConfigError(`--${name} must be an integer from ${lo} to ${hi} (${what}), got ${v}`);
  };
  if (typeof o.out !== "string" || o.out === "") throw new ConfigError("--out must name the output directory");
  int("scenes", o.scenes, MIN_SCENES, MAX_SCENES, `every split needs at least one scene`);
  int("seed", o.seed, 0, Number.MAX_SAFE_INTEGER, "any non-negative integer");
  int("size", o.size, 32, 1024, "image side in pixels");
  if (o.size % 2 !== 0) throw new ConfigError(`--size must be even (jigsaw patches are image quadrants), got ${o.size}`);
  int("latents", o.latents, 1, 4096, "number of <|latent_i|> tokens");
  int("gqa-draws", o.gqaDraws, 1, 100, "draws of each GQA question family per training scene");
  int("workers", o.workers, 0, 256, "render threads; 0 renders in this thread");
  return Object.freeze(o);
}

export interface WorldSummary {
  scenes: number;
  seconds: number;
  scenesPerSecond: number;
  counts: Manifest["counts"];
  stats: WorldStats;
}

type WorldStats = { [task in "gqa" | "scienceqa" | "blink"]: { [S in Split]: SplitStats } };

interface Manifest {
  name: string;
  version: string;
  seed: number;
  size: number;
  scenes: number;
  latents: number;
  /** Draws of each GQA question family per training scene (absent: 1). */
  gqaDraws?: number;
  splitFractions: typeof SPLIT_FRACTIONS;
  heldOut: (readonly [string, string])[];
  vocabulary: { shapes: readonly string[]; colors: readonly string[]; sizes: readonly string[]; materials: readonly string[] };
  counts: { [S in Split]: { scenes: number; captions: number; gqa: number; scienceqa: number; blink: number } };
}

/** Refuses to write over anything but an empty directory, or (with force) a previous world. */
function prepareOut(out: string, force: boolean): void {
  if (existsSync(out) && !statSync(out).isDirectory()) throw new ConfigError(`--out ${out} is a file; name a directory`);
  if (existsSync(out) && readdirSync(out).length > 0) {
    const manifest = join(out, "manifest.json");
    let isWorld = false;
    try {
      isWorld = (JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name === "mindseye-world";
    } catch {
      isWorld = false;
    }
    if (!force || !isWorld) {
      throw new ConfigError(`--out ${out} is not empty` + (isWorld ? "; pass --force to replace the world in it" : "; choose a new or empty directory"));
    }
    rmSync(out, { recursive: true });
  }
  for (const d of ["images", "gqa", "scienceqa/images", "blink/Jigsaw/images"]) mkdirSync(join(out, d), { recursive: true });
}

const json = (v: unknown) => JSON.stringify(v);

/**
 * Generates the world into `o.out`.
 * ```ts
 * await generateWorld(resolveWorldOptions({ out: "world", scenes: 1000, seed: 0, log: console.log }));
 * ```
 */
export async function generateWorld(o: Readonly<WorldOptions>): Promise<WorldSummary> {
  const t0 = performance.now();
  prepareOut(o.out, o.force);
  o.log(`world: ${o.scenes} scenes of ${o.size}×${o.size} px, seed ${o.seed}, ${o.workers === 0 ? "rendering in this thread" : `${o.workers} render threads`} → ${o.out}`);
  const splits = assignSplits(o.scenes, o.seed);
  const gqaGen = new Map(SPLITS.map((s) => [s, new QuestionGenerator(s)]));
  const sciGen = new Map(SPLITS.map((s) => [s, new ScienceGenerator(s)]));
  const jigGen = new Map(SPLITS.map((s) => [s, new JigsawGenerator(s)]));

  const scenes: Scene[] = [];
  const captions = new Map<number, string[]>();
  const gqa = new Map<Split, [string, GqaQuestion][]>(SPLITS.map((s) => [s, []]));
  const problems: [string, ScienceProblem][] = [];
  const jigsaw = new Map<Split, JigsawRecord[]>(SPLITS.map((s) => [s, []]));
  const jobs: RenderJob[] = [];
  let nextQuestion = 1;

  // 1. Scenes and texts, in scene order (the balancers are sequential).
  for (let id = 1; id <= o.scenes; id++) {
    const split = splits[id - 1]!;
    const scene = sampleScene(new Rng(o.seed, "scene", id), id, split, o.size);
    scenes.push(scene);
    captions.set(id, sceneCaptions(scene, new Rng(o.seed, "captions", id)));
    const qs = gqaGen.get(split)!.forScene(scene, new Rng(o.seed, "gqa", id), nextQuestion);
    nextQuestion += qs.length;
    gqa.get(split)!.push(...qs);
    const job: RenderJob = { scene, image: `images/${scene.file_name}` };
    const problem = sciGen.get(split)!.forScene(scene, new Rng(o.seed, "science", id));
    if (problem) {
      const pid = String(problems.length + 1);
      problems.push([pid, problem]);
      job.science = `scienceqa/images/${split}/${pid}/image.png`;
    }
    const items = jigsaw.get(split)!;
    const plan = jigGen.get(split)!.forScene(scene, new Rng(o.seed, "jigsaw", id), items.length + 1);
    if (plan) {
      items.push(plan.record);
      const at = (p: string) => `blink/Jigsaw/${p}`;
      job.jigsaw = { variant: plan.variant, trueFirst: plan.trueFirst, masked: at(plan.record.image_1), second: at(plan.record.image_2), third: at(plan.record.image_3) };
    }
    jobs.push(job);
  }

  // 1b. More GQA questions about the training scenes: each further draw asks each family again,
  // from its own random stream, after every first draw (so those, and the other splits, are the
  // same whatever the number of draws); a question already asked about the scene is skipped.
  const train = gqa.get("train")!, trainScenes = scenes.filter((x) => x.split === "train"), trainGen = gqaGen.get("train")!;
  const askedAbout = (q: GqaQuestion) => `${q.imageId}|${q.question}`;
  const asked = new Set(train.map(([, q]) => askedAbout(q)));
  for (let draw = 1; draw < o.gqaDraws; draw++) {
    for (const scene of trainScenes) {
      for (const [, q] of trainGen.forScene(scene, new Rng(o.seed, "gqa", scene.id, draw), nextQuestion)) {
        const key = askedAbout(q);
        if (asked.has(key)) continue;
        asked.add(key);
        const id = String(nextQuestion++);
        train.push([id, { ...q, equivalent: [id] }]);
      }
    }
  }

  // 2. Images, in parallel when asked.
  await render(jobs, o);

  // 3. The JSON files.
  const bySplit = (s: Split) => scenes.filter((x) => x.split === s);
  writeFileSync(join(o.out, "scenes.json"), json({ version: WORLD_VERSION, scenes }));
  let nextAnnotation = 1;
  for (const s of SPLITS) {
    const coco = cocoCaptions(s, bySplit(s), captions, nextAnnotation);
    nextAnnotation += coco.annotations.length;
    writeFileSync(join(o.out, `captions_${s}.json`), json(coco));
    writeFileSync(join(o.out, "gqa", `${s}_balanced_questions.json`), json(Object.fromEntries(gqa.get(s)!)));
    writeFileSync(join(o.out, "blink", "Jigsaw", `${s}.jsonl`), jigsaw.get(s)!.map((r) => json(r) + "\n").join(""));
  }
  writeFileSync(join(o.out, "scienceqa", "problems.json"), json(Object.fromEntries(problems)));
  writeFileSync(join(o.out, "scienceqa", "pid_splits.json"),
    json(Object.fromEntries(SPLITS.map((s) => [s, problems.filter(([, p]) => p.split === s).map(([pid]) => pid)]))));
  const { tokenizer, config } = buildTokenizer(o.latents);
  writeFileSync(join(o.out, "tokenizer.json"), JSON.stringify(tokenizer, null, 2));
  writeFileSync(join(o.out, "tokenizer_config.json"), JSON.stringify(config, null, 2));

  const stats = worldStats(gqa, problems, jigsaw);
  writeFileSync(join(o.out, "stats.json"), JSON.stringify(stats, null, 2));
  const counts = Object.fromEntries(SPLITS.map((s) => [s, {
    scenes: bySplit(s).length,
    captions: bySplit(s).reduce((n, x) => n + captions.get(x.id)!.length, 0),
    gqa: gqa.get(s)!.length,
    scienceqa: problems.filter(([, p]) => p.split === s).length,
    blink: jigsaw.get(s)!.length,
  }])) as Manifest["counts"];
  const manifest: Manifest = {
    name: "mindseye-world", version: WORLD_VERSION, seed: o.seed, size: o.size, scenes: o.scenes, latents: o.latents,
    ...(o.gqaDraws === 1 ? {} : { gqaDraws: o.gqaDraws }),
    splitFractions: SPLIT_FRACTIONS, heldOut: [...HELD_OUT],
    vocabulary: { shapes: SHAPES, colors: COLORS, sizes: SIZES, materials: MATERIALS },
    counts,
  };
  writeFileSync(join(o.out, "manifest.json"), JSON.stringify(manifest, null, 2));

  const seconds = (performance.now() - t0) / 1000;
  for (const task of ["gqa", "scienceqa", "blink"] as const) for (const s of SPLITS) o.log(formatStats(task, s, stats[task][s]));
  o.log(`generated ${o.scenes} scenes (${CAPTIONS_PER_SCENE} captions, ${nextQuestion - 1} GQA questions, ${problems.length} ScienceQA problems, `
    + `${[...jigsaw.values()].reduce((n, r) => n + r.length, 0)} jigsaw items) in ${seconds.toFixed(1)} s: ${(o.scenes / seconds).toFixed(0)} scenes/s → ${o.out}`);
  return { scenes: o.scenes, seconds, scenesPerSecond: o.scenes / seconds, counts, stats };
}

async function render(jobs: readonly RenderJob[], o: Readonly<WorldOptions>): Promise<void> {
  const bar = new Progress(jobs.length, 0, !o.progress, "world: rendering", "scenes");
  let done = 0;
  const progress = (n: number) => bar.update((done += n));
  if (o.workers === 0) {
    const chunk = Math.max(1, Math.ceil(jobs.length / 50));
    for (let i = 0; i < jobs.length; i += chunk) {
      for (const job of jobs.slice(i, i + chunk)) runRenderJob(job, o.out, o.size);
      progress(Math.min(chunk, jobs.length - i));
    }
    bar.stop();
    return;
  }
  const CHUNK = 100;
  let next = 0;
  const data: WorkerData = { mindseyeWorldRender: true, out: o.out, size: o.size };
  const workers = Array.from({ length: o.workers }, () => new Worker(new URL("./render_worker.js", import.meta.url), { workerData: data }));
  try {
    await Promise.all(workers.map((w) => new Promise<void>((resolve, reject) => {
      const feed = () => {
        if (next >= jobs.length) return resolve();
        w.postMessage(jobs.slice(next, next + CHUNK));
        next += CHUNK;
      };
      w.on("message", (n: number) => (progress(n), feed()));
      w.on("error", reject);
      w.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`render worker exited with code ${code}`))));
      feed();
    })));
  } finally {
    bar.stop();
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

function worldStats(
  gqa: ReadonlyMap<Split, [string, GqaQuestion][]>, problems: readonly [string, ScienceProblem][], jigsaw: ReadonlyMap<Split, JigsawRecord[]>,
): WorldStats {
  const letter = (i: number) => String.fromCharCode(65 + i);
  const items = {
    gqa: (s: Split): StatItem[] => gqa.get(s)!.map(([, q]) => ({ type: q.types.detailed, text: q.question, answer: q.answer, chance: gqaChance(q) })),
    scienceqa: (s: Split): StatItem[] => problems.filter(([, p]) => p.split === s).map(([, p]) => ({
      type: p.category, text: `${p.question}\n${p.choices.join("\n")}`, answer: letter(p.answer), chance: 1 / p.choices.length,
    })),
    blink: (s: Split): StatItem[] => jigsaw.get(s)!.map((r) => ({ type: r.sub_task, text: r.prompt, answer: r.answer, chance: 1 / r.choices.length })),
  };
  const out = {} as WorldStats;
  for (const task of ["gqa", "scienceqa", "blink"] as const) {
    const train = items[task]("train");
    out[task] = Object.fromEntries(SPLITS.map((s) => [s, splitStats(items[task](s), s === "train" ? null : train)])) as { [S in Split]: SplitStats };
  }
  return out;
}
