// InternLM2 / InternLM2.5 decoder language models (InternLM2ForCausalLM, the trust_remote_code
// modeling_internlm2.py that InternLM and InternVL2.5-2B/8B/26B checkpoints ship), computed as that
// file's eager path computes them, with its weight names, so checkpoints load 1:1.
//
//   const lm = InternLM2ForCausalLM.fromPretrained("internlm2_5-7b-chat/", { dtype: "bfloat16" });
//   const { logits } = torch.noGrad(() => lm.forward({ inputIds, attentionMask }));   // [B, T, V]
//
// It is Llama's decoder under other names (tok_embeddings, attention.wo, attention_norm,
// feed_forward.w1/w3/w2, ffn_norm, output), with two differences of substance:
// - q, k and v come from one packed Linear `attention.wqkv`, laid out per KV head: its output,
//   viewed as [..., num_kv_heads, num_key_value_groups + 2, head_dim], holds for each KV head the
//   queries of its group, then its key, then its value;
// - rope_scaling {type, factor}: "linear" divides positions by factor; "dynamic" (NTK) raises the
//   base to theta·((factor·S / max_position_embeddings) − (factor − 1))^(d / (d − 2)) once the key
//   length S (cached + new tokens) exceeds max_position_embeddings (InternLM2.5: factor 2 over 32k).
//   The reference keeps the largest table it has built, so a fresh model with growing sequences
//   (a forward, then generation) is what this reproduces; keys already cached keep the rotation
//   they were given, as in the reference's generation.
// The shared machinery (masks, KV cache, rotary attention core, decoder-stack forward) is qwen2.ts's.
// Golden fixture: fixtures/models/make_internvl_golden.py (lm_base, lm_dynamic, lm_linear).
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

export type InternLM2Dtype = Qwen2Dtype;

/** RoPE scaling as InternLM2Config validates it: {type: "linear" | "dynamic", factor ≥ 1}. */
export interface InternLM2RopeScaling {
  type: "linear" | "dynamic";
  factor: number;
}

export interface InternLM2Config {
  /** Rows of tok_embeddings and output. */
  vocabSize: number;
  /** Width D of the residual stream. */
  hiddenSize: number;
  /** Width of the SwiGLU feed-forward's hidden layer. */
  intermediateSize: number;
  /** Number of decoder layers L. */
  numHiddenLayers: number;
  /** Query heads H; headDim = hiddenSize / H. */
  numAttentionHeads: number;
  /** Key/value heads (grouped-query attention); must divide numAttentionHeads. */
  numKeyValueHeads: number;
  /** Feed-forward activation; InternLM2 uses SiLU (SwiGLU) only. */
  hiddenAct: "silu";
  /** Context of the pretraining; the point past which "dynamic" RoPE rescales. */
  maxPositionEmbeddings: number;
  /** RMSNorm epsilon (InternLM2.5: 1e-5). */
  rmsNormEps: number;
  /** RoPE base (InternLM2.5: 1e6). */
  ropeTheta: number;
  /** RoPE scaling, or null. */
  ropeScaling: InternLM2RopeScaling | null;
  /** wqkv and wo have biases (the class default is true; every release says false). */
  bias: boolean;
  /** output shares tok_embeddings' weight (false in every release; InternVL forces false). */
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  /** End-of-sequence token id(s): default stop tokens for generation. */
  eosTokenId: number | number[] | null;
  padTokenId: number | null;
  /** Dtype the checkpoint's weights are stored in (config.json "torch_dtype"). */
  torchDtype: InternLM2Dtype;
  /** Std of the normal initialisation of new weights. */
  initializerRange: number;
}

export type ResolvedInternLM2Config = Readonly<InternLM2Config & {
  /** hiddenSize / numAttentionHeads. */
  headDim: number;
  /** numAttentionHeads / numKeyValueHeads: the queries packed with each KV head in wqkv. */
  numKeyValueGroups: number;
}>;

/** InternLM2Config's class defaults (configuration_internlm2.py): a config.json field left out takes these. */
export const INTERNLM2_DEFAULTS: Readonly<InternLM2Config> = Object.freeze({
  vocabSize: 103168,
  hiddenSize: 4096,
  intermediateSize: 11008,
  numHiddenLayers: 32,
  numAttentionHeads: 32,
  numKeyValueHeads: 32,
  hiddenAct: "silu",
  maxPositionEmbeddings: 2048,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  ropeScaling: null,
  bias: true,
  tieWordEmbeddings: false,
  bosTokenId: 1,
  eosTokenId: 2,
  padTokenId: 0,
  torchDtype: "float32",
  initializerRange: 0.02,
});

