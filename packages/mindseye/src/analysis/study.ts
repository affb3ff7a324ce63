// `mindseye analyze STUDY`: how latent pretraining changed what the models represent, and whether
// that predicts what they then learn (DESIGN.md §6). Reads a study folder (experiment/runner.ts)
// and writes STUDY/analysis.json and STUDY/analysis/imagine-*.png.
//
//   models     before: the base VLM (stages/vlm-base/model, arm "baseline"); after: every
//              pretrained model (stages/pretrain-<arm>/model: control, latent; and the ablation
//              cells results.json lists, stages/ablations/<folder>/model, named as in its cells)
//   captions   the first caption of up to `captions` test images and `trainCaptions` training
//              images (seeded subsets), read as latent pretraining reads them
//   alignment  head     (models whose latent queries feed a head) imagined latents ẑ ranked among
//                       the test images' real latents z, in the model's own target space (its
//                       pooling): recall@1/5/10, median rank, mean cos(ẑ, z) (retrieval.ts);
//              mean     the same for a collapsed head that predicts the training targets' mean
//              readout  (every model) ridge regression from the hidden state at the caption's end to
//                       z, fitted on training captions, ranked the same way: an alignment score
//                       that models without a head have too (probes.ts)
//   collapse   per-dimension std, effective rank, mean pairwise cosine of ẑ next to z
//   structure  k-means with k = an attribute's number of values, against the scenes' attributes
//              (attributes.ts), on z, on each ẑ and on each model's caption-end hidden states:
//              NMI, ARI, silhouette; logistic-regression probes of each attribute from the hidden
//              states (held-out accuracy)
//   projections  PCA and UMAP of ẑ and z together, labelled with the attributes
//   efficiency   accuracy against fraction per arm and task, with intervals (results.json)
//   correlation  across the arms and ablation cells of results.json's cells, each alignment measure
//                against accuracy per task and fraction: Pearson and Spearman with bootstrap
//                intervals (correlation.ts: none below 5 models). The readout measures put every
//                model in one space, so they compare across all of them.
//
// The target space of the readout and of the real latents is the latent arm's (its pooling and
// target normalisation, its training target cache). Everything is seeded.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { torch, type Tensor } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { MindsEyeVLM } from "../models/vlm.js";
import { Tokenizer } from "../data/tokenizer.js";
import { TargetCache } from "../data/targets.js";
import { readPairs } from "../data/formats/index.js";
import { collapseStats, normalizeTargets, type CollapseStats } from "../objectives/index.js";
import { latentInput } from "../train/stages/latent_pretrain.js";
import { mulberry32, shuffleInPlace } from "../util/random.js";
import {
  resolveLatentRun, loadGallery, worldGallery, runTargetStats, checkTrainingEncoder, defaultCacheRoot, loadImaginer, disposeImaginer,
  imagineLatents, scoreRetrieval, retrievalMetrics, type LatentRun, type RetrievalMetrics, type Gallery,
} from "./retrieval.js";
import { ATTRIBUTES, readSceneLabels, type Attribute, type SceneLabels } from "./attributes.js";
import { scoreClusters, distances, type ClusterScore } from "./clustering.js";
import { linearProbe, ridgeReadout, type ProbeResult } from "./probes.js";
import { pca2d, umap2d } from "./projection.js";
import { correlate, type Correlation } from "./correlation.js";
import { imagine } from "./imagine.js";

export interface AnalyzeOptions {
  /** The study folder. */
  study: string;
  /** Test images (first caption each) analysed; default 300. */
  captions?: number;
  /** Training images (first caption each) the probes and readouts are fitted on; default 1000. */
  trainCaptions?: number;
  /** Test captions imagined into contact sheets; default 4. */
  sheets?: number;
  seed?: number;
  log?: (line: string) => void;
}

