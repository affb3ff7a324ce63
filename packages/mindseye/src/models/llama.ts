// Llama decoder language models (LlamaForCausalLM: Llama 2 and 3, Vicuna, TinyLlama, ...), computed
// as Hugging Face transformers' modeling_llama.py computes them, with its weight names, so HF
// checkpoints load 1:1.
//
//   const model = LlamaForCausalLM.fromPretrained("Llama-3.2-1B/", { dtype: "bfloat16" });
//   const { logits } = torch.noGrad(() => model.forward({ inputIds, attentionMask }));   // [B, T, V]
//
// Llama is Qwen2's decoder with three differences, so the shared machinery (masks, KV cache, the
// rotary-attention core, the decoder-stack forward) is imported from qwen2.ts:
// - biases: q/k/v/o_proj only under attention_bias, gate/up/down_proj only under mlp_bias
//   (Qwen2: q/k/v always, nothing else);
// - head_dim may be set apart from hidden_size / num_attention_heads (q_proj is [H·hd, D]);
// - rope_scaling rescales RoPE's frequencies: "linear" (positions interpolated by 1/factor) and
//   "llama3" (Llama 3.1+: long wavelengths interpolated, short ones kept, a smooth band between).
//
// The pieces, top to bottom: config (typed, validated, HF config.json mapping, presets) → RoPE
// frequencies → attention, MLP, decoder layer → LlamaModel → LlamaForCausalLM (+ loading, saving).
// Golden fixture: fixtures/models/make_llama_golden.py.
import { torch, nn, F, type Tensor, type DType, type Device } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { readHfConfig, hfField, ensure, type HfJson } from "../config/hf.js";
import { didYouMean } from "../data/formats/index.js";
import { loadCheckpointInto, saveCheckpoint, readCheckpointHeader, checkTensorShape, checkLayerCount, type CheckpointHeader } from "./pretrained.js";
import {
  KVCache, QWEN2_LIMITS, ropeAttention, rotaryInvFreq, rotaryFromInvFreq, decoderForward, initCausalLmHead, keepLastPositions, decoderRename,
  type RotaryEmbeddings, type AttentionMask, type DecoderLayerInput, type LayerOptions,
  type Qwen2ModelInput, type Qwen2ModelOutput, type Qwen2CausalLMInput, type Qwen2CausalLMOutput, type Qwen2Dtype, type PretrainedOptions,
} from "./qwen2.js";

// =============================================================================================
// Config

export type LlamaDtype = Qwen2Dtype;

/** RoPE frequency rescaling (HF rope_scaling); null is plain RoPE. */
export type LlamaRopeScaling =
  | {
    /** Every frequency divided by factor: positions interpolated (LongChat, Vicuna-16k). */
    ropeType: "linear";
    factor: number;
  }
  | {
    /** Llama 3.1+: wavelengths above originalMax / lowFreqFactor divided by factor, below originalMax / highFreqFactor kept, interpolated between. */
    ropeType: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    /** Context length of the pretraining before the extension (8192 for Llama 3). */
    originalMaxPositionEmbeddings: number;
  };

export interface LlamaConfig {
  /** Rows of embed_tokens and lm_head. */
  vocabSize: number;
  /** Width D of the residual stream. */
  hiddenSize: number;
  /** Width of the SwiGLU MLP's hidden layer. */
  intermediateSize: number;
  /** Number of decoder layers L. */
  numHiddenLayers: number;
  /** Query heads H. */
  numAttentionHeads: number;
  /** Key/value heads (grouped-query attention); must divide numAttentionHeads. */
  numKeyValueHeads: number;
  /** Per-head width; null: hiddenSize / numAttentionHeads (HF's default). */
  headDim: number | null;
  /** MLP activation; Llama uses SiLU (SwiGLU) only. */
  hiddenAct: "silu";
  /** Longest context the checkpoint was trained for (informational: RoPE has no table). */
  maxPositionEmbeddings: number;
  /** RMSNorm epsilon (Llama 2 and 3: 1e-5). */
  rmsNormEps: number;
  /** RoPE base: inv_freq = 1 / theta^(2i / headDim), before rope_scaling. */
  ropeTheta: number;
  /** RoPE frequency rescaling, or null. */
  ropeScaling: LlamaRopeScaling | null;
  /** q/k/v/o_proj have biases (false in every Meta release). */
  attentionBias: boolean;
  /** gate/up/down_proj have biases (false in every Meta release). */
  mlpBias: boolean;
  /** Dropout on attention probabilities while training. */
  attentionDropout: number;
  /** lm_head shares embed_tokens' weight (and is absent from checkpoints); Llama 3.2 1B/3B tie. */
  tieWordEmbeddings: boolean;
  /** Beginning-of-sequence token id. */
  bosTokenId: number | null;
  /** End-of-sequence token id(s): default stop tokens for generation. */
  eosTokenId: number | number[] | null;
  /** Padding token id, if the tokenizer has one. */
  padTokenId: number | null;
  /** Dtype the checkpoint's weights are stored in (config.json "torch_dtype"). */
  torchDtype: LlamaDtype;
  /** Std of the normal initialisation of new weights (HF's _init_weights). */
  initializerRange: number;
}