const DTYPES: readonly InternLM2Dtype[] = ["float32", "bfloat16", "float16"];
const isPosInt = (x: unknown): x is number => typeof x === "number" && Number.isInteger(x) && x > 0;
const isTokenId = (x: unknown): boolean => typeof x === "number" && Number.isInteger(x) && x >= 0;
const isPosNum = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x) && x > 0;

/**
 * Defaults + overrides, validated once; headDim and the group size derived.
 * ```ts
 * const cfg = resolveInternLM2({ ...INTERNLM2_PRESETS.tiny.config, ropeScaling: { type: "dynamic", factor: 2 } });
 * ```
 */
export function resolveInternLM2(p: Partial<InternLM2Config>, where = "internlm2"): ResolvedInternLM2Config {
  for (const k of Object.keys(p)) {
    if (!(k in INTERNLM2_DEFAULTS)) throw new ConfigError(`${where}.${k}: unknown InternLM2 config field${didYouMean(k, Object.keys(INTERNLM2_DEFAULTS))} (known: ${Object.keys(INTERNLM2_DEFAULTS).join(", ")})`);
  }
  return validated({ ...INTERNLM2_DEFAULTS, ...p }, (k) => `${where}.${k}`);
}

function validated(c: InternLM2Config, at: (k: keyof InternLM2Config) => string): ResolvedInternLM2Config {
  for (const k of ["vocabSize", "hiddenSize", "intermediateSize", "numHiddenLayers", "numAttentionHeads", "numKeyValueHeads", "maxPositionEmbeddings"] as const) {
    ensure(isPosInt(c[k]), at(k), `must be a positive integer, got ${JSON.stringify(c[k])}`);
    ensure(c[k] <= QWEN2_LIMITS[k], at(k), `${c[k]} is beyond any real model (at most ${QWEN2_LIMITS[k]}); the config is broken`);
  }
  ensure(c.hiddenSize % c.numAttentionHeads === 0, at("hiddenSize"), `${c.hiddenSize} is not divisible by the number of attention heads ${c.numAttentionHeads}`);
  ensure(c.numAttentionHeads % c.numKeyValueHeads === 0, at("numKeyValueHeads"), `${c.numKeyValueHeads} must divide the number of attention heads ${c.numAttentionHeads} (grouped-query attention)`);
  const headDim = c.hiddenSize / c.numAttentionHeads;
  ensure(headDim % 2 === 0 && headDim > 2, at("hiddenSize"), `head dim ${headDim} (hidden size / attention heads) must be even and above 2 for rotary embeddings`);
  ensure(c.hiddenAct === "silu", at("hiddenAct"), `must be "silu" (InternLM2's SwiGLU feed-forward), got ${JSON.stringify(c.hiddenAct)}`);
  ensure(isPosNum(c.rmsNormEps), at("rmsNormEps"), `must be a positive number, got ${JSON.stringify(c.rmsNormEps)}`);
  ensure(isPosNum(c.ropeTheta), at("ropeTheta"), `must be a positive number, got ${JSON.stringify(c.ropeTheta)}`);
  const s = c.ropeScaling;
  if (s !== null) {
    ensure(typeof s === "object" && (s.type === "linear" || s.type === "dynamic"), at("ropeScaling"), `type must be "linear" or "dynamic" (as InternLM2Config checks), got ${JSON.stringify(s)}`);
    ensure(typeof s.factor === "number" && Number.isFinite(s.factor) && s.factor >= 1, at("ropeScaling"), `factor must be a number ≥ 1, got ${JSON.stringify(s.factor)}`);
  }
  for (const k of ["bias", "tieWordEmbeddings"] as const) ensure(typeof c[k] === "boolean", at(k), `must be a boolean, got ${JSON.stringify(c[k])}`);
  for (const k of ["bosTokenId", "padTokenId"] as const) ensure(c[k] === null || isTokenId(c[k]), at(k), `must be a token id or null, got ${JSON.stringify(c[k])}`);
  const eos = c.eosTokenId;
  ensure(eos === null || isTokenId(eos) || (Array.isArray(eos) && eos.every(isTokenId)), at("eosTokenId"), `must be a token id, a list of them, or null, got ${JSON.stringify(eos)}`);
  ensure(DTYPES.includes(c.torchDtype), at("torchDtype"), `must be one of ${DTYPES.join(", ")}, got ${JSON.stringify(c.torchDtype)}`);
  ensure(typeof c.initializerRange === "number" && c.initializerRange >= 0, at("initializerRange"), `must be a non-negative number, got ${JSON.stringify(c.initializerRange)}`);
  return Object.freeze({
    ...c, ropeScaling: s === null ? null : Object.freeze({ ...s }), eosTokenId: Array.isArray(eos) ? (Object.freeze([...eos]) as number[]) : eos,
    headDim, numKeyValueGroups: c.numAttentionHeads / c.numKeyValueHeads,
  });
}

