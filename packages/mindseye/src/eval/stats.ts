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