export type ResolvedLlamaConfig = Readonly<Omit<LlamaConfig, "headDim"> & {
  /** The per-head width in use (config.json's head_dim, or hiddenSize / numAttentionHeads). */
  headDim: number;
}>;

/** HF's LlamaConfig class defaults (configuration_llama.py): a config.json field left out takes these. */
export const LLAMA_DEFAULTS: Readonly<LlamaConfig> = Object.freeze({
  vocabSize: 32000,
  hiddenSize: 4096,
  intermediateSize: 11008,
  numHiddenLayers: 32,
  numAttentionHeads: 32,
  numKeyValueHeads: 32,
  headDim: null,
  hiddenAct: "silu",
  maxPositionEmbeddings: 2048,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  ropeScaling: null,
  attentionBias: false,
  mlpBias: false,
  attentionDropout: 0,
  tieWordEmbeddings: false,
  bosTokenId: 1,
  eosTokenId: 2,
  padTokenId: null,
  torchDtype: "float32",
  initializerRange: 0.02,
});

const DTYPES: readonly LlamaDtype[] = ["float32", "bfloat16", "float16"];
const isPosInt = (x: unknown): x is number => typeof x === "number" && Number.isInteger(x) && x > 0;
const isTokenId = (x: unknown): boolean => typeof x === "number" && Number.isInteger(x) && x >= 0;
const isPosNum = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x) && x > 0;

/** Qwen2's bounds (far past Llama-3.1-405B: hidden 16384, 126 layers, MLP 53248), plus head_dim. */
export const LLAMA_LIMITS = Object.freeze({ ...QWEN2_LIMITS, headDim: 1 << 12 });

/**
 * Defaults + overrides, validated once; headDim resolved.
 * ```ts
 * const cfg = resolveLlama({ ...LLAMA_PRESETS.tiny.config, numHiddenLayers: 4 });
 * ```
 */
export function resolveLlama(p: Partial<LlamaConfig>, where = "llama"): ResolvedLlamaConfig {
  for (const k of Object.keys(p)) {
    if (!(k in LLAMA_DEFAULTS)) throw new ConfigError(`${where}.${k}: unknown Llama config field${didYouMean(k, Object.keys(LLAMA_DEFAULTS))} (known: ${Object.keys(LLAMA_DEFAULTS).join(", ")})`);
  }
  return validated({ ...LLAMA_DEFAULTS, ...p }, (k) => `${where}.${k}`);
}