const HF_NAMES: Record<keyof InternLM2Config, string> = {
  vocabSize: "vocab_size", hiddenSize: "hidden_size", intermediateSize: "intermediate_size", numHiddenLayers: "num_hidden_layers",
  numAttentionHeads: "num_attention_heads", numKeyValueHeads: "num_key_value_heads", hiddenAct: "hidden_act",
  maxPositionEmbeddings: "max_position_embeddings", rmsNormEps: "rms_norm_eps", ropeTheta: "rope_theta", ropeScaling: "rope_scaling",
  bias: "bias", tieWordEmbeddings: "tie_word_embeddings", bosTokenId: "bos_token_id", eosTokenId: "eos_token_id", padTokenId: "pad_token_id",
  torchDtype: "torch_dtype", initializerRange: "initializer_range",
};

/** A token id field: absent takes the class default, an explicit null stays null (as HF). */
function tokenField(json: HfJson, key: string, where: string, fallback: number | null): number | null {
  if (json[key] === undefined) return fallback;
  return json[key] === null ? null : hfField<number>(json, key, "integer", where);
}

/**
 * A config from a config.json (an InternLM2 checkpoint's, or InternVL's llm_config). Fields left
 * out take InternLM2Config's class defaults; unknown fields (auto_map, attn_implementation, …) are
 * ignored; InternVL's V2PE positions (rope_pos_id_version other than "default") are refused.
 */
export function internLM2FromHfConfig(json: HfJson, where = "config.json"): ResolvedInternLM2Config {
  const d = INTERNLM2_DEFAULTS;
  if (json.model_type !== undefined) {
    const type = hfField<string>(json, "model_type", "string", where);
    ensure(type === "internlm2", `${where}: "model_type"`, `expected "internlm2", got ${JSON.stringify(type)} (this loader reads InternLM2 / InternLM2.5 language models)`);
  }
  if (json.architectures !== undefined) {
    const arch = hfField<unknown[]>(json, "architectures", "array", where);
    ensure(arch.every((a) => typeof a === "string" && a.startsWith("InternLM2")), `${where}: "architectures"`, `expected ["InternLM2ForCausalLM"], got ${JSON.stringify(arch)}`);
  }
  const pos = hfField<string>(json, "rope_pos_id_version", "string", where, "default");
  ensure(pos === "default", `${where}: "rope_pos_id_version"`, `${JSON.stringify(pos)} (V2PE) is not implemented; MindsEye's InternLM2 uses one position per token ("default")`);
  let ropeScaling: InternLM2RopeScaling | null = null;
  if (json.rope_scaling !== undefined && json.rope_scaling !== null) {
    const rs = hfField<HfJson>(json, "rope_scaling", "object", where);
    const w = `${where}: "rope_scaling"`;
    ensure(Object.keys(rs).length === 2, w, `must have exactly "type" and "factor" (as InternLM2Config checks), got ${JSON.stringify(rs)}`);
    const type = hfField<string>(rs, "type", "string", w);
    ensure(type === "linear" || type === "dynamic", w, `"type" must be "linear" or "dynamic", got ${JSON.stringify(type)}`);
    ropeScaling = { type: type as "linear" | "dynamic", factor: hfField<number>(rs, "factor", "number", w) };
  }
  const dtype = hfField<string>(json, "torch_dtype", "string", where, hfField<string>(json, "dtype", "string", where, d.torchDtype));
  ensure((DTYPES as readonly string[]).includes(dtype), `${where}: "torch_dtype"`, `must be one of ${DTYPES.join(", ")}, got ${JSON.stringify(dtype)}`);
  const eos = json.eos_token_id;
  if (eos !== undefined && eos !== null && !isTokenId(eos) && !(Array.isArray(eos) && eos.every(isTokenId))) {
    throw new ConfigError(`${where}: field "eos_token_id" must be a token id or a list of them, got ${JSON.stringify(eos)}`);
  }
  const heads = hfField<number>(json, "num_attention_heads", "integer", where, d.numAttentionHeads);
  const cfg: InternLM2Config = {
    vocabSize: hfField(json, "vocab_size", "integer", where, d.vocabSize),
    hiddenSize: hfField(json, "hidden_size", "integer", where, d.hiddenSize),
    intermediateSize: hfField(json, "intermediate_size", "integer", where, d.intermediateSize),
    numHiddenLayers: hfField(json, "num_hidden_layers", "integer", where, d.numHiddenLayers),
    numAttentionHeads: heads,
    numKeyValueHeads: hfField(json, "num_key_value_heads", "integer", where, heads),
    hiddenAct: hfField(json, "hidden_act", "string", where, d.hiddenAct),
    maxPositionEmbeddings: hfField(json, "max_position_embeddings", "integer", where, d.maxPositionEmbeddings),
    rmsNormEps: hfField(json, "rms_norm_eps", "number", where, d.rmsNormEps),
    ropeTheta: hfField(json, "rope_theta", "number", where, d.ropeTheta),
    ropeScaling,
    bias: hfField(json, "bias", "boolean", where, d.bias),
    tieWordEmbeddings: hfField(json, "tie_word_embeddings", "boolean", where, d.tieWordEmbeddings),
    bosTokenId: tokenField(json, "bos_token_id", where, d.bosTokenId),
    eosTokenId: (eos === undefined ? d.eosTokenId : eos) as number | number[] | null,
    padTokenId: tokenField(json, "pad_token_id", where, d.padTokenId),
    torchDtype: dtype as InternLM2Dtype,
    initializerRange: hfField(json, "initializer_range", "number", where, d.initializerRange),
  };
  return validated(cfg, (k) => `${where}: "${HF_NAMES[k]}"`);
}

