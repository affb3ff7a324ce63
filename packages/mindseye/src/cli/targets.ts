// `mindseye targets extract`: the latent target cache.
import { existsSync, readFileSync } from "node:fs";
import type { Command } from "commander";
import { parse as parseYaml } from "yaml";
import { join } from "node:path";
import { extractTargets, type TargetManifest } from "../data/targets.js";
import type { DatasetSpec } from "../data/formats/index.js";
import type { DType } from "@mindseye/torch";

/** --data: a YAML/JSON file holding the spec, or the spec inline (`{format: coco, annotations: ..., images: ...}`). */
export function parseDataSpec(arg: string): DatasetSpec {
  const text = existsSync(arg) ? readFileSync(arg, "utf8") : arg;
  const spec = parseYaml(text) as unknown;
  if (spec === null || typeof spec !== "object" || Array.isArray(spec) || typeof (spec as { format?: unknown }).format !== "string") {
    throw new Error(`--data ${arg}: expected a dataset spec with a "format" (a file, or inline YAML such as '{format: coco, annotations: a.json, images: dir}')`);
  }
  return spec as DatasetSpec;
}

/** A fraction in [0, 1] given on the command line, or an error naming the option. */
export function parseRate(option: string, text: string): number {
  const v = Number(text);
  if (text.trim() === "" || !(v >= 0 && v <= 1)) throw new Error(`${option} must be a fraction in [0, 1] (0.05 = 5%), got "${text}"`);
  return v;
}

/** What the command prints: the cache, then every skip count and the first skipped records. */
export function formatExtraction(out: string, m: TargetManifest): string {
  const n = m.shards.reduce((a, s) => a + s.count, 0);
  const records = m.skippedList.filter((e) => e.kind === "record").length, images = m.skippedList.length - records;
  const lines = [`${out}: ${n} targets of [${m.k}, ${m.d}] (${m.pooling}, ${m.dtype}) in ${m.shards.length} shards; encoder ${m.fingerprint.slice(0, 12)}`];
  lines.push(`skipped: ${records} malformed record${records === 1 ? "" : "s"}, ${images} undecodable image${images === 1 ? "" : "s"}${m.skipped > 0 ? ` (all listed in ${join(out, "manifest.json")} "skippedList")` : ""}`);
  for (const e of m.skippedList.slice(0, 10)) lines.push(`  ${e.file} ${e.record}: ${e.reason}`);
  if (m.skippedList.length > 10) lines.push(`  … and ${m.skippedList.length - 10} more`);
  return lines.join("\n");
}

export function registerTargetsCommand(program: Command): void {
  const targets = program.command("targets").description("the latent target cache");
  targets
    .command("extract")
    .description("run a frozen encoder over a dataset once and write pooled targets (resumable)")
    .requiredOption("--encoder <dir>", "HF-format CLIP/SigLIP-style vision encoder (config.json, model.safetensors, preprocessor_config.json)")
    .requiredOption("--data <spec>", "dataset spec: a YAML/JSON file or inline YAML with a format (coco, cc3m, webdataset, laion)")
    .requiredOption("--out <dir>", "cache directory")
    .option("--pool <spec>", "cls | mean | grid:K | all", "grid:4")
    .option("--feature-layer <n>", "hidden state index as HF's hidden_states (-1: last layer)", "-1")
    .option("--dtype <dtype>", "storage dtype: float32 | bfloat16 | float16", "float32")
    .option("--batch-size <n>", "images per forward", "32")
    .option("--shard-size <n>", "records per shard (a multiple of the batch size)", "4096")
    .option("--max-error-rate <fraction>", "stop when more than this fraction of the records, or of the images, is bad (over the whole input)", "0.01")
    .action(async (o: { encoder: string; data: string; out: string; pool: string; featureLayer: string; dtype: string; batchSize: string; shardSize: string; maxErrorRate: string }) => {
      if (!["float32", "bfloat16", "float16"].includes(o.dtype)) throw new Error(`--dtype ${o.dtype}: expected float32, bfloat16 or float16`);
      const m = await extractTargets({
        encoderDir: o.encoder, data: parseDataSpec(o.data), out: o.out, pool: o.pool, featureLayer: Number(o.featureLayer),
        dtype: o.dtype as DType, batchSize: Number(o.batchSize), shardSize: Number(o.shardSize), maxErrorRate: parseRate("--max-error-rate", o.maxErrorRate),
      });
      console.log(formatExtraction(o.out, m));
    });
}
