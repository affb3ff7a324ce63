// `mindseye plan --config <recipe.yaml | model dir | config.json> [--world-size N --gpu-memory 80GiB
// --zero 0|1|2 --lora --checkpointing]`: per-GPU memory of a training run, from config.json alone
// (train/plan.ts has the formulas and their sources): Qwen2, Llama, InternLM2, Qwen2.5-VL, LLaVA
// and InternVL. A recipe gives its model (a directory or a hub id), batch size, ZeRO stage and
// checkpointing as defaults. Prints every ZeRO stage with and without checkpointing, marks the
// one asked for, and says whether it fits.
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import { parse as parseYaml } from "yaml";
import { ConfigError } from "../config/errors.js";
import { resolveModelRef } from "../config/hub.js";
import type { HfJson } from "../config/hf.js";
import { fromHfConfig } from "../models/qwen2.js";
import { qwen2_5_vlFromHfConfig } from "../models/qwen2_5_vl.js";
import { llamaFromHfConfig } from "../models/llama.js";
import { internLM2FromHfConfig } from "../models/internlm2.js";
import { llavaFromHfConfig } from "../models/llava.js";
import { internVLFromHfConfig } from "../models/internvl.js";
import {
  countParameters, estimateMemory, fits, parseBytes, qwen2TextShape, llamaTextShape, internLM2TextShape, qwen2_5_vlVisionShape, llavaVisionShape, internVLVisionShape,
  type ModelShape, type PlanOptions,
} from "../train/plan.js";

interface PlanFlags {
  config: string;
  worldSize: string;
  gpuMemory: string;
  /** Absent: the recipe's train.zero_stage, else 0. */
  zero?: string;
  lora?: boolean;
  loraR: string;
  /** Absent: the recipe's train.gradient_checkpointing, else off. */
  checkpointing?: boolean;
  batchSize?: string;
  seqLen: string;
  imagePatches: string;
  dtype: string;
}

/** The model's shape from a config.json: Qwen2, Llama, InternLM2, Qwen2.5-VL, LLaVA or InternVL. */
export function shapeFromHfConfig(json: HfJson, where: string): ModelShape {
  switch (json.model_type) {
    case "qwen2": return { text: qwen2TextShape(fromHfConfig(json, where)), vision: null };
    case "llama": return { text: llamaTextShape(llamaFromHfConfig(json, where)), vision: null };
    case "internlm2": return { text: internLM2TextShape(internLM2FromHfConfig(json, where)), vision: null };
    case "qwen2_5_vl": {
      const c = qwen2_5_vlFromHfConfig(json, where);
      return { text: qwen2TextShape(c.text), vision: qwen2_5_vlVisionShape(c.vision) };
    }
    case "llava": {
      const c = llavaFromHfConfig(json, where);
      const text = c.text.modelType === "llama" ? llamaTextShape(c.text.config) : qwen2TextShape(c.text.config);
      return { text, vision: llavaVisionShape(c.vision, text.hiddenSize, c.multimodalProjectorBias) };
    }
    case "internvl_chat": {
      const c = internVLFromHfConfig(json, where);
      const l = c.llm;
      const text = l.architecture === "InternLM2ForCausalLM" ? internLM2TextShape(l.config) : l.architecture === "Qwen2ForCausalLM" ? qwen2TextShape(l.config) : llamaTextShape(l.config);
      return { text, vision: internVLVisionShape(c.vision, text.hiddenSize, c.downsampleRatio) };
    }
    default:
      throw new ConfigError(`${where}: model_type ${JSON.stringify(json.model_type)} is not one plan reads (qwen2, llama, internlm2, qwen2_5_vl, llava, internvl_chat)`);
  }
}

/** What a recipe's train section sets for the plan (nothing when --config is a model). */
interface RecipeTrain { batchSize: number | null; zeroStage: number | null; checkpointing: boolean | null }

/** config.json and, if the path is a recipe, its training settings, from --config. */
function readTarget(path: string): { json: HfJson; where: string } & RecipeTrain {
  if (!existsSync(path)) throw new ConfigError(`--config ${path}: no such file or directory`);
  if (statSync(path).isDirectory()) return readTarget(join(path, "config.json"));
  if (/\.ya?ml$/.test(path)) {
    const recipe = parseYaml(readFileSync(path, "utf8")) as { model?: string; base?: string; train?: { batch_size?: number; zero_stage?: number; gradient_checkpointing?: boolean } };
    const model = recipe.model ?? recipe.base;
    if (typeof model !== "string") throw new ConfigError(`${path}: the recipe names no model ("model" or "base"); pass the model's config.json to --config instead`);
    // a directory from the repository root, where mindseye runs, or a Hugging Face id in the hub cache
    const inner = readTarget(resolve(resolveModelRef(model)));
    const t = recipe.train ?? {};
    return { ...inner, batchSize: t.batch_size ?? null, zeroStage: t.zero_stage ?? null, checkpointing: t.gradient_checkpointing ?? null };
  }
  return { json: JSON.parse(readFileSync(path, "utf8")) as HfJson, where: path, batchSize: null, zeroStage: null, checkpointing: null };
}

