// The shapes' outlines in unit coordinates (the object's centre at 0,0, its box half-side 1,
// y down), shared by the renderer (which scales them to pixels) and by geometry tests such as
// "does this object cross the jigsaw corner's edge" (which need no canvas).
import type { SceneObject, Shape } from "./scene.js";

export type Outline = { circle: number } | { polygon: readonly (readonly [number, number])[] };

const ring = (n: number, radius: (i: number) => number, dy: number) =>
  Array.from({ length: n }, (_, i): [number, number] => {
    const a = -Math.PI / 2 + (i * 2 * Math.PI) / n;
    return [radius(i) * Math.cos(a), radius(i) * Math.sin(a) + dy];
  });

const W = 0.32, L = 0.92; // the cross's arm half-width and length

export const OUTLINES: { readonly [S in Shape]: Outline } = {
  circle: { circle: 0.95 },
  square: { polygon: [[-0.82, -0.82], [0.82, -0.82], [0.82, 0.82], [-0.82, 0.82]] },
  // Shifted down so the box, not the centroid, is centred.
  triangle: { polygon: ring(3, () => 1.05, 0.12) },
  diamond: { polygon: [[0, -1], [0.72, 0], [0, 1], [-0.72, 0]] },
  star: { polygon: ring(10, (i) => (i % 2 === 0 ? 1 : 0.45), 0.08) },
  cross: { polygon: [[-W, -L], [W, -L], [W, -W], [L, -W], [L, W], [W, W], [W, L], [-W, L], [-W, W], [-L, W], [-L, -W], [-W, -W]] },
};

/** Whether the point (x, y), in image fractions, is inside object `o`'s shape. */
export function insideShape(o: SceneObject, x: number, y: number): boolean {
  const u = (x - o.x) / o.r, v = (y - o.y) / o.r;
  const outline = OUTLINES[o.shape];
  if ("circle" in outline) return u * u + v * v <= outline.circle * outline.circle;
  // Even-odd ray casting.
  const p = outline.polygon;
  let inside = false;
  for (let i = 0, j = p.length - 1; i < p.length; j = i++) {
    const [xi, yi] = p[i]!, [xj, yj] = p[j]!;
    if (yi > v !== yj > v && u < ((xj - xi) * (v - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}
