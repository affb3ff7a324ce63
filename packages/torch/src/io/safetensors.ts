// safetensors in TypeScript: a fully validated header reader, tensor loading by positional
// reads, atomic streaming writes, and Hugging Face's sharded layout (model.safetensors.index.json).
//
// Layout (huggingface/safetensors, see shared/reference/formats.md §3.6):
//   [u64 little-endian N] [N bytes of UTF-8 JSON, space-padded] [data buffer]
//   header: {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [2, 2], "data_offsets": [b, e]}, ...}
// Offsets are relative to the data buffer (file offset 8 + N + b); data is row-major, little-endian.
//
// Everything here is synchronous on purpose: tensors are created inside torch.scope, which is
// synchronous, and a checkpoint load is a blocking step of a run anyway.
import { randomBytes } from "node:crypto";
import {
  closeSync, existsSync, fstatSync, fsyncSync, openSync, readFileSync, readSync, readdirSync, renameSync,
  rmSync, statSync, writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { noGrad } from "../autograd.js";
import { empty, fromBytes } from "../creation.js";
import { type DType, DTYPES, ELEMENT_SIZE, isFloatingPoint } from "../dtype.js";
import { native } from "../native.js";
import { Tensor } from "../tensor.js";

/** The safetensors name of each engine dtype. */
export const SAFETENSORS_DTYPE: Readonly<Record<DType, string>> = Object.freeze({
  float32: "F32", float64: "F64", bfloat16: "BF16", float16: "F16",
  int64: "I64", int32: "I32", int16: "I16", int8: "I8", uint8: "U8", bool: "BOOL",
});
const ENGINE_DTYPE = new Map<string, DType>(DTYPES.map((d) => [SAFETENSORS_DTYPE[d], d]));

// Bits per element of every dtype the specification names (safetensors/src/tensor.rs `Dtype::bitsize`);
// F4 and F6 pack several elements per byte. A Map, so that a hostile "constructor" is not a dtype.
const SPEC_BITS = new Map<string, number>([
  ["BOOL", 8], ["F4", 4], ["F6_E2M3", 6], ["F6_E3M2", 6], ["U8", 8], ["I8", 8], ["F8_E5M2", 8], ["F8_E4M3", 8],
  ["F8_E8M0", 8], ["F8_E4M3FNUZ", 8], ["F8_E5M2FNUZ", 8], ["I16", 16], ["U16", 16], ["F16", 16], ["BF16", 16],
  ["I32", 32], ["U32", 32], ["F32", 32], ["C64", 64], ["F64", 64], ["I64", 64], ["U64", 64],
]);

/** The reference implementation's cap on the header (MAX_HEADER_SIZE), against hostile lengths. */
export const MAX_HEADER_BYTES = 100_000_000;
/** Hugging Face's default shard size, "5GB" = 5·10⁹ bytes. */
export const DEFAULT_MAX_SHARD_BYTES = 5_000_000_000;
/** readSync/writeSync move at most ~2 GiB per call on Linux; stay well under it. */
const IO_CHUNK = 1 << 30;

export interface TensorInfo {
  /** The safetensors dtype name ("BF16", "F8_E4M3", ...), which may have no engine dtype. */
  dtype: string;
  shape: number[];
  /** [begin, end) in bytes, relative to the start of the data buffer. */
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  /** N, the JSON header's length in bytes (padding included). */
  headerSize: number;
  /** Tensors in data order (sorted by offset). */
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string> | undefined;
  /** File offset of the data buffer, 8 + N. */
  dataStart: number;
}

export interface LoadOptions {
  /** Load only these tensors; a name the file lacks is an error. */
  names?: string[];
  /** Convert floating tensors (only those) to this floating dtype, e.g. a bf16 checkpoint to float32. */
  dtype?: DType;
}

export interface ShardOptions {
  /** Largest shard in bytes of tensor data; a bigger tensor gets a shard of its own. Default 5·10⁹. */
  maxShardBytes?: number;
  /** File name stem: "model" gives model.safetensors or model-00001-of-0000n.safetensors. */
  prefix?: string;
  /** Written into every shard's `__metadata__`. */
  metadata?: Record<string, string>;
}

export type TensorDict = Map<string, Tensor> | Record<string, Tensor>;

/** A file that is not valid safetensors, or a checkpoint that does not fit together. */
export class SafetensorsError extends Error {
  override name = "SafetensorsError";
}

const CORRUPT = "the file is corrupt or not safetensors; re-download or re-save it";
const TRUNCATED = "the file is truncated or its header is corrupt; re-download or re-save it";

function bad(path: string, what: string, hint = CORRUPT): SafetensorsError {
  return new SafetensorsError(`cannot read ${path}: ${what} (${hint})`);
}

// ---------------------------------------------------------------------------------------------
// Reading

/**
 * Reads and validates a file's header without reading its data.
 * ```ts
 * const { tensors, metadata } = readHeader("model.safetensors");
 * tensors.get("lm_head.weight"); // { dtype: "BF16", shape: [151936, 3584], dataOffsets: [..] }
 * ```
 */
export function readHeader(path: string): SafetensorsHeader {
  const fd = openForRead(path);
  try {
    return readHeaderFd(fd, path);
  } finally {
    closeSync(fd);
  }
}

/** The header's `__metadata__` (undefined when the file has none). */
export function loadMetadata(path: string): Record<string, string> | undefined {
  return readHeader(path).metadata;
}

/**
 * Loads tensors from one file onto the CPU.
 * ```ts
 * const sd = loadFile("model.safetensors", { dtype: "float32" }); // bf16 weights arrive as float32
 * const emb = loadFile("model.safetensors", { names: ["embed_tokens.weight"] }).get("embed_tokens.weight")!;
 * ```
 */
export function loadFile(path: string, opts: LoadOptions = {}): Map<string, Tensor> {
  checkLoadDtype(opts.dtype);
  const fd = openForRead(path);
  try {
    const header = readHeaderFd(fd, path);
    const names = selectNames(header, opts.names, path);
    // Reject unloadable dtypes before reading anything.
    const dtypes = names.map((name) => engineDtype(header.tensors.get(name)!, name, path));
    // Each tensor is allocated in its final dtype and filled chunk by chunk: peak memory is the
    // tensors plus one chunk, never a tensor twice.
    const out = new Map<string, Tensor>();
    try {
      names.forEach((name, i) => {
        const dtype = dtypes[i]!;
        const t = empty(header.tensors.get(name)!.shape, { dtype: opts.dtype !== undefined && isFloatingPoint(dtype) ? opts.dtype : dtype });
        out.set(name, t);
      });
      readTensorsInto(fd, header, out, path);
    } catch (e) {
      for (const t of out.values()) t.dispose();
      throw e;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads tensors of one file straight into existing tensors (a module's parameters, say), by name.
 * With `countNonFinite`, returns each floating tensor's NaN and infinite values, counted on the
 * file's bytes as they pass (F64, F32, BF16, F16), so that no tensor-sized mask is ever made.
 * Data moves through one reused buffer of at most 16 MiB, so loading a model costs the model's
 * memory plus one chunk, never a second copy. Shapes must match; floating data converts to the
 * target's floating dtype chunk by chunk (bf16 file into a float32 model and back); other dtypes
 * must match. Targets must be contiguous and may be on any device. Other tensors of the file are
 * not read.
 * ```ts
 * loadFileInto("model.safetensors", new Map([["lm_head.weight", model.lm_head.weight]]));
 * ```
 */
export function loadFileInto(path: string, targets: ReadonlyMap<string, Tensor>, opts: IntoOptions = {}): Map<string, NonFiniteCount> {
  const fd = openForRead(path);
  try {
    const header = readHeaderFd(fd, path);
    selectNames(header, [...targets.keys()], path); // every target exists
    return readTensorsInto(fd, header, targets, path, opts.countNonFinite ?? false);
  } finally {
    closeSync(fd);
  }
}

export interface IntoOptions {
  /** Count each floating tensor's NaN and infinite values (returned by name). */
  countNonFinite?: boolean;
}

/** How many of a tensor's values are NaN and how many ±infinite. */
export interface NonFiniteCount {
  nan: number;
  infinite: number;
}

/** At most this many bytes of a tensor are in flight at once while reading. */
const READ_CHUNK = 16 << 20;

// Checks every target against the header first, so that nothing is written into a model that
// cannot load completely; then reads in data order, chunk by chunk.
function readTensorsInto(fd: number, header: SafetensorsHeader, targets: ReadonlyMap<string, Tensor>, path: string, countNonFinite = false): Map<string, NonFiniteCount> {
  const names = [...header.tensors.keys()].filter((n) => targets.has(n));
  for (const name of names) {
    const info = header.tensors.get(name)!, dst = targets.get(name)!;
    const from = engineDtype(info, name, path);
    if (dst.disposed) throw new TypeError(`cannot load tensor "${name}" from ${path}: the target tensor was disposed`);
    if (!sameShape(dst.shape, info.shape)) {
      throw new SafetensorsError(`cannot load tensor "${name}" from ${path}: the file has shape [${info.shape.join(", ")}], the target [${dst.shape.join(", ")}]`);
    }
    if (from !== dst.dtype && !(isFloatingPoint(from) && isFloatingPoint(dst.dtype))) {
      throw new SafetensorsError(`cannot load tensor "${name}" from ${path}: the file holds ${info.dtype}, the target is ${dst.dtype} (only floating dtypes convert into each other)`);
    }
    if (!dst.isContiguous()) throw new TypeError(`cannot load tensor "${name}" from ${path}: the target is not contiguous (read into a contiguous tensor, then copy)`);
  }
  const largest = names.reduce((m, n) => { const [b, e] = header.tensors.get(n)!.dataOffsets; return Math.max(m, e - b); }, 0);
  const scratch = Buffer.allocUnsafeSlow(Math.min(largest, READ_CHUNK));
  const counts = new Map<string, NonFiniteCount>();
  noGrad(() => {
    for (const name of names) {
      const info = header.tensors.get(name)!, dtype = ENGINE_DTYPE.get(info.dtype)!;
      const size = ELEMENT_SIZE[dtype], numel = (info.dataOffsets[1] - info.dataOffsets[0]) / size;
      const count = countNonFinite && isFloatingPoint(dtype) ? { nan: 0, infinite: 0 } : undefined;
      if (count) counts.set(name, count);
      if (numel === 0) continue;
      const flat = targets.get(name)!.view(-1);
      const step = Math.max(1, Math.floor(READ_CHUNK / size));
      try {
        for (let at = 0; at < numel; at += step) {
          const n = Math.min(step, numel - at);
          const bytes = scratch.subarray(0, n * size);
          readFully(fd, bytes, header.dataStart + info.dataOffsets[0] + at * size, path);
          if (dtype === "bool") checkBool(bytes, name, path, at);
          if (count) addNonFinite(count, bytes, dtype);
          const chunk = fromBytes(bytes, [n], dtype), slice = flat.narrow(0, at, n);
          slice.copy_(chunk); // converts the dtype and moves to the target's device
          slice.dispose();
          chunk.dispose();
        }
      } finally {
        flat.dispose();
      }
    }
  });
  return counts;
}

// IEEE layouts: a value is NaN or ±infinite when its exponent bits are all ones; NaN when its
// mantissa is then non-zero. float64 is read as numbers, the others as raw bit patterns.
// `bytes` starts at offset 0 of an unpooled buffer, so the typed views below are aligned.
function addNonFinite(count: NonFiniteCount, bytes: Uint8Array, dtype: DType): void {
  if (dtype === "float64") {
    const a = new Float64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8);
    for (let i = 0; i < a.length; i++) {
      const x = a[i]!;
      if (x - x !== 0) { if (x !== x) count.nan++; else count.infinite++; } // x - x is NaN for NaN and ±∞
    }
    return;
  }
  const [a, exp, man] = dtype === "float32"
    ? [new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4), 0x7f800000, 0x007fffff]
    : dtype === "bfloat16" ? [new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2), 0x7f80, 0x007f]
      : [new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2), 0x7c00, 0x03ff]; // float16
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    if ((x & exp) === exp) { if ((x & man) !== 0) count.nan++; else count.infinite++; }
  }
}

