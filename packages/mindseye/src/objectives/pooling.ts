// Pooling of encoder features into target latents (DESIGN.md §1.1), and of predictions for the
// batch-level term. Targets never carry gradient: pool from detached features.
import { F, type Tensor } from "@mindseye/torch";

/** `cls` (K=1), `mean` (K=1), `grid:K` (adaptive average pool to √K×√K cells), `all` (K=N). */
export type PoolSpec = "cls" | "mean" | "all" | `grid:${number}`;

export function parsePool(spec: string): PoolSpec {
  if (spec === "cls" || spec === "mean" || spec === "all") return spec;
  const m = /^grid:(\d+)$/.exec(spec);
  if (m) {
    const k = Number(m[1]), side = Math.round(Math.sqrt(k));
    if (k < 1 || side * side !== k) throw new Error(`pooling "${spec}": K must be a perfect square (1, 4, 9, 16, ...)`);
    return spec as PoolSpec;
  }
  throw new Error(`unknown pooling "${spec}" (expected cls, mean, grid:K or all)`);
}

/** Number of latents K a pooling produces from N patches. */
export function pooledCount(spec: PoolSpec, numPatches: number): number {
  if (spec === "cls" || spec === "mean") return 1;
  if (spec === "all") return numPatches;
  return Number(spec.slice(5));
}

/**
 * features [B, N(+1), D] -> targets [B, K, D]. With a class token it sits at index 0: `cls`
 * takes it, the others pool the N patch tokens after it. `grid` needs a square patch grid and
 * orders cells row-major.
 */
export function poolFeatures(features: Tensor, spec: PoolSpec, opts: { hasClassToken: boolean }): Tensor {
  const [B, total, D] = features.shape as [number, number, number];
  if (spec === "cls") {
    if (!opts.hasClassToken) throw new Error("pooling cls: this encoder has no class token (use mean or grid:K)");
    return features.narrow(1, 0, 1);
  }
  const patches = opts.hasClassToken ? features.narrow(1, 1, total - 1) : features; // [B, N, D]
  const N = patches.shape[1]!;
  if (spec === "mean") return patches.mean(1, { keepdim: true });
  if (spec === "all") return patches;
  const side = Math.round(Math.sqrt(N));
  if (side * side !== N) throw new Error(`pooling ${spec}: ${N} patches do not form a square grid`);
  const cells = Math.round(Math.sqrt(Number(spec.slice(5))));
  const grid = patches.transpose(1, 2).reshape(B, D, side, side); // [B, D, h, w]
  return F.adaptiveAvgPool2d(grid, [cells, cells]).flatten(2).transpose(1, 2); // [B, K, D]
}

/** One vector per example for the batch-level term: the mean over the K latents. [B, K, D] -> [B, D] */
export function poolLatents(latents: Tensor): Tensor {
  return latents.mean(1);
}