export interface ModelEntry {
  arm: string;
  /** "base": before latent pretraining; "pretrained": after (text control, latent, ablation cells). */
  stage: "base" | "pretrained";
  dir: string;
  /** Its training run (recipe.resolved.json beside model/): the pooling and normalisation of its head's targets. */
  runDir: string;
  /** Latent queries read by a head, whose imagined latents the analysis ranks (not the Mirage- or VIRAL-style readouts). */
  latentHead: boolean;
}

export interface Alignment {
  /** Imagined latents through the model's head (models with one). */
  head?: RetrievalMetrics;
  /** A collapsed head: every caption imagines the training targets' mean. */
  meanPrediction?: RetrievalMetrics;
  /** Ridge readout from the caption-end hidden state. */
  readout: RetrievalMetrics;
}

export interface CollapseReport {
  predicted: CollapseStats;
  targets: CollapseStats;
  /** Per-dimension std over the test captions (imagined) and images (real), sorted descending. */
  stdPerDim: { predicted: number[]; targets: number[] };
}

export interface SpaceStructure {
  /** "real latents", "imagined latents", "hidden states". */
  space: "real" | "imagined" | "hidden";
  /** The model (null for the real latents). */
  arm: string | null;
  scores: Record<Attribute, ClusterScore | null>;
}

export interface ProjectionPoint { x: number; y: number; kind: "imagined" | "real"; labels: SceneLabels }
export interface Projection { arm: string; method: "pca" | "umap"; explained?: [number, number]; points: ProjectionPoint[] }

export interface EfficiencyPoint { task: string; arm: string; fraction: number; mean: number; low: number; high: number; seeds: number }

export interface AlignmentCorrelation {
  task: string;
  fraction: number;
  /** e.g. "readout recall@1", "head mean cosine". */
  measure: string;
  /** The arms (points) and their values. */
  points: { arm: string; alignment: number; accuracy: number }[];
  correlation: Correlation;
}

export interface ContactSheet { caption: string; imageId: string; sheet: string; top: { id: string; similarity: number }[] }

export interface StudyAnalysis {
  study: string;
  seed: number;
  captions: { test: number; train: number };
  attributes: readonly Attribute[];
  target: { pool: string; targetNorm: string; k: number; d: number; galleryImages: number };
  models: ModelEntry[];
  alignment: Record<string, Alignment>;
  collapse: Record<string, CollapseReport>;
  structure: SpaceStructure[];
  probes: Record<string, Record<Attribute, ProbeResult>>;
  projections: Projection[];
  /** Null with `results` saying why when the study has no results.json yet. */
  efficiency: EfficiencyPoint[] | null;
  correlations: AlignmentCorrelation[] | null;
  results: string;
  sheets: ContactSheet[];
  seconds: number;
  finished: string;
}

/** The models of a study, base first; pretrained arms in name order (control, latent, then cells). */
export function studyModels(study: string): ModelEntry[] {
  const stages = join(study, "stages");
  const base = join(stages, "vlm-base", "model");
  if (!existsSync(join(base, "config.json"))) throw new ConfigError(`${study}: no base VLM at ${base}; run \`mindseye experiment\` through stage 2 first`);
  const models: ModelEntry[] = [{ arm: "baseline", stage: "base", dir: base, runDir: join(stages, "vlm-base"), latentHead: false }];
  const hasHead = (dir: string) => {
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as { latent_head?: unknown };
    return config.latent_head !== undefined && config.latent_head !== null;
  };
  for (const name of readdirSync(stages).filter((n) => n.startsWith("pretrain-")).sort()) {
    const runDir = join(stages, name), dir = join(runDir, "model");
    if (!existsSync(join(dir, "config.json"))) continue; // a stage that has not finished
    models.push({ arm: name.slice("pretrain-".length), stage: "pretrained", dir, runDir, latentHead: hasHead(dir) });
  }
  // The ablation cells, by the names results.json gives their accuracies (a cell with an arm's
  // settings was not run; one whose stage has not finished is left out, as above).
  const results = join(study, "results.json");
  const cells = existsSync(results) ? (JSON.parse(readFileSync(results, "utf8")) as { ablations?: { name: string; folder: string; readout: string; sameAs: string | null }[] }).ablations ?? [] : [];
  for (const cell of cells) {
    const runDir = join(stages, "ablations", cell.folder), dir = join(runDir, "model");
    if (cell.sameAs !== null || !existsSync(join(dir, "config.json"))) continue;
    models.push({ arm: cell.name, stage: "pretrained", dir, runDir, latentHead: cell.readout === "queries" && hasHead(dir) });
  }
  return models;
}

