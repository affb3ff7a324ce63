// Accuracy with bootstrap confidence intervals, overall and per question type.
import { mulberry32 } from "../util/random.js";

export interface Interval { mean: number; low: number; high: number; n: number }

/** Percentile bootstrap interval of the mean of 0/1 (or real) outcomes. */
export function bootstrapMean(values: number[], opts: { resamples?: number; level?: number; seed?: number } = {}): Interval {
  const n = values.length;
  if (n === 0) return { mean: NaN, low: NaN, high: NaN, n: 0 };
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const B = opts.resamples ?? 2000, level = opts.level ?? 0.95;
  const rand = mulberry32(opts.seed ?? 0);
  const means = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += values[Math.floor(rand() * n)]!;
    means[b] = s / n;
  }
  means.sort();
  const q = (p: number) => means[Math.min(B - 1, Math.max(0, Math.floor(p * (B - 1))))]!;
  return { mean, low: q((1 - level) / 2), high: q(1 - (1 - level) / 2), n };
}

/** Accuracy overall and per type, each with its bootstrap interval. */
export function accuracyReport(results: { correct: boolean; type: string }[], seed = 0): { overall: Interval; byType: Record<string, Interval> } {
  const byType: Record<string, number[]> = {};
  for (const r of results) (byType[r.type] ??= []).push(r.correct ? 1 : 0);
  return {
    overall: bootstrapMean(results.map((r) => (r.correct ? 1 : 0)), { seed }),
    byType: Object.fromEntries(Object.entries(byType).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => [k, bootstrapMean(v, { seed })])),
  };
}

/**
 * Two-level (hierarchical) bootstrap of the mean of a seeds × questions matrix: each resample
 * draws seeds (rows) with replacement, then questions (columns) with replacement — the same
 * questions for every drawn seed, since every seed answers the same test set — and takes the
 * mean of the drawn cells. The interval so counts the variance between training seeds as well
 * as the sampling of questions. A paired difference (arm a − arm b, same seeds and questions)
 * is the bootstrap of the matrix of differences.
 * ```ts
 * hierarchicalBootstrap([[1, 0, 1], [1, 1, 0]]).mean; // 0.667
 * ```
 * With few seeds the seed level is coarse (3 seeds have 10 distinct resamples) and, like any
 * bootstrap, slightly narrow; `tInterval` over the per-seed values is the classical alternative.
 */
export function hierarchicalBootstrap(rows: readonly (readonly number[])[], opts: { resamples?: number; level?: number; seed?: number } = {}): Interval {
  const S = rows.length, Q = rows[0]?.length ?? 0;
  if (S === 0 || Q === 0) return { mean: NaN, low: NaN, high: NaN, n: 0 };
  if (rows.some((r) => r.length !== Q)) throw new RangeError(`hierarchicalBootstrap: every seed needs the same ${Q} questions`);
  let total = 0;
  for (const r of rows) for (const v of r) total += v;
  const B = opts.resamples ?? 2000, level = opts.level ?? 0.95;
  const rand = mulberry32(opts.seed ?? 0);
  const column = new Float64Array(Q);
  const means = new Float64Array(B);
  for (let b = 0; b < B; b++) {
    column.fill(0);
    for (let s = 0; s < S; s++) {
      const row = rows[Math.floor(rand() * S)]!;
      for (let q = 0; q < Q; q++) column[q]! += row[q]!;
    }
    let sum = 0;
    for (let q = 0; q < Q; q++) sum += column[Math.floor(rand() * Q)]!;
    means[b] = sum / (S * Q);
  }
  means.sort();
  const at = (p: number) => means[Math.min(B - 1, Math.max(0, Math.floor(p * (B - 1))))]!;
  return { mean: total / (S * Q), low: at((1 - level) / 2), high: at(1 - (1 - level) / 2), n: S * Q };
}

/** Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (then the normal's). */
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042];

/** The 95% t-interval of the mean of independent values (per-seed accuracies, per-step paired differences); NaN bounds for one value. */
export function tInterval(values: readonly number[]): Interval {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / Math.max(1, n);
  if (n < 2) return { mean: n === 1 ? mean : NaN, low: NaN, high: NaN, n };
  const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
  const half = (T975[n - 2] ?? 1.96) * sd / Math.sqrt(n);
  return { mean, low: mean - half, high: mean + half, n };
}
