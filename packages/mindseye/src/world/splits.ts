// Which scenes go to which split: fixed fractions, shuffled by the seed. Scenes of train, val and
// test share one distribution (no held-out colour×shape pair); test_novel scenes each contain
// at least one held-out pair (scene.ts), so they test generalisation to unseen combinations.
import { Rng } from "./rng.js";
import { SPLITS, type Split } from "./scene.js";

export const SPLIT_FRACTIONS: { readonly [S in Split]: number } = { train: 0.7, val: 0.1, test: 0.1, test_novel: 0.1 };
/** The fewest scenes a world may have: every split then has at least one. */
export const MIN_SCENES = 10;

/**
 * The split of each scene, index i for scene id i + 1.
 * ```ts
 * assignSplits(1000, 0).filter((s) => s === "val").length; // 100
 * ```
 */
export function assignSplits(n: number, seed: number): Split[] {
  if (!Number.isInteger(n) || n < MIN_SCENES) throw new RangeError(`assignSplits needs at least ${MIN_SCENES} scenes, got ${n}`);
  const out: Split[] = [];
  for (const split of SPLITS) {
    if (split === "train") continue;
    for (let i = Math.round(n * SPLIT_FRACTIONS[split]); i > 0; i--) out.push(split);
  }
  while (out.length < n) out.push("train");
  return new Rng(seed, "splits").shuffle(out);
}