/** The first caption of each image of a world split: [{id, caption}] in id order. */
async function firstCaptions(world: string, split: string): Promise<{ id: string; caption: string }[]> {
  const spec = worldGallery(world, split);
  const out: { id: string; caption: string }[] = [];
  for await (const p of readPairs({ format: "coco", annotations: spec.annotations, images: spec.images })) out.push({ id: p.id, caption: p.captions[0]! });
  return out.sort((a, b) => Number(a.id) - Number(b.id));
}

/** A seeded subset of `n` items, kept in their order. */
function subset<T>(items: readonly T[], n: number, seed: number): T[] {
  if (items.length <= n) return [...items];
  const keep = new Set(shuffleInPlace(items.map((_, i) => i), mulberry32(seed)).slice(0, n));
  return items.filter((_, i) => keep.has(i));
}

/** Hidden states at the end of each caption (the last prompt token, no latent queries): [n, H]. */
function captionEndStates(modelDir: string, captions: readonly string[], batchSize = 64): Tensor {
  const model = MindsEyeVLM.fromPretrained(modelDir);
  try {
    model.eval();
    const tok = Tokenizer.fromPretrained(modelDir);
    const pad = tok.specialTokenIds.pad ?? 0;
    const parts: Tensor[] = [];
    for (let start = 0; start < captions.length; start += batchSize) {
      const rows = captions.slice(start, start + batchSize).map((c) => latentInput(tok, c, []).ids);
      const T = Math.max(...rows.map((r) => r.length));
      const left = (r: number[], v: number) => [...Array<number>(T - r.length).fill(v), ...r]; // left padding: every caption ends at T − 1
      parts.push(torch.noGrad(() => torch.scope(() => {
        const inputIds = torch.tensor(rows.map((r) => left(r, pad)), { dtype: "int64" });
        const attentionMask = torch.tensor(rows.map((r) => left(r.map(() => 1), 0)), { dtype: "int64" });
        const h = model.forward({ inputIds, attentionMask, logitsToKeep: 1 }).lastHiddenState; // [B, T, H]
        return h.select(1, T - 1).contiguous(); // [B, H]
      })));
    }
    const all = torch.cat(parts, 0);
    parts.forEach((p) => p.dispose());
    return all;
  } finally {
    model.parameters().forEach((p) => p.dispose());
  }
}

const rowsOf = (t: Tensor): number[][] => {
  const flat = t.reshape(t.shape[0]!, -1).contiguous();
  const [n, d] = flat.shape as [number, number];
  const v = flat.toFloat64Values();
  flat.dispose();
  return Array.from({ length: n }, (_, i) => Array.from(v.subarray(i * d, (i + 1) * d)));
};

function structureOf(space: SpaceStructure["space"], arm: string | null, rows: number[][], labels: SceneLabels[], seed: number): SpaceStructure {
  const dist = distances(rows);
  const scores = Object.fromEntries(ATTRIBUTES.map((a) => [a, scoreClusters(rows, labels.map((l) => l[a]), seed, dist)])) as Record<Attribute, ClusterScore | null>;
  return { space, arm, scores };
}

function collapseReport(predicted: Tensor, targets: Tensor): CollapseReport {
  const flat = (x: Tensor) => x.reshape(x.shape[0]!, -1); // one sample per caption or image
  const sortedStd = (x: Tensor) => torch.scope(() => Array.from(flat(x).std(0).toFloat64Values()).sort((a, b) => b - a));
  return torch.scope(() => ({
    predicted: collapseStats(flat(predicted)), targets: collapseStats(flat(targets)),
    stdPerDim: { predicted: sortedStd(predicted), targets: sortedStd(targets) },
  }));
}

