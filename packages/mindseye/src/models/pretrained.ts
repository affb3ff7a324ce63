// Loading and saving checkpoints in the Hugging Face layout: a directory with config.json and
// model.safetensors (or model-0000k-of-0000n.safetensors + model.safetensors.index.json).
//
// A checkpoint is checked before and after it is read:
// - before anything is allocated, config.json is held against the safetensors header(s): the
//   families' loaders compare layer counts with the weight names present and sizes with the
//   weights' shapes (checkTensorShape, checkLayerCount), so a wrong or absurd config.json field is
//   named instead of ending in gigabytes of allocation or libtorch's "can't allocate";
// - after reading, every floating weight must be finite: a NaN would otherwise load silently and
//   evaluate to nonsense.
import { writeFileSync, renameSync, existsSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { io, nn, type DType, type Tensor } from "@mindseye/torch";
import type { HfJson } from "../config/hf.js";
import { ConfigError } from "../config/errors.js";
import { makeOutputDir } from "../util/output_dir.js";

/** Maps a checkpoint's weight name to the module's, or null to drop it (e.g. rotary caches). */
export type Rename = (checkpointName: string) => string | null;

/** A tensor as a checkpoint's header describes it, and the file that holds it. */
export interface CheckpointEntry {
  /** The safetensors dtype name ("F32", "BF16", …). */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** The .safetensors file (a path). */
  readonly file: string;
}

/** Every tensor of a checkpoint directory by name, from the headers alone (no tensor data is read). */
export type CheckpointHeader = ReadonlyMap<string, CheckpointEntry>;

const NO_CHECKPOINT = "no model.safetensors or model.safetensors.index.json (MindsEye reads safetensors checkpoints, never pickle .bin files)";

/**
 * The names, shapes and files of a checkpoint's tensors, read from its header(s) only.
 * ```ts
 * readCheckpointHeader("Qwen2.5-0.5B/").get("model.embed_tokens.weight"); // { dtype: "BF16", shape: [151936, 896], file: ".../model.safetensors" }
 * ```
 */
export function readCheckpointHeader(dir: string): CheckpointHeader {
  const single = join(dir, "model.safetensors"), index = join(dir, "model.safetensors.index.json");
  const out = new Map<string, CheckpointEntry>();
  const add = (file: string, only?: ReadonlySet<string>) => {
    for (const [name, info] of io.readHeader(file).tensors) if (only === undefined || only.has(name)) out.set(name, { dtype: info.dtype, shape: info.shape, file });
  };
  if (existsSync(index)) {
    let map: unknown;
    try {
      map = (JSON.parse(readFileSync(index, "utf8")) as { weight_map?: unknown }).weight_map;
    } catch (e) {
      throw new Error(`cannot read ${index}: ${(e as Error).message} (expected a safetensors index: {"metadata": {...}, "weight_map": {tensor: file}})`);
    }
    if (map === null || typeof map !== "object" || Array.isArray(map)) throw new Error(`cannot read ${index}: "weight_map" must be an object of tensor name → shard file`);
    const byFile = new Map<string, Set<string>>();
    for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
      if (typeof file !== "string" || basename(file) !== file || file === "" || file === "." || file === "..") throw new Error(`cannot read ${index}: "weight_map"."${name}" must be a shard file name in the same directory, got ${JSON.stringify(file)}`);
      byFile.set(file, (byFile.get(file) ?? new Set()).add(name));
    }
    for (const [file, names] of byFile) {
      const path = join(dir, file);
      if (!existsSync(path)) throw new Error(`${index} maps ${names.size} tensors to ${file}, which does not exist in ${dir} (the download or save may be incomplete)`);
      add(path, names);
    }
    return out;
  }
  if (existsSync(single)) {
    add(single);
    return out;
  }
  throw new Error(`${dir}: ${NO_CHECKPOINT}`);
}

/** A config.json field and the value it gives one dimension of a weight. */
export interface DimFromConfig {
  readonly size: number;
  /** How config.json names it: "hidden_size", "num_key_value_heads × head_dim". */
  readonly field: string;
}

/**
 * Throws a ConfigError unless the checkpoint's tensor `name` has the shape config.json implies
 * (`dims`, null where a dimension is not checked). A tensor the checkpoint lacks is not checked
 * here: loading reports missing weights.
 */
export function checkTensorShape(header: CheckpointHeader, name: string, dims: readonly (DimFromConfig | null)[], where: string): void {
  const entry = header.get(name);
  if (entry === undefined) return;
  const shape = `[${entry.shape.join(", ")}]`;
  if (entry.shape.length !== dims.length) {
    throw new ConfigError(`${where}: the checkpoint's ${name} (${entry.file}) has shape ${shape}, ${entry.shape.length} dimensions where this config expects ${dims.length}; config.json does not describe this checkpoint`);
  }
  dims.forEach((d, i) => {
    if (d === null || entry.shape[i] === d.size) return;
    throw new ConfigError(
      `${where}: field "${d.field}" says ${d.size}, but the checkpoint's ${name} (${entry.file}) has shape ${shape} (dimension ${i} is ${entry.shape[i]}); ` +
        "config.json does not describe this checkpoint: fix the field or use the config.json that came with the weights",
    );
  });
}

/**
 * Throws a ConfigError unless the checkpoint has weights for exactly layers 0 … expected−1 under
 * `prefix` (e.g. "model.layers."), naming config.json's `field`.
 */