/** Checks every field (`at` names a field in errors) and resolves headDim. */
function validated(c: LlamaConfig, at: (k: keyof LlamaConfig) => string): ResolvedLlamaConfig {
  for (const k of ["vocabSize", "hiddenSize", "intermediateSize", "numHiddenLayers", "numAttentionHeads", "numKeyValueHeads", "maxPositionEmbeddings"] as const) {
    ensure(isPosInt(c[k]), at(k), `must be a positive integer, got ${JSON.stringify(c[k])}`);
    ensure(c[k] <= LLAMA_LIMITS[k], at(k), `${c[k]} is beyond any real model (at most ${LLAMA_LIMITS[k]}); the config is broken`);
  }
  ensure(c.numAttentionHeads % c.numKeyValueHeads === 0, at("numKeyValueHeads"), `${c.numKeyValueHeads} must divide the number of attention heads ${c.numAttentionHeads} (grouped-query attention)`);
  if (c.headDim === null) {
    ensure(c.hiddenSize % c.numAttentionHeads === 0, at("hiddenSize"), `${c.hiddenSize} is not divisible by the number of attention heads ${c.numAttentionHeads} (or set head_dim)`);
  } else {
    ensure(isPosInt(c.headDim) && c.headDim <= LLAMA_LIMITS.headDim, at("headDim"), `must be a positive integer up to ${LLAMA_LIMITS.headDim} or null (hidden size / heads), got ${JSON.stringify(c.headDim)}`);
  }
  const headDim = c.headDim ?? c.hiddenSize / c.numAttentionHeads;
  ensure(headDim % 2 === 0, at(c.headDim === null ? "hiddenSize" : "headDim"), `head dim ${headDim} must be even for rotary embeddings`);
  ensure(c.hiddenAct === "silu", at("hiddenAct"), `must be "silu" (Llama's SwiGLU MLP), got ${JSON.stringify(c.hiddenAct)}`);
  ensure(isPosNum(c.rmsNormEps), at("rmsNormEps"), `must be a positive number, got ${JSON.stringify(c.rmsNormEps)}`);
  ensure(isPosNum(c.ropeTheta), at("ropeTheta"), `must be a positive number, got ${JSON.stringify(c.ropeTheta)}`);
  checkRopeScaling(c.ropeScaling, at("ropeScaling"));
  for (const k of ["attentionBias", "mlpBias", "tieWordEmbeddings"] as const) ensure(typeof c[k] === "boolean", at(k), `must be a boolean, got ${JSON.stringify(c[k])}`);
  ensure(typeof c.attentionDropout === "number" && c.attentionDropout >= 0 && c.attentionDropout < 1, at("attentionDropout"), `must be in [0, 1), got ${JSON.stringify(c.attentionDropout)}`);
  ensure(typeof c.initializerRange === "number" && c.initializerRange >= 0, at("initializerRange"), `must be a non-negative number, got ${JSON.stringify(c.initializerRange)}`);
  for (const k of ["bosTokenId", "padTokenId"] as const) ensure(c[k] === null || isTokenId(c[k]), at(k), `must be a token id or null, got ${JSON.stringify(c[k])}`);
  const eos = c.eosTokenId;
  ensure(eos === null || isTokenId(eos) || (Array.isArray(eos) && eos.every(isTokenId)), at("eosTokenId"), `must be a token id, a list of them, or null, got ${JSON.stringify(eos)}`);
  ensure(DTYPES.includes(c.torchDtype), at("torchDtype"), `must be one of ${DTYPES.join(", ")}, got ${JSON.stringify(c.torchDtype)}`);
  const ropeScaling = c.ropeScaling === null ? null : Object.freeze({ ...c.ropeScaling });
  return Object.freeze({ ...c, ropeScaling, eosTokenId: Array.isArray(eos) ? (Object.freeze([...eos]) as number[]) : eos, headDim });
}

function checkRopeScaling(s: LlamaRopeScaling | null, where: string): void {
  if (s === null) return;
  ensure(typeof s === "object", where, `must be an object or null, got ${JSON.stringify(s)}`);
  ensure(isPosNum(s.factor), `${where}.factor`, `must be a positive number, got ${JSON.stringify(s.factor)}`);
  if (s.ropeType === "linear") return;
  ensure(s.ropeType === "llama3", `${where}.ropeType`, `must be "linear" or "llama3", got ${JSON.stringify((s as { ropeType: unknown }).ropeType)}`);
  ensure(isPosNum(s.lowFreqFactor), `${where}.lowFreqFactor`, `must be a positive number, got ${JSON.stringify(s.lowFreqFactor)}`);
  ensure(isPosNum(s.highFreqFactor) && s.highFreqFactor > s.lowFreqFactor, `${where}.highFreqFactor`, `must be a number above lowFreqFactor ${s.lowFreqFactor}, got ${JSON.stringify(s.highFreqFactor)}`);
  ensure(isPosInt(s.originalMaxPositionEmbeddings), `${where}.originalMaxPositionEmbeddings`, `must be a positive integer, got ${JSON.stringify(s.originalMaxPositionEmbeddings)}`);
}

/** rope_scaling (or newer transformers' rope_parameters) -> [rope_theta override, scaling]. */
function ropeFromHf(json: HfJson, where: string): { theta: number | undefined; scaling: LlamaRopeScaling | null } {
  const fromParams = json.rope_parameters !== undefined && json.rope_parameters !== null;
  const key = fromParams ? "rope_parameters" : "rope_scaling";
  if (json[key] === undefined || json[key] === null) return { theta: undefined, scaling: null };
  const rs = hfField<HfJson>(json, key, "object", where);
  const w = `${where}: "${key}"`;
  const type = hfField<string>(rs, "rope_type", "string", w, hfField<string>(rs, "type", "string", w, "default"));
  const theta = fromParams ? hfField<number>(rs, "rope_theta", "number", w, hfField<number>(json, "rope_theta", "number", where, LLAMA_DEFAULTS.ropeTheta)) : undefined;
  if (type === "default") return { theta, scaling: null };
  const factor = hfField<number>(rs, "factor", "number", w);
  if (type === "linear") return { theta, scaling: { ropeType: "linear", factor } };
  if (type === "llama3") {
    return {
      theta,
      scaling: {
        ropeType: "llama3", factor,
        lowFreqFactor: hfField<number>(rs, "low_freq_factor", "number", w),
        highFreqFactor: hfField<number>(rs, "high_freq_factor", "number", w),
        originalMaxPositionEmbeddings: hfField<number>(rs, "original_max_position_embeddings", "integer", w),
      },
    };
  }
  throw new ConfigError(`${w}: RoPE type ${JSON.stringify(type)} is not supported (MindsEye's Llama implements "default", "linear" and "llama3"; dynamic NTK, yarn and longrope depend on the sequence length and are not implemented)`);
}