/** The config.json an InternLM2 checkpoint carries for this config (model_type "internlm2"). */
export function internLM2ToHfConfig(c: ResolvedInternLM2Config): HfJson {
  const out: HfJson = { architectures: ["InternLM2ForCausalLM"], model_type: "internlm2" };
  for (const k of Object.keys(HF_NAMES) as (keyof InternLM2Config)[]) {
    const v = c[k];
    out[HF_NAMES[k]] = Array.isArray(v) ? [...v] : v;
  }
  out.rope_scaling = c.ropeScaling === null ? null : { type: c.ropeScaling.type, factor: c.ropeScaling.factor };
  out.attn_implementation = "eager";
  out.use_cache = true;
  return out;
}

export interface InternLM2Preset {
  /** Where the numbers come from. */
  source: string;
  config: Partial<InternLM2Config>;
}

const INTERNLM25 = {
  vocabSize: 92544, maxPositionEmbeddings: 32768, rmsNormEps: 1e-5, ropeTheta: 1000000, ropeScaling: { type: "dynamic", factor: 2 },
  bias: false, bosTokenId: 1, eosTokenId: 2, padTokenId: 2, torchDtype: "bfloat16",
} as const satisfies Partial<InternLM2Config>;

/** Named configs. `tiny` is make_internvl_golden.py's lm_base case. */
export const INTERNLM2_PRESETS: Readonly<Record<string, InternLM2Preset>> = Object.freeze({
  tiny: {
    source: "MindsEye test size (make_internvl_golden.py lm_base), with GQA 4/2 heads",
    config: {
      vocabSize: 99, hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2,
      maxPositionEmbeddings: 512, rmsNormEps: 1e-5, bias: false, padTokenId: 0, torchDtype: "float32",
    },
  },
  "internlm2.5-1.8b-chat": {
    source: "https://huggingface.co/internlm/internlm2_5-1_8b-chat/blob/main/config.json (InternVL2.5-2B's language model, vocabulary 92553 there)",
    config: { ...INTERNLM25, hiddenSize: 2048, intermediateSize: 8192, numHiddenLayers: 24, numAttentionHeads: 16, numKeyValueHeads: 8 },
  },
  "internlm2.5-7b-chat": {
    source: "https://huggingface.co/internlm/internlm2_5-7b-chat/blob/main/config.json (InternVL2.5-8B's language model, vocabulary 92553 there)",
    config: { ...INTERNLM25, hiddenSize: 4096, intermediateSize: 14336, numHiddenLayers: 32, numAttentionHeads: 32, numKeyValueHeads: 8 },
  },
});

