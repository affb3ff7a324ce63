// Recipes: YAML files validated against a typed schema (zod), with dotted command-line
// overrides (`--set train.lr=3e-4`). Unknown keys and wrong types are rejected with the key's
// dotted name and, for a misspelt key, the closest known one.
//
//   const cfg = loadRecipe("configs/demo.yaml", DemoSchema, ["train.lr=3e-4"]);
import { readFileSync } from "node:fs";
import { parse as parseYaml, parseDocument, isMap, isSeq, visit } from "yaml";
import { z } from "zod";
import { ConfigError } from "./errors.js";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Parses `a.b.c=value` overrides; values are read by parseOverrideValue. */
export function parseOverrides(overrides: string[]): [string[], Json][] {
  return overrides.map((o) => {
    const eq = o.indexOf("=");
    if (eq <= 0) throw new ConfigError(`--set ${o}: expected key=value with a dotted key, e.g. --set train.lr=3e-4`);
    const key = o.slice(0, eq).trim();
    if (!/^[A-Za-z_][\w]*(\.[\w]+)*$/.test(key)) throw new ConfigError(`--set ${o}: "${key}" is not a dotted key`);
    return [key.split("."), parseOverrideValue(o.slice(eq + 1))];
  });
}

/**
 * One `--set` value as a YAML value: a scalar (`3e-4`, `true`, `null`, `"quoted"`) or a flow
 * collection (`[1, 2]`, `{a: 1}`). Text that is not one cleanly — that would lose a part to a
 * YAML comment (`/x/run #2`), is block syntax (`a: b`) or does not parse — is taken as the
 * string it is, so nothing typed is silently dropped.
 * ```ts
 * parseOverrideValue("3e-4");      // 0.0003
 * parseOverrideValue("/x/run #2"); // "/x/run #2"
 * ```
 */
export function parseOverrideValue(text: string): Json {
  const doc = parseDocument(text);
  if (doc.errors.length > 0 || doc.warnings.length > 0) return text;
  let comment = Boolean(doc.comment || doc.commentBefore);
  visit(doc, (_key, node) => {
    const n = node as { comment?: string | null; commentBefore?: string | null };
    if (n.comment || n.commentBefore) {
      comment = true;
      return visit.BREAK;
    }
    return undefined;
  });
  const node = doc.contents;
  if (comment || ((isMap(node) || isSeq(node)) && !node.flow)) return text;
  return doc.toJS() as Json;
}

/** Sets `value` at `path` inside `target`, creating objects on the way. */
export function setPath(target: { [k: string]: Json }, path: string[], value: Json): void {
  let node = target;
  path.slice(0, -1).forEach((k, i) => {
    const next = node[k];
    if (next === undefined || next === null) node[k] = {};
    else if (typeof next !== "object" || Array.isArray(next)) {
      throw new ConfigError(`--set ${path.join(".")}: ${path.slice(0, i + 1).join(".")} is a value, not a section`);
    }
    node = node[k] as { [k: string]: Json };
  });
  node[path[path.length - 1]!] = value;
}

/** Validates plain data against a schema; every problem is listed with its dotted key. */
export function validate<S extends z.ZodType>(schema: S, data: unknown, source: string): z.output<S> {
  const r = schema.safeParse(data);
  if (r.success) return r.data;
  const lines = r.error.issues.map((issue) => describe(issue, schema));
  throw new ConfigError(`${source}: invalid configuration\n${lines.map((l) => `  ${l}`).join("\n")}`);
}

function describe(issue: z.core.$ZodIssue, root: z.ZodType): string {
  const at = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(root, issue.path.map(String));
    return issue.keys.map((k) => {
      const key = at ? `${at}.${k}` : k;
      const near = closest(k, known);
      return `unknown key ${key}${near ? ` (did you mean ${at ? `${at}.` : ""}${near}?)` : ""}${known.length ? `; known keys here: ${known.join(", ")}` : ""}`;
    }).join("\n  ");
  }
  return `${at || "(top level)"}: ${issue.message}`;
}

/** The keys a (possibly nested, possibly defaulted) object schema accepts at path. */
function knownKeys(schema: z.ZodType, path: string[]): string[] {
  let s: z.ZodType | undefined = unwrap(schema);
  for (const k of path) {
    s = s instanceof z.ZodObject ? unwrap((s.shape as Record<string, z.ZodType>)[k]) : undefined;
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}

function unwrap(s: z.ZodType | undefined): z.ZodType | undefined {
  let cur = s;
  while (cur instanceof z.ZodDefault || cur instanceof z.ZodOptional || cur instanceof z.ZodNullable) {
    cur = cur.unwrap() as z.ZodType;
  }
  return cur;
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined, bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) { best = c; bestD = d; }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

/** Reads a YAML recipe, applies `--set` overrides, validates, and returns the typed config. */
export function loadRecipe<S extends z.ZodType>(path: string, schema: S, overrides: string[] = []): z.output<S> {
  let data: unknown;
  try {
    data = parseYaml(readFileSync(path, "utf8")) ?? {};
  } catch (e) {
    throw new ConfigError(`${path}: cannot read the recipe (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) throw new ConfigError(`${path}: a recipe is a YAML mapping of sections`);
  for (const [key, value] of parseOverrides(overrides)) setPath(data as { [k: string]: Json }, key, value);
  return validate(schema, data, path);
}