const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

function openForRead(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const what = err.code === "ENOENT" ? "no such file" : err.message;
    throw new SafetensorsError(`cannot read ${path}: ${what}`, { cause: e });
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new SafetensorsError(`cannot read ${path}: not a regular file (pass the path of a .safetensors file)`);
  }
  return fd;
}

function readHeaderFd(fd: number, path: string): SafetensorsHeader {
  const fileSize = fstatSync(fd).size;
  if (fileSize < 8) throw bad(path, `the file is ${fileSize} bytes, shorter than the 8-byte header length`);
  const lenBytes = Buffer.alloc(8);
  readFully(fd, lenBytes, 0, path);
  const n = lenBytes.readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw bad(path, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte cap`);
  }
  const headerSize = Number(n);
  if (8 + headerSize > fileSize) {
    throw bad(path, `header length ${headerSize} runs past the end of the ${fileSize}-byte file`, TRUNCATED);
  }
  const raw = Buffer.allocUnsafe(headerSize);
  readFully(fd, raw, 8, path);

  let text: string;
  try {
    // fatal: reject invalid UTF-8 rather than replace it; ignoreBOM: keep a BOM so JSON.parse rejects it.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(raw);
  } catch {
    throw bad(path, "the header is not valid UTF-8");
  }
  let json: unknown;
  try {
    json = JSON.parse(text); // tolerates the writer's trailing space padding
  } catch (e) {
    throw bad(path, `the header is not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(json)) throw bad(path, `the header must be a JSON object, got ${describe(json)}`);

  const dataLength = fileSize - 8 - headerSize;
  let metadata: Record<string, string> | undefined;
  const entries: [string, TensorInfo][] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === "__metadata__") metadata = parseMetadata(value, path);
    else entries.push([name, parseEntry(name, value, dataLength, path)]);
  }
  checkTiling(entries, dataLength, path);
  return { headerSize, tensors: new Map(entries), metadata, dataStart: 8 + headerSize };
}

