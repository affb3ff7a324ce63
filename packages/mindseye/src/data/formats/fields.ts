// Typed field access on parsed records: each failure is a MalformedRecord that names the record
// and the field, e.g. `captions_val2017.json annotations[3]: missing "image_id"`.
import { MalformedRecord, type RecordSource } from "./errors.js";

export type Json = Record<string, unknown>;

function show(v: unknown): string {
  const s = JSON.stringify(v, (_k, x: unknown) => (x instanceof Uint8Array ? `<${x.length} bytes>` : typeof x === "bigint" ? x.toString() : x));
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

export function asObject(v: unknown, source: RecordSource, what = "the record"): Json {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new MalformedRecord(source, `${what} must be a JSON object, got ${show(v)}`);
  return v as Json;
}

function present(o: Json, key: string, source: RecordSource): unknown {
  const v = o[key];
  if (v === undefined || v === null) throw new MalformedRecord(source, `missing "${key}"`);
  return v;
}

/** A required string field. */
export function str(o: Json, key: string, source: RecordSource): string {
  const v = present(o, key, source);
  if (typeof v !== "string") throw new MalformedRecord(source, `"${key}" must be a string, got ${show(v)}`);
  return v;
}

/** A required string field that is not empty once trimmed; returns it trimmed. */
export function text(o: Json, key: string, source: RecordSource): string {
  const v = str(o, key, source).trim();
  if (v === "") throw new MalformedRecord(source, `"${key}" is empty`);
  return v;
}

/** A string field that may be absent or null (→ null). */
export function optStr(o: Json, key: string, source: RecordSource): string | null {
  const v = o[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== "string") throw new MalformedRecord(source, `"${key}" must be a string or null, got ${show(v)}`);
  return v;
}

/** A required integer field (a JSON number or a parquet INT64 bigint). */
export function int(o: Json, key: string, source: RecordSource): number {
  const v = present(o, key, source);
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n)) throw new MalformedRecord(source, `"${key}" must be an integer, got ${show(v)}`);
  return n;
}

export function bool(o: Json, key: string, source: RecordSource): boolean {
  const v = present(o, key, source);
  if (typeof v !== "boolean") throw new MalformedRecord(source, `"${key}" must be true or false, got ${show(v)}`);
  return v;
}

/** A required non-empty list of strings. */
export function strList(o: Json, key: string, source: RecordSource): string[] {
  const v = present(o, key, source);
  if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === "string")) {
    throw new MalformedRecord(source, `"${key}" must be a non-empty list of strings, got ${show(v)}`);
  }
  return v as string[];
}

/** "A", "B", … for choice index 0, 1, … */
export function letter(i: number): string {
  return String.fromCharCode(65 + i);
}
