// Clustering scores against values worked out by hand, and k-means recovering planted groups.
import { test } from "node:test";
import assert from "node:assert/strict";
import { nmi, ari, silhouette, distances, kmeansLabels, scoreClusters } from "./clustering.js";
import { correlate } from "./correlation.js";
import { sceneLabels } from "./attributes.js";
import { pca2d, umap2d } from "./projection.js";

const close = (a: number, b: number, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol, `${a} ≠ ${b}`);

test("NMI and ARI: identical partitions score 1 whatever the names; independent ones 0 / below 0", () => {
  close(nmi([0, 0, 1, 1], ["a", "a", "b", "b"]), 1);
  close(ari([0, 0, 1, 1], ["b", "b", "a", "a"]), 1);
  // [0,0,1,1] vs [0,1,0,1]: every cell holds 1 point, I = 0.
  close(nmi([0, 0, 1, 1], [0, 1, 0, 1]), 0);
  // ARI: index 0, Σ C(a,2) = Σ C(b,2) = 2, C(4,2) = 6: expected 2·2/6 = 2/3, max 2 -> (0 − 2/3) / (2 − 2/3) = −0.5
  close(ari([0, 0, 1, 1], [0, 1, 0, 1]), -0.5);
  // [0,0,0,1] vs [0,0,1,1]: counts [[2,1],[0,1]]; I = ½ln(4/3)+¼ln(2/3)+¼ln2 over H = ln4 − ¾ln3 and ln2
  const h1 = -(0.75 * Math.log(0.75) + 0.25 * Math.log(0.25)), h2 = Math.log(2);
  const mi = 0.5 * Math.log(0.5 / (0.75 * 0.5)) + 0.25 * Math.log(0.25 / (0.75 * 0.5)) + 0.25 * Math.log(0.25 / (0.25 * 0.5));
  close(nmi([0, 0, 0, 1], [0, 0, 1, 1]), mi / Math.sqrt(h1 * h2));
  // ARI: index C(2,2) = 1; Σa = C(3,2) = 3; Σb = 1 + 1 = 2; expected 3·2/6 = 1; max 2.5 -> 0 / 1.5 = 0
  close(ari([0, 0, 0, 1], [0, 0, 1, 1]), 0);
  assert.throws(() => nmi([0], [0, 1]), /two labelings of 1 and 2 points/);
});

test("silhouette: two tight, distant groups near 1; a point alone scores 0; one group NaN", () => {
  const d = distances([[0], [1], [10], [11]]);
  // point 0: a = 1, b = (10 + 11) / 2 = 10.5 -> 0.9048; point 1: a = 1, b = 9.5 -> 0.8947; symmetric
  close(silhouette(d, [0, 0, 1, 1]), (2 * (1 - 1 / 10.5) + 2 * (1 - 1 / 9.5)) / 4);
  // 0 alone: 0; 1: a = (9 + 10) / 2, b = 1; 10: a = (9 + 1) / 2, b = 10; 11: a = (10 + 1) / 2, b = 11
  close(silhouette(d, ["x", "y", "y", "y"]), (0 + (1 - 9.5) / 9.5 + (10 - 5) / 10 + (11 - 5.5) / 11) / 4);
  assert.ok(Number.isNaN(silhouette(d, [1, 1, 1, 1])));
});

test("k-means recovers planted groups (seeded, reproducible); scoreClusters uses k = values of the attribute", () => {
  const points: number[][] = [], labels: string[] = [];
  for (const [name, cx, cy] of [["a", 0, 0], ["b", 10, 0], ["c", 0, 10]] as const) {
    for (let i = 0; i < 10; i++) {
      points.push([cx + (i % 3) * 0.1, cy + Math.floor(i / 3) * 0.1]);
      labels.push(name);
    }
  }
  const k = kmeansLabels(points, 3, 7);
  assert.deepEqual(k, kmeansLabels(points, 3, 7));
  close(ari(k, labels), 1);
  const s = scoreClusters(points, labels, 7)!;
  assert.equal(s.k, 3);
  close(s.nmi, 1);
  assert.ok(s.silhouette > 0.9);
  assert.equal(scoreClusters(points, labels.map(() => "same"), 7), null, "one value: nothing to recover");
});

test("correlation: a monotone relation has ρ = 1 and an interval excluding 0; too few points give no interval", () => {
  const c = correlate([1, 2, 3, 4, 5, 6, 7, 8], [1.1, 1.9, 3.2, 3.9, 5.1, 6.3, 6.8, 8.4], { seed: 1 });
  close(c.spearman.value, 1);
  assert.ok(c.pearson.value > 0.99);
  assert.ok(c.spearman.low! > 0 && !c.spearman.includesZero);
  const noise = correlate([1, 2, 3, 4, 5, 6], [3, 1, 4, 1, 5, 2], { seed: 1 });
  assert.ok(noise.pearson.includesZero, "an unrelated pair's interval includes 0");
  const three = correlate([1, 2, 3], [0.1, 0.2, 0.3]);
  assert.equal(three.pearson.low, null, "three monotone points: no interval (a bootstrap of 3 gives [1, 1])");
  assert.ok(three.pearson.includesZero && three.spearman.includesZero);
  close(three.spearman.value, 1);
  assert.notEqual(correlate([1, 2, 3, 4, 5], [0.1, 0.3, 0.2, 0.5, 0.4], { seed: 1 }).spearman.low, null, "5 models get an interval");
  const two = correlate([1, 2], [2, 1]);
  assert.equal(two.spearman.low, null);
  assert.ok(two.spearman.includesZero);
  close(two.spearman.value, -1);
  assert.ok(Number.isNaN(correlate([1, 1, 1], [1, 2, 3]).pearson.value), "a constant variable has no correlation");
});

test("scene labels: the first object in reading order, and the count", () => {
  const o = (row: number, col: number, color: string, shape: string) => ({ row, col, color, shape }) as never;
  assert.deepEqual(sceneLabels({ objects: [o(1, 0, "red", "star"), o(0, 2, "blue", "circle"), o(1, 1, "pink", "cross")] }),
    { colour: "blue", shape: "circle", count: "3", layout: "0,2" });
});

test("projections: PCA keeps the main axis; UMAP is seeded", () => {
  const rows = Array.from({ length: 20 }, (_, i) => [i, 0.01 * (i % 2), 0]);
  const p = pca2d(rows);
  assert.ok(p.explained[0] > 0.99);
  const xs = p.points.map((q) => q[0]);
  assert.ok(Math.abs(xs[19]! - xs[0]!) > 18);
  assert.deepEqual(umap2d(rows, 3), umap2d(rows, 3));
  assert.throws(() => umap2d(rows.slice(0, 2), 3), /at least 3 points/);
});
