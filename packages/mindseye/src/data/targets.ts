// The latent target cache (DESIGN.md §4): the frozen encoder runs once over a dataset, and the
// pooled targets are written to sharded safetensors with a manifest. Pretraining reads the cache,
// not the images.
//
//   DIR/manifest.json            encoder fingerprint, pooling, feature layer, dtype, K, D, the data
//                                source (spec, files and sizes), shards (with the hash of the record
//                                ids each was made from), skipped records and images (count + list)
//   DIR/targets-00000.safetensors "targets" [n, K, D]; metadata "ids" = the n record ids (JSON)
//
// Shards are written atomically and recorded in the manifest as they complete, so an
// interrupted extraction resumes at the first missing shard without recomputing the others.
// A cache is bound to its encoder and to its data: weights, config and preprocessing are hashed
// into the fingerprint, the data source's paths and sizes are recorded, and a resumed extraction
// with another encoder, pooling or data is refused, as is one whose records differ from those
// the finished shards were made from (checked while they are skipped).
//
// Bad input: malformed records (the reader's) and undecodable images are skipped, counted and
// listed in the manifest; past maxErrorRate over the whole input the extraction stops (the
// manifest then says complete: false and lists what was skipped).
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { torch, io, type DType, type Tensor } from "@mindseye/torch";
import { VitVisionModel } from "../models/vit.js";
import { processClip, processSiglip, processorConfigFromHf, type ImageProcessorConfig, type RgbImage } from "../models/processors.js";
import { poolFeatures, parsePool, pooledCount, type PoolSpec } from "../objectives/pooling.js";
import { readHfConfig } from "../config/hf.js";
import { resolveModelRef } from "../config/hub.js";
import { expandBraces, getFormat, readPairs, SkipCounter, type DatasetSpec, type ImageRef, type ImageTextPair, type SkippedRecord } from "./formats/index.js";
import { decodeBatch } from "./images.js";
import { Progress } from "../util/progress.js";
import { makeOutputDir } from "../util/output_dir.js";

/** 2: the data source, per-shard record ids and the skipped list are recorded. */
export const MANIFEST_VERSION = 2;

/** What the targets were extracted from: the spec with resolved paths, and every file it names with its size. */
export interface DataSource {
  spec: Record<string, unknown>;
  /** Each path of the spec (brace patterns expanded): a file with its size, a folder, or missing. */
  files: { field: string; path: string; kind: "file" | "folder" | "missing"; size: number | null }[];
}

/** One shard: its file, its targets, and the records it was made from. */
export interface ShardEntry {
  file: string;
  /** Targets in the file (records whose image decoded). */
  count: number;
  /** Records of the data this shard covers (count + its skipped images). */
  records: number;
  /** sha256 over those records' ids, in order, and the first and last id: a resume checks them. */
  ids: { sha256: string; first: string; last: string };
  /** Images of those records that could not be decoded. */
  skippedImages: SkippedRecord[];
}

/** A skipped record of the data, or a record whose image could not be decoded. */
export interface SkippedEntry {
  kind: "record" | "image";
  file: string;
  record: string;
  reason: string;
}

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
  /** The data the targets come from (absent in version 1 caches). */
  data: DataSource;
  shards: ShardEntry[];
  /** Set when every record of the dataset has been processed and the error rate was within maxErrorRate. */
  complete: boolean;
  /** The error rate the extraction stops at (over all records; over all images). */
  maxErrorRate: number;
  /** Records skipped: malformed records of the data plus records whose image could not be decoded. */
  skipped: number;
  /** Every skipped record and image, with its file, record and reason. */
  skippedList: SkippedEntry[];
}

/**
 * The data source of a spec: its paths resolved, each file's size (brace patterns expanded), the
 * other settings as given. Two extractions from the same files agree; another annotations file,
 * another shard list or a file that changed size do not.
 */
export function dataSource(spec: DatasetSpec): DataSource {
  const fields = getFormat(spec.format).fields;
  const out: DataSource = { spec: { format: spec.format }, files: [] };
  for (const key of Object.keys(spec).filter((k) => k !== "format").sort()) {
    const v = spec[key], type = fields[key]?.type;
    if (type === "path" || type === "paths") {
      const paths = (typeof v === "string" ? [v] : (v as string[])).flatMap((p) => (type === "paths" ? expandBraces(p) : [p])).map((p) => resolve(p));
      out.spec[key] = type === "path" ? paths[0] : paths;
      for (const path of paths) {
        const st = existsSync(path) ? statSync(path) : null;
        out.files.push({ field: key, path, kind: st === null ? "missing" : st.isDirectory() ? "folder" : "file", size: st !== null && !st.isDirectory() ? st.size : null });
      }
    } else {
      out.spec[key] = v;
    }
  }
  return out;
}

