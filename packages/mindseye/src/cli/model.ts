// `mindseye model inspect <dir> [--json]`: what a checkpoint directory holds. config.json's
// model_type picks the family, the weights are loaded (so a checkpoint that does not fit its config
// fails here, with the loader's list of missing, unexpected and mis-shaped weights), and the report
// gives the architecture's key numbers, parameter counts per top-level module and the level below,
// trainable vs frozen, dtypes, tied weights, and the directory's files with their sizes.
//
// Weights load in the checkpoint's own floating dtype when it has one (a bf16 checkpoint stays bf16,
// so inspecting takes the memory of the files), else float32. "Frozen" is what MindsEye's training
// stages freeze in the family: the vision tower of a MindsEye VLM (vlm-base, latent-pretrain and
// finetune train everything else); the other families as loaded are fully trainable.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { io, nn, type DType } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { resolveModelRef } from "../config/hub.js";
import { readHfConfig } from "../config/hf.js";
import { didYouMean } from "../data/formats/index.js";
import { summarize } from "../models/pretrained.js";
import { Qwen2ForCausalLM, type ResolvedQwen2Config } from "../models/qwen2.js";
import { Qwen2_5_VLForConditionalGeneration } from "../models/qwen2_5_vl.js";
import { VitVisionModel, type ResolvedVitConfig } from "../models/vit.js";
import { MindsEyeVLM, imageTokenCount, VLM_MODEL_TYPE } from "../models/vlm.js";
import { LlamaForCausalLM, type ResolvedLlamaConfig } from "../models/llama.js";
import { LlavaForConditionalGeneration, type LlavaTextConfig } from "../models/llava.js";
import { InternVisionModel, INTERN_VIT_MODEL_TYPE, type ResolvedInternVitConfig } from "../models/intern_vit.js";
import { InternLM2ForCausalLM, type ResolvedInternLM2Config } from "../models/internlm2.js";
import { InternVLChatModel, type InternVLLanguageConfig } from "../models/internvl.js";

type Value = number | string | boolean | readonly number[] | null;
/** Key numbers of an architecture, by part (text, vision, …), under config.json's field names. */
export type Architecture = Record<string, Record<string, Value>>;

interface Family<M extends nn.Module> {
  /** The class it loads as (HF's name where HF has one). */
  className: string;
  /** config.json model_type values it reads. */
  modelTypes: readonly string[];
  load(dir: string, dtype: DType): M;
  architecture(m: M): Architecture;
  /** Top-level modules MindsEye's training freezes in this family. */
  frozen: readonly string[];
}

function textArchitecture(c: ResolvedQwen2Config): Record<string, Value> {
  return {
    vocab_size: c.vocabSize, hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize, num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads, num_key_value_heads: c.numKeyValueHeads, head_dim: c.headDim,
    tie_word_embeddings: c.tieWordEmbeddings, rope_theta: c.ropeTheta, max_position_embeddings: c.maxPositionEmbeddings,
  };
}

function llamaArchitecture(c: ResolvedLlamaConfig): Record<string, Value> {
  const s = c.ropeScaling;
  return {
    vocab_size: c.vocabSize, hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize, num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads, num_key_value_heads: c.numKeyValueHeads, head_dim: c.headDim,
    tie_word_embeddings: c.tieWordEmbeddings, rope_theta: c.ropeTheta, rope_scaling: s === null ? null : `${s.ropeType} ×${s.factor}`,
    attention_bias: c.attentionBias, mlp_bias: c.mlpBias, max_position_embeddings: c.maxPositionEmbeddings,
  };
}

function llavaTextArchitecture(t: LlavaTextConfig): Record<string, Value> {
  return { model_type: t.modelType, ...(t.modelType === "llama" ? llamaArchitecture(t.config) : textArchitecture(t.config)) };
}

function internLM2Architecture(c: ResolvedInternLM2Config): Record<string, Value> {
  const s = c.ropeScaling;
  return {
    vocab_size: c.vocabSize, hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize, num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads, num_key_value_heads: c.numKeyValueHeads, head_dim: c.headDim,
    tie_word_embeddings: c.tieWordEmbeddings, rope_theta: c.ropeTheta, rope_scaling: s === null ? null : `${s.type} ×${s.factor}`,
    bias: c.bias, max_position_embeddings: c.maxPositionEmbeddings,
  };
}

function internVLTextArchitecture(l: InternVLLanguageConfig): Record<string, Value> {
  const text = l.architecture === "InternLM2ForCausalLM" ? internLM2Architecture(l.config)
    : l.architecture === "Qwen2ForCausalLM" ? textArchitecture(l.config) : llamaArchitecture(l.config);
  return { architecture: l.architecture, ...text };
}

