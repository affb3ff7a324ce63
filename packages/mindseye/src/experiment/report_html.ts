// The study's report.html: one self-contained page (no network, no external files — plots are
// inline SVG drawn by Vega-Lite in Node, images PNG data URIs, CSS inline) written next to
// results.json. It reads what the study and `mindseye analyze` wrote:
//
//   results.json          accuracy tables with intervals, comparisons, controls, blind baselines,
//                         ablation cells (arms other than the three) and data-efficiency curves
//   analysis.json         alignment, collapse, clustering, probes, projections, alignment↔accuracy
//   analysis/*.png        imagine contact sheets
//   stages/*/metrics.jsonl, finetune/ARM/fraction-F/seed-S/metrics.jsonl   training curves
//   study.resolved.json   the resolved config; `mindseye doctor`'s report: the environment
//
// Every plot is a <figure class="plot" data-plot="NAME"> holding one <svg>; the report test opens
// the page in headless Chromium and checks each one.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { View, parse } from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { ConfigError } from "../config/errors.js";
import { doctorReport } from "../util/environment.js"; // what `mindseye doctor` prints: the engine's build and threads
import type { StudyAnalysis } from "../analysis/study.js";
import type { RetrievalMetrics } from "../analysis/retrieval.js";
import { readMetricsFile } from "../train/metrics.js";

interface IntervalJson { mean: number | null; low: number | null; high: number | null; n?: number }
interface CellJson { arm: string; fraction: number; task: string; seeds: number; accuracy: IntervalJson; perSeed: number[] }
interface ComparisonJson { a: string; b: string; fraction: number; task: string; difference: IntervalJson; perSeed: number[] }
interface ControlJson { kind: "fraction" | "blind"; arm: string; task: string; difference: IntervalJson; perSeed: number[]; from?: number; to?: number; fraction?: number; accuracy?: IntervalJson }
interface ResultsJson {
  name: string;
  seeds: number[];
  fractions: number[];
  harness: string;
  intervals: string;
  meaningful: boolean | null;
  cells: CellJson[];
  comparisons: ComparisonJson[];
  controls: ControlJson[];
  /** Each comparison at the largest fraction minus the same at the smallest (absent in older results.json). */
  interactions?: { a: string; b: string; task: string; from: number; to: number; difference: IntervalJson; perSeed: number[] }[];
  baselines: Record<string, { chance: number; majority: number; textOnly: number; n: number }>;
  /** Ablation grid results, when the study declared one (rendered as a table of its rows). */
  ablations?: unknown;
  /** The published models the study fine-tuned beside the arms (its `models` section). */
  models?: { name: string; model: string }[];
}

/** The three arms of every study; other arms in results.json are ablation cells. */
const MAIN_ARMS = ["baseline", "control", "latent"];

// ---- HTML helpers -------------------------------------------------------------------------------

const esc = (s: unknown) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const finite = (x: number | null | undefined): x is number => typeof x === "number" && Number.isFinite(x);
const pct = (x: number | null | undefined) => (finite(x) ? (100 * x).toFixed(1) : "–");
const num = (x: number | null | undefined, d = 3) => (finite(x) ? x.toFixed(d) : "–");
const ci = (i: IntervalJson) => `${pct(i.mean)} <span class="ci">[${pct(i.low)}, ${pct(i.high)}]</span>`;
const excludesZero = (i: IntervalJson) => finite(i.low) && finite(i.high) && (i.low > 0 || i.high < 0);
const signed = (i: IntervalJson) => `${finite(i.mean) && i.mean >= 0 ? "+" : ""}${ci(i)}${excludesZero(i) ? " <b>*</b>" : ""}`;

function table(headers: string[], rows: string[][]): string {
  return `<table><thead><tr>${headers.map((h) => `<th>${h}</th>`).join("")}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("")}</tbody></table>`;
}

