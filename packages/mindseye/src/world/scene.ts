// Scenes: 1–6 objects, each with a shape, colour, size and material, placed in distinct cells of
// a 3×3 grid with a jitter that keeps every object inside its cell (objects never overlap, and
// "left of" / "above" are unambiguous: they compare grid columns / rows, whose centres are at
// least two radii apart). Colour×shape pairs in HELD_OUT never occur in train, val or test
// scenes; every test_novel scene has at least one of them.
import type { Rng } from "./rng.js";

export const SHAPES = ["circle", "square", "triangle", "diamond", "star", "cross"] as const;
export const COLORS = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink"] as const;
export const SIZES = ["small", "large"] as const;
export const MATERIALS = ["metal", "rubber", "wood", "glass"] as const;
export type Shape = (typeof SHAPES)[number];
export type Color = (typeof COLORS)[number];
export type Size = (typeof SIZES)[number];
export type Material = (typeof MATERIALS)[number];

/** The four attribute kinds, in the order noun phrases list them ("large red metal circle"). */
export const ATTRIBUTE_KINDS = ["size", "color", "material", "shape"] as const;
export type AttributeKind = (typeof ATTRIBUTE_KINDS)[number];
export const ATTRIBUTE_VALUES: { readonly [K in AttributeKind]: readonly string[] } = {
  size: SIZES,
  color: COLORS,
  material: MATERIALS,
  shape: SHAPES,
};

/** Colour×shape pairs absent from training: one per shape, each with a different colour. */
export const HELD_OUT: readonly (readonly [Color, Shape])[] = [
  ["red", "star"],
  ["blue", "triangle"],
  ["green", "cross"],
  ["yellow", "diamond"],
  ["purple", "circle"],
  ["cyan", "square"],
];

export const SPLITS = ["train", "val", "test", "test_novel"] as const;
export type Split = (typeof SPLITS)[number];

/** Object radius (half the bounding box side) as a fraction of the image side. */
export const RADIUS: { readonly [S in Size]: number } = { small: 0.085, large: 0.14 };
export const GRID = 3;
const CELL_MARGIN = 0.01; // gap kept between an object and its cell's border

export interface SceneObject {
  id: number;
  shape: Shape;
  color: Color;
  size: Size;
  material: Material;
  /** Centre, as fractions of the image side (0 = left / top). */
  x: number;
  y: number;
  /** Half the bounding-box side, as a fraction of the image side. */
  r: number;
  row: number;
  col: number;
}

export interface Scene {
  id: number;
  /** The image's name without extension: also GQA's imageId. */
  imageId: string;
  file_name: string;
  split: Split;
  width: number;
  height: number;
  objects: SceneObject[];
}

/** A partial description of an object: the attributes a noun phrase names. */
export interface Desc {
  size?: Size;
  color?: Color;
  material?: Material;
  shape?: Shape;
}

export function isHeldOut(color: Color | undefined, shape: Shape | undefined): boolean {
  return color !== undefined && shape !== undefined && HELD_OUT.some(([c, s]) => c === color && s === shape);
}

export function imageIdOf(id: number): string {
  return String(id).padStart(12, "0");
}

/** Draws scene `id` of `split` (`size` is the image side in pixels, recorded only). */
export function sampleScene(rng: Rng, id: number, split: Split, size: number): Scene {
  const n = 1 + rng.int(6);
  const cells = rng.sample([0, 1, 2, 3, 4, 5, 6, 7, 8], n).sort((a, b) => a - b);
  const novelAt = split === "test_novel" ? rng.int(n) : -1;
  const objects = cells.map((cell, k): SceneObject => {
    let color: Color, shape: Shape;
    if (k === novelAt) [color, shape] = rng.pick(HELD_OUT);
    else {
      do {
        color = rng.pick(COLORS);
        shape = rng.pick(SHAPES);
      } while (split !== "test_novel" && isHeldOut(color, shape));
    }
    const sz = rng.pick(SIZES);
    const material = rng.pick(MATERIALS);
    const r = RADIUS[sz];
    const row = Math.floor(cell / GRID), col = cell % GRID;
    const slack = 0.5 / GRID - r - CELL_MARGIN; // how far the centre may move inside the cell
    const x = (col + 0.5) / GRID + rng.uniform(-slack, slack);
    const y = (row + 0.5) / GRID + rng.uniform(-slack, slack);
    return { id: k, shape, color, size: sz, material, x: round4(x), y: round4(y), r, row, col };
  });
  const imageId = imageIdOf(id);
  return { id, imageId, file_name: `${imageId}.png`, split, width: size, height: size, objects };
}