const GB = (b: number) => `${(b / 1e9).toFixed(1)}`;

function int(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new ConfigError(`${flag} must be an integer ≥ ${min}, got ${text}`);
  return n;
}

/** The report as lines (exported for tests). */
export function planReport(f: PlanFlags): { lines: string[]; fits: boolean } {
  const target = readTarget(f.config);
  const shape = shapeFromHfConfig(target.json, target.where);
  const zero = f.zero !== undefined ? int(f.zero, "--zero", 0) : target.zeroStage ?? 0;
  if (zero > 2) throw new ConfigError(`--zero must be 0, 1 or 2, got ${f.zero}`);
  if (f.dtype !== "bfloat16" && f.dtype !== "float32") throw new ConfigError(`--dtype must be bfloat16 or float32, got ${f.dtype}`);
  const gpu = parseBytes(f.gpuMemory);
  const base: PlanOptions = {
    worldSize: int(f.worldSize, "--world-size", 1),
    zero: zero as 0 | 1 | 2,
    checkpointing: f.checkpointing ?? target.checkpointing ?? false,
    loraRank: f.lora ? int(f.loraR, "--lora-r", 1) : null,
    batchSize: f.batchSize !== undefined ? int(f.batchSize, "--batch-size", 1) : target.batchSize ?? 1,
    seqLen: int(f.seqLen, "--seq-len", 1),
    imagePatches: shape.vision === null ? 0 : int(f.imagePatches, "--image-patches", 0),
    dtype: f.dtype,
  };
  const p = countParameters(shape);
  const lines = [
    `${target.where}: ${(p.total / 1e9).toFixed(3)} B parameters (text ${p.text.toLocaleString("en-US")}, vision ${p.vision.toLocaleString("en-US")})`,
    `per GPU: batch ${base.batchSize} × ${base.seqLen} tokens${base.imagePatches ? `, ${base.imagePatches} vision patches per sequence` : ""}, ${base.dtype}, ${base.worldSize} GPU(s) of ${GB(gpu)} GB, ${base.loraRank === null ? "full fine-tune" : `LoRA r=${base.loraRank}`}`,
    "",
    "  zero  ckpt  weights  grads  optim  activ   total (GB)  fits",
  ];
  let chosenFits = false;
  for (const z of [0, 1, 2] as const) {
    for (const ck of [false, true]) {
      const row = estimateMemory(shape, { ...base, zero: z, checkpointing: ck });
      const ok = fits(row, gpu);
      const chosen = z === base.zero && ck === base.checkpointing;
      if (chosen) chosenFits = ok;
      lines.push(`${chosen ? "→" : " "} ${String(z).padStart(4)}  ${(ck ? "on" : "off").padStart(4)}  ${GB(row.weights).padStart(7)}  ${GB(row.gradients).padStart(5)}  ${GB(row.optimizer).padStart(5)}  ${GB(row.activations).padStart(5)}  ${GB(row.total).padStart(11)}  ${ok ? "yes" : "no"}`);
    }
  }
  lines.push("", `→ the configuration asked for ${chosenFits ? "fits" : "does NOT fit"} (fits: total ≤ 90% of GPU memory; see train/plan.ts for the formulas and their sources)`,
    "  the trainer implements zero 0, 1 and 2 (train.zero_stage); zero 2 shards the gradients after backward, so its total counts the full gradients at the end of backward");
  return { lines, fits: chosenFits };
}

export function registerPlanCommand(program: Command): void {
  program
    .command("plan")
    .description("per-GPU memory of a training run (weights, gradients, AdamW state, activations) from config.json, for DDP / ZeRO-1/2, checkpointing and LoRA")
    .requiredOption("--config <path>", "a recipe (its model or base directory), a model directory or a config.json")
    .option("--world-size <n>", "data-parallel GPUs", "1")
    .option("--gpu-memory <size>", "memory of one GPU", "80GiB")
    .option("--zero <stage>", "ZeRO stage: 0 (plain DDP), 1 (optimizer state sharded) or 2 (and gradients) (default: the recipe's train.zero_stage, else 0)")
    .option("--lora", "LoRA on the language model's projections (base and vision tower frozen)")
    .option("--lora-r <r>", "LoRA rank", "16")
    .option("--checkpointing", "gradient checkpointing per layer (default: the recipe's train.gradient_checkpointing)")
    .option("--no-checkpointing", "no gradient checkpointing, whatever the recipe says")
    .option("--batch-size <n>", "sequences per GPU per micro-step (default: the recipe's train.batch_size, else 1)")
    .option("--seq-len <n>", "tokens per sequence", "2048")
    .option("--image-patches <n>", "vision patches per sequence (1024: one 448×448 image in 14-px patches)", "1024")
    .option("--dtype <dtype>", "bfloat16 (fp32 master weights) or float32", "bfloat16")
    .action((f: PlanFlags) => {
      const { lines } = planReport(f);
      for (const l of lines) console.log(l);
    });
}