/** A preset by name, resolved; an unknown name says which exist and the closest one. */
export function internLM2Preset(name: string, overrides: Partial<InternLM2Config> = {}): ResolvedInternLM2Config {
  const p = INTERNLM2_PRESETS[name];
  if (p === undefined) {
    const names = Object.keys(INTERNLM2_PRESETS);
    throw new ConfigError(`unknown InternLM2 preset "${name}"${didYouMean(name, names)} (presets: ${names.join(", ")})`);
  }
  return resolveInternLM2({ ...p.config, ...overrides }, `internlm2 preset "${name}"`);
}

// =============================================================================================
// RoPE frequencies

/**
 * inv_freq [headDim/2] float32 for a key length S (cached + new tokens): 1 / theta^(2i/d); under
 * "linear" divided by factor (the reference divides the positions, the same angles); under
 * "dynamic" with S > maxPositionEmbeddings, from the rescaled base
 * theta·((factor·S / max) − (factor − 1))^(d / (d − 2)).
 */
export function internLM2InvFreq(cfg: ResolvedInternLM2Config, seqLen: number, device: Device = "cpu"): Tensor {
  const s = cfg.ropeScaling, d = cfg.headDim;
  if (s?.type === "dynamic" && seqLen > cfg.maxPositionEmbeddings) {
    const base = cfg.ropeTheta * ((s.factor * seqLen) / cfg.maxPositionEmbeddings - (s.factor - 1)) ** (d / (d - 2));
    return rotaryInvFreq(d, base, device);
  }
  if (s?.type === "linear") return torch.scope(() => rotaryInvFreq(d, cfg.ropeTheta, device).div(s.factor));
  return rotaryInvFreq(d, cfg.ropeTheta, device);
}

// =============================================================================================
// Layers

export class InternLM2Attention extends nn.Module {
  wqkv: nn.Linear;
  wo: nn.Linear;
  constructor(readonly cfg: ResolvedInternLM2Config, readonly layerIdx: number, o: LayerOptions = {}) {
    super();
    const { hiddenSize: D, numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: hd, bias } = cfg;
    this.wqkv = new nn.Linear(D, (H + 2 * Hkv) * hd, { ...o, bias });
    this.wo = new nn.Linear(H * hd, D, { ...o, bias });
  }

  /** x [B, T, D] -> [B, T, D]; with a cache, attends over the cached tokens too and appends these. */
  forward(x: Tensor, rope: RotaryEmbeddings, mask: AttentionMask, cache?: KVCache): Tensor {
    const [B, T] = x.shape as [number, number, number];
    const { numAttentionHeads: H, numKeyValueHeads: Hkv, numKeyValueGroups: g, headDim: hd } = this.cfg;
    const qkv = this.wqkv.forward(x).view(B, T, Hkv, g + 2, hd); // per KV head: g queries, its key, its value
    const q = qkv.narrow(3, 0, g).reshape(B, T, H, hd).transpose(1, 2); // [B, H, T, hd]: query head h·g + j serves KV head h
    const k = qkv.select(3, g).transpose(1, 2); // [B, Hkv, T, hd]
    const v = qkv.select(3, g + 1).transpose(1, 2); // [B, Hkv, T, hd]
    const y = ropeAttention(q, k, v, { rope, mask, cache, layerIdx: this.layerIdx, dropoutP: 0 });
    return this.wo.forward(y); // [B, T, D]
  }
}

/** SwiGLU: w2(silu(w1(x)) · w3(x)). */
export class InternLM2MLP extends nn.Module {
  w1: nn.Linear;
  w3: nn.Linear;
  w2: nn.Linear;
  constructor(cfg: ResolvedInternLM2Config, o: LayerOptions = {}) {
    super();
    this.w1 = new nn.Linear(cfg.hiddenSize, cfg.intermediateSize, { ...o, bias: false });
    this.w3 = new nn.Linear(cfg.hiddenSize, cfg.intermediateSize, { ...o, bias: false });
    this.w2 = new nn.Linear(cfg.intermediateSize, cfg.hiddenSize, { ...o, bias: false });
  }
  /** x [B, T, D] -> [B, T, D] */
  forward(x: Tensor): Tensor {
    return this.w2.forward(F.silu(this.w1.forward(x)).mul(this.w3.forward(x)));
  }
}

