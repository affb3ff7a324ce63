// Alignment ↔ accuracy: does a model whose pretraining aligned it better with the encoder answer
// better after fine-tuning? Pearson's r and Spearman's ρ (simple-statistics; ties get average
// ranks) over the models, each with a percentile bootstrap interval that resamples the models
// (pairs) with replacement. A resample in which either variable is constant has no correlation
// and is left out; the interval is null when fewer than half of the resamples are usable, and
// below MIN_POINTS models: with 3 or 4, most usable resamples hold two distinct points and give
// ±1, so the "interval" of three monotone points is [1, 1] — certainty from nothing.
import { sampleCorrelation, sampleRankCorrelation } from "simple-statistics";
import { mulberry32 } from "../util/random.js";

export interface CorrelationInterval {
  value: number;
  low: number | null;
  high: number | null;
  /** Whether the interval includes 0 (true when there is no interval: nothing is excluded). */
  includesZero: boolean;
  /** Usable bootstrap resamples of those drawn. */
  resamples: number;
}

export interface Correlation {
  /** Points (models). */
  n: number;
  pearson: CorrelationInterval;
  spearman: CorrelationInterval;
}

/** The fewest models (points) a correlation gets an interval from; fewer: the value alone. */
export const MIN_POINTS = 5;

const constant = (v: readonly number[]) => v.every((x) => x === v[0]);
const corr = (f: (x: number[], y: number[]) => number, x: number[], y: number[]) => (x.length < 2 || constant(x) || constant(y) ? NaN : f(x, y));

/**
 * Pearson and Spearman correlation of paired values with bootstrap 95% intervals.
 * ```ts
 * correlate([0.1, 0.4, 0.5, 0.9], [0.52, 0.55, 0.61, 0.7]).spearman; // { value: 1, low: …, high: 1, includesZero: false, … }
 * ```
 */
export function correlate(x: readonly number[], y: readonly number[], opts: { resamples?: number; level?: number; seed?: number } = {}): Correlation {
  if (x.length !== y.length) throw new RangeError(`correlate: ${x.length} x values and ${y.length} y values`);
  const n = x.length, B = opts.resamples ?? 2000, level = opts.level ?? 0.95;
  const rand = mulberry32(opts.seed ?? 0);
  const draws = { pearson: [] as number[], spearman: [] as number[] };
  for (let b = 0; b < B && n >= MIN_POINTS; b++) {
    const idx = Array.from({ length: n }, () => Math.floor(rand() * n));
    const bx = idx.map((i) => x[i]!), by = idx.map((i) => y[i]!);
    const p = corr(sampleCorrelation, bx, by), s = corr(sampleRankCorrelation, bx, by);
    if (Number.isFinite(p)) draws.pearson.push(p);
    if (Number.isFinite(s)) draws.spearman.push(s);
  }
  const interval = (value: number, d: number[]): CorrelationInterval => {
    if (d.length < B / 2) return { value, low: null, high: null, includesZero: true, resamples: d.length };
    d.sort((a, b) => a - b);
    const at = (p: number) => d[Math.min(d.length - 1, Math.max(0, Math.floor(p * (d.length - 1))))]!;
    const low = at((1 - level) / 2), high = at(1 - (1 - level) / 2);
    return { value, low, high, includesZero: low <= 0 && high >= 0, resamples: d.length };
  };
  return {
    n,
    pearson: interval(corr(sampleCorrelation, [...x], [...y]), draws.pearson),
    spearman: interval(corr(sampleRankCorrelation, [...x], [...y]), draws.spearman),
  };
}