/** Renders a Vega-Lite spec to an SVG string (headless Vega, no canvas). */
async function svg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

async function plot(name: string, caption: string, spec: TopLevelSpec): Promise<string> {
  return `<figure class="plot" data-plot="${esc(name)}">${await svg({ background: "white", ...spec } as TopLevelSpec)}<figcaption>${caption}</figcaption></figure>`;
}

// ---- sections -----------------------------------------------------------------------------------

function resultsSection(r: ResultsJson): string {
  const main = r.cells.filter((c) => MAIN_ARMS.includes(c.arm));
  const rows = [...new Set(main.map((c) => `${c.task}|${c.fraction}`))].map((key) => {
    const [task, f] = key.split("|") as [string, string];
    const fraction = Number(f);
    const cell = (arm: string) => main.find((c) => c.task === task && c.fraction === fraction && c.arm === arm);
    const cmp = (b: string, a = "latent") => r.comparisons.find((c) => c.task === task && c.fraction === fraction && c.a === a && c.b === b);
    const show = (c: CellJson | undefined) => (c ? `${ci(c.accuracy)}<br><span class="seeds">${c.perSeed.map(pct).join(" / ")}</span>` : "–");
    const diff = (c: ComparisonJson | undefined) => (c ? signed(c.difference) : "–");
    return [esc(task), String(fraction), pct(r.baselines[task]?.textOnly), show(cell("baseline")), show(cell("control")), show(cell("latent")), diff(cmp("baseline")), diff(cmp("control")), diff(cmp("baseline", "control"))];
  });
  const controls = r.controls.map((c) => [
    c.kind === "fraction" ? `fraction ${c.to} − ${c.from}` : `shuffled images − right images (fraction ${c.fraction})`,
    esc(c.arm), esc(c.task), signed(c.difference), c.perSeed.map(pct).join(" / "),
    c.kind === "blind" && c.accuracy ? `blind accuracy ${ci(c.accuracy)}` : excludesZero(c.difference) && finite(c.difference.mean) && c.difference.mean > 0 ? "more data helps" : "no detectable effect",
  ]);
  const interactions = (r.interactions ?? []).map((x) => [esc(x.task), `${esc(x.a)} − ${esc(x.b)}`, `${x.to} − ${x.from}`, signed(x.difference), x.perSeed.map(pct).join(" / ")]);
  const meaningful = r.meaningful === null ? "" : r.meaningful
    ? `<p class="ok">The baseline's positive control on world_gqa/test excludes 0: the study can detect an effect of this size.</p>`
    : `<p class="warn">⚠ The baseline's positive control on world_gqa/test does not exclude 0: at this size the study cannot detect even the effect of more data, and its comparisons mean little.</p>`;
  return [
    `<h2 id="results">Results</h2>`,
    `<p>Accuracy (%) on held-out questions: mean over seeds with a 95% interval (${esc(r.intervals)}); each seed's value below. Differences are paired; <b>*</b> marks an interval that excludes 0. Seeds ${esc(JSON.stringify(r.seeds))}, fractions ${esc(JSON.stringify(r.fractions))}, harness ${esc(r.harness)}.</p>`,
    table(["task", "fraction", "text-only", "baseline", "text control", "latent", "latent − baseline", "latent − control", "control − baseline"], rows),
    ...(interactions.length ? [`<h3>Does a difference change with the amount of data?</h3>`,
      `<p>Each difference at the largest fraction minus the same difference at the smallest, paired over the four groups. Below 0 for latent − baseline: the lead is larger with less data.</p>`,
      table(["task", "difference", "fractions", "change", "per seed"], interactions)] : []),
    `<h3>Controls</h3>`, meaningful,
    controls.length ? table(["control", "arm", "task", "effect", "per seed", "reads"], controls) : "<p>No controls (one fraction and no blind evaluations).</p>",
    `<h3>Blind baselines</h3>`,
    table(["task", "questions", "chance", "majority", "text-only"], Object.entries(r.baselines).map(([t, b]) => [esc(t), String(b.n), pct(b.chance), pct(b.majority), pct(b.textOnly)])),
  ].join("\n");
}