/**
 * A config from an HF config.json object (`where` names it in errors). Fields left out take HF's
 * LlamaConfig class defaults, as transformers does (llava-hf's text_config lists only a few);
 * unknown HF fields (transformers_version, pretraining_tp, ...) are ignored.
 */
export function llamaFromHfConfig(json: HfJson, where = "config.json"): ResolvedLlamaConfig {
  const d = LLAMA_DEFAULTS;
  if (json.model_type !== undefined) {
    const modelType = hfField<string>(json, "model_type", "string", where);
    ensure(modelType === "llama", `${where}: "model_type"`, `expected "llama", got ${JSON.stringify(modelType)} (this loader reads Llama-architecture language models)`);
  }
  if (json.architectures !== undefined) {
    const arch = hfField<unknown[]>(json, "architectures", "array", where);
    ensure(arch.every((a) => typeof a === "string" && a.startsWith("Llama")), `${where}: "architectures"`, `expected Llama architectures such as ["LlamaForCausalLM"], got ${JSON.stringify(arch)}`);
  }
  const hidden = hfField<string>(json, "hidden_act", "string", where, d.hiddenAct);
  const dtype = hfField<string>(json, "torch_dtype", "string", where, hfField<string>(json, "dtype", "string", where, d.torchDtype));
  ensure((DTYPES as readonly string[]).includes(dtype), `${where}: "torch_dtype"`, `must be one of ${DTYPES.join(", ")}, got ${JSON.stringify(dtype)}`);
  const eos = json.eos_token_id;
  if (eos !== undefined && eos !== null && !isTokenId(eos) && !(Array.isArray(eos) && eos.every(isTokenId))) {
    throw new ConfigError(`${where}: field "eos_token_id" must be a token id or a list of them, got ${JSON.stringify(eos)}`);
  }
  const heads = hfField<number>(json, "num_attention_heads", "integer", where, d.numAttentionHeads);
  const rope = ropeFromHf(json, where);
  const cfg: LlamaConfig = {
    vocabSize: hfField(json, "vocab_size", "integer", where, d.vocabSize),
    hiddenSize: hfField(json, "hidden_size", "integer", where, d.hiddenSize),
    intermediateSize: hfField(json, "intermediate_size", "integer", where, d.intermediateSize),
    numHiddenLayers: hfField(json, "num_hidden_layers", "integer", where, d.numHiddenLayers),
    numAttentionHeads: heads,
    numKeyValueHeads: hfField(json, "num_key_value_heads", "integer", where, heads),
    headDim: json.head_dim === undefined || json.head_dim === null ? null : hfField<number>(json, "head_dim", "integer", where),
    hiddenAct: hidden as "silu",
    maxPositionEmbeddings: hfField(json, "max_position_embeddings", "integer", where, d.maxPositionEmbeddings),
    rmsNormEps: hfField(json, "rms_norm_eps", "number", where, d.rmsNormEps),
    ropeTheta: rope.theta ?? hfField(json, "rope_theta", "number", where, d.ropeTheta),
    ropeScaling: rope.scaling,
    attentionBias: hfField(json, "attention_bias", "boolean", where, d.attentionBias),
    mlpBias: hfField(json, "mlp_bias", "boolean", where, d.mlpBias),
    attentionDropout: hfField(json, "attention_dropout", "number", where, d.attentionDropout),
    tieWordEmbeddings: hfField(json, "tie_word_embeddings", "boolean", where, d.tieWordEmbeddings),
    bosTokenId: tokenField(json, "bos_token_id", where, d.bosTokenId),
    eosTokenId: (eos === undefined ? d.eosTokenId : eos) as number | number[] | null,
    padTokenId: tokenField(json, "pad_token_id", where, d.padTokenId),
    torchDtype: dtype as LlamaDtype,
    initializerRange: hfField(json, "initializer_range", "number", where, d.initializerRange),
  };
  return validated(cfg, (k) => `${where}: "${HF_NAMES[k]}"`);
}