/** Retrieval metrics of predicted latents [n, K, D] against the gallery (truth: each row's gallery index). */
function rank(pred: Tensor, gallery: Gallery, truth: number[], seed: number): RetrievalMetrics {
  const s = scoreRetrieval(pred, gallery.latents, truth, 1);
  return retrievalMetrics(s.ranks, s.cosines, { seed });
}

interface ResultsJson { cells: { arm: string; fraction: number; task: string; seeds: number; accuracy: { mean: number; low: number; high: number } }[] }

/** The alignment measures correlated with accuracy, and how to read each from an arm's Alignment (higher = better aligned, except ranks). */
const MEASURES: { name: string; of: (a: Alignment) => number | undefined }[] = [
  ...(["readout", "head"] as const).flatMap((which) => [
    ...["1", "5", "10"].map((k) => ({ name: `${which} recall@${k}`, of: (a: Alignment) => a[which]?.recall[k]?.mean })),
    { name: `${which} median rank`, of: (a: Alignment) => a[which]?.medianRank },
    { name: `${which} mean cosine`, of: (a: Alignment) => a[which]?.meanCosine.mean },
  ]),
];

/** Each alignment measure against accuracy, per task and fraction, over the arms that have both. */
export function alignmentCorrelations(alignment: Record<string, Alignment>, cells: ResultsJson["cells"], seed = 0): AlignmentCorrelation[] {
  const out: AlignmentCorrelation[] = [];
  const groups = [...new Set(cells.map((c) => `${c.task}|${c.fraction}`))];
  for (const g of groups) {
    const [task, f] = g.split("|") as [string, string];
    const fraction = Number(f);
    for (const m of MEASURES) {
      const points = cells.filter((c) => c.task === task && c.fraction === fraction && alignment[c.arm] !== undefined)
        .map((c) => ({ arm: c.arm, alignment: m.of(alignment[c.arm]!), accuracy: c.accuracy.mean }))
        .filter((p): p is { arm: string; alignment: number; accuracy: number } => p.alignment !== undefined && Number.isFinite(p.alignment));
      if (points.length < 2) continue;
      out.push({ task, fraction, measure: m.name, points, correlation: correlate(points.map((p) => p.alignment), points.map((p) => p.accuracy), { seed }) });
    }
  }
  return out;
}

/**
 * Analyses a study folder and writes STUDY/analysis.json (and contact sheets under STUDY/analysis/).
 * ```ts
 * const a = await analyzeStudy({ study: "runs/demo" });
 * a.probes.latent.colour.accuracy; // 0.74, against a.probes.baseline.colour.accuracy 0.52
 * ```
 */