const modelNames = (r: ResultsJson) => new Set((r.models ?? []).map((m) => m.name));

/** The published models the study names: their cells (accuracy with interval and per seed). */
function modelsSection(r: ResultsJson): string | null {
  const names = modelNames(r), cells = r.cells.filter((c) => names.has(c.arm));
  if (cells.length === 0) return null;
  const source = new Map((r.models ?? []).map((m) => [m.name, m.model]));
  return [`<h2 id="models">Other models</h2>`,
    table(["model", "task", "fraction", "accuracy", "per seed"], cells.map((c) => [`${esc(c.arm)} (${esc(source.get(c.arm))})`, esc(c.task), String(c.fraction), ci(c.accuracy), c.perSeed.map(pct).join(" / ")])),
  ].join("\n");
}

/** Ablation cells: results.json cells whose arm is neither one of the three nor a named model, and its `ablations` rows if any. */
function ablationSection(r: ResultsJson): string | null {
  const names = modelNames(r);
  const cells = r.cells.filter((c) => !MAIN_ARMS.includes(c.arm) && !names.has(c.arm));
  const rows = Array.isArray(r.ablations) ? (r.ablations as unknown[]).filter((x): x is Record<string, unknown> => typeof x === "object" && x !== null) : [];
  if (cells.length === 0 && rows.length === 0) return null;
  const parts = [`<h2 id="ablations">Ablations</h2>`];
  if (cells.length > 0) {
    parts.push(table(["cell", "task", "fraction", "accuracy", "per seed"], cells.map((c) => [esc(c.arm), esc(c.task), String(c.fraction), ci(c.accuracy), c.perSeed.map(pct).join(" / ")])));
  }
  if (rows.length > 0) {
    const keys = [...new Set(rows.flatMap((x) => Object.keys(x)))];
    const show = (v: unknown) => (typeof v === "object" && v !== null && "mean" in v ? ci(v as IntervalJson) : esc(typeof v === "object" ? JSON.stringify(v) : v));
    parts.push(table(keys.map(esc), rows.map((x) => keys.map((k) => show(x[k])))));
  }
  return parts.join("\n");
}

async function efficiencySection(r: ResultsJson): Promise<string> {
  const tasks = [...new Set(r.cells.map((c) => c.task))];
  const figures: string[] = [];
  for (const task of tasks) {
    const values = r.cells.filter((c) => c.task === task).map((c) => ({ arm: c.arm, fraction: c.fraction, accuracy: c.accuracy.mean, low: c.accuracy.low, high: c.accuracy.high }));
    const x = { field: "fraction", type: "quantitative", scale: { type: "log" }, title: "fraction of training questions" } as const;
    figures.push(await plot(`efficiency-${task}`, `${esc(task)}: accuracy against the fraction of training questions, 95% intervals`, {
      width: 320, height: 220, title: task, data: { values },
      layer: [
        { mark: { type: "errorbar", ticks: true }, encoding: { x, y: { field: "low", type: "quantitative", title: "accuracy" }, y2: { field: "high" }, color: { field: "arm", type: "nominal" } } },
        { mark: { type: "line", point: true }, encoding: { x, y: { field: "accuracy", type: "quantitative", scale: { domain: [0, 1] } }, color: { field: "arm", type: "nominal" } } },
      ],
    }));
  }
  return `<h2 id="efficiency">Data efficiency</h2><div class="row">${figures.join("")}</div>`;
}