function internVitArchitecture(c: ResolvedInternVitConfig): Record<string, Value> {
  return {
    hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize, num_hidden_layers: c.numHiddenLayers, num_attention_heads: c.numAttentionHeads,
    image_size: c.imageSize, patch_size: c.patchSize, patches: c.gridSize * c.gridSize, norm_type: c.normType, qk_normalization: c.qkNormalization, qkv_bias: c.qkvBias,
  };
}

function vitArchitecture(c: ResolvedVitConfig): Record<string, Value> {
  return {
    variant: c.variant, hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize, num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads, image_size: c.imageSize, patch_size: c.patchSize, patches: c.gridSize * c.gridSize,
    class_token: c.hasClassToken, pooling_head: c.useHead, hidden_act: c.hiddenAct,
  };
}

const family = <M extends nn.Module>(f: Family<M>): Family<nn.Module> => f as unknown as Family<nn.Module>;

const FAMILY_LIST: readonly Family<nn.Module>[] = [
  family<Qwen2ForCausalLM>({
    className: "Qwen2ForCausalLM", modelTypes: ["qwen2"], frozen: [],
    load: (dir, dtype) => Qwen2ForCausalLM.fromPretrained(dir, { dtype: lmDtype(dtype) }),
    architecture: (m) => ({ text: textArchitecture(m.cfg) }),
  }),
  family<Qwen2_5_VLForConditionalGeneration>({
    className: "Qwen2_5_VLForConditionalGeneration", modelTypes: ["qwen2_5_vl"], frozen: [],
    load: (dir, dtype) => Qwen2_5_VLForConditionalGeneration.fromPretrained(dir, { dtype: lmDtype(dtype) }),
    architecture: (m) => {
      const v = m.config.vision;
      return {
        vision: {
          depth: v.depth, hidden_size: v.hiddenSize, intermediate_size: v.intermediateSize, num_heads: v.numHeads, patch_size: v.patchSize,
          spatial_merge_size: v.spatialMergeSize, window_size: v.windowSize, fullatt_block_indexes: v.fullattBlockIndexes, out_hidden_size: v.outHiddenSize,
        },
        text: textArchitecture(m.config.text),
        multimodal: { mrope_section: m.config.mropeSection, image_token_id: m.config.imageTokenId },
      };
    },
  }),
  family<VitVisionModel>({
    className: "VitVisionModel (CLIPVisionModel / SiglipVisionModel)", modelTypes: ["clip", "siglip", "clip_vision_model", "siglip_vision_model"], frozen: [],
    load: (dir, dtype) => VitVisionModel.fromPretrained(dir, { dtype }),
    architecture: (m) => ({ vision: vitArchitecture(m.config) }),
  }),
  family<MindsEyeVLM>({
    className: "MindsEyeVLM", modelTypes: [VLM_MODEL_TYPE], frozen: ["vision_tower"],
    load: (dir, dtype) => MindsEyeVLM.fromPretrained(dir, { dtype }),
    architecture: (m) => {
      const c = m.config, head = c.latentHead;
      return {
        vision: vitArchitecture(c.vision),
        projector: { vision_feature_layer: c.visionFeatureLayer, vision_feature_select_strategy: c.visionFeatureSelectStrategy, image_tokens: imageTokenCount(c), image_token_index: c.imageTokenId },
        text: textArchitecture(c.text),
        ...(head ? { latent_head: { type: head.type, input_size: head.inputSize, hidden_size: head.hiddenSize, latent_size: head.latentSize, latents: c.latentTokenIds.length } } : {}),
      };
    },
  }),
  family<LlamaForCausalLM>({
    className: "LlamaForCausalLM", modelTypes: ["llama"], frozen: [],
    load: (dir, dtype) => LlamaForCausalLM.fromPretrained(dir, { dtype: lmDtype(dtype) }),
    architecture: (m) => ({ text: llamaArchitecture(m.cfg) }),
  }),
  family<LlavaForConditionalGeneration>({
    className: "LlavaForConditionalGeneration", modelTypes: ["llava"], frozen: [],
    load: (dir, dtype) => LlavaForConditionalGeneration.fromPretrained(dir, { dtype: lmDtype(dtype) }),
    architecture: (m) => {
      const c = m.config;
      return {
        vision: vitArchitecture(c.vision),
        projector: { vision_feature_layer: c.visionFeatureLayer, vision_feature_select_strategy: c.visionFeatureSelectStrategy, image_seq_length: c.imageSeqLength, image_token_index: c.imageTokenIndex },
        text: llavaTextArchitecture(c.text),
      };
    },
  }),
  family<InternLM2ForCausalLM>({
    className: "InternLM2ForCausalLM", modelTypes: ["internlm2"], frozen: [],
    load: (dir, dtype) => InternLM2ForCausalLM.fromPretrained(dir, { dtype: lmDtype(dtype) }),
    architecture: (m) => ({ text: internLM2Architecture(m.cfg) }),
  }),
  family<InternVisionModel>({
    className: "InternVisionModel", modelTypes: [INTERN_VIT_MODEL_TYPE], frozen: [],
    load: (dir, dtype) => InternVisionModel.fromPretrained(dir, { dtype }),
    architecture: (m) => ({ vision: internVitArchitecture(m.config) }),
  }),
  family<InternVLChatModel>({
    className: "InternVLChatModel", modelTypes: ["internvl_chat"], frozen: [],
    load: (dir, dtype) => InternVLChatModel.fromPretrained(dir, { dtype: lmDtype(dtype) }),
    architecture: (m) => {
      const c = m.config;
      return {
        vision: internVitArchitecture(c.vision),
        projector: { select_layer: c.selectLayer, downsample_ratio: c.downsampleRatio, ps_version: c.psVersion, num_image_token: c.numImageToken, img_context_token_id: c.imgContextTokenId },
        text: internVLTextArchitecture(c.llm),
      };
    },
  }),
];