export async function analyzeStudy(o: AnalyzeOptions): Promise<StudyAnalysis> {
  const t0 = performance.now();
  const log = o.log ?? (() => {});
  const seed = o.seed ?? 0;
  const study = o.study;
  if (!existsSync(join(study, "study.resolved.json"))) throw new ConfigError(`${study}: not a study folder (no study.resolved.json); give the folder \`mindseye experiment\` wrote`);
  const world = join(study, "world");
  const labelsById = readSceneLabels(world);
  const models = studyModels(study);
  const run: LatentRun = resolveLatentRun(study); // the latent arm: the target space

  // 1. Captions: seeded subsets of test and training images (training ones with a cached target).
  const cache = new TargetCache(run.targetsDir);
  const test = subset(await firstCaptions(world, "test"), o.captions ?? 300, seed);
  const train = subset((await firstCaptions(world, "train")).filter((c) => cache.has(c.id)), o.trainCaptions ?? 1000, seed + 1);
  const label = (id: string) => {
    const l = labelsById.get(id);
    if (l === undefined) throw new Error(`${world}/scenes.json has no scene for image ${id}`);
    return l;
  };
  const testLabels = test.map((c) => label(c.id)), trainLabels = train.map((c) => label(c.id));
  log(`analyze ${study}: ${models.length} models, ${test.length} test and ${train.length} training captions`);

  // 2. The real latents: the test gallery (the latent arm's pooling and normalisation) and the training targets.
  const gallery = await loadGallery({
    spec: worldGallery(world, "test"), encoderDir: run.encoderDir, pool: run.pool, targetNorm: run.targetNorm, cacheRoot: defaultCacheRoot(run),
    checkEncoder: (fp) => checkTrainingEncoder(run, fp), ...runTargetStats(run),
  });
  const index = new Map(gallery.ids.map((id, i) => [id, i]));
  const kept = test.filter((c) => index.has(c.id));
  if (kept.length !== test.length) throw new Error(`${test.length - kept.length} test images could not be read by the encoder (see ${gallery.cacheDir}/manifest.json)`);
  const truth = test.map((c) => index.get(c.id)!);
  const zTrain = torch.scope(() => normalizeTargets(cache.get(train.map((c) => c.id)), run.targetNorm, runTargetStats(run).targetStats).contiguous()); // [n, K, D]
  cache.dispose();
  const zTest = torch.scope(() => gallery.latents.indexSelect(0, torch.tensor(truth, { dtype: "int64" })).contiguous()); // [m, K, D], caption order
  const [, K, D] = zTest.shape as [number, number, number];

  const alignment: Record<string, Alignment> = {};
  const collapse: Record<string, CollapseReport> = {};
  const probes: Record<string, Record<Attribute, ProbeResult>> = {};
  const projections: Projection[] = [];
  const structure: SpaceStructure[] = [structureOf("real", null, rowsOf(zTest), testLabels, seed)];
  try {
    // 3. Each model: hidden states -> probes, clusters, readout; its head (if any) -> imagined latents.
    for (const m of models) {
      const hTrain = captionEndStates(m.dir, train.map((c) => c.caption));
      const hTest = captionEndStates(m.dir, test.map((c) => c.caption));
      try {
        probes[m.arm] = Object.fromEntries(ATTRIBUTES.map((a) => [a, linearProbe(hTrain, trainLabels.map((l) => l[a]), hTest, testLabels.map((l) => l[a]))])) as Record<Attribute, ProbeResult>;
        structure.push(structureOf("hidden", m.arm, rowsOf(hTest), testLabels, seed));
        const readout = torch.scope(() => rank(ridgeReadout(hTrain, zTrain, hTest), gallery, truth, seed));
        alignment[m.arm] = { readout };
      } finally {
        hTrain.dispose();
        hTest.dispose();
      }
      if (!m.latentHead) continue;
      const armRun = resolveLatentRun(m.runDir, { encoder: run.encoderDir });
      if (armRun.pool !== run.pool || armRun.targetNorm !== run.targetNorm) {
        log(`  ${m.arm}: its targets (${armRun.pool}, ${armRun.targetNorm}) differ from the latent arm's (${run.pool}, ${run.targetNorm}); its head is compared in its own space`);
      }
      const im = loadImaginer(m.dir);
      const own = armRun.pool === run.pool && armRun.targetNorm === run.targetNorm && armRun.runDir === run.runDir ? null
        : await loadGallery({ spec: worldGallery(world, "test"), encoderDir: armRun.encoderDir, pool: armRun.pool, targetNorm: armRun.targetNorm, cacheRoot: defaultCacheRoot(run), ...runTargetStats(armRun) });
      try {
        const g = own ?? gallery;
        const pred = torch.scope(() => {
          const parts = [];
          for (let s = 0; s < test.length; s += 64) parts.push(imagineLatents(im, test.slice(s, s + 64).map((c) => c.caption)));
          return torch.cat(parts, 0);
        }); // [m, K, D]
        const real = own === null ? zTest : torch.scope(() => own.latents.indexSelect(0, torch.tensor(test.map((c) => own.ids.indexOf(c.id)), { dtype: "int64" })));
        const trueIndex = own === null ? truth : test.map((c) => own.ids.indexOf(c.id));
        try {
          const head = rank(pred, g, trueIndex, seed);
          const meanPrediction = own === null
            ? torch.scope(() => rank(zTrain.mean(0, { keepdim: true }).expand(test.length, K, D).contiguous(), g, trueIndex, seed))
            : torch.scope(() => rank(real.mean(0, { keepdim: true }).expand(test.length, ...(real.shape.slice(1) as [number, number])).contiguous(), g, trueIndex, seed));
          alignment[m.arm] = { ...alignment[m.arm]!, head, meanPrediction };
          collapse[m.arm] = collapseReport(pred, real);
          structure.push(structureOf("imagined", m.arm, rowsOf(pred), testLabels, seed));
          // Imagined and real latents projected together.
          const both = [...rowsOf(pred), ...rowsOf(real)];
          const kinds = [...test.map(() => "imagined" as const), ...test.map(() => "real" as const)];
          const labelsBoth = [...testLabels, ...testLabels];
          const pca = pca2d(both);
          projections.push({ arm: m.arm, method: "pca", explained: pca.explained, points: pca.points.map(([x, y], i) => ({ x, y, kind: kinds[i]!, labels: labelsBoth[i]! })) });
          if (both.length >= 3) projections.push({ arm: m.arm, method: "umap", points: umap2d(both, seed).map(([x, y], i) => ({ x, y, kind: kinds[i]!, labels: labelsBoth[i]! })) });
        } finally {
          pred.dispose();
          if (real !== zTest) real.dispose();
        }
      } finally {
        disposeImaginer(im);
        own?.latents.dispose();
      }
      log(`  ${m.arm}: probes, clusters, readout and imagined latents done (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    }
  } finally {
    zTrain.dispose();
    zTest.dispose();
    gallery.latents.dispose();
  }

  // 4. Contact sheets of the latent arm for the first few test captions.
  const sheetsDir = join(study, "analysis");
  mkdirSync(sheetsDir, { recursive: true });
  const sheets: ContactSheet[] = [];
  for (const [i, c] of test.slice(0, o.sheets ?? 4).entries()) {
    const out = join(sheetsDir, `imagine-${i}.png`);
    const r = await imagine({ run: study, caption: c.caption, k: 8, out, cacheRoot: defaultCacheRoot(run) });
    sheets.push({ caption: c.caption, imageId: c.id, sheet: relative(study, out), top: r.top.map((t) => ({ id: t.id, similarity: t.similarity })) });
  }

  // 5. Accuracy: data-efficiency curves and the alignment ↔ accuracy correlations (results.json).
  const resultsPath = join(study, "results.json");
  let efficiency: EfficiencyPoint[] | null = null, correlations: AlignmentCorrelation[] | null = null;
  let results = `missing: ${resultsPath} (the study has not finished): no efficiency curves or correlations`;
  if (existsSync(resultsPath)) {
    const r = JSON.parse(readFileSync(resultsPath, "utf8")) as ResultsJson;
    efficiency = r.cells.map((c) => ({ task: c.task, arm: c.arm, fraction: c.fraction, mean: c.accuracy.mean, low: c.accuracy.low, high: c.accuracy.high, seeds: c.seeds }))
      .sort((a, b) => a.task.localeCompare(b.task) || a.arm.localeCompare(b.arm) || a.fraction - b.fraction);
    correlations = alignmentCorrelations(alignment, r.cells, seed);
    results = resultsPath;
  }

  const analysis: StudyAnalysis = {
    study, seed, captions: { test: test.length, train: train.length }, attributes: ATTRIBUTES,
    target: { pool: run.pool, targetNorm: run.targetNorm, k: K, d: D, galleryImages: gallery.ids.length },
    models, alignment, collapse, structure, probes, projections, efficiency, correlations, results, sheets,
    seconds: (performance.now() - t0) / 1000, finished: new Date().toISOString(),
  };
  const tmp = join(study, `analysis.json.tmp-${process.pid}`);
  writeFileSync(tmp, JSON.stringify(analysis) + "\n");
  renameSync(tmp, join(study, "analysis.json"));
  return analysis;
}

// ---- what the command prints ------------------------------------------------------------------

const pct = (x: number) => (Number.isFinite(x) ? (100 * x).toFixed(1) : "–");
const num = (x: number | undefined, digits = 3) => (x !== undefined && Number.isFinite(x) ? x.toFixed(digits) : "–");

/** The summary `mindseye analyze` prints. */
export function formatAnalysis(a: StudyAnalysis): string {
  const arms = a.models.map((m) => m.arm);
  const w = Math.max(10, ...arms.map((x) => x.length));
  const lines = [
    `analysis of ${a.study}: ${a.captions.test} test captions, ${a.captions.train} training captions; targets ${a.target.pool} (${a.target.targetNorm}), K=${a.target.k}, D=${a.target.d}; ${a.seconds.toFixed(0)} s`,
    "",
    "alignment (test images ranked among " + a.target.galleryImages + "): recall@1 / @5 / @10 %, median rank, mean cosine",
  ];
  const row = (name: string, m: RetrievalMetrics | undefined) => (m
    ? `  ${name.padEnd(w + 16)} ${pct(m.recall["1"]!.mean).padStart(5)} ${pct(m.recall["5"]!.mean).padStart(5)} ${pct(m.recall["10"]!.mean).padStart(5)}  ${String(m.medianRank).padStart(6)}  ${num(m.meanCosine.mean)}`
    : null);
  for (const arm of arms) {
    const al = a.alignment[arm]!;
    for (const l of [row(`${arm} head`, al.head), row(`${arm} mean prediction`, al.meanPrediction), row(`${arm} readout`, al.readout)]) if (l) lines.push(l);
  }
  const collapsed = Object.entries(a.collapse);
  if (collapsed.length > 0) {
    lines.push("", "collapse: effective rank, mean pairwise cosine, mean per-dimension std (imagined | real)");
    for (const [arm, c] of collapsed) {
      lines.push(`  ${arm.padEnd(w)} ${num(c.predicted.effectiveRank, 1)} | ${num(c.targets.effectiveRank, 1)}   ${num(c.predicted.meanPairwiseCosine)} | ${num(c.targets.meanPairwiseCosine)}   ${num(c.predicted.stdMean)} | ${num(c.targets.stdMean)}`);
    }
  }
  lines.push("", `probes (held-out accuracy %, majority in brackets): ${ATTRIBUTES.join(" / ")}`);
  for (const arm of arms) {
    const p = a.probes[arm]!;
    lines.push(`  ${arm.padEnd(w)} ${ATTRIBUTES.map((at) => `${pct(p[at].accuracy)} (${pct(p[at].majority)})`).join("  ")}`);
  }
  lines.push("", `k-means vs attributes (NMI): ${ATTRIBUTES.join(" / ")}`);
  for (const s of a.structure) {
    lines.push(`  ${`${s.space}${s.arm ? ` ${s.arm}` : ""}`.padEnd(w + 9)} ${ATTRIBUTES.map((at) => num(s.scores[at]?.nmi)).join("  ")}`);
  }
  if (a.correlations === null) {
    lines.push("", a.results);
  } else {
    lines.push("", "alignment ↔ accuracy (Spearman ρ [95% CI], over arms and ablation cells):");
    for (const c of a.correlations.filter((x) => x.measure === "readout recall@1" || x.measure === "head mean cosine")) {
      const s = c.correlation.spearman;
      const ci = s.low === null ? "no interval (too few models)" : `[${num(s.low, 2)}, ${num(s.high!, 2)}]${s.includesZero ? " includes 0" : ""}`;
      lines.push(`  ${c.task} f=${c.fraction} ${c.measure}: ρ = ${num(c.correlation.spearman.value, 2)} ${ci} (n=${c.correlation.n})`);
    }
  }
  lines.push("", `analysis.json and ${a.sheets.length} contact sheets in ${a.study}`);
  return lines.join("\n");
}
