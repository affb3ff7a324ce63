// The latent target cache (DESIGN.md §4): the frozen encoder runs once over a dataset, and the
// pooled targets are written to sharded safetensors with a manifest. Pretraining reads the cache,
// not the images.
//
//   DIR/manifest.json            encoder fingerprint, pooling, feature layer, dtype, K, D, shards
//   DIR/targets-00000.safetensors "targets" [n, K, D]; metadata "ids" = the n record ids (JSON)
//
// Shards are written atomically and recorded in the manifest as they complete, so an
// interrupted extraction resumes at the first missing shard without recomputing the others.
// A cache is bound to its encoder: weights, config and preprocessing are hashed into the
// fingerprint, and a reader or a resumed extraction with another encoder is refused.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { torch, io, type DType, type Tensor } from "@mindseye/torch";
import { VitVisionModel } from "../models/vit.js";
import { processClip, processSiglip, processorConfigFromHf, type ImageProcessorConfig, type RgbImage } from "../models/processors.js";
import { poolFeatures, parsePool, pooledCount, type PoolSpec } from "../objectives/pooling.js";
import { readHfConfig } from "../config/hf.js";
import { readPairs, SkipCounter, type DatasetSpec, type ImageTextPair } from "./formats/index.js";
import { decodeBatch } from "./images.js";
import { Progress } from "../util/progress.js";

export const MANIFEST_VERSION = 1;

export interface TargetManifest {
  version: number;
  /** sha256 over the encoder's weights, config and preprocessing. */
  fingerprint: string;
  encoder: { dir: string; config: Record<string, unknown>; preprocessing: ImageProcessorConfig };
  pooling: PoolSpec;
  featureLayer: number;
  dtype: DType;
  /** Latents per image and their width. */
  k: number;
  d: number;
  shardSize: number;
  shards: { file: string; count: number }[];
  /** Set when every record of the dataset has been processed. */
  complete: boolean;
  /** Records whose image could not be decoded (skipped, not cached). */
  skipped: number;
}

/** A fingerprint of an encoder as it will be used: every weight byte, the config and preprocessing. */
export function encoderFingerprint(model: VitVisionModel, config: Record<string, unknown>, preprocessing: ImageProcessorConfig): string {
  const h = createHash("sha256");
  for (const [name, t] of [...model.stateDict()].sort(([a], [b]) => a.localeCompare(b))) {
    h.update(name);
    h.update(t.dtype);
    h.update(JSON.stringify(t.shape));
    h.update(t.toBytes());
  }
  h.update(canonicalJson(config));
  h.update(canonicalJson(preprocessing));
  return h.digest("hex");
}

function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** The encoder of a cache: model, its HF config and its preprocessing (preprocessor_config.json). */
export function loadEncoder(dir: string): { model: VitVisionModel; config: Record<string, unknown>; preprocessing: ImageProcessorConfig } {
  const config = readHfConfig(dir);
  const ppPath = join(dir, "preprocessor_config.json");
  if (!existsSync(ppPath)) throw new Error(`${dir}: no preprocessor_config.json; the cache must know how images were preprocessed (write one as HF does)`);
  const preprocessing = processorConfigFromHf(JSON.parse(readFileSync(ppPath, "utf8")) as Record<string, unknown>, {}, ppPath);
  if (preprocessing.kind === "qwen2_vl") throw new Error(`${ppPath}: target extraction runs CLIP/SigLIP-style encoders; Qwen2.5-VL's tower takes variable-size patch grids`);
  const model = VitVisionModel.fromPretrained(dir);
  model.eval();
  return { model, config, preprocessing };
}

export function preprocess(images: RgbImage[], cfg: ImageProcessorConfig): Tensor {
  if (cfg.kind === "clip") return processClip(images, cfg);
  if (cfg.kind === "siglip") return processSiglip(images, cfg);
  throw new Error(`preprocessing ${cfg.kind} is not a fixed-size processor`);
}