/** Pre-norm block: h + attention(attention_norm(h)), then + feed_forward(ffn_norm(·)). */
export class InternLM2DecoderLayer extends nn.Module {
  attention: InternLM2Attention;
  feed_forward: InternLM2MLP;
  attention_norm: nn.RMSNorm;
  ffn_norm: nn.RMSNorm;
  constructor(cfg: ResolvedInternLM2Config, layerIdx: number, o: LayerOptions = {}) {
    super();
    this.attention = new InternLM2Attention(cfg, layerIdx, o);
    this.feed_forward = new InternLM2MLP(cfg, o);
    this.attention_norm = new nn.RMSNorm(cfg.hiddenSize, cfg.rmsNormEps, o);
    this.ffn_norm = new nn.RMSNorm(cfg.hiddenSize, cfg.rmsNormEps, o);
  }
  /** hidden [B, T, D] -> [B, T, D] */
  forward(hidden: Tensor, o: DecoderLayerInput): Tensor {
    const h = hidden.add(this.attention.forward(this.attention_norm.forward(hidden), o.positionEmbeddings, o.attentionMask, o.pastKeyValues));
    return h.add(this.feed_forward.forward(this.ffn_norm.forward(h)));
  }
}

// =============================================================================================
// Models

/** Inputs as Qwen2Model's: inputIds or inputsEmbeds, attentionMask, positions, cache. */
export type InternLM2ModelInput = Qwen2ModelInput;
export type InternLM2ModelOutput = Qwen2ModelOutput;
export type InternLM2CausalLMInput = Qwen2CausalLMInput;
export type InternLM2CausalLMOutput = Qwen2CausalLMOutput;

/** tok_embeddings → L decoder layers → norm (the reference's InternLM2Model). */
export class InternLM2Model extends nn.Module {
  tok_embeddings: nn.Embedding;
  layers: nn.ModuleList<InternLM2DecoderLayer>;
  norm: nn.RMSNorm;
  /** Rerun each decoder layer in backward instead of keeping its activations (torch.checkpoint). */
  gradientCheckpointing = false;
  constructor(readonly cfg: ResolvedInternLM2Config, o: LayerOptions = {}) {
    super();
    this.tok_embeddings = new nn.Embedding(cfg.vocabSize, cfg.hiddenSize, o);
    this.layers = new nn.ModuleList(Array.from({ length: cfg.numHiddenLayers }, (_, i) => new InternLM2DecoderLayer(cfg, i, o)));
    this.norm = new nn.RMSNorm(cfg.hiddenSize, cfg.rmsNormEps, o);
  }

  /** The embedding table under the name the shared code (embedWithImages, decoderForward) reads. */
  get embed_tokens(): nn.Embedding { return this.tok_embeddings; }

  forward(input: InternLM2ModelInput): InternLM2ModelOutput {
    // The key length S decides dynamic RoPE's base: cached + new tokens, as the reference's kv_seq_len.
    const T = (input.inputIds ?? input.inputsEmbeds)?.shape[1] ?? 0; // decoderForward reports a missing input
    const S = (input.pastKeyValues?.length ?? 0) + T;
    return decoderForward("InternLM2Model", this, input, (positionIds, dtype: DType) =>
      torch.scope(() => rotaryFromInvFreq(positionIds, internLM2InvFreq(this.cfg, S, positionIds.device), dtype)));
  }
}

/**
 * Holds an InternLM2 config against a checkpoint's header before anything is allocated: the layer
 * count against the layer weights present; vocab_size, hidden_size, the packed wqkv width
 * ((num_attention_heads + 2·num_key_value_heads)·head_dim), intermediate_size and bias against
 * tok_embeddings, layer 0 and output. `prefix` is where InternLM2Model's weights sit ("model." in
 * InternLM2ForCausalLM, "language_model.model." in InternVL).
 */