function parseMetadata(value: unknown, path: string): Record<string, string> {
  if (!isPlainObject(value)) throw bad(path, `"__metadata__" must be an object of strings, got ${describe(value)}`);
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "string") throw bad(path, `"__metadata__"."${k}" must be a string, got ${describe(v)}`);
  }
  return value as Record<string, string>;
}

// Checks one entry on its own; keys other than the three are ignored, as the reference reader does.
function parseEntry(name: string, value: unknown, dataLength: number, path: string): TensorInfo {
  const at = `tensor "${name}"`;
  if (!isPlainObject(value)) throw bad(path, `${at}: expected an object with dtype, shape and data_offsets, got ${describe(value)}`);
  const { dtype, shape, data_offsets: offsets } = value;
  if (typeof dtype !== "string") throw bad(path, `${at}: "dtype" must be a string, got ${describe(dtype)}`);
  const bits = SPEC_BITS.get(dtype);
  if (bits === undefined) {
    throw bad(path, `${at}: unknown dtype "${dtype}" (the specification names ${[...SPEC_BITS.keys()].join(", ")})`, CORRUPT);
  }
  if (!Array.isArray(shape) || !shape.every(isIndex)) {
    throw bad(path, `${at}: "shape" must be an array of non-negative integers, got ${describe(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) {
    throw bad(path, `${at}: "data_offsets" must be [begin, end] of non-negative integers, got ${describe(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  const span = `data_offsets [${begin}, ${end}]`;
  if (begin > end) throw bad(path, `${at}: ${span} begin after they end`);
  if (end > dataLength) throw bad(path, `${at}: ${span} run past the end of the ${dataLength}-byte data buffer`, TRUNCATED);
  // BigInt: a hostile shape must not overflow into a matching byte count.
  const numel = (shape as number[]).reduce((acc, s) => acc * BigInt(s), 1n);
  const nbits = numel * BigInt(bits);
  const desc = `${dtype} [${shape.join(", ")}]`;
  if (nbits % 8n !== 0n) throw bad(path, `${at}: ${desc} is ${nbits} bits, not a whole number of bytes`);
  if (BigInt(end - begin) !== nbits / 8n) {
    throw bad(path, `${at}: ${span} span ${end - begin} bytes but ${desc} needs ${nbits / 8n} (${numel} elements × ${bits} bits)`);
  }
  return { dtype, shape: shape as number[], dataOffsets: [begin, end] };
}

/** Sorted by offset, tensors must tile the data buffer exactly: no gaps, no overlaps, nothing after. */
function checkTiling(entries: [string, TensorInfo][], dataLength: number, path: string): void {
  entries.sort(([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  let previous: string | undefined;
  for (const [name, { dataOffsets: [begin, end] }] of entries) {
    const at = `tensor "${name}" at data_offsets [${begin}, ${end}]`;
    if (begin < cursor) throw bad(path, `${at} overlaps tensor "${previous}", which ends at ${cursor}`);
    if (begin > cursor) {
      const before = previous === undefined ? "the data buffer starts at 0" : `tensor "${previous}" ends at ${cursor}`;
      throw bad(path, `gap of ${begin - cursor} bytes before ${at} (${before})`);
    }
    cursor = end;
    previous = name;
  }
  if (cursor !== dataLength) {
    throw bad(path, `the data buffer holds ${dataLength} bytes but the tensors end at ${cursor} (${dataLength - cursor} trailing bytes)`);
  }
}

function selectNames(header: SafetensorsHeader, names: string[] | undefined, path: string): string[] {
  if (names === undefined) return [...header.tensors.keys()];
  const wanted = new Set(names);
  for (const name of wanted) {
    if (!header.tensors.has(name)) {
      throw new SafetensorsError(`cannot load tensor "${name}" from ${path}: the file has no such tensor (it holds ${listNames([...header.tensors.keys()])})`);
    }
  }
  // Data order, so that reads move forward through the file.
  return [...header.tensors.keys()].filter((n) => wanted.has(n));
}

function engineDtype(info: TensorInfo, name: string, path: string): DType {
  const d = ENGINE_DTYPE.get(info.dtype);
  if (d === undefined) {
    throw new SafetensorsError(
      `cannot load tensor "${name}" from ${path}: dtype ${info.dtype} has no engine dtype ` +
        `(supported: ${[...ENGINE_DTYPE.keys()].join(", ")}); convert the checkpoint, or leave the tensor out with opts.names`,
    );
  }
  return d;
}

function checkLoadDtype(d: DType | undefined): void {
  if (d !== undefined && !isFloatingPoint(d)) {
    throw new TypeError(`load options: dtype must be a floating dtype (float32, float64, bfloat16, float16), got "${d}"; it converts floating tensors only`);
  }
}

// torch bools must be 0 or 1; any other byte would be undefined behaviour in kernels.
function checkBool(bytes: Uint8Array, name: string, path: string, first = 0): void {
  const i = bytes.findIndex((b) => b > 1);
  if (i >= 0) throw bad(path, `tensor "${name}": BOOL element ${first + i} is byte ${bytes[i]} (expected 0 or 1)`);
}

function readFully(fd: number, buf: Uint8Array, position: number, path: string): void {
  for (let done = 0; done < buf.length;) {
    const n = readSync(fd, buf, done, Math.min(IO_CHUNK, buf.length - done), position + done);
    if (n === 0) throw bad(path, `unexpected end of file at byte ${position + done}`, "the file shrank while being read or is truncated");
    done += n;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Writes tensors to one file, atomically (temp file, fsync, rename), one tensor at a time.
 * Header and data are in sorted-name order; the header is space-padded to a multiple of 8 bytes.
 * ```ts
 * saveFile("ckpt/model.safetensors", model.stateDict(), { format: "pt" });
 * ```
 */
export function saveFile(path: string, tensors: TensorDict, metadata?: Record<string, string>): void {
  const entries = checkTensors(tensors, path);
  if (metadata !== undefined) checkMetadata(metadata, path);
  writeAtomic(path, (fd) => writeSafetensors(fd, entries, metadata));
}

/**
 * Writes a checkpoint in Hugging Face's layout: `model.safetensors` when it fits in one shard,
 * else `model-00001-of-0000n.safetensors`, ... plus `model.safetensors.index.json`. Files of an
 * earlier save under the same prefix that this save does not rewrite are removed, so a directory
 * never holds an index that disagrees with its shards. Returns the paths written.
 * ```ts
 * saveSharded("out/", model.stateDict(), { maxShardBytes: 2e9, metadata: { format: "pt" } });
 * ```
 */
export function saveSharded(dir: string, tensors: TensorDict, opts: ShardOptions = {}): string[] {
  const { maxShardBytes = DEFAULT_MAX_SHARD_BYTES, prefix = "model", metadata } = opts;
  if (!(maxShardBytes > 0) || !Number.isSafeInteger(maxShardBytes)) {
    throw new RangeError(`saveSharded: maxShardBytes must be a positive integer, got ${maxShardBytes}`);
  }
  if (prefix === "" || basename(prefix) !== prefix) {
    throw new RangeError(`saveSharded: prefix must be a plain file name stem like "model", got "${prefix}"`);
  }
  const entries = checkTensors(tensors, join(dir, prefix));
  if (metadata !== undefined) checkMetadata(metadata, join(dir, prefix));

  // Greedy packing in name order, as transformers' split_torch_state_dict_into_shards.
  const shards: [string, Tensor][][] = [[]];
  let current = 0;
  for (const entry of entries) {
    const n = byteSize(entry[1]);
    if (shards.at(-1)!.length > 0 && current + n > maxShardBytes) {
      shards.push([]);
      current = 0;
    }
    shards.at(-1)!.push(entry);
    current += n;
  }

  const indexName = `${prefix}.safetensors.index.json`;
  const written: string[] = [];
  if (shards.length === 1) {
    const file = join(dir, `${prefix}.safetensors`);
    saveFile(file, new Map(entries), metadata);
    written.push(file);
  } else {
    const total = shards.length;
    const pad = (i: number) => String(i).padStart(5, "0");
    const weightMap: [string, string][] = [];
    shards.forEach((shard, i) => {
      const name = `${prefix}-${pad(i + 1)}-of-${pad(total)}.safetensors`;
      saveFile(join(dir, name), new Map(shard), metadata);
      written.push(join(dir, name));
      for (const [tensorName] of shard) weightMap.push([tensorName, name]);
    });
    // The index goes last: it names only files that are already complete.
    const totalSize = entries.reduce((acc, [, t]) => acc + byteSize(t), 0);
    const indexPath = join(dir, indexName);
    const json = Buffer.from(indexJson(totalSize, weightMap), "utf8");
    writeAtomic(indexPath, (fd) => writeFully(fd, json, 0));
    written.push(indexPath);
  }
  removeStale(dir, prefix, indexName, new Set(written.map((p) => basename(p))));
  return written;
}

function removeStale(dir: string, prefix: string, indexName: string, keep: Set<string>): void {
  const shardPattern = /^-\d{5}-of-\d{5}\.safetensors$/;
  for (const f of readdirSync(dir)) {
    if (keep.has(f)) continue;
    const ours = f === `${prefix}.safetensors` || f === indexName ||
      (f.startsWith(prefix) && shardPattern.test(f.slice(prefix.length)));
    if (ours) rmSync(join(dir, f), { force: true });
  }
}

// As transformers writes it: json.dumps(index, indent=2, sort_keys=True) + "\n". Built by hand
// because a JS object would reorder integer-like tensor names ("10" before "9" breaks sorting).
function indexJson(totalSize: number, weightMap: [string, string][]): string {
  const lines = weightMap
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, file]) => `    ${JSON.stringify(name)}: ${JSON.stringify(file)}`);
  return `{\n  "metadata": {\n    "total_size": ${totalSize}\n  },\n  "weight_map": {\n${lines.join(",\n")}\n  }\n}\n`;
}

function checkTensors(tensors: TensorDict, path: string): [string, Tensor][] {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  for (const [name, t] of entries) {
    if (typeof name !== "string") throw new TypeError(`cannot write ${path}: tensor names must be strings, got ${describe(name)}`);
    if (name === "__metadata__") throw new TypeError(`cannot write ${path}: "__metadata__" is reserved for metadata and cannot name a tensor`);
    if (!(t instanceof Tensor)) throw new TypeError(`cannot write ${path}: "${name}" is ${describe(t)}, not a Tensor`);
    if (t.disposed) throw new TypeError(`cannot write ${path}: tensor "${name}" was disposed`);
  }
  return entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function checkMetadata(metadata: Record<string, string>, path: string): void {
  if (!isPlainObject(metadata)) throw new TypeError(`cannot write ${path}: metadata must be an object of strings, got ${describe(metadata)}`);
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new TypeError(`cannot write ${path}: metadata "${k}" must be a string, got ${describe(v)}`);
  }
}

const byteSize = (t: Tensor): number => t.numel() * ELEMENT_SIZE[t.dtype];

function writeSafetensors(fd: number, entries: [string, Tensor][], metadata: Record<string, string> | undefined): void {
  // The header is built as text rather than from an object so that names keep sorted order
  // (objects put integer-like keys first) and "__proto__" stays an ordinary name.
  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort();
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(",")}}`);
  }
  const sizes = entries.map(([, t]) => byteSize(t));
  let offset = 0;
  entries.forEach(([name, t], i) => {
    const info = { dtype: SAFETENSORS_DTYPE[t.dtype], shape: t.shape, data_offsets: [offset, offset + sizes[i]!] };
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(info)}`);
    offset += sizes[i]!;
  });
  const json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  const n = Math.ceil(json.length / 8) * 8; // pad with spaces so the data starts 8-byte aligned
  const head = Buffer.alloc(8 + n, 0x20);
  head.writeBigUInt64LE(BigInt(n), 0);
  json.copy(head, 8);
  writeFully(fd, head, 0);

  // One tensor at a time through a reused scratch buffer: memory stays at one tensor's bytes.
  const scratch = Buffer.allocUnsafeSlow(sizes.reduce((a, b) => Math.max(a, b), 0));
  let position = head.length;
  entries.forEach(([, t], i) => {
    const bytes = scratch.subarray(0, sizes[i]);
    native.copyBytesInto(t._h, bytes, 0);
    writeFully(fd, bytes, position);
    position += bytes.length;
  });
}

function writeFully(fd: number, buf: Uint8Array, position: number): void {
  for (let done = 0; done < buf.length;) {
    done += writeSync(fd, buf, done, Math.min(IO_CHUNK, buf.length - done), position + done);
  }
}

// Writes to a temp file beside `path` (same file system, so rename is atomic), fsyncs, renames,
// then fsyncs the directory so the rename itself survives a crash. On failure the temp file goes.
function writeAtomic(path: string, write: (fd: number) => void): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "wx");
    write(fd);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    if (e instanceof SafetensorsError) throw e;
    const err = e as NodeJS.ErrnoException;
    const dir = dirname(path);
    const what = err.code === "ENOENT" && !existsSync(dir)
      ? `directory ${dir} does not exist (create it first, e.g. mkdirSync(dir, { recursive: true }))`
      : err.message;
    throw new SafetensorsError(`cannot write ${path}: ${what}`, { cause: e });
  }
  if (process.platform !== "win32") {
    const dfd = openSync(dirname(path), "r");
    try { fsyncSync(dfd); } finally { closeSync(dfd); }
  }
}