function alignmentTable(a: StudyAnalysis): string {
  const rows: string[][] = [];
  const row = (arm: string, what: string, m: RetrievalMetrics | undefined) => {
    if (m) rows.push([esc(arm), what, ci(m.recall["1"]!), ci(m.recall["5"]!), ci(m.recall["10"]!), String(m.medianRank), num(m.meanCosine.mean)]);
  };
  for (const m of a.models) {
    const al = a.alignment[m.arm]!;
    row(m.arm, "imagined (head)", al.head);
    row(m.arm, "mean prediction (a collapsed head)", al.meanPrediction);
    row(m.arm, "ridge readout of the caption-end hidden state", al.readout);
  }
  return table(["model", "latents", "recall@1", "recall@5", "recall@10", "median rank", "mean cosine"], rows);
}

async function alignmentSection(a: StudyAnalysis): Promise<string> {
  const parts = [
    `<h2 id="alignment">Alignment</h2>`,
    `<p>${a.captions.test} test captions; each caption's image is ranked among ${a.target.galleryImages} test images by the mean over K=${a.target.k} latents of cos(ẑ, z) (targets ${esc(a.target.pool)}, ${esc(a.target.targetNorm)}). Chance recall@1 is ${pct(1 / a.target.galleryImages)}%.</p>`,
    alignmentTable(a),
  ];
  const collapse = Object.entries(a.collapse);
  if (collapse.length > 0) {
    parts.push(`<h3>Collapse</h3>`, table(["model", "latents", "effective rank", "mean pairwise cosine", "mean per-dim std", "min per-dim std"], collapse.flatMap(([arm, c]) => [
      [esc(arm), "imagined", num(c.predicted.effectiveRank, 1), num(c.predicted.meanPairwiseCosine), num(c.predicted.stdMean), num(c.predicted.stdMin)],
      [esc(arm), "real", num(c.targets.effectiveRank, 1), num(c.targets.meanPairwiseCosine), num(c.targets.stdMean), num(c.targets.stdMin)],
    ])));
    const values = collapse.flatMap(([arm, c]) => (["predicted", "targets"] as const).flatMap((k) => c.stdPerDim[k].map((std, i) => ({ series: `${arm} ${k === "predicted" ? "imagined" : "real"}`, dim: i + 1, std }))));
    parts.push(await plot("collapse-std", "Per-dimension standard deviation over the test set, sorted: a collapsed head's curve drops to 0", {
      width: 420, height: 220, data: { values }, mark: "line",
      encoding: { x: { field: "dim", type: "quantitative", title: "dimension (sorted)" }, y: { field: "std", type: "quantitative", title: "std" }, color: { field: "series", type: "nominal" } },
    }));
  }
  return parts.join("\n");
}

async function correlationSection(a: StudyAnalysis): Promise<string> {
  if (a.correlations === null) return `<h2 id="correlation">Alignment ↔ accuracy</h2><p class="warn">${esc(a.results)}</p>`;
  const largest = Math.max(...a.correlations.map((c) => c.fraction));
  const rows = a.correlations.filter((c) => c.fraction === largest).map((c) => {
    const s = (x: { value: number | null; low: number | null; high: number | null; includesZero: boolean }) =>
      `${num(x.value, 2)} ${x.low === null ? "<span class=\"ci\">(no interval: too few models)</span>" : `<span class="ci">[${num(x.low, 2)}, ${num(x.high, 2)}]</span>${x.includesZero ? " <span class=\"warn\">includes 0</span>" : ""}`}`;
    return [esc(c.task), esc(c.measure), String(c.correlation.n), s(c.correlation.pearson), s(c.correlation.spearman)];
  });
  const measure = a.correlations.some((c) => c.measure === "head mean cosine" && c.points.length >= 2) ? "head mean cosine" : "readout recall@1";
  const values = a.correlations.filter((c) => c.fraction === largest && (c.measure === "readout recall@1" || c.measure === measure))
    .flatMap((c) => c.points.map((p) => ({ ...p, task: c.task, measure: c.measure })));
  const scatter = values.length === 0 ? "" : await plot("alignment-accuracy", `Alignment against accuracy at fraction ${largest}, one point per arm and task`, {
    data: { values },
    facet: { column: { field: "measure", type: "nominal", title: null } },
    resolve: { scale: { x: "independent" } },
    spec: {
      width: 300, height: 220,
      layer: [
        { mark: { type: "point", filled: true, size: 70 }, encoding: { x: { field: "alignment", type: "quantitative", scale: { zero: false } }, y: { field: "accuracy", type: "quantitative" }, color: { field: "task", type: "nominal" }, shape: { field: "arm", type: "nominal" } } },
        { mark: { type: "text", dy: -9, fontSize: 9 }, encoding: { x: { field: "alignment", type: "quantitative" }, y: { field: "accuracy", type: "quantitative" }, text: { field: "arm" } } },
      ],
    },
  } as TopLevelSpec);
  return [
    `<h2 id="correlation">Alignment ↔ accuracy</h2>`,
    `<p>Across the arms (and ablation cells) at fraction ${largest}: each alignment measure of the pretrained model against its fine-tuned accuracy. 95% intervals resample the arms; an interval that includes 0 is marked — with few arms it nearly always does, and the correlation says little.</p>`,
    scatter,
    table(["task", "alignment measure", "arms", "Pearson r", "Spearman ρ"], rows),
  ].join("\n");
}