export function checkLayerCount(header: CheckpointHeader, prefix: string, expected: number, field: string, where: string): void {
  const found = new Set<number>();
  for (const name of header.keys()) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)\./.exec(name.slice(prefix.length));
    if (m !== null) found.add(Number(m[1]));
  }
  const sorted = [...found].sort((a, b) => a - b);
  const contiguous = sorted.length === expected && (expected === 0 || sorted[expected - 1] === expected - 1);
  if (contiguous) return;
  const has = sorted.length === 0 ? `no ${prefix}* weights`
    : `weights for ${sorted.length} layer${sorted.length > 1 ? "s" : ""} (${prefix}${sorted[0]} … ${prefix}${sorted[sorted.length - 1]})`;
  throw new ConfigError(`${where}: field "${field}" says ${expected}, but the checkpoint has ${has}; config.json does not describe this checkpoint: fix the field or use the config.json that came with the weights`);
}

function nonFinite(name: string, file: string, nan: number, infinite: number, numel: number): Error {
  const bad = nan + infinite;
  return new Error(
    `${file}: tensor "${name}" holds ${bad} non-finite value${bad > 1 ? "s" : ""} (${nan} NaN, ${infinite} infinite) of ${numel}; ` +
      "the checkpoint is broken (a diverged run or a damaged file): load an earlier checkpoint or re-download it",
  );
}

/**
 * Writes config.json and the module's weights (under `rename`'s names) as HF does: one
 * model.safetensors up to maxShardBytes, shards + index beyond. Tied weights are saved once,
 * under the first name (HF drops the tied output embedding too).
 */
export function saveCheckpoint(dir: string, module: nn.Module, config: HfJson, opts: { rename?: (name: string) => string; skip?: (name: string) => boolean; maxShardBytes?: number; dtype?: DType } = {}): void {
  makeOutputDir(dir, "the checkpoint folder");
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

/**
 * Reads a checkpoint directory (single file or sharded) straight into a module's parameters and
 * buffers by name (after `rename`), tensor by tensor in 16 MiB chunks (io.loadFileInto): peak
 * memory is the module plus one chunk, where loading the checkpoint's tensors and then copying them
 * in held the module, every checkpoint tensor and a copy of the largest. Every family's
 * fromPretrained loads through it. Floating weights convert to each parameter's dtype
 * on the way. Strict: missing, unexpected and mis-shaped names are one nn.StateDictError, raised
 * from the headers before anything is read. A module tensor reached under two names (tied weights)
 * needs only one of them in the checkpoint. Non-finite weights are an error naming the tensor.
 * ```ts
 * const model = new Qwen2ForCausalLM(cfg, { dtype: "bfloat16" });
 * loadCheckpointInto(model, "Qwen2.5-0.5B/");
 * ```
 */
export function loadCheckpointInto(module: nn.Module, dir: string, opts: { rename?: Rename; header?: CheckpointHeader } = {}): void {
  const header = opts.header ?? readCheckpointHeader(dir);
  const own = module.stateDict();
  const byFile = new Map<string, Map<string, Tensor>>(); // file → checkpoint name → module tensor
  const filled = new Set<Tensor>(), from = new Map<string, string>();
  const unexpected: string[] = [], mismatched: { key: string; expected: number[]; got: number[] }[] = [];
  for (const [name, entry] of header) {
    const to = opts.rename ? opts.rename(name) : name;
    if (to === null) continue;
    const t = own.get(to);
    if (t === undefined) { unexpected.push(to); continue; }
    const earlier = from.get(to);
    if (earlier !== undefined) throw new Error(`${dir}: checkpoint tensors "${earlier}" and "${name}" both load into ${to}; keep one of them`);
    from.set(to, name);
    if (t.shape.length !== entry.shape.length || t.shape.some((x, i) => x !== entry.shape[i])) {
      mismatched.push({ key: to, expected: t.shape, got: [...entry.shape] });
      continue;
    }
    filled.add(t);
    byFile.set(entry.file, (byFile.get(entry.file) ?? new Map<string, Tensor>()).set(name, t));
  }
  const missing = [...own].filter(([k, t]) => !from.has(k) && !filled.has(t)).map(([k]) => k);
  if (missing.length > 0 || unexpected.length > 0 || mismatched.length > 0) {
    const list = (keys: string[]) => (keys.length <= 20 ? keys.join(", ") : `${keys.slice(0, 20).join(", ")}, ... (${keys.length - 20} more)`);
    const lines = [`the checkpoint in ${dir} does not match ${module.constructor.name}`];
    if (missing.length) lines.push(`  missing keys (${missing.length}): ${list(missing)}`);
    if (unexpected.length) lines.push(`  unexpected keys (${unexpected.length}): ${list(unexpected)}`);
    for (const m of mismatched.slice(0, 20)) lines.push(`  shape mismatch for ${m.key}: model has [${m.expected.join(", ")}], checkpoint has [${m.got.join(", ")}]`);
    if (mismatched.length > 20) lines.push(`  ... and ${mismatched.length - 20} more shape mismatches`);
    throw new nn.StateDictError(lines.join("\n"), missing, unexpected, mismatched);
  }
  for (const [file, targets] of byFile) {
    // Counted on the file's bytes while they pass: no tensor-sized mask, no second pass.
    for (const [name, c] of io.loadFileInto(file, targets, { countNonFinite: true })) {
      if (c.nan + c.infinite > 0) throw nonFinite(name, file, c.nan, c.infinite, targets.get(name)!.numel());
    }
  }
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
