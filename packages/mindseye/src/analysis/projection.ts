// 2-D projections of latents for the report: PCA (ml-pca) and UMAP (umap-js, seeded). Imagined
// and real latents are projected together, so their positions are comparable: a head that
// imagines well puts a caption's point where its image's is, and one that collapses puts all of
// its points in one spot.
import { PCA } from "ml-pca";
import { UMAP } from "umap-js";
import { mulberry32 } from "../util/random.js";

/** The first two principal components of each row, and the variance share they explain. */
export function pca2d(rows: number[][]): { points: [number, number][]; explained: [number, number] } {
  const pca = new PCA(rows, { center: true, scale: false });
  const projected = pca.predict(rows, { nComponents: 2 }).to2DArray();
  const ev = pca.getExplainedVariance();
  return { points: projected.map((r) => [r[0]!, r[1] ?? 0]), explained: [ev[0] ?? 0, ev[1] ?? 0] };
}

/** UMAP settings: the library's defaults but for the neighbourhood, kept below the point count. */
export const UMAP_SETTINGS = { nNeighbors: 15, minDist: 0.1, nEpochs: 200 } as const;

/** UMAP to 2-D with a seeded generator (reproducible). Needs at least 3 rows. */
export function umap2d(rows: number[][], seed: number): [number, number][] {
  if (rows.length < 3) throw new RangeError(`UMAP needs at least 3 points, got ${rows.length}`);
  const umap = new UMAP({
    nComponents: 2, nNeighbors: Math.min(UMAP_SETTINGS.nNeighbors, rows.length - 1), minDist: UMAP_SETTINGS.minDist,
    nEpochs: UMAP_SETTINGS.nEpochs, random: mulberry32(seed),
  });
  return umap.fit(rows).map((r) => [r[0]!, r[1]!]);
}
