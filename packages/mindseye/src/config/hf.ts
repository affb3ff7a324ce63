// Reading Hugging Face config.json files into typed configs: each family maps the HF field
// names it uses (snake_case) to its own camelCase config, with one clear error per bad field.
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { ConfigError } from "./errors.js";

export type HfJson = Record<string, unknown>;

/** config.json of a checkpoint directory. */
export function readHfConfig(dir: string): HfJson {
  const path = join(dir, "config.json");
  if (!existsSync(path)) throw new ConfigError(`${dir}: no config.json (expected a Hugging Face checkpoint directory: config.json + *.safetensors)`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) throw new ConfigError(`${path}: expected a JSON object`);
  return json as HfJson;
}

type Kind = "number" | "integer" | "boolean" | "string" | "object" | "array";

function check(value: unknown, kind: Kind): boolean {
  switch (kind) {
    case "integer": return typeof value === "number" && Number.isInteger(value);
    case "array": return Array.isArray(value);
    case "object": return value !== null && typeof value === "object" && !Array.isArray(value);
    default: return typeof value === kind;
  }
}

/**
 * Field `key` of an HF config (`where` names the file or sub-config in errors). Without a
 * fallback the field is required; null counts as absent.
 * ```ts
 * const hiddenSize = hfField(json, "hidden_size", "integer", "config.json");
 * const theta = hfField(json, "rope_theta", "number", "config.json", 10000);
 * ```
 */
export function hfField<T>(json: HfJson, key: string, kind: Kind, where: string, fallback?: T): T {
  const v = json[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ConfigError(`${where}: missing required field "${key}" (${kind})`);
  }
  if (!check(v, kind)) throw new ConfigError(`${where}: field "${key}" must be ${kind === "integer" ? "an integer" : `a ${kind}`}, got ${JSON.stringify(v)}`);
  return v as T;
}

/** Throws unless cond holds, naming the field. */
export function ensure(cond: boolean, where: string, message: string): void {
  if (!cond) throw new ConfigError(`${where}: ${message}`);
}