async function structureSection(a: StudyAnalysis): Promise<string> {
  const attrs = a.attributes;
  const probeRows = a.models.map((m) => [esc(m.arm), m.stage === "base" ? "before" : "after", ...attrs.map((at) => {
    const p = a.probes[m.arm]![at];
    return `${pct(p.accuracy)} <span class="ci">(majority ${pct(p.majority)})</span>`;
  })]);
  const probeValues = a.models.flatMap((m) => attrs.map((at) => ({ model: m.arm, attribute: at, accuracy: a.probes[m.arm]![at].accuracy })));
  const clusterRows = a.structure.map((s) => [s.space === "real" ? "real latents (encoder)" : `${s.space === "hidden" ? "hidden states" : "imagined latents"}: ${esc(s.arm)}`,
    ...attrs.map((at) => {
      const c = s.scores[at];
      return c ? `${num(c.nmi)} / ${num(c.ari)} / ${num(c.silhouette)}` : "–";
    })]);
  const parts = [
    `<h2 id="structure">Structure</h2>`,
    `<h3>Linear probes</h3><p>Logistic regression from the LM's hidden state at the caption's end to each scene attribute, fitted on ${a.captions.train} training captions and scored on ${a.captions.test} held-out test captions. "before": the base VLM; "after": the pretrained arms.</p>`,
    table(["model", "latent pretraining", ...attrs.map(esc)], probeRows),
    await plot("probes", "Probe accuracy per attribute and model", {
      data: { values: probeValues }, width: 90, height: 200,
      mark: "bar",
      encoding: { column: { field: "attribute", type: "nominal" }, x: { field: "model", type: "nominal", title: null }, y: { field: "accuracy", type: "quantitative", scale: { domain: [0, 1] } }, color: { field: "model", type: "nominal" } },
    } as TopLevelSpec),
    `<h3>Clustering</h3><p>k-means with k = the attribute's number of values; NMI / ARI of the clusters against the attribute, and the silhouette of the attribute's own groups in the space.</p>`,
    table(["space", ...attrs.map((at) => `${esc(at)}<br><span class="ci">NMI / ARI / silhouette</span>`)], clusterRows),
  ];
  // The arms' projections only: each plot is ~0.9 MB of SVG, and a study's ablation cells would
  // make the page tens of MB; their projections stay in analysis.json.
  const cellProjections = a.projections.filter((p) => !MAIN_ARMS.includes(p.arm)).length;
  if (cellProjections > 0) parts.push(`<p>The ${cellProjections} projections of ablation cells are in analysis.json (<code>projections</code>), not drawn here.</p>`);
  for (const p of a.projections.filter((q) => MAIN_ARMS.includes(q.arm))) {
    const values = p.points.map((q) => ({ x: q.x, y: q.y, kind: q.kind, ...q.labels }));
    parts.push(await plot(`projection-${p.arm}-${p.method}`,
      `${p.method.toUpperCase()} of imagined (circles) and real (crosses) latents of the ${esc(p.arm)} arm, coloured by attribute${p.explained ? `; explained variance ${pct(p.explained[0])}% + ${pct(p.explained[1])}%` : ""}`, {
        data: { values },
        repeat: [...attrs],
        columns: 4,
        resolve: { scale: { color: "independent" }, legend: { color: "independent" } },
        spec: {
          width: 200, height: 200, mark: { type: "point", size: 14, opacity: 0.7, filled: true },
          encoding: {
            x: { field: "x", type: "quantitative", axis: null }, y: { field: "y", type: "quantitative", axis: null },
            color: { field: { repeat: "repeat" }, type: "nominal" }, shape: { field: "kind", type: "nominal", scale: { domain: ["imagined", "real"], range: ["circle", "cross"] } },
          },
        },
      } as TopLevelSpec));
  }
  return parts.join("\n");
}