function round4(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}

export function matches(o: SceneObject, d: Desc): boolean {
  return (d.size === undefined || o.size === d.size) && (d.color === undefined || o.color === d.color)
    && (d.material === undefined || o.material === d.material) && (d.shape === undefined || o.shape === d.shape);
}

export function matching(scene: Scene, d: Desc): SceneObject[] {
  return scene.objects.filter((o) => matches(o, d));
}

/** The description of `o` restricted to `kinds`. */
export function descOf(o: SceneObject, kinds: readonly AttributeKind[]): Desc {
  const d: Desc = {};
  for (const k of kinds) (d as Record<AttributeKind, string>)[k] = o[k];
  return d;
}

export function descKinds(d: Desc): AttributeKind[] {
  return ATTRIBUTE_KINDS.filter((k) => d[k] !== undefined);
}

export function sameDesc(a: Desc, b: Desc): boolean {
  return ATTRIBUTE_KINDS.every((k) => a[k] === b[k]);
}

// Spatial relations compare grid cells, so they hold with a clear visual margin.
export const RELATIONS = ["left", "right", "above", "below"] as const;
export type Relation = (typeof RELATIONS)[number];

/** Whether `a` is `rel` `b` ("a is to the left of b"). */
export function related(a: SceneObject, rel: Relation, b: SceneObject): boolean {
  switch (rel) {
    case "left": return a.col < b.col;
    case "right": return a.col > b.col;
    case "above": return a.row < b.row;
    case "below": return a.row > b.row;
  }
}

/** All non-empty subsets of `kinds`, smallest first (order within a size is fixed). */
export function subsets(kinds: readonly AttributeKind[]): AttributeKind[][] {
  const out: AttributeKind[][] = [];
  for (let mask = 1; mask < 1 << kinds.length; mask++) out.push(kinds.filter((_, i) => mask & (1 << i)));
  return out.sort((a, b) => a.length - b.length);
}

/**
 * A description naming `o` and no other object of `pool` (the scene's objects, or a subset such
 * as "the objects left of B"), built from `kinds` plus every kind in `required`: one of the
 * smallest such at random, sometimes with one attribute more. With `allowEmpty`, an object alone
 * in its pool may get the empty description ("the object left of B"). Null if none exists (a
 * twin differing only in attributes outside `kinds`).
 */
export function uniqueDesc(
  pool: readonly SceneObject[], o: SceneObject, kinds: readonly AttributeKind[], rng: Rng,
  opts: { required?: readonly AttributeKind[]; allowEmpty?: boolean } = {},
): Desc | null {
  const required = opts.required ?? [];
  const free = kinds.filter((k) => !required.includes(k));
  const options: AttributeKind[][] = [...(opts.allowEmpty || required.length > 0 ? [[]] : []), ...subsets(free)];
  const best: AttributeKind[][] = [];
  for (const s of options) {
    if (best.length > 0 && s.length > best[0]!.length) break;
    const d = descOf(o, [...required, ...s]);
    if (pool.filter((p) => matches(p, d)).length === 1) best.push(s);
  }
  if (best.length === 0) return null;
  let chosen = rng.pick(best);
  const extra = free.filter((k) => !chosen.includes(k));
  if (extra.length > 0 && rng.chance(0.3)) chosen = [...chosen, rng.pick(extra)];
  return descOf(o, ATTRIBUTE_KINDS.filter((k) => required.includes(k) || chosen.includes(k)));
}