export interface ExtractOptions {
  encoderDir: string;
  data: DatasetSpec;
  out: string;
  pool: string;
  /** Which hidden state (as HF's hidden_states index; -1 = last layer, before post-norm). */
  featureLayer?: number;
  dtype?: DType;
  batchSize?: number;
  shardSize?: number;
  quiet?: boolean;
}

function shardName(i: number): string {
  return `targets-${String(i).padStart(5, "0")}.safetensors`;
}

function writeManifest(dir: string, m: TargetManifest): void {
  const tmp = join(dir, `manifest.json.tmp-${process.pid}`);
  writeFileSync(tmp, JSON.stringify(m, null, 2) + "\n");
  renameSync(tmp, join(dir, "manifest.json"));
}

/**
 * Runs the frozen encoder over a dataset and writes pooled targets. Resumes a partial cache in
 * `out` (same encoder and settings), and returns the manifest.
 */
export async function extractTargets(o: ExtractOptions): Promise<TargetManifest> {
  const pooling = parsePool(o.pool);
  const featureLayer = o.featureLayer ?? -1, dtype = o.dtype ?? "float32";
  const batchSize = o.batchSize ?? 32, shardSize = o.shardSize ?? 4096;
  if (shardSize % batchSize !== 0) throw new RangeError(`shardSize ${shardSize} must be a multiple of batchSize ${batchSize}`);
  const { model, config, preprocessing } = loadEncoder(o.encoderDir);
  const fingerprint = encoderFingerprint(model, config, preprocessing);
  const hasClassToken = model.config.hasClassToken;
  const tokens = model.config.gridSize * model.config.gridSize;
  const manifest: TargetManifest = {
    version: MANIFEST_VERSION, fingerprint, encoder: { dir: o.encoderDir, config, preprocessing }, pooling, featureLayer, dtype,
    k: pooledCount(pooling, tokens), d: model.config.hiddenSize, shardSize, shards: [], complete: false, skipped: 0,
  };
  mkdirSync(o.out, { recursive: true });
  const manifestPath = join(o.out, "manifest.json");
  if (existsSync(manifestPath)) {
    const old = JSON.parse(readFileSync(manifestPath, "utf8")) as TargetManifest;
    const clash = (["fingerprint", "pooling", "featureLayer", "dtype", "shardSize"] as const).filter((k) => old[k] !== manifest[k]);
    if (clash.length) {
      throw new Error(`${o.out} holds a cache made with another ${clash.join(", ")} (${clash.map((k) => `${old[k]} vs ${manifest[k]}`).join("; ")}); use another --out or delete it`);
    }
    if (old.complete) {
      for (const p of model.parameters()) p.dispose();
      return old;
    }
    manifest.shards = old.shards.filter((s) => existsSync(join(o.out, s.file)));
    manifest.skipped = old.skipped;
  }

  const errors = new SkipCounter("images");
  const done = manifest.shards.length;
  const progress = new Progress(Number.NaN, 0, o.quiet ?? false, "targets", "images");
  let shardIds: string[] = [], shardTensors: Tensor[] = [], index = 0, processed = 0;
  let pending: ImageTextPair[] = [];

  const flushShard = () => {
    if (shardIds.length === 0) return;
    const file = shardName(manifest.shards.length);
    const targets = torch.cat(shardTensors, 0);
    io.saveFile(join(o.out, file), new Map([["targets", targets]]), { ids: JSON.stringify(shardIds) });
    targets.dispose();
    shardTensors.forEach((t) => t.dispose());
    manifest.shards.push({ file, count: shardIds.length });
    writeManifest(o.out, manifest);
    shardIds = [];
    shardTensors = [];
  };
  const runBatch = async (batch: ImageTextPair[]) => {
    const images = await decodeBatch(batch.map((p) => ({ image: p.image, source: p.source })), { errors });
    const ok = batch.filter((_, i) => images[i] !== null);
    manifest.skipped += batch.length - ok.length;
    if (ok.length > 0) {
      const targets = torch.noGrad(() => torch.scope(() => {
        const pixels = preprocess(images.filter((x): x is RgbImage => x !== null), preprocessing); // [b, 3, H, W]
        const features = model.features(pixels, featureLayer); // [b, N(+1), D]
        return poolFeatures(features, pooling, { hasClassToken }).to({ dtype }).contiguous(); // [b, K, D]
      }));
      shardTensors.push(targets);
      shardIds.push(...ok.map((p) => p.id));
    }
    processed += batch.length;
    progress.update(processed);
  };

  // Records of finished shards are skipped without decoding: the dataset order is deterministic
  // and each shard holds exactly shardSize records' worth of batches.
  const skip = done * shardSize;
  let inShard = 0;
  for await (const pair of readPairs(o.data)) {
    if (index++ < skip) continue;
    pending.push(pair);
    if (pending.length === batchSize) {
      await runBatch(pending);
      pending = [];
      inShard += batchSize;
      if (inShard === shardSize) { flushShard(); inShard = 0; }
    }
  }
  if (pending.length > 0) await runBatch(pending);
  flushShard();
  progress.stop(processed);
  manifest.complete = true;
  writeManifest(o.out, manifest);
  for (const p of model.parameters()) p.dispose();
  return manifest;
}