function sheetsSection(study: string, a: StudyAnalysis): string {
  const items = a.sheets.map((s) => {
    const png = readFileSync(join(study, s.sheet)).toString("base64");
    const found = s.top.findIndex((t) => t.id === s.imageId);
    return `<figure class="sheet"><img alt="contact sheet" src="data:image/png;base64,${png}"><figcaption>“${esc(s.caption)}” — its image (${esc(s.imageId)}) is ${found < 0 ? "not among the top 8" : `#${found + 1}`}</figcaption></figure>`;
  });
  return `<h2 id="imagine">Imagine</h2><p>The latent arm imagines a test caption; the 8 test images whose encoder latents are closest, best first, with their similarity.</p>${items.join("\n")}`;
}

/** Metric files of each stage, and of each arm's fine-tune (and instruction phase) at the largest fraction and first seed. */
function metricRuns(study: string, r: ResultsJson | null): { name: string; path: string }[] {
  const runs: { name: string; path: string }[] = [];
  const stages = join(study, "stages");
  if (existsSync(stages)) {
    for (const s of readdirSync(stages).sort()) if (existsSync(join(stages, s, "metrics.jsonl"))) runs.push({ name: s, path: join(stages, s, "metrics.jsonl") });
  }
  if (r !== null) {
    const f = Math.max(...r.fractions), seed = r.seeds[0]!;
    for (const arm of [...new Set(r.cells.map((c) => c.arm))]) {
      const instruct = join(study, "finetune", arm, "instruct", `seed-${seed}`, "metrics.jsonl");
      if (existsSync(instruct)) runs.push({ name: `instruction phase ${arm} (seed ${seed})`, path: instruct });
      const path = join(study, "finetune", arm, `fraction-${f}`, `seed-${seed}`, "metrics.jsonl");
      if (existsSync(path)) runs.push({ name: `finetune ${arm} (fraction ${f}, seed ${seed})`, path });
    }
  }
  return runs;
}

/** The losses a metrics line may hold: the total and the latent objective's parts. */
const LOSS_KEYS = ["loss", "ce", "sim", "align"];