function lmDtype(d: DType): "float32" | "bfloat16" | "float16" {
  if (d !== "float32" && d !== "bfloat16" && d !== "float16") throw new ConfigError(`Qwen2, Llama, LLaVA, InternLM2 and InternVL models load as float32, bfloat16 or float16, not ${d}`);
  return d;
}

/** The families by model_type; a model_type claimed twice is an error. */
export function createFamilyRegistry(list: readonly Family<nn.Module>[]): ReadonlyMap<string, Family<nn.Module>> {
  const map = new Map<string, Family<nn.Module>>();
  for (const f of list) {
    for (const t of f.modelTypes) {
      if (map.has(t)) throw new Error(`model_type "${t}" is claimed by ${map.get(t)!.className} and ${f.className}`);
      map.set(t, f);
    }
  }
  return map;
}

export const FAMILIES = createFamilyRegistry(FAMILY_LIST);

// ---- the report --------------------------------------------------------------------------------

export interface ModuleRow { name: string; parameters: number; trainable: number; dtypes: string[]; children: Omit<ModuleRow, "children">[] }
export interface FileRow { name: string; bytes: number; /** safetensors files: tensor count per stored dtype ("F32", "BF16", …). */ tensors?: Record<string, number> }

export interface InspectReport {
  dir: string;
  modelType: string;
  family: string;
  architecture: Architecture;
  /** The dtype the weights were loaded in. */
  loadedAs: DType;
  parameters: { total: number; trainable: number; frozen: number; frozenModules: string[] };
  dtypes: string[];
  modules: ModuleRow[];
  /** Weights saved once and shared: "lm_head.weight = model.embed_tokens.weight". */
  tied: string[];
  files: FileRow[];
}

const SAFETENSORS_DTYPES: Readonly<Record<string, DType>> = { F32: "float32", BF16: "bfloat16", F16: "float16", F64: "float64" };
const FLOATING = new Set(["F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"]);

/** The checkpoint's floating dtype when all its floating tensors share one the engine has, else float32. */
function storedDtype(files: FileRow[]): DType {
  const kinds = new Set(files.flatMap((f) => Object.keys(f.tensors ?? {})).filter((d) => FLOATING.has(d)));
  const only = kinds.size === 1 ? SAFETENSORS_DTYPES[[...kinds][0]!] : undefined;
  return only ?? "float32";
}

function listFiles(dir: string): FileRow[] {
  return readdirSync(dir).sort().filter((f) => statSync(join(dir, f)).isFile()).map((name) => {
    const bytes = statSync(join(dir, name)).size;
    if (!name.endsWith(".safetensors")) return { name, bytes };
    const tensors: Record<string, number> = {};
    for (const t of io.readHeader(join(dir, name)).tensors.values()) tensors[t.dtype] = (tensors[t.dtype] ?? 0) + 1;
    return { name, bytes, tensors };
  });
}

/** Names under which one tensor appears after its first (tied weights). */
function tiedWeights(m: nn.Module): string[] {
  const first = new Map<unknown, string>();
  const out: string[] = [];
  for (const [name, t] of m.stateDict()) {
    const seen = first.get(t);
    if (seen === undefined) first.set(t, name);
    else out.push(`${name} = ${seen}`);
  }
  return out;
}

/**
 * Loads a checkpoint directory (or a run folder holding one in model/) by its model_type and
 * reports its architecture, parameters and files.
 * ```ts
 * const r = inspectModel("runs/demo/stages/pretrain-latent/model");
 * r.parameters.total; r.modules.map((m) => [m.name, m.parameters]);
 * ```
 */
