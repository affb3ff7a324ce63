// Loading and saving checkpoints in the Hugging Face layout: a directory with config.json and
// model.safetensors (or model-0000k-of-0000n.safetensors + model.safetensors.index.json).
import { mkdirSync, writeFileSync, renameSync, existsSync } from "node:fs";
import { join } from "node:path";
import { io, nn, type DType, type Tensor } from "@mindseye/torch";
import type { HfJson } from "../config/hf.js";

/** Maps a checkpoint's weight name to the module's, or null to drop it (e.g. rotary caches). */
export type Rename = (checkpointName: string) => string | null;

/** Every tensor of a checkpoint directory (single file or sharded), optionally converted. */
export function loadCheckpoint(dir: string, opts: { dtype?: DType } = {}): Map<string, Tensor> {
  const single = join(dir, "model.safetensors"), index = join(dir, "model.safetensors.index.json");
  if (!existsSync(single) && !existsSync(index)) {
    throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json (MindsEye reads safetensors checkpoints, never pickle .bin files)`);
  }
  return io.loadSharded(dir, opts.dtype ? { dtype: opts.dtype } : {});
}

/**
 * Copies checkpoint tensors into a module by name (after `rename`), strictly: missing,
 * unexpected and mis-shaped keys are listed in one error. The loaded tensors are freed.
 */
export function assignWeights(module: nn.Module, weights: Map<string, Tensor>, opts: { rename?: Rename; strict?: boolean } = {}): void {
  const renamed = new Map<string, Tensor>();
  for (const [name, t] of weights) {
    const to = opts.rename ? opts.rename(name) : name;
    if (to !== null) renamed.set(to, t);
  }
  try {
    module.loadStateDict(renamed, { strict: opts.strict ?? true });
  } finally {
    for (const t of weights.values()) t.dispose();
  }
}

/**
 * Writes config.json and the module's weights (under `rename`'s names) as HF does: one
 * model.safetensors up to maxShardBytes, shards + index beyond. Tied weights are saved once,
 * under the first name (HF drops the tied output embedding too).
 */
export function saveCheckpoint(dir: string, module: nn.Module, config: HfJson, opts: { rename?: (name: string) => string; skip?: (name: string) => boolean; maxShardBytes?: number; dtype?: DType } = {}): void {
  mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, Tensor>();
  const seen = new Set<Tensor>();
  const converted: Tensor[] = [];
  for (const [name, t] of module.stateDict()) {
    if (seen.has(t) || opts.skip?.(name)) continue;
    seen.add(t);
    let out = t;
    if (opts.dtype && t.isFloatingPoint && t.dtype !== opts.dtype) {
      out = t.to({ dtype: opts.dtype });
      converted.push(out);
    }
    tensors.set(opts.rename ? opts.rename(name) : name, out);
  }
  try {
    io.saveSharded(dir, tensors, { metadata: { format: "pt" }, ...(opts.maxShardBytes ? { maxShardBytes: opts.maxShardBytes } : {}) });
  } finally {
    for (const t of converted) t.dispose();
  }
  const tmp = join(dir, `config.json.tmp-${process.pid}`);
  writeFileSync(tmp, JSON.stringify(config, null, 2) + "\n");
  renameSync(tmp, join(dir, "config.json"));
}

export interface ModuleSummary {
  name: string;
  parameters: number;
  trainable: number;
  dtypes: string[];
}

/** Parameter counts and dtypes per top-level submodule (for `mindseye model inspect`). */
export function summarize(module: nn.Module, depth = 1): ModuleSummary[] {
  const rows = new Map<string, ModuleSummary>();
  for (const [name, p] of module.namedParameters()) {
    const key = name.split(".").slice(0, depth).join(".");
    const row = rows.get(key) ?? { name: key, parameters: 0, trainable: 0, dtypes: [] };
    const n = p.numel();
    row.parameters += n;
    if (p.requiresGrad) row.trainable += n;
    if (!row.dtypes.includes(p.dtype)) row.dtypes.push(p.dtype);
    rows.set(key, row);
  }
  return [...rows.values()];
}