async function trainingSection(study: string, r: ResultsJson | null): Promise<string> {
  const figures: string[] = [];
  for (const run of metricRuns(study, r)) {
    const values: { step: number; split: string; series: string; value: number }[] = [];
    for (const m of readMetricsFile(run.path)) {
      for (const k of LOSS_KEYS) if (typeof m[k] === "number" && typeof m.step === "number") values.push({ step: m.step, split: String(m.split), series: `${k} (${String(m.split)})`, value: m[k] });
    }
    if (values.length === 0) continue;
    figures.push(await plot(`training-${run.name}`, `${esc(run.name)}: losses by step`, {
      width: 300, height: 180, title: run.name, data: { values }, mark: { type: "line", point: values.length < 20 },
      encoding: { x: { field: "step", type: "quantitative" }, y: { field: "value", type: "quantitative", title: "loss" }, color: { field: "series", type: "nominal" } },
    }));
  }
  return `<h2 id="training">Training curves</h2><div class="row">${figures.join("")}</div>`;
}

const CSS = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; } th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f4f4f4; } .ci, .seeds { color: #777; font-size: 0.9em; } .warn { color: #a40; } .ok { color: #274; }
figure { margin: 0.6em 0.6em 1em 0; display: inline-block; vertical-align: top; } figcaption { color: #555; font-size: 0.9em; max-width: 900px; }
.row { display: flex; flex-wrap: wrap; } .sheet img { image-rendering: pixelated; max-width: 100%; }
pre { background: #f7f7f7; padding: 0.8em; overflow: auto; max-height: 480px; } nav a { margin-right: 1em; }
`;

/**
 * Writes STUDY/report.html from results.json, analysis.json and the runs' metrics; returns its path.
 * ```ts
 * await analyzeStudy({ study: "runs/demo" });
 * const path = await writeHtmlReport("runs/demo"); // "runs/demo/report.html"
 * ```
 */
export async function writeHtmlReport(study: string): Promise<string> {
  const resultsPath = join(study, "results.json"), analysisPath = join(study, "analysis.json"), resolvedPath = join(study, "study.resolved.json");
  if (!existsSync(resolvedPath)) throw new ConfigError(`${study}: not a study folder (no study.resolved.json)`);
  const results = existsSync(resultsPath) ? JSON.parse(readFileSync(resultsPath, "utf8")) as ResultsJson : null;
  const analysis = existsSync(analysisPath) ? JSON.parse(readFileSync(analysisPath, "utf8")) as StudyAnalysis : null;
  const name = results?.name ?? (JSON.parse(readFileSync(resolvedPath, "utf8")) as { name?: string }).name ?? "study";
  const missing = (what: string, how: string) => `<p class="warn">${what} is missing: ${how}.</p>`;
  const sections = [
    results ? resultsSection(results) : `<h2 id="results">Results</h2>${missing(esc(resultsPath), "the study has not finished; run <code>mindseye experiment</code> to the end")}`,
    results ? ablationSection(results) : null,
    results ? modelsSection(results) : null,
    results ? await efficiencySection(results) : null,
    ...(analysis
      ? [await alignmentSection(analysis), await correlationSection(analysis), await structureSection(analysis), sheetsSection(study, analysis)]
      : [`<h2 id="alignment">Analysis</h2>${missing(esc(analysisPath), `run <code>mindseye analyze ${esc(study)}</code>`)}`]),
    await trainingSection(study, results),
    `<h2 id="config">Configuration</h2><pre>${esc(readFileSync(resolvedPath, "utf8"))}</pre>`,
    `<h2 id="environment">Environment</h2><pre>${esc(JSON.stringify(doctorReport(), null, 2))}</pre>`,
  ].filter((s): s is string => s !== null);
  const nav = [...sections.join("\n").matchAll(/<h2 id="([^"]+)">([^<]+)<\/h2>/g)].map((m) => `<a href="#${m[1]}">${m[2]}</a>`).join("");
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MindsEye study: ${esc(name)}</title>
<link rel="icon" href="data:,"><style>${CSS}</style></head>
<body><h1>MindsEye study: ${esc(name)}</h1>
<p>${esc(study)} — report written ${new Date().toISOString()}</p>
<nav>${nav}</nav>
${sections.join("\n")}
</body></html>
`;
  const out = join(study, "report.html");
  writeFileSync(out, html);
  return out;
}