// ---------------------------------------------------------------------------------------------
// Sharded checkpoints

/**
 * Loads a checkpoint that may be sharded. Accepts a directory (its `model.safetensors.index.json`
 * if present, else `model.safetensors`), an index path, or a `.safetensors` path. Every shard is
 * checked against the index before any tensor is read.
 * ```ts
 * const sd = loadSharded("Qwen2.5-VL-7B-Instruct/", { dtype: "float32" });
 * ```
 */
export function loadSharded(pathOrDir: string, opts: LoadOptions = {}): Map<string, Tensor> {
  checkLoadDtype(opts.dtype);
  const { target, shards } = planShards(pathOrDir, opts.names);
  if (!target.endsWith(".json")) return loadFile(target, opts);
  const out = new Map<string, Tensor>();
  try {
    for (const [file, names] of shards) {
      for (const [name, t] of loadFile(file, { names, dtype: opts.dtype })) out.set(name, t);
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}

/**
 * Reads a checkpoint that may be sharded (a directory, an index or a `.safetensors` path, as
 * loadSharded) straight into existing tensors by name, shard by shard, with loadFileInto's rules:
 * peak memory is the targets plus one 16 MiB chunk. Every target must be in the checkpoint;
 * checkpoint tensors without a target are not read.
 * ```ts
 * loadShardedInto("Qwen2.5-VL-7B-Instruct/", new Map([["lm_head.weight", model.lm_head.weight]]));
 * ```
 */
export function loadShardedInto(pathOrDir: string, targets: ReadonlyMap<string, Tensor>, opts: IntoOptions = {}): Map<string, NonFiniteCount> {
  const { shards } = planShards(pathOrDir, [...targets.keys()]);
  const counts = new Map<string, NonFiniteCount>();
  for (const [file, names] of shards) {
    const part = names === undefined ? targets : new Map(names.map((n) => [n, targets.get(n)!]));
    for (const [name, c] of loadFileInto(file, part, opts)) counts.set(name, c);
  }
  return counts;
}

// Which names to read from which file: [shard path, names][] in index order. Every shard is
// checked against the index, and every wanted name against the checkpoint, before any read.
function planShards(pathOrDir: string, wantedNames: string[] | undefined): { target: string; shards: [string, string[] | undefined][] } {
  const target = resolveCheckpoint(pathOrDir);
  if (!target.endsWith(".json")) return { target, shards: [[target, wantedNames]] };

  const byShard = readIndex(target);
  const dir = dirname(target);
  for (const [file, names] of byShard) {
    const shardPath = join(dir, file);
    if (!existsSync(shardPath)) {
      const others = names.length > 1 ? ` and ${names.length - 1} more` : "";
      throw new SafetensorsError(
        `cannot load ${target}: shard ${file}, which holds tensor "${names[0]}"${others}, does not exist in ${dir} (the download or save may be incomplete)`,
      );
    }
    const header = readHeader(shardPath);
    for (const name of names) {
      if (!header.tensors.has(name)) {
        throw new SafetensorsError(
          `cannot load ${target}: the index maps tensor "${name}" to ${file}, but that shard does not hold it (index and shards come from different saves; re-download or re-save)`,
        );
      }
    }
  }

  let wanted: Set<string> | undefined;
  if (wantedNames !== undefined) {
    wanted = new Set(wantedNames);
    const all = new Set([...byShard.values()].flat());
    for (const name of wanted) {
      if (!all.has(name)) throw new SafetensorsError(`cannot load tensor "${name}" from ${target}: the index has no such tensor (it holds ${listNames([...all])})`);
    }
  }
  const shards: [string, string[]][] = [];
  for (const [file, names] of byShard) {
    const selected = wanted === undefined ? names : names.filter((n) => wanted.has(n));
    if (selected.length > 0) shards.push([join(dir, file), selected]);
  }
  return { target, shards };
}

function resolveCheckpoint(pathOrDir: string): string {
  if (!existsSync(pathOrDir)) throw new SafetensorsError(`cannot load ${pathOrDir}: no such file or directory`);
  if (!statSync(pathOrDir).isDirectory()) return pathOrDir;
  for (const name of ["model.safetensors.index.json", "model.safetensors"]) {
    const p = join(pathOrDir, name);
    if (existsSync(p)) return p;
  }
  throw new SafetensorsError(
    `cannot load ${pathOrDir}: the directory holds neither model.safetensors.index.json nor model.safetensors (pass the path of the .safetensors or .index.json file)`,
  );
}

/** Tensor names grouped by shard file, in index order. */
function readIndex(path: string): Map<string, string[]> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new SafetensorsError(`cannot read ${path}: ${(e as Error).message} (expected a safetensors index: {"metadata": {...}, "weight_map": {tensor: file}})`, { cause: e });
  }
  const map = isPlainObject(json) ? json.weight_map : undefined;
  if (!isPlainObject(map)) {
    throw new SafetensorsError(`cannot read ${path}: "weight_map" must be an object of tensor name → shard file, got ${describe(map)}`);
  }
  const byShard = new Map<string, string[]>();
  for (const [name, file] of Object.entries(map)) {
    // Shards sit beside the index; a path would let an index reach outside its checkpoint.
    if (typeof file !== "string" || file === "" || file === "." || file === ".." || basename(file) !== file) {
      throw new SafetensorsError(`cannot read ${path}: "weight_map"."${name}" must be a shard file name in the same directory, got ${describe(file)}`);
    }
    const names = byShard.get(file) ?? [];
    names.push(name);
    byShard.set(file, names);
  }
  return byShard;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const isIndex = (x: unknown): x is number => typeof x === "number" && Number.isSafeInteger(x) && x >= 0;

function describe(v: unknown): string {
  if (v === undefined) return "nothing (the key is missing)";
  if (v instanceof Tensor) return "a Tensor";
  const s = typeof v === "bigint" || typeof v === "function" || typeof v === "symbol" ? String(v) : JSON.stringify(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function listNames(names: string[]): string {
  const shown = names.slice(0, 5).map((n) => `"${n}"`).join(", ");
  return names.length > 5 ? `${names.length} tensors: ${shown}, ...` : `${names.length} tensors: ${shown}`;
}