/** What differs between two data sources, one line each; empty when they agree. */
export function dataDifferences(old: DataSource, now: DataSource): string[] {
  const lines: string[] = [];
  const describe = (f: DataSource["files"][number] | undefined) => f === undefined ? "(none)" : f.kind === "file" ? `${f.path} (${f.size} bytes)` : `${f.path} (${f.kind})`;
  const keys = [...new Set([...Object.keys(old.spec), ...Object.keys(now.spec)])];
  for (const k of keys) {
    if (canonicalJson(old.spec[k]) !== canonicalJson(now.spec[k])) lines.push(`${k} was ${JSON.stringify(old.spec[k])}, now ${JSON.stringify(now.spec[k])}`);
  }
  if (lines.length > 0) return lines;
  now.files.forEach((f, i) => {
    const o = old.files[i];
    if (o === undefined || o.path !== f.path || o.kind !== f.kind || o.size !== f.size) lines.push(`${f.field}: ${describe(o)} is now ${describe(f)}`);
  });
  return lines;
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

/** JSON with sorted keys: equal values hash equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** The encoder of a cache: model, its HF config and its preprocessing (preprocessor_config.json). */
export function loadEncoder(ref: string): { model: VitVisionModel; config: Record<string, unknown>; preprocessing: ImageProcessorConfig } {
  const dir = resolveModelRef(ref); // a directory, or a Hugging Face id in the hub cache
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
  /** Stop when more than this fraction of the records, or of the images, are bad (default 0.01), judged over the whole input. */
  maxErrorRate?: number;
  quiet?: boolean;
}

export function shardName(i: number): string {
  return `targets-${String(i).padStart(5, "0")}.safetensors`;
}

/** Writes DIR/manifest.json atomically (any cache manifest). */
export function writeManifest(dir: string, m: object): void {
  const tmp = join(dir, `manifest.json.tmp-${process.pid}`);
  writeFileSync(tmp, JSON.stringify(m, null, 2) + "\n");
  renameSync(tmp, join(dir, "manifest.json"));
}

/**
 * Runs the frozen encoder over a dataset and writes pooled targets. Resumes a partial cache in
 * `out` (same encoder, settings and data), and returns the manifest.
 */
export async function extractTargets(o: ExtractOptions): Promise<TargetManifest> {
  const pooling = parsePool(o.pool);
  const featureLayer = o.featureLayer ?? -1, dtype = o.dtype ?? "float32";
  const batchSize = o.batchSize ?? 32, shardSize = o.shardSize ?? 4096, maxErrorRate = o.maxErrorRate ?? 0.01;
  if (shardSize % batchSize !== 0) throw new RangeError(`the shard size ${shardSize} (--shard-size) must be a multiple of the batch size ${batchSize} (--batch-size)`);
  if (!(maxErrorRate >= 0 && maxErrorRate <= 1)) throw new RangeError(`the maximum error rate (--max-error-rate) must be a fraction in [0, 1], got ${maxErrorRate}`);
  const data = dataSource(o.data);
  const manifestPath = join(o.out, "manifest.json");
  // The data and settings are checked before the encoder is loaded: a wrong --data fails at once.
  const old = existsSync(manifestPath) ? JSON.parse(readFileSync(manifestPath, "utf8")) as TargetManifest : null;
  if (old !== null) checkSameData(o.out, old, data);
  makeOutputDir(o.out, "the target cache (--out)");
  const { model, config, preprocessing } = loadEncoder(o.encoderDir);
  const dispose = () => { for (const p of model.parameters()) p.dispose(); };
  const fingerprint = encoderFingerprint(model, config, preprocessing);
  const hasClassToken = model.config.hasClassToken;
  const tokens = model.config.gridSize * model.config.gridSize;
  const manifest: TargetManifest = {
    version: MANIFEST_VERSION, fingerprint, encoder: { dir: o.encoderDir, config, preprocessing }, pooling, featureLayer, dtype,
    k: pooledCount(pooling, tokens), d: model.config.hiddenSize, shardSize, data, shards: [], complete: false, maxErrorRate, skipped: 0, skippedList: [],
  };
  if (old !== null) {
    const clash = (["fingerprint", "pooling", "featureLayer", "dtype", "shardSize"] as const).filter((k) => old[k] !== manifest[k]);
    if (clash.length) {
      dispose();
      throw new Error(`${o.out} holds a cache made with another ${clash.join(", ")} (${clash.map((k) => `${old[k]} vs ${manifest[k]}`).join("; ")}); use another --out or delete it`);
    }
    if (old.complete) {
      dispose();
      return old;
    }
    manifest.shards = [];
    for (const s of old.shards) {
      if (!existsSync(join(o.out, s.file))) break; // the first missing shard and all after it are redone
      manifest.shards.push(s);
    }
  }

  const policy = { maxErrorRate, setting: "--max-error-rate (mindseye targets extract)" };
  try {
    const records = new SkipCounter(`${o.data.format} records`, policy);
    async function* items(): AsyncGenerator<TargetItem> {
      for await (const p of readPairs(o.data, { errors: records })) yield { id: p.id, image: p.image, source: p.source };
    }
    await writeTargetShards(o.out, manifest, items(), {
      records, images: new SkipCounter("images", policy), chunk: batchSize, dtype, quiet: o.quiet ?? false, unit: "records",
      full: (n) => n === shardSize,
      compute: (decoded) => {
        const pixels = preprocess(decoded, preprocessing); // [b, 3, H, W]
        const features = model.features(pixels, featureLayer); // [b, N(+1), D]
        return poolFeatures(features, pooling, { hasClassToken }); // [b, K, D]
      },
      changed: `the data changed since the cache was started — use another --out for this data, or delete ${o.out} to start over`,
    });
    manifest.complete = true;
    writeManifest(o.out, manifest);
  } finally {
    dispose();
  }
  return manifest;
}

function entry(kind: SkippedEntry["kind"], r: SkippedRecord): SkippedEntry {
  return { kind, file: r.source.file, record: r.source.record, reason: r.reason };
}

/** sha256 over record ids in order, with the first and last (a shard's records, checked on resume). */
export function idsOf(ids: readonly string[]): ShardEntry["ids"] {
  const h = createHash("sha256");
  for (const id of ids) h.update(`${id}\n`);
  return { sha256: h.digest("hex"), first: ids[0]!, last: ids[ids.length - 1]! };
}

/** A resumed extraction must read the same data: refuses another source, naming what differs. */
function checkSameData(out: string, old: TargetManifest, data: DataSource): void {
  const what = "use another --out for this data, or delete the folder to start over";
  if (old.version !== MANIFEST_VERSION || old.data === undefined) {
    throw new Error(`${out} holds a target cache of manifest version ${old.version}, which does not record its data source, so it cannot be resumed safely: ${what} (${out})`);
  }
  const diff = dataDifferences(old.data, data);
  if (diff.length > 0) {
    throw new Error(`${out} holds targets extracted from other data (${old.complete ? "complete" : `${old.shards.length} shards done`}):\n  ${diff.join("\n  ")}\n${what[0]!.toUpperCase()}${what.slice(1)} (${out}).`);
  }
}

/** The records read for a finished shard must be the ones it was made from. */
/** One item a target cache is made from: its record id, its image, and where it came from (skip reports). */
export interface TargetItem { id: string; image: ImageRef; source: ImageTextPair["source"] }

/** What writeTargetShards keeps up to date in a cache's manifest (the world's and the published families' alike). */
export interface ShardedManifest { k: number; d: number; shards: ShardEntry[]; skipped: number; skippedList: SkippedEntry[] }

export interface ShardWriter {
  /** Counters of bad records (the item stream's) and of images that do not decode; their rates stop the run. */
  records: SkipCounter;
  images: SkipCounter;
  /** Items decoded and computed at a time. */
  chunk: number;
  /** Whether the shard being written is full, given its records and its targets' bytes so far (checked after each chunk). */
  full: (records: number, bytes: number) => boolean;
  /** The rows [b, K, D] of a chunk's images that decoded, in order (run under noGrad and a scope). */
  compute: (images: RgbImage[]) => Tensor;
  dtype: DType;
  quiet: boolean;
  /** What an item is called in messages ("records", "images"). */
  unit: string;
  /** Ends the message when the data no longer match a finished shard: what to do. */
  changed: string;
}

const BYTES_PER: Partial<Record<DType, number>> = { float64: 8, float32: 4, float16: 2, bfloat16: 2 };

/**
 * Writes a target cache's shards into `dir` from `items`, in their order: `w.chunk` items decoded
 * at a time (undecodable images skipped and counted), `w.compute` turning the decoded images into
 * rows, a shard file (targets [n, K, D] and its record ids) written whenever `w.full`, and the
 * manifest after each shard. The manifest's finished shards (a resume) are not decoded again, but
 * their items' ids are checked against the ones each shard was made from. At the end the error
 * rates are judged over the whole input; past them the manifest lists the skips and the error is
 * thrown. Marking the cache complete is the caller's.
 */
export async function writeTargetShards(dir: string, manifest: ShardedManifest, items: AsyncIterable<TargetItem>, w: ShardWriter): Promise<void> {
  const { records, images } = w;
  for (const s of manifest.shards) images.carry(s.records - s.skippedImages.length, s.skippedImages);
  const progress = new Progress(Number.NaN, 0, w.quiet, "targets", "images");
  let shardIds: string[] = [], shardRows: Tensor[] = [], shardItems: string[] = [], shardSkipped: SkippedRecord[] = [], shardBytes = 0, processed = 0;
  const record = () => {
    manifest.skippedList = [...records.report().records.map((r) => entry("record", r)), ...images.report().records.map((r) => entry("image", r))];
    manifest.skipped = manifest.skippedList.length;
  };
  const flushShard = () => {
    if (shardItems.length === 0) return;
    const file = shardName(manifest.shards.length);
    const targets = shardRows.length > 0 ? torch.cat(shardRows, 0) : torch.zeros([0, manifest.k, manifest.d], { dtype: w.dtype }); // [n, K, D]
    io.saveFile(join(dir, file), new Map([["targets", targets]]), { ids: JSON.stringify(shardIds) });
    targets.dispose();
    shardRows.forEach((t) => t.dispose());
    manifest.shards.push({ file, count: shardIds.length, records: shardItems.length, ids: idsOf(shardItems), skippedImages: shardSkipped });
    record();
    writeManifest(dir, manifest);
    [shardIds, shardRows, shardItems, shardSkipped, shardBytes] = [[], [], [], [], 0];
  };
  const runChunk = async (chunk: TargetItem[]) => {
    const before = images.skipped;
    const decoded = await decodeBatch(chunk.map((c) => ({ image: c.image, source: c.source })), { errors: images });
    shardSkipped.push(...images.skippedSince(before));
    const ok = chunk.filter((_, i) => decoded[i] !== null);
    if (ok.length > 0) {
      const rows = torch.noGrad(() => torch.scope(() => w.compute(decoded.filter((x): x is RgbImage => x !== null)).to({ dtype: w.dtype }).contiguous())); // [b, K, D]
      [manifest.k, manifest.d] = [rows.shape[1]!, rows.shape[2]!];
      shardRows.push(rows);
      shardIds.push(...ok.map((c) => c.id));
      shardBytes += rows.numel() * (BYTES_PER[w.dtype] ?? 4);
    }
    shardItems.push(...chunk.map((c) => c.id));
    processed += chunk.length;
    progress.update(processed);
  };

  // Items of finished shards are skipped without decoding (the order is deterministic), but their ids are checked.
  const done = manifest.shards.slice();
  let shard = 0, inShard: string[] = [], pending: TargetItem[] = [];
  for await (const item of items) {
    if (shard < done.length) {
      inShard.push(item.id);
      if (inShard.length === done[shard]!.records) {
        const now = idsOf(inShard);
        if (now.sha256 !== done[shard]!.ids.sha256) {
          throw new Error(`${dir}: shard ${done[shard]!.file} was made from ${w.unit} ${done[shard]!.ids.first} … ${done[shard]!.ids.last}, but the data now gives ${now.first} … ${now.last} there; ${w.changed}`);
        }
        [shard, inShard] = [shard + 1, []];
      }
      continue;
    }
    pending.push(item);
    if (pending.length === w.chunk) {
      await runChunk(pending);
      pending = [];
      if (w.full(shardItems.length, shardBytes)) flushShard();
    }
  }
  if (shard < done.length) {
    const seen = done.slice(0, shard).reduce((a, s) => a + s.records, 0) + inShard.length;
    throw new Error(`${dir}: the data now has ${seen} ${w.unit}, fewer than the ${done.reduce((a, s) => a + s.records, 0)} its finished shards were made from; ${w.changed}`);
  }
  if (pending.length > 0) await runChunk(pending);
  flushShard();
  progress.stop(processed);
  record();
  try {
    records.finish();
    images.finish();
  } catch (e) {
    writeManifest(dir, manifest); // past the rates: the manifest lists the skips and stays incomplete
    throw e;
  }
}

/** Shard files TargetCache keeps open with readRows (least recently used closed first). */
const MAX_OPEN_SHARDS = 64;

/** What TargetCache reads of a manifest: the world's encoders' (TargetManifest) and the published families' caches share it. */
export interface CacheManifestCore {
  fingerprint: string;
  complete: boolean;
  k: number;
  d: number;
  shards: { file: string; count: number }[];
}

/**
 * Reads a target cache: targets by record id, refusing a cache made by another encoder.
 * By default a shard is loaded whole on first use and kept until dispose() (the whole cache ends
 * up resident). With `readRows`, get() reads just the asked rows from the shard files (pread at
 * the row's offset; the OS page cache does the caching), so memory stays at the ids' index plus
 * the batch, whatever the cache's size.
 */
export class TargetCache<M extends CacheManifestCore = TargetManifest> {
  readonly manifest: M;
  private readonly where = new Map<string, { shard: number; row: number }>();
  private readonly loaded = new Map<number, Tensor>();
  private readonly files = new Map<number, { fd: number; start: number; rowBytes: number; shape: number[]; dtype: DType }>();
  private readonly readRows: boolean;

  constructor(readonly dir: string, opts: { expectFingerprint?: string; readRows?: boolean } = {}) {
    const path = join(dir, "manifest.json");
    if (!existsSync(path)) throw new Error(`${dir}: no manifest.json (not a target cache; make one with \`mindseye targets extract\`)`);
    this.manifest = JSON.parse(readFileSync(path, "utf8")) as M;
    this.readRows = opts.readRows ?? false;
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
        return this.readRows ? this.row(at.shard, at.row) : this.shard(at.shard).select(0, at.row);
      });
      return torch.stack(rows, 0).to({ dtype });
    });
  }

  /** One row [K, D] read from its shard file. */
  private row(i: number, row: number): Tensor {
    let f = this.files.get(i);
    if (f !== undefined) {
      this.files.delete(i); // most recently used last
      this.files.set(i, f);
    } else {
      if (this.files.size >= MAX_OPEN_SHARDS) {
        const [oldest, g] = this.files.entries().next().value!;
        closeSync(g.fd);
        this.files.delete(oldest);
      }
      const path = join(this.dir, this.manifest.shards[i]!.file);
      const h = io.readHeader(path);
      const info = h.tensors.get("targets");
      if (info === undefined) throw new Error(`${path}: no "targets" tensor; the cache is damaged`);
      const dtype = (Object.keys(io.SAFETENSORS_DTYPE) as DType[]).find((d) => io.SAFETENSORS_DTYPE[d] === info.dtype);
      if (dtype === undefined) throw new Error(`${path}: targets of dtype ${info.dtype} cannot be read`);
      const [n, ...rest] = info.shape;
      f = { fd: openSync(path, "r"), start: h.dataStart + info.dataOffsets[0], rowBytes: (info.dataOffsets[1] - info.dataOffsets[0]) / n!, shape: rest, dtype };
      this.files.set(i, f);
    }
    const buf = new Uint8Array(f.rowBytes);
    const got = readSync(f.fd, buf, 0, f.rowBytes, f.start + row * f.rowBytes);
    if (got !== f.rowBytes) throw new Error(`${join(this.dir, this.manifest.shards[i]!.file)}: short read of row ${row}; the cache is damaged`);
    return torch.fromBytes(buf, f.shape, f.dtype);
  }

  private shard(i: number): Tensor {
    let t = this.loaded.get(i);
    if (t === undefined) {
      const m = io.loadFile(join(this.dir, this.manifest.shards[i]!.file));
      // Owned by the cache until dispose(), whatever scopes the first get() ran in.
      t = torch.persist(m.get("targets")!);
      for (const [name, other] of m) if (name !== "targets") other.dispose();
      this.loaded.set(i, t);
    }
    return t;
  }

  dispose(): void {
    for (const t of this.loaded.values()) t.dispose();
    this.loaded.clear();
    for (const f of this.files.values()) closeSync(f.fd);
    this.files.clear();
  }
}