/** A token id field: absent takes the class default, an explicit null stays null (as HF). */
function tokenField(json: HfJson, key: string, where: string, fallback: number | null): number | null {
  if (json[key] === undefined) return fallback;
  return json[key] === null ? null : hfField<number>(json, key, "integer", where);
}

const HF_NAMES: Record<keyof LlamaConfig, string> = {
  vocabSize: "vocab_size", hiddenSize: "hidden_size", intermediateSize: "intermediate_size", numHiddenLayers: "num_hidden_layers",
  numAttentionHeads: "num_attention_heads", numKeyValueHeads: "num_key_value_heads", headDim: "head_dim", hiddenAct: "hidden_act",
  maxPositionEmbeddings: "max_position_embeddings", rmsNormEps: "rms_norm_eps", ropeTheta: "rope_theta", ropeScaling: "rope_scaling",
  attentionBias: "attention_bias", mlpBias: "mlp_bias", attentionDropout: "attention_dropout", tieWordEmbeddings: "tie_word_embeddings",
  bosTokenId: "bos_token_id", eosTokenId: "eos_token_id", padTokenId: "pad_token_id", torchDtype: "torch_dtype", initializerRange: "initializer_range",
};

/** The config.json HF writes for this config (model_type "llama", LlamaForCausalLM). */
export function llamaToHfConfig(cfg: ResolvedLlamaConfig): HfJson {
  const out: HfJson = { architectures: ["LlamaForCausalLM"], model_type: "llama" };
  for (const k of Object.keys(HF_NAMES) as (keyof LlamaConfig)[]) {
    const v = cfg[k];
    out[HF_NAMES[k]] = Array.isArray(v) ? [...v] : v;
  }
  const s = cfg.ropeScaling;
  out.rope_scaling = s === null ? null : s.ropeType === "linear" ? { rope_type: "linear", factor: s.factor } : {
    rope_type: "llama3", factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor,
    original_max_position_embeddings: s.originalMaxPositionEmbeddings,
  };
  out.pretraining_tp = 1;
  out.use_cache = true;
  return out;
}

export interface LlamaPreset {
  /** Where the numbers come from. */
  source: string;
  config: Partial<LlamaConfig>;
}

const LLAMA2_7B = {
  vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numHiddenLayers: 32, numAttentionHeads: 32, numKeyValueHeads: 32,
  maxPositionEmbeddings: 4096, rmsNormEps: 1e-5, ropeTheta: 10000, bosTokenId: 1, eosTokenId: 2, torchDtype: "float16",
} as const;
const LLAMA3_ROPE: LlamaRopeScaling = { ropeType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };

/** Named configs. `tiny` is shared by tests and quick runs (make_llama_golden.py's "base" case). */
export const LLAMA_PRESETS: Readonly<Record<string, LlamaPreset>> = Object.freeze({
  tiny: {
    source: "MindsEye test size (HF's tiny testers use hidden 32, vocab 99), with GQA 4/2 heads",
    config: { vocabSize: 99, hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, maxPositionEmbeddings: 512, rmsNormEps: 1e-5, bosTokenId: 1, eosTokenId: 2, torchDtype: "float32" },
  },
  "llama-2-7b": { source: "https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json", config: LLAMA2_7B },
  "vicuna-7b-v1.5": {
    source: "llava-hf/llava-1.5-7b-hf text_config (lmsys/vicuna-7b-v1.5: Llama-2-7B's shape; vocabulary 32064 with LLaVA's <image> and <pad>)",
    config: { ...LLAMA2_7B, vocabSize: 32064 },
  },
  "llama-3.2-1b": {
    source: "https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json",
    config: {
      vocabSize: 128256, hiddenSize: 2048, intermediateSize: 8192, numHiddenLayers: 16, numAttentionHeads: 32, numKeyValueHeads: 8, headDim: 64,
      maxPositionEmbeddings: 131072, rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: { ...LLAMA3_ROPE, factor: 32 }, tieWordEmbeddings: true,
      bosTokenId: 128000, eosTokenId: 128001, torchDtype: "bfloat16",
    },
  },
  "llama-3.1-8b": {
    source: "https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json",
    config: {
      vocabSize: 128256, hiddenSize: 4096, intermediateSize: 14336, numHiddenLayers: 32, numAttentionHeads: 32, numKeyValueHeads: 8,
      maxPositionEmbeddings: 131072, rmsNormEps: 1e-5, ropeTheta: 500000, ropeScaling: LLAMA3_ROPE, bosTokenId: 128000, eosTokenId: 128001, torchDtype: "bfloat16",
    },
  },
});