export function checkInternLM2Checkpoint(cfg: ResolvedInternLM2Config, header: CheckpointHeader, o: { where: string; prefix?: string; output?: string }): void {
  const p = o.prefix ?? "model.", w = o.where;
  const vocab = { size: cfg.vocabSize, field: "vocab_size" }, hidden = { size: cfg.hiddenSize, field: "hidden_size" };
  checkTensorShape(header, `${p}tok_embeddings.weight`, [vocab, hidden], w);
  checkLayerCount(header, `${p}layers.`, cfg.numHiddenLayers, "num_hidden_layers", w);
  const { numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: hd } = cfg;
  checkTensorShape(header, `${p}layers.0.attention.wqkv.weight`, [{ size: (H + 2 * Hkv) * hd, field: `(num_attention_heads + 2 × num_key_value_heads) × head_dim ((${H} + 2 × ${Hkv}) × ${hd})` }, hidden], w);
  checkTensorShape(header, `${p}layers.0.feed_forward.w1.weight`, [{ size: cfg.intermediateSize, field: "intermediate_size" }, hidden], w);
  if (header.has(`${p}layers.0.attention.wqkv.weight`) && header.has(`${p}layers.0.attention.wqkv.bias`) !== cfg.bias) {
    throw new ConfigError(`${w}: field "bias" says ${cfg.bias}, but the checkpoint ${cfg.bias ? "lacks" : "has"} ${p}layers.0.attention.wqkv.bias; config.json does not describe this checkpoint (InternLM2Config's default is true: releases say "bias": false)`);
  }
  if (!cfg.tieWordEmbeddings) checkTensorShape(header, o.output ?? "output.weight", [vocab, hidden], w);
}

/**
 * InternLM2 with its output head (InternLM2ForCausalLM). New weights: normal(0, initializerRange)
 * for linear and embedding weights, zero biases, RMSNorm weights one.
 * ```ts
 * const lm = new InternLM2ForCausalLM(internLM2Preset("tiny"), { generator: new torch.Generator(0) });
 * const { tokens } = generate(lm, { inputIds, maxNewTokens: 8, stopTokenIds: [2] });
 * ```
 */
export class InternLM2ForCausalLM extends nn.Module {
  model: InternLM2Model;
  output: nn.Linear;
  constructor(readonly cfg: ResolvedInternLM2Config, o: LayerOptions = {}) {
    super();
    this.model = new InternLM2Model(cfg, o);
    this.output = new nn.Linear(cfg.hiddenSize, cfg.vocabSize, { ...o, bias: false });
    initCausalLmHead(this, this.output, this.model.tok_embeddings, cfg, o.generator);
  }

  forward(input: InternLM2CausalLMInput): InternLM2CausalLMOutput {
    const out = this.model.forward(input);
    return { ...out, logits: this.output.forward(keepLastPositions(out.lastHiddenState, input.logitsToKeep)) }; // [B, T, V]
  }

  /** Loads a checkpoint directory (config.json + model.safetensors or shards); missing, unexpected and mis-shaped weights are one error. */
  static fromPretrained(dir: string, opts: PretrainedOptions = {}): InternLM2ForCausalLM {
    const cfg = internLM2FromHfConfig(readHfConfig(dir), `${dir}/config.json`);
    const header = readCheckpointHeader(dir);
    checkInternLM2Checkpoint(cfg, header, { where: `${dir}/config.json` }); // before anything is allocated
    const dtype = opts.dtype ?? "float32";
    const model = new InternLM2ForCausalLM(cfg, { dtype, ...(opts.device ? { device: opts.device } : {}) });
    try {
      // Read into the parameters, a tensor at a time (wqkv stays packed, as the module holds it).
      loadCheckpointInto(model, dir, { header, rename: decoderRename(cfg.tieWordEmbeddings, "output.weight") });
    } catch (e) {
      model.parameters().forEach((p) => p.dispose());
      if (e instanceof nn.StateDictError) throw new Error(`${dir}: the checkpoint does not fit InternLM2ForCausalLM with this config.json (bias: ${cfg.bias}, tie_word_embeddings: ${cfg.tieWordEmbeddings})\n${e.message}`, { cause: e });
      throw e;
    }
    return model;
  }

  /** Writes config.json and the weights in the reference's layout (a tied output saved once, as tok_embeddings). */
  savePretrained(dir: string, opts: { maxShardBytes?: number; dtype?: InternLM2Dtype } = {}): void {
    const dtype = opts.dtype ?? (this.model.tok_embeddings.weight.dtype as InternLM2Dtype);
    saveCheckpoint(dir, this, internLM2ToHfConfig({ ...this.cfg, torchDtype: dtype }), {
      skip: (name) => this.cfg.tieWordEmbeddings && name === "output.weight",
      ...(opts.maxShardBytes ? { maxShardBytes: opts.maxShardBytes } : {}),
      ...(opts.dtype ? { dtype: opts.dtype } : {}),
    });
  }
}
