// Structure (DESIGN.md §6): do a space's points group by the world's known attributes?
//
//   k-means (ml-kmeans, k-means++ with a seed) with k = the number of values an attribute takes,
//   then the clusters against the attribute's labels:
//     NMI  normalised mutual information, I(C; Y) / √(H(C)·H(Y))        0 = independent, 1 = the same partition
//     ARI  adjusted Rand index (Hubert & Arabie, 1985)                  0 = chance, 1 = the same partition
//   and the silhouette of the attribute's own labels in the space (Rousseeuw, 1987): the mean over
//   points of (b − a) / max(a, b), a = mean distance to its own group, b = to the nearest other
//   group; > 0 when the attribute's groups are separated, ≈ 0 when they overlap.
// No well-kept npm package computes NMI, ARI or silhouette, so they are here: each is a few lines
// over a contingency table or a distance matrix, checked against values worked out by hand.
import { kmeans } from "ml-kmeans";

/** Contingency table of two labelings: counts[i][j] = points with a = i-th value, b = j-th value. */
function contingency(a: readonly (string | number)[], b: readonly (string | number)[]): number[][] {
  if (a.length !== b.length) throw new RangeError(`two labelings of ${a.length} and ${b.length} points`);
  const ia = new Map<string | number, number>(), ib = new Map<string | number, number>();
  for (const x of a) if (!ia.has(x)) ia.set(x, ia.size);
  for (const x of b) if (!ib.has(x)) ib.set(x, ib.size);
  const t = Array.from({ length: ia.size }, () => new Array<number>(ib.size).fill(0));
  a.forEach((x, i) => t[ia.get(x)!]![ib.get(b[i]!)!]!++);
  return t;
}

const entropy = (counts: readonly number[], n: number) => counts.reduce((h, c) => (c > 0 ? h - (c / n) * Math.log(c / n) : h), 0);

/**
 * Normalised mutual information with the geometric mean of the entropies (1 when both labelings
 * are one group each: identical partitions).
 * ```ts
 * nmi([0, 0, 1, 1], ["a", "a", "b", "b"]); // 1
 * ```
 */
export function nmi(a: readonly (string | number)[], b: readonly (string | number)[]): number {
  const t = contingency(a, b), n = a.length;
  const rows = t.map((r) => r.reduce((s, v) => s + v, 0));
  const cols = t[0]!.map((_, j) => t.reduce((s, r) => s + r[j]!, 0));
  const ha = entropy(rows, n), hb = entropy(cols, n);
  if (ha === 0 && hb === 0) return 1;
  if (ha === 0 || hb === 0) return 0;
  let mi = 0;
  t.forEach((r, i) => r.forEach((c, j) => {
    if (c > 0) mi += (c / n) * Math.log((c * n) / (rows[i]! * cols[j]!));
  }));
  return mi / Math.sqrt(ha * hb);
}

const pairs = (x: number) => (x * (x - 1)) / 2;

/**
 * Adjusted Rand index: pair agreement corrected for chance (1 for identical partitions, ≈ 0 for
 * independent ones, negative below chance).
 * ```ts
 * ari([0, 0, 1, 1], [0, 1, 0, 1]); // -0.5
 * ```
 */
export function ari(a: readonly (string | number)[], b: readonly (string | number)[]): number {
  const t = contingency(a, b), n = a.length;
  const index = t.flat().reduce((s, c) => s + pairs(c), 0);
  const sa = t.map((r) => r.reduce((s, v) => s + v, 0)).reduce((s, c) => s + pairs(c), 0);
  const sb = t[0]!.map((_, j) => t.reduce((s, r) => s + r[j]!, 0)).reduce((s, c) => s + pairs(c), 0);
  const expected = (sa * sb) / pairs(n), max = (sa + sb) / 2;
  return max === expected ? 1 : (index - expected) / (max - expected);
}

/** Euclidean distances between every pair of rows: [n][n]. */
export function distances(points: readonly (readonly number[])[]): Float64Array[] {
  const n = points.length;
  const d = Array.from({ length: n }, () => new Float64Array(n));
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      let s = 0;
      for (let k = 0; k < points[i]!.length; k++) s += (points[i]![k]! - points[j]![k]!) ** 2;
      d[i]![j] = d[j]![i] = Math.sqrt(s);
    }
  }
  return d;
}

/**
 * Mean silhouette of a labeling, from the points' distance matrix (`distances`). A point alone in
 * its group scores 0; NaN when there are fewer than 2 groups.
 * ```ts
 * silhouette(distances([[0], [1], [10], [11]]), [0, 0, 1, 1]); // ≈ 0.9
 * ```
 */
export function silhouette(dist: readonly Float64Array[], labels: readonly (string | number)[]): number {
  const n = dist.length;
  if (labels.length !== n) throw new RangeError(`silhouette: ${labels.length} labels for ${n} points`);
  const groups = [...new Set(labels)];
  if (groups.length < 2) return NaN;
  const g = labels.map((l) => groups.indexOf(l));
  const size = groups.map((_, k) => g.filter((x) => x === k).length);
  let total = 0;
  for (let i = 0; i < n; i++) {
    if (size[g[i]!]! === 1) continue; // s(i) = 0
    const sum = new Array<number>(groups.length).fill(0);
    for (let j = 0; j < n; j++) sum[g[j]!]! += dist[i]![j]!;
    const a = sum[g[i]!]! / (size[g[i]!]! - 1);
    const b = Math.min(...sum.map((s, k) => (k === g[i] ? Infinity : s / size[k]!)));
    total += (b - a) / Math.max(a, b);
  }
  return total / n;
}

/** k-means++ (ml-kmeans) with a seed: each point's cluster index. */
export function kmeansLabels(points: number[][], k: number, seed: number): number[] {
  if (k < 1 || k > points.length) throw new RangeError(`k-means: k = ${k} for ${points.length} points`);
  return kmeans(points, k, { seed, initialization: "kmeans++", maxIterations: 100 }).clusters;
}

export interface ClusterScore {
  /** Distinct values of the attribute among the points, and so the k of k-means. */
  k: number;
  nmi: number;
  ari: number;
  /** Silhouette of the attribute's labels in the space. */
  silhouette: number;
}

/**
 * Clusters `points` with k = the attribute's number of values and scores the clusters against it
 * (`dist`: the points' distance matrix, when several attributes share it).
 * Null when the points hold fewer than 2 values of it (nothing to recover).
 * ```ts
 * scoreClusters(hidden, scenes.map((s) => s.color), 0); // { k: 8, nmi: 0.41, ari: 0.22, silhouette: 0.03 }
 * ```
 */
export function scoreClusters(points: number[][], labels: readonly string[], seed: number, dist: readonly Float64Array[] = distances(points)): ClusterScore | null {
  const k = new Set(labels).size;
  if (k < 2 || k >= points.length) return null;
  const clusters = kmeansLabels(points, k, seed);
  return { k, nmi: nmi(clusters, labels), ari: ari(clusters, labels), silhouette: silhouette(dist, labels) };
}