/** A preset by name, resolved; an unknown name says which exist and the closest one. */
export function llamaPreset(name: string, overrides: Partial<LlamaConfig> = {}): ResolvedLlamaConfig {
  const p = LLAMA_PRESETS[name];
  if (p === undefined) {
    const names = Object.keys(LLAMA_PRESETS);
    throw new ConfigError(`unknown Llama preset "${name}"${didYouMean(name, names)} (presets: ${names.join(", ")})`);
  }
  return resolveLlama({ ...p.config, ...overrides }, `llama preset "${name}"`);
}

// =============================================================================================
// RoPE frequencies

/**
 * inv_freq [headDim/2] float32 as HF's RoPE initialisers give it: the default 1 / theta^(2i/hd),
 * then "linear" divides every frequency by factor, and "llama3" divides those whose wavelength
 * 2π/f exceeds originalMax / lowFreqFactor, keeps those below originalMax / highFreqFactor and
 * blends between, with weight s = (originalMax / wavelength − low) / (high − low) on the kept one.
 */
export function llamaInvFreq(cfg: ResolvedLlamaConfig, device: Device = "cpu"): Tensor {
  return torch.scope(() => {
    const inv = rotaryInvFreq(cfg.headDim, cfg.ropeTheta, device);
    const s = cfg.ropeScaling;
    if (s === null) return inv;
    if (s.ropeType === "linear") return inv.div(s.factor);
    const old = s.originalMaxPositionEmbeddings;
    const wavelen = inv.reciprocal().mul(2 * Math.PI);
    const scaled = torch.where(wavelen.gt(old / s.lowFreqFactor), inv.div(s.factor), inv);
    const smooth = wavelen.reciprocal().mul(old).sub(s.lowFreqFactor).div(s.highFreqFactor - s.lowFreqFactor);
    const smoothed = smooth.neg().add(1).mul(scaled).div(s.factor).add(smooth.mul(scaled));
    const medium = wavelen.ge(old / s.highFreqFactor).logicalAnd(wavelen.le(old / s.lowFreqFactor));
    return torch.where(medium, smoothed, scaled);
  });
}

// =============================================================================================
// Layers

export class LlamaAttention extends nn.Module {
  q_proj: nn.Linear;
  k_proj: nn.Linear;
  v_proj: nn.Linear;
  o_proj: nn.Linear;
  constructor(readonly cfg: ResolvedLlamaConfig, readonly layerIdx: number, o: LayerOptions = {}) {
    super();
    const { hiddenSize: D, numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: hd, attentionBias: bias } = cfg;
    this.q_proj = new nn.Linear(D, H * hd, { ...o, bias });
    this.k_proj = new nn.Linear(D, Hkv * hd, { ...o, bias });
    this.v_proj = new nn.Linear(D, Hkv * hd, { ...o, bias });
    this.o_proj = new nn.Linear(H * hd, D, { ...o, bias });
  }

  /** x [B, T, D] -> [B, T, D]; with a cache, attends over the cached tokens too and appends these. */
  forward(x: Tensor, rope: RotaryEmbeddings, mask: AttentionMask, cache?: KVCache): Tensor {
    const [B, T] = x.shape as [number, number, number];
    const { numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: hd } = this.cfg;
    const q = this.q_proj.forward(x).view(B, T, H, hd).transpose(1, 2); // [B, H, T, hd]
    const k = this.k_proj.forward(x).view(B, T, Hkv, hd).transpose(1, 2); // [B, Hkv, T, hd]
    const v = this.v_proj.forward(x).view(B, T, Hkv, hd).transpose(1, 2); // [B, Hkv, T, hd]
    const y = ropeAttention(q, k, v, { rope, mask, cache, layerIdx: this.layerIdx, dropoutP: this.training ? this.cfg.attentionDropout : 0 });
    return this.o_proj.forward(y); // [B, T, D]
  }
}