/** Reads a target cache: targets by record id, refusing a cache made by another encoder. */
export class TargetCache {
  readonly manifest: TargetManifest;
  private readonly where = new Map<string, { shard: number; row: number }>();
  private readonly loaded = new Map<number, Tensor>();

  constructor(readonly dir: string, opts: { expectFingerprint?: string } = {}) {
    const path = join(dir, "manifest.json");
    if (!existsSync(path)) throw new Error(`${dir}: no manifest.json (not a target cache; make one with \`mindseye targets extract\`)`);
    this.manifest = JSON.parse(readFileSync(path, "utf8")) as TargetManifest;
    if (!this.manifest.complete) throw new Error(`${dir}: the extraction did not finish; run the same \`mindseye targets extract\` again to resume it`);
    if (opts.expectFingerprint !== undefined && opts.expectFingerprint !== this.manifest.fingerprint) {
      throw new Error(`${dir} was made with another encoder (fingerprint ${this.manifest.fingerprint.slice(0, 12)}…, the encoder in use has ${opts.expectFingerprint.slice(0, 12)}…); re-extract the targets`);
    }
    this.manifest.shards.forEach((s, shard) => {
      const ids = JSON.parse(io.loadMetadata(join(dir, s.file))?.ids ?? "[]") as string[];
      if (ids.length !== s.count) throw new Error(`${join(dir, s.file)}: ${ids.length} ids for ${s.count} targets; the cache is damaged`);
      ids.forEach((id, row) => this.where.set(id, { shard, row }));
    });
  }

  get size(): number { return this.where.size; }
  has(id: string): boolean { return this.where.has(id); }
  ids(): string[] { return [...this.where.keys()]; }

  /** Targets of the given ids, stacked: [n, K, D] (float32 unless asked). */
  get(ids: string[], dtype: DType = "float32"): Tensor {
    return torch.scope(() => {
      const rows = ids.map((id) => {
        const at = this.where.get(id);
        if (at === undefined) throw new Error(`target cache ${this.dir}: no target for record "${id}"`);
        return this.shard(at.shard).select(0, at.row);
      });
      return torch.stack(rows, 0).to({ dtype });
    });
  }

  private shard(i: number): Tensor {
    let t = this.loaded.get(i);
    if (t === undefined) {
      const m = io.loadFile(join(this.dir, this.manifest.shards[i]!.file));
      t = torch.keep(m.get("targets")!);
      this.loaded.set(i, t);
    }
    return t;
  }

  dispose(): void {
    for (const t of this.loaded.values()) t.dispose();
    this.loaded.clear();
  }
}