export function inspectModel(ref: string): InspectReport {
  const path = resolveModelRef(ref); // a directory, or a Hugging Face id in the hub cache
  const dir = !existsSync(join(path, "config.json")) && existsSync(join(path, "model", "config.json")) ? join(path, "model") : path;
  const json = readHfConfig(dir);
  const modelType = json.model_type;
  const known = [...FAMILIES.keys()];
  if (typeof modelType !== "string") throw new ConfigError(`${join(dir, "config.json")}: no "model_type" string; MindsEye loads ${known.join(", ")}`);
  const f = FAMILIES.get(modelType);
  if (f === undefined) throw new ConfigError(`${join(dir, "config.json")}: model_type "${modelType}" is not a family MindsEye loads${didYouMean(modelType, known)}; known model types: ${known.join(", ")}`);

  const files = listFiles(dir);
  const loadedAs = storedDtype(files);
  const model = f.load(dir, loadedAs);
  try {
    for (const name of f.frozen) {
      const child = model.namedChildren().find(([n]) => n === name)?.[1];
      if (child === undefined) throw new Error(`${f.className} has no module ${name} to freeze`);
      child.requiresGrad_(false);
    }
    const second = summarize(model, 2);
    const modules = summarize(model, 1).map((row): ModuleRow => ({
      ...row, children: second.filter((c) => c.name.startsWith(`${row.name}.`)),
    }));
    const total = model.numParameters(), trainable = model.numParameters({ trainableOnly: true });
    return {
      dir, modelType, family: f.className, architecture: f.architecture(model), loadedAs,
      parameters: { total, trainable, frozen: total - trainable, frozenModules: [...f.frozen] },
      dtypes: [...new Set(model.parameters().map((p) => p.dtype))].sort(),
      modules, tied: tiedWeights(model), files,
    };
  } finally {
    model.parameters().forEach((p) => p.dispose());
  }
}

const count = (n: number) => n.toLocaleString("en-US");

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

function formatValue(v: Value): string {
  return Array.isArray(v) ? `[${v.join(", ")}]` : String(v);
}

/** The text `mindseye model inspect` prints. */
export function formatInspect(r: InspectReport): string {
  const p = r.parameters;
  const rows = r.modules.flatMap((m) => [m, ...m.children.map((c) => ({ ...c, name: `  ${c.name}` }))]);
  const w = Math.max(6, ...rows.map((m) => m.name.length));
  const row = (name: string, n: string, t: string, d: string) => `  ${name.padEnd(w)}  ${n.padStart(14)}  ${t.padStart(14)}  ${d}`;
  const partW = Math.max(...Object.keys(r.architecture).map((k) => k.length));
  const fileW = Math.max(...r.files.map((f) => f.name.length));
  const totalBytes = r.files.reduce((a, f) => a + f.bytes, 0);
  const frozen = p.frozenModules.length > 0 ? `; frozen ${count(p.frozen)}: ${p.frozenModules.join(", ")}, as MindsEye's stages train this family` : "; nothing frozen";
  return [
    `${r.dir}: model_type ${r.modelType} → ${r.family}, loaded as ${r.loadedAs}`,
    "architecture",
    ...Object.entries(r.architecture).map(([part, fields]) => `  ${part.padEnd(partW)}  ${Object.entries(fields).map(([k, v]) => `${k} ${formatValue(v)}`).join(", ")}`),
    `parameters: ${count(p.total)} (trainable ${count(p.trainable)}${frozen}); dtypes ${r.dtypes.join(", ")}`,
    row("module", "parameters", "trainable", "dtypes"),
    ...rows.map((m) => row(m.name, count(m.parameters), count(m.trainable), m.dtypes.join(", "))),
    ...(r.tied.length > 0 ? [`tied (saved once, counted once): ${r.tied.join("; ")}`] : []),
    `files (${formatBytes(totalBytes)})`,
    ...r.files.map((f) => `  ${f.name.padEnd(fileW)}  ${formatBytes(f.bytes).padStart(10)}${f.tensors ? `  ${Object.entries(f.tensors).map(([d, n]) => `${n} × ${d}`).join(", ")} tensors` : ""}`),
  ].join("\n");
}

export function registerModelCommand(program: Command): void {
  const model = program.command("model").description("model checkpoint directories");
  model
    .command("inspect")
    .description("load a checkpoint by its config.json model_type and print its architecture, parameter counts, dtypes and files")
    .argument("<dir>", "a checkpoint directory (config.json + *.safetensors), or a run folder holding one in model/")
    .option("--json", "print as JSON")
    .action((dir: string, o: { json?: boolean }) => {
      const r = inspectModel(dir);
      console.log(o.json ? JSON.stringify(r, null, 2) : formatInspect(r));
    });
}