/** SwiGLU: down(silu(gate(x)) · up(x)). */
export class LlamaMLP extends nn.Module {
  gate_proj: nn.Linear;
  up_proj: nn.Linear;
  down_proj: nn.Linear;
  constructor(cfg: ResolvedLlamaConfig, o: LayerOptions = {}) {
    super();
    const bias = cfg.mlpBias;
    this.gate_proj = new nn.Linear(cfg.hiddenSize, cfg.intermediateSize, { ...o, bias });
    this.up_proj = new nn.Linear(cfg.hiddenSize, cfg.intermediateSize, { ...o, bias });
    this.down_proj = new nn.Linear(cfg.intermediateSize, cfg.hiddenSize, { ...o, bias });
  }
  /** x [B, T, D] -> [B, T, D] */
  forward(x: Tensor): Tensor {
    return this.down_proj.forward(F.silu(this.gate_proj.forward(x)).mul(this.up_proj.forward(x)));
  }
}

/** Pre-norm block: h + attn(norm(h)), then + mlp(norm(·)). */
export class LlamaDecoderLayer extends nn.Module {
  input_layernorm: nn.RMSNorm;
  self_attn: LlamaAttention;
  post_attention_layernorm: nn.RMSNorm;
  mlp: LlamaMLP;
  constructor(cfg: ResolvedLlamaConfig, layerIdx: number, o: LayerOptions = {}) {
    super();
    this.input_layernorm = new nn.RMSNorm(cfg.hiddenSize, cfg.rmsNormEps, o);
    this.self_attn = new LlamaAttention(cfg, layerIdx, o);
    this.post_attention_layernorm = new nn.RMSNorm(cfg.hiddenSize, cfg.rmsNormEps, o);
    this.mlp = new LlamaMLP(cfg, o);
  }
  /** hidden [B, T, D] -> [B, T, D] */
  forward(hidden: Tensor, o: DecoderLayerInput): Tensor {
    const h = hidden.add(this.self_attn.forward(this.input_layernorm.forward(hidden), o.positionEmbeddings, o.attentionMask, o.pastKeyValues));
    return h.add(this.mlp.forward(this.post_attention_layernorm.forward(h)));
  }
}

// =============================================================================================
// Models

/** Inputs as Qwen2Model's: inputIds or inputsEmbeds, attentionMask, positions, cache. */
export type LlamaModelInput = Qwen2ModelInput;
export type LlamaModelOutput = Qwen2ModelOutput;
export type LlamaCausalLMInput = Qwen2CausalLMInput;
export type LlamaCausalLMOutput = Qwen2CausalLMOutput;

/** embed_tokens → L decoder layers → norm (HF's LlamaModel). */
export class LlamaModel extends nn.Module {
  embed_tokens: nn.Embedding;
  layers: nn.ModuleList<LlamaDecoderLayer>;
  norm: nn.RMSNorm;
  /** Rerun each decoder layer in backward instead of keeping its activations (torch.checkpoint; HF's gradient_checkpointing). */
  gradientCheckpointing = false;
  constructor(readonly cfg: ResolvedLlamaConfig, o: LayerOptions = {}) {
    super();
    this.embed_tokens = new nn.Embedding(cfg.vocabSize, cfg.hiddenSize, o);
    this.layers = new nn.ModuleList(Array.from({ length: cfg.numHiddenLayers }, (_, i) => new LlamaDecoderLayer(cfg, i, o)));
    this.norm = new nn.RMSNorm(cfg.hiddenSize, cfg.rmsNormEps, o);
  }

  forward(input: LlamaModelInput): LlamaModelOutput {
    return decoderForward("LlamaModel", this, input, (positionIds, dtype: DType) => torch.scope(() => rotaryFromInvFreq(positionIds, llamaInvFreq(this.cfg, positionIds.device), dtype)));
  }
}

/**
 * Holds a Llama config against a checkpoint's header before anything is allocated: the number of
 * layers against the layer weights present, and vocab_size, hidden_size, num_attention_heads ×
 * head_dim, num_key_value_heads × head_dim and intermediate_size against embed_tokens, layer 0's
 * projections and lm_head. A mismatch is a ConfigError naming the config.json field. `prefix` is
 * where LlamaModel's weights sit ("model." in LlamaForCausalLM, "language_model.model." in LLaVA).
 * ```ts
 * checkLlamaCheckpoint(cfg, readCheckpointHeader(dir), { where: `${dir}/config.json` });
 * ```
 */
