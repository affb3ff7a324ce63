// TensorBoard event files for scalars, written directly: a TFRecord stream of `Event` protocol
// buffers (tensorflow/core/util/event.proto). Each record is
//   uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
// and the first event carries file_version "brain.Event:2".
import { openSync, writeSync, fsyncSync, closeSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { crc32c } from "@aws-crypto/crc32c";

function maskedCrc(data: Uint8Array): number {
  const crc = crc32c(data) >>> 0;
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

// --- minimal protobuf encoding (varints, length-delimited fields, fixed 32/64-bit) ---------
function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}
const key = (field: number, wire: number) => varint((field << 3) | wire);
function lengthDelimited(field: number, bytes: Uint8Array | number[]): number[] {
  return [...key(field, 2), ...varint(bytes.length), ...bytes];
}
function float32(field: number, v: number): number[] {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, v, true);
  return [...key(field, 5), ...b];
}
function double(field: number, v: number): number[] {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, v, true);
  return [...key(field, 1), ...b];
}

/** Event { wall_time = 1 (double); step = 2 (int64); file_version = 3 | summary = 5 } */
function scalarEvent(step: number, wallTime: number, values: [string, number][]): Uint8Array {
  // Summary.Value { tag = 1 (string); simple_value = 2 (float) }, Summary { value = 1 (repeated) }
  const summary = values.flatMap(([tag, v]) => lengthDelimited(1, [...lengthDelimited(1, new TextEncoder().encode(tag)), ...float32(2, v)]));
  return new Uint8Array([...double(1, wallTime), ...key(2, 0), ...varint(step), ...lengthDelimited(5, summary)]);
}
function versionEvent(wallTime: number): Uint8Array {
  return new Uint8Array([...double(1, wallTime), ...lengthDelimited(3, new TextEncoder().encode("brain.Event:2"))]);
}

function record(data: Uint8Array): Uint8Array {
  const header = new Uint8Array(12);
  const view = new DataView(header.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc(header.subarray(0, 8)), true);
  const footer = new Uint8Array(4);
  new DataView(footer.buffer).setUint32(0, maskedCrc(data), true);
  const out = new Uint8Array(16 + data.length);
  out.set(header, 0);
  out.set(data, 12);
  out.set(footer, 12 + data.length);
  return out;
}

/** Appends scalar summaries to `dir/events.out.tfevents.<time>.<host>`. */
export class TensorBoardWriter {
  private readonly fd: number;
  readonly path: string;
  constructor(dir: string) {
    const now = Date.now() / 1000;
    this.path = join(dir, `events.out.tfevents.${Math.floor(now)}.${hostname()}`);
    this.fd = openSync(this.path, "a");
    writeSync(this.fd, record(versionEvent(now)));
  }
  scalars(step: number, values: Record<string, number>): void {
    const finite = Object.entries(values).filter(([, v]) => Number.isFinite(v));
    if (finite.length > 0) writeSync(this.fd, record(scalarEvent(step, Date.now() / 1000, finite)));
  }
  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
  }
}

/** The records of an event file: each event's bytes and where its record ends. */
function* records(bytes: Uint8Array): Generator<{ data: Uint8Array; start: number; end: number }> {
  let off = 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  while (off < bytes.length) {
    const len = Number(view.getBigUint64(off, true));
    if (view.getUint32(off + 8, true) !== maskedCrc(bytes.subarray(off, off + 8))) throw new Error(`event file: bad length CRC at byte ${off}`);
    const data = bytes.subarray(off + 12, off + 12 + len);
    if (view.getUint32(off + 12 + len, true) !== maskedCrc(data)) throw new Error(`event file: bad data CRC at byte ${off}`);
    yield { data, start: off, end: off + 16 + len };
    off += 16 + len;
  }
}

/** Reads back scalar events (for tests and `mindseye` reports): [{ step, tag, value }]. */
export function readScalars(bytes: Uint8Array): { step: number; tag: string; value: number }[] {
  const out: { step: number; tag: string; value: number }[] = [];
  for (const r of records(bytes)) out.push(...decodeEvent(r.data));
  return out;
}

/**
 * Drops the events after `maxStep` from the event files in `dir` (a resumed run replays those
 * steps, and TensorBoard would show both). Files left with no scalars are removed.
 */
export function truncateEventFiles(dir: string, maxStep: number): void {
  for (const name of readdirSync(dir).filter((f) => f.startsWith("events.out.tfevents."))) {
    const path = join(dir, name);
    const bytes = readFileSync(path);
    const kept: Uint8Array[] = [];
    let dropped = false, scalars = false;
    for (const r of records(bytes)) {
      const { step, hasSummary } = eventHeader(r.data);
      if (hasSummary && step > maxStep) { dropped = true; continue; }
      scalars ||= hasSummary;
      kept.push(bytes.subarray(r.start, r.end));
    }
    if (!dropped) continue;
    if (!scalars) { rmSync(path); continue; }
    writeFileSync(`${path}.tmp-${process.pid}`, Buffer.concat(kept));
    renameSync(`${path}.tmp-${process.pid}`, path);
  }
}

function eventHeader(data: Uint8Array): { step: number; hasSummary: boolean } {
  let step = 0, hasSummary = false;
  walk(data, (field, wire, v) => {
    if (field === 2 && wire === 0) step = Number(v);
    if (field === 5 && wire === 2) hasSummary = true;
  });
  return { step, hasSummary };
}

function decodeEvent(data: Uint8Array): { step: number; tag: string; value: number }[] {
  let step = 0;
  const found: { tag: string; value: number }[] = [];
  walk(data, (field, wire, v, bytes) => {
    if (field === 2 && wire === 0) step = Number(v);
    if (field === 5 && wire === 2) {
      walk(bytes!, (f, w, _v, valueBytes) => {
        if (f !== 1 || w !== 2) return;
        let tag = "", value = NaN;
        walk(valueBytes!, (vf, vw, _x, b) => {
          if (vf === 1 && vw === 2) tag = new TextDecoder().decode(b!);
          if (vf === 2 && vw === 5) value = new DataView(b!.buffer, b!.byteOffset, 4).getFloat32(0, true);
        });
        found.push({ tag, value });
      });
    }
  });
  return found.map((f) => ({ step, ...f }));
}

function walk(buf: Uint8Array, visit: (field: number, wire: number, v: bigint, bytes?: Uint8Array) => void): void {
  let i = 0;
  const readVarint = () => {
    let result = 0n, shift = 0n;
    for (;;) {
      const b = buf[i++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const k = Number(readVarint());
    const field = k >> 3, wire = k & 7;
    if (wire === 0) visit(field, wire, readVarint());
    else if (wire === 1) { visit(field, wire, 0n, buf.subarray(i, i + 8)); i += 8; }
    else if (wire === 5) { visit(field, wire, 0n, buf.subarray(i, i + 4)); i += 4; }
    else if (wire === 2) { const n = Number(readVarint()); visit(field, wire, 0n, buf.subarray(i, i + n)); i += n; }
    else throw new Error(`event file: unsupported wire type ${wire}`);
  }
}