export function checkLlamaCheckpoint(cfg: ResolvedLlamaConfig, header: CheckpointHeader, o: { where: string; prefix?: string; lmHead?: string }): void {
  const p = o.prefix ?? "model.", w = o.where;
  const vocab = { size: cfg.vocabSize, field: "vocab_size" }, hidden = { size: cfg.hiddenSize, field: "hidden_size" };
  const q = { size: cfg.numAttentionHeads * cfg.headDim, field: `num_attention_heads × head_dim (${cfg.numAttentionHeads} × ${cfg.headDim})` };
  checkTensorShape(header, `${p}embed_tokens.weight`, [vocab, hidden], w);
  checkLayerCount(header, `${p}layers.`, cfg.numHiddenLayers, "num_hidden_layers", w);
  checkTensorShape(header, `${p}layers.0.self_attn.q_proj.weight`, [q, hidden], w);
  checkTensorShape(header, `${p}layers.0.self_attn.k_proj.weight`, [{ size: cfg.numKeyValueHeads * cfg.headDim, field: `num_key_value_heads × head_dim (${cfg.numKeyValueHeads} × ${cfg.headDim})` }, hidden], w);
  checkTensorShape(header, `${p}layers.0.self_attn.o_proj.weight`, [hidden, q], w);
  checkTensorShape(header, `${p}layers.0.mlp.gate_proj.weight`, [{ size: cfg.intermediateSize, field: "intermediate_size" }, hidden], w);
  if (!cfg.tieWordEmbeddings) checkTensorShape(header, o.lmHead ?? "lm_head.weight", [vocab, hidden], w);
}

/**
 * Llama language model with its output head (HF's LlamaForCausalLM). New weights follow HF's
 * initialisation: normal(0, initializerRange) for linear and embedding weights, zero biases,
 * RMSNorm weights one.
 * ```ts
 * const model = new LlamaForCausalLM(llamaPreset("tiny"), { generator: new torch.Generator(0) });
 * const { logits } = model.forward({ inputIds });   // [B, T, V]
 * ```
 */
export class LlamaForCausalLM extends nn.Module {
  model: LlamaModel;
  lm_head: nn.Linear;
  constructor(readonly cfg: ResolvedLlamaConfig, o: LayerOptions = {}) {
    super();
    this.model = new LlamaModel(cfg, o);
    this.lm_head = new nn.Linear(cfg.hiddenSize, cfg.vocabSize, { ...o, bias: false });
    initCausalLmHead(this, this.lm_head, this.model.embed_tokens, cfg, o.generator);
  }

  forward(input: LlamaCausalLMInput): LlamaCausalLMOutput {
    const out = this.model.forward(input);
    return { ...out, logits: this.lm_head.forward(keepLastPositions(out.lastHiddenState, input.logitsToKeep)) }; // [B, T, V]
  }

  /**
   * Loads an HF checkpoint directory: config.json + model.safetensors (or shards with
   * model.safetensors.index.json). Missing, unexpected and mis-shaped weights are one error.
   */
  static fromPretrained(dir: string, opts: PretrainedOptions = {}): LlamaForCausalLM {
    const cfg = llamaFromHfConfig(readHfConfig(dir), `${dir}/config.json`);
    const header = readCheckpointHeader(dir);
    checkLlamaCheckpoint(cfg, header, { where: `${dir}/config.json` }); // before anything is allocated
    const dtype = opts.dtype ?? "float32";
    const model = new LlamaForCausalLM(cfg, { dtype, ...(opts.device ? { device: opts.device } : {}) });
    try {
      // Read into the parameters, a tensor at a time: peak memory is the model, not twice it.
      loadCheckpointInto(model, dir, { header, rename: decoderRename(cfg.tieWordEmbeddings, "lm_head.weight") });
    } catch (e) {
      model.parameters().forEach((p) => p.dispose());
      if (e instanceof nn.StateDictError) {
        throw new Error(`${dir}: the checkpoint does not fit LlamaForCausalLM with this config.json (tie_word_embeddings: ${cfg.tieWordEmbeddings}, attention_bias: ${cfg.attentionBias}, mlp_bias: ${cfg.mlpBias})\n${e.message}`, { cause: e });
      }
      throw e;
    }
    return model;
  }

  /** Writes config.json and the weights as HF does (tied lm_head.weight omitted; shards beyond maxShardBytes). */
  savePretrained(dir: string, opts: { maxShardBytes?: number; dtype?: LlamaDtype } = {}): void {
    const dtype = opts.dtype ?? (this.model.embed_tokens.weight.dtype as LlamaDtype);
    saveCheckpoint(dir, this, llamaToHfConfig({ ...this.cfg, torchDtype: dtype }), {
      skip: (name) => this.cfg.tieWordEmbeddings && name === "lm_head.weight",
      ...(opts.maxShardBytes ? { maxShardBytes: opts.maxShardBytes } : {}),
      ...(opts.dtype ? { dtype: opts.dtype } : {}),
    });
  }
}


