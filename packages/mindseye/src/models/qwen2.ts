// Qwen2 / Qwen2.5 decoder language models (Qwen2ForCausalLM), computed as Hugging Face
// transformers' modeling_qwen2.py computes them, with its weight names, so HF checkpoints load 1:1.
//
//   const model = Qwen2ForCausalLM.fromPretrained("Qwen2.5-0.5B/", { dtype: "bfloat16" });
//   const { logits } = torch.noGrad(() => model.forward({ inputIds, attentionMask }));   // [B, T, V]
//
// The pieces, top to bottom: config (typed, validated, HF config.json mapping, presets) → rotary
// embeddings and masks → KV cache → attention, MLP, decoder layer → Qwen2Model (embed_tokens,
// layers, norm) → Qwen2ForCausalLM (+ lm_head, loading and saving).
//
// Reuse by other families (the Qwen2.5-VL language model uses multimodal RoPE):
// - `Qwen2Model.forward({ inputsEmbeds, attentionMask, positionEmbeddings })` takes precomputed
//   rotary tables `positionEmbeddings = { cos, sin }`, each [B, T, headDim] (or broadcastable,
//   e.g. [1, T, headDim]) in the hidden dtype, laid out as HF's (the half-split "rotate_half"
//   convention: cos = cat(cos(f), cos(f)) over the last dim). When given, positionIds are not used.
// - `Qwen2DecoderLayer.forward(hidden, { positionEmbeddings, attentionMask, pastKeyValues })`
//   runs one layer; `attentionMask` is what `buildAttentionMask` returns (an additive float
//   mask [B, 1, T, S], "causal", or null).
// - `applyRotary(q, k, cos, sin)` rotates q [B, H, T, hd] and k [B, Hkv, T, hd] by cos/sin
//   [B, T, hd]; `rotaryEmbeddings(positionIds, headDim, theta, dtype)` gives Qwen2's own tables.
// - `KVCache` holds per-layer keys/values across calls (dispose it when done).
import { torch, nn, F, type Tensor, type DType, type Device, type Generator } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { readHfConfig, hfField, ensure, type HfJson } from "../config/hf.js";
import { loadCheckpointInto, saveCheckpoint, readCheckpointHeader, checkTensorShape, checkLayerCount, type CheckpointHeader, type Rename } from "./pretrained.js";

// =============================================================================================
// Config

export type Qwen2Dtype = "float32" | "bfloat16" | "float16";

export interface Qwen2Config {
  /** Rows of embed_tokens and lm_head. */
  vocabSize: number;
  /** Width D of the residual stream. */
  hiddenSize: number;
  /** Width of the SwiGLU MLP's hidden layer. */
  intermediateSize: number;
  /** Number of decoder layers L. */
  numHiddenLayers: number;
  /** Query heads H; headDim = hiddenSize / H. */
  numAttentionHeads: number;
  /** Key/value heads (grouped-query attention); must divide numAttentionHeads. */
  numKeyValueHeads: number;
  /** MLP activation; Qwen2 uses SiLU (SwiGLU) only. */
  hiddenAct: "silu";
  /** Longest context the checkpoint was trained for (informational: RoPE has no table). */
  maxPositionEmbeddings: number;
  /** RMSNorm epsilon. */
  rmsNormEps: number;
  /** RoPE base: inv_freq = 1 / theta^(2i / headDim). */
  ropeTheta: number;
  /** lm_head shares embed_tokens' weight (and is absent from checkpoints). */
  tieWordEmbeddings: boolean;
  /** Dropout on attention probabilities while training. */
  attentionDropout: number;
  /** Beginning-of-sequence token id, if the tokenizer has one. */
  bosTokenId: number | null;
  /** End-of-sequence token id(s): default stop tokens for generation. */
  eosTokenId: number | number[] | null;
  /** Dtype the checkpoint's weights are stored in (config.json "torch_dtype"). */
  torchDtype: Qwen2Dtype;
  /** Std of the normal initialisation of new weights (HF's _init_weights). */
  initializerRange: number;
  /** HF's sliding-window attention switch; MindsEye attends over the full context, so false. */
  useSlidingWindow: boolean;
  /** Sliding window size as written in config.json (unused while useSlidingWindow is false). */
  slidingWindow: number | null;
  /** Layers from this index on would use the sliding window (unused while it is off). */
  maxWindowLayers: number;
}

export type ResolvedQwen2Config = Readonly<Qwen2Config & { /** hiddenSize / numAttentionHeads */ headDim: number }>;

/** HF's Qwen2Config defaults (configuration_qwen2.py). */
export const QWEN2_DEFAULTS: Readonly<Qwen2Config> = Object.freeze({
  vocabSize: 151936,
  hiddenSize: 4096,
  intermediateSize: 22016,
  numHiddenLayers: 32,
  numAttentionHeads: 32,
  numKeyValueHeads: 32,
  hiddenAct: "silu",
  maxPositionEmbeddings: 32768,
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  tieWordEmbeddings: false,
  attentionDropout: 0,
  bosTokenId: null,
  eosTokenId: null,
  torchDtype: "float32",
  initializerRange: 0.02,
  useSlidingWindow: false,
  slidingWindow: 4096,
  maxWindowLayers: 28,
});

const DTYPES: readonly Qwen2Dtype[] = ["float32", "bfloat16", "float16"];
const isPosInt = (x: unknown): x is number => typeof x === "number" && Number.isInteger(x) && x > 0;
const isTokenId = (x: unknown): boolean => typeof x === "number" && Number.isInteger(x) && x >= 0;

/**
 * Upper bounds far past any released model (Qwen2.5-72B: hidden 8192, 80 layers, MLP 29568,
 * vocabulary 152064): a larger value is a broken config.json, reported by field before anything
 * is allocated.
 */
export const QWEN2_LIMITS = Object.freeze({
  vocabSize: 1 << 22, hiddenSize: 1 << 16, intermediateSize: 1 << 18, numHiddenLayers: 1024, numAttentionHeads: 1024, numKeyValueHeads: 1024,
  maxPositionEmbeddings: 1 << 24,
});

/**
 * Defaults + overrides, validated once; headDim derived.
 * ```ts
 * const cfg = resolveQwen2({ ...QWEN2_PRESETS.tiny.config, numHiddenLayers: 4 });
 * ```
 */
export function resolveQwen2(p: Partial<Qwen2Config>, where = "qwen2"): ResolvedQwen2Config {
  for (const k of Object.keys(p)) {
    if (!(k in QWEN2_DEFAULTS)) throw new ConfigError(`${where}.${k}: unknown Qwen2 config field (known: ${Object.keys(QWEN2_DEFAULTS).join(", ")})`);
  }
  return validated({ ...QWEN2_DEFAULTS, ...p }, (k) => `${where}.${k}`);
}

/** Checks every field (`at` names a field in errors) and derives headDim. */
function validated(c: Qwen2Config, at: (k: keyof Qwen2Config) => string): ResolvedQwen2Config {
  for (const k of ["vocabSize", "hiddenSize", "intermediateSize", "numHiddenLayers", "numAttentionHeads", "numKeyValueHeads", "maxPositionEmbeddings"] as const) {
    ensure(isPosInt(c[k]), at(k), `must be a positive integer, got ${JSON.stringify(c[k])}`);
    ensure(c[k] <= QWEN2_LIMITS[k], at(k), `${c[k]} is beyond any real model (at most ${QWEN2_LIMITS[k]}); the config is broken`);
  }
  ensure(Number.isInteger(c.maxWindowLayers) && c.maxWindowLayers >= 0, at("maxWindowLayers"), `must be a non-negative integer, got ${JSON.stringify(c.maxWindowLayers)}`);
  ensure(c.hiddenSize % c.numAttentionHeads === 0, at("hiddenSize"), `${c.hiddenSize} is not divisible by the number of attention heads ${c.numAttentionHeads}`);
  ensure(c.numAttentionHeads % c.numKeyValueHeads === 0, at("numKeyValueHeads"), `${c.numKeyValueHeads} must divide the number of attention heads ${c.numAttentionHeads} (grouped-query attention)`);
  const headDim = c.hiddenSize / c.numAttentionHeads;
  ensure(headDim % 2 === 0, at("hiddenSize"), `head dim ${headDim} (hidden size / attention heads) must be even for rotary embeddings`);
  ensure(c.hiddenAct === "silu", at("hiddenAct"), `must be "silu" (Qwen2's SwiGLU MLP), got ${JSON.stringify(c.hiddenAct)}`);
  ensure(typeof c.rmsNormEps === "number" && c.rmsNormEps > 0, at("rmsNormEps"), `must be a positive number, got ${JSON.stringify(c.rmsNormEps)}`);
  ensure(typeof c.ropeTheta === "number" && c.ropeTheta > 0, at("ropeTheta"), `must be a positive number, got ${JSON.stringify(c.ropeTheta)}`);
  ensure(typeof c.attentionDropout === "number" && c.attentionDropout >= 0 && c.attentionDropout < 1, at("attentionDropout"), `must be in [0, 1), got ${JSON.stringify(c.attentionDropout)}`);
  ensure(typeof c.initializerRange === "number" && c.initializerRange >= 0, at("initializerRange"), `must be a non-negative number, got ${JSON.stringify(c.initializerRange)}`);
  ensure(typeof c.tieWordEmbeddings === "boolean", at("tieWordEmbeddings"), `must be a boolean, got ${JSON.stringify(c.tieWordEmbeddings)}`);
  ensure(c.bosTokenId === null || isTokenId(c.bosTokenId), at("bosTokenId"), `must be a token id or null, got ${JSON.stringify(c.bosTokenId)}`);
  const eos = c.eosTokenId;
  ensure(eos === null || isTokenId(eos) || (Array.isArray(eos) && eos.every(isTokenId)), at("eosTokenId"), `must be a token id, a list of them, or null, got ${JSON.stringify(eos)}`);
  ensure(DTYPES.includes(c.torchDtype), at("torchDtype"), `must be one of ${DTYPES.join(", ")}, got ${JSON.stringify(c.torchDtype)}`);
  ensure(c.useSlidingWindow === false, at("useSlidingWindow"), "sliding-window attention is not implemented (MindsEye attends over the full context; Qwen2.5 checkpoints ship use_sliding_window: false)");
  ensure(c.slidingWindow === null || isPosInt(c.slidingWindow), at("slidingWindow"), `must be a positive integer or null, got ${JSON.stringify(c.slidingWindow)}`);
  return Object.freeze({ ...c, eosTokenId: Array.isArray(eos) ? (Object.freeze([...eos]) as number[]) : eos, headDim });
}

/**
 * A config from an HF config.json object (`where` names it in errors). Unknown HF fields
 * (transformers_version, use_cache, ...) are ignored; fields that would change the computation
 * and are not implemented (rope_scaling, sliding windows) are errors.
 */
export function fromHfConfig(json: HfJson, where = "config.json"): ResolvedQwen2Config {
  if (json.model_type !== undefined) {
    const modelType = hfField<string>(json, "model_type", "string", where);
    ensure(modelType === "qwen2", `${where}: "model_type"`, `expected "qwen2", got ${JSON.stringify(modelType)} (this loader reads Qwen2/Qwen2.5 language models)`);
  }
  if (json.architectures !== undefined) {
    const arch = hfField<unknown[]>(json, "architectures", "array", where);
    ensure(arch.every((a) => typeof a === "string" && a.startsWith("Qwen2")), `${where}: "architectures"`, `expected Qwen2 architectures such as ["Qwen2ForCausalLM"], got ${JSON.stringify(arch)}`);
  }
  if (json.rope_scaling !== undefined && json.rope_scaling !== null) {
    throw new ConfigError(`${where}: field "rope_scaling" ${JSON.stringify(json.rope_scaling)} is not supported (Qwen2 here uses plain RoPE; remove it or use a checkpoint without RoPE scaling)`);
  }
  // Newer transformers write RoPE settings as rope_parameters: { rope_type, rope_theta }.
  let ropeTheta = hfField<number>(json, "rope_theta", "number", where, QWEN2_DEFAULTS.ropeTheta);
  if (json.rope_parameters !== undefined && json.rope_parameters !== null) {
    const rp = hfField<HfJson>(json, "rope_parameters", "object", where);
    const type = hfField<string>(rp, "rope_type", "string", `${where}: rope_parameters`, "default");
    ensure(type === "default", `${where}: "rope_parameters"."rope_type"`, `only "default" RoPE is supported, got ${JSON.stringify(type)}`);
    ropeTheta = hfField<number>(rp, "rope_theta", "number", `${where}: rope_parameters`, ropeTheta);
  }
  const hiddenSize = hfField<number>(json, "hidden_size", "integer", where);
  const heads = hfField<number>(json, "num_attention_heads", "integer", where);
  if (json.head_dim !== undefined && json.head_dim !== null) {
    const hd = hfField<number>(json, "head_dim", "integer", where);
    ensure(hd * heads === hiddenSize, `${where}: "head_dim"`, `${hd} differs from hidden_size / num_attention_heads = ${hiddenSize / heads} (Qwen2 derives it)`);
  }
  const dtype = hfField<string>(json, "torch_dtype", "string", where, hfField<string>(json, "dtype", "string", where, "float32"));
  ensure((DTYPES as readonly string[]).includes(dtype), `${where}: "torch_dtype"`, `must be one of ${DTYPES.join(", ")}, got ${JSON.stringify(dtype)}`);
  const eos = json.eos_token_id;
  if (eos !== undefined && eos !== null && !isTokenId(eos) && !(Array.isArray(eos) && eos.every(isTokenId))) {
    throw new ConfigError(`${where}: field "eos_token_id" must be a token id or a list of them, got ${JSON.stringify(eos)}`);
  }
  const cfg: Qwen2Config = {
    vocabSize: hfField(json, "vocab_size", "integer", where),
    hiddenSize,
    intermediateSize: hfField(json, "intermediate_size", "integer", where),
    numHiddenLayers: hfField(json, "num_hidden_layers", "integer", where),
    numAttentionHeads: heads,
    numKeyValueHeads: hfField(json, "num_key_value_heads", "integer", where, heads),
    hiddenAct: hfField(json, "hidden_act", "string", where, "silu"),
    maxPositionEmbeddings: hfField(json, "max_position_embeddings", "integer", where, QWEN2_DEFAULTS.maxPositionEmbeddings),
    rmsNormEps: hfField(json, "rms_norm_eps", "number", where, QWEN2_DEFAULTS.rmsNormEps),
    ropeTheta,
    tieWordEmbeddings: hfField(json, "tie_word_embeddings", "boolean", where, QWEN2_DEFAULTS.tieWordEmbeddings),
    attentionDropout: hfField(json, "attention_dropout", "number", where, 0),
    bosTokenId: hfField<number | null>(json, "bos_token_id", "integer", where, null),
    eosTokenId: (eos ?? null) as number | number[] | null,
    torchDtype: dtype as Qwen2Dtype,
    initializerRange: hfField(json, "initializer_range", "number", where, QWEN2_DEFAULTS.initializerRange),
    useSlidingWindow: hfField(json, "use_sliding_window", "boolean", where, false),
    slidingWindow: hfField<number | null>(json, "sliding_window", "integer", where, null),
    maxWindowLayers: hfField(json, "max_window_layers", "integer", where, QWEN2_DEFAULTS.maxWindowLayers),
  };
  return validated(cfg, (k) => `${where}: "${HF_NAMES[k]}"`);
}

const HF_NAMES: Record<keyof Qwen2Config, string> = {
  vocabSize: "vocab_size", hiddenSize: "hidden_size", intermediateSize: "intermediate_size", numHiddenLayers: "num_hidden_layers",
  numAttentionHeads: "num_attention_heads", numKeyValueHeads: "num_key_value_heads", hiddenAct: "hidden_act",
  maxPositionEmbeddings: "max_position_embeddings", rmsNormEps: "rms_norm_eps", ropeTheta: "rope_theta",
  tieWordEmbeddings: "tie_word_embeddings", attentionDropout: "attention_dropout", bosTokenId: "bos_token_id",
  eosTokenId: "eos_token_id", torchDtype: "torch_dtype", initializerRange: "initializer_range",
  useSlidingWindow: "use_sliding_window", slidingWindow: "sliding_window", maxWindowLayers: "max_window_layers",
};

/** The config.json HF writes for this config (model_type "qwen2", Qwen2ForCausalLM). */
export function toHfConfig(cfg: Qwen2Config): HfJson {
  const out: HfJson = { architectures: ["Qwen2ForCausalLM"], model_type: "qwen2" };
  for (const k of Object.keys(HF_NAMES) as (keyof Qwen2Config)[]) {
    const v = cfg[k];
    out[HF_NAMES[k]] = Array.isArray(v) ? [...v] : v;
  }
  out.use_cache = true;
  return out;
}

export interface Qwen2Preset {
  /** Where the numbers come from. */
  source: string;
  config: Partial<Qwen2Config>;
}

const QWEN25_COMMON = { hiddenAct: "silu", rmsNormEps: 1e-6, ropeTheta: 1_000_000, attentionDropout: 0, bosTokenId: 151643, eosTokenId: 151643, torchDtype: "bfloat16", initializerRange: 0.02, useSlidingWindow: false } as const;

/** Named configs. `tiny` is shared by tests and quick runs; `bench` is bench:models' model. */
export const QWEN2_PRESETS: Readonly<Record<string, Qwen2Preset>> = Object.freeze({
  tiny: {
    source: "MindsEye test size (HF's tiny testers use hidden 32, vocab 99), with GQA 4/2 heads",
    config: { vocabSize: 99, hiddenSize: 32, intermediateSize: 64, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, maxPositionEmbeddings: 512, ropeTheta: 10000, tieWordEmbeddings: false, bosTokenId: null, eosTokenId: 2, torchDtype: "float32", slidingWindow: null, maxWindowLayers: 2 },
  },
  bench: {
    source: "MindsEye bench:models (issue 3): width 512, 8 layers, GQA 8/2 heads, Qwen2.5's MLP ratio (~2.7) and tied embeddings, vocab 4096",
    config: { ...QWEN25_COMMON, vocabSize: 4096, hiddenSize: 512, intermediateSize: 1376, numHiddenLayers: 8, numAttentionHeads: 8, numKeyValueHeads: 2, maxPositionEmbeddings: 4096, tieWordEmbeddings: true, bosTokenId: null, eosTokenId: null, torchDtype: "float32", slidingWindow: null, maxWindowLayers: 8 },
  },
  "qwen2.5-0.5b": {
    source: "https://huggingface.co/Qwen/Qwen2.5-0.5B/blob/main/config.json",
    config: { ...QWEN25_COMMON, vocabSize: 151936, hiddenSize: 896, intermediateSize: 4864, numHiddenLayers: 24, numAttentionHeads: 14, numKeyValueHeads: 2, maxPositionEmbeddings: 32768, tieWordEmbeddings: true, slidingWindow: 32768, maxWindowLayers: 24 },
  },
  "qwen2.5-1.5b": {
    source: "https://huggingface.co/Qwen/Qwen2.5-1.5B/blob/main/config.json",
    config: { ...QWEN25_COMMON, vocabSize: 151936, hiddenSize: 1536, intermediateSize: 8960, numHiddenLayers: 28, numAttentionHeads: 12, numKeyValueHeads: 2, maxPositionEmbeddings: 131072, tieWordEmbeddings: true, slidingWindow: 131072, maxWindowLayers: 21 },
  },
  "qwen2.5-7b": {
    source: "https://huggingface.co/Qwen/Qwen2.5-7B/blob/main/config.json",
    config: { ...QWEN25_COMMON, vocabSize: 152064, hiddenSize: 3584, intermediateSize: 18944, numHiddenLayers: 28, numAttentionHeads: 28, numKeyValueHeads: 4, maxPositionEmbeddings: 131072, tieWordEmbeddings: false, slidingWindow: 131072, maxWindowLayers: 28 },
  },
});

/** A preset by name, resolved; an unknown name says which exist and the closest one. */
export function qwen2Preset(name: string, overrides: Partial<Qwen2Config> = {}): ResolvedQwen2Config {
  const p = QWEN2_PRESETS[name];
  if (p === undefined) {
    const names = Object.keys(QWEN2_PRESETS);
    const close = names.map((n) => [n, editDistance(n, name.toLowerCase())] as const).sort((a, b) => a[1] - b[1])[0]!;
    const hint = close[1] <= Math.max(2, name.length / 3) ? ` — did you mean "${close[0]}"?` : "";
    throw new ConfigError(`unknown Qwen2 preset "${name}"${hint} (presets: ${names.join(", ")})`);
  }
  return resolveQwen2({ ...p.config, ...overrides }, `qwen2 preset "${name}"`);
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

// =============================================================================================
// Rotary embeddings and attention masks

/** Precomputed rotary tables, each [B, T, headDim] (or broadcastable), in the hidden dtype. */
export interface RotaryEmbeddings {
  cos: Tensor;
  sin: Tensor;
}

/**
 * Qwen2's rotary tables for integer positions [B, T]: inv_freq = 1 / theta^(2i/headDim) and the
 * angles in float32 (as HF, whatever the model dtype), then cos/sin cast to `dtype`.
 */
export function rotaryEmbeddings(positionIds: Tensor, headDim: number, theta: number, dtype: DType): RotaryEmbeddings {
  return torch.scope(() => rotaryFromInvFreq(positionIds, rotaryInvFreq(headDim, theta, positionIds.device), dtype));
}

/** inv_freq = 1 / theta^(2i/headDim), float32 [headDim/2] (HF's default RoPE; other families rescale it). */
export function rotaryInvFreq(headDim: number, theta: number, device: Device = "cpu"): Tensor {
  return torch.scope(() => torch.pow(theta, torch.arange(0, headDim, 2, { device }).float().div(headDim)).reciprocal());
}

/** cos/sin tables [B, T, 2·F] for positions [B, T] and frequencies invFreq [F] (float32), angles in float32. */
export function rotaryFromInvFreq(positionIds: Tensor, invFreq: Tensor, dtype: DType): RotaryEmbeddings {
  return torch.scope(() => {
    const freqs = positionIds.float().unsqueeze(-1).mul(invFreq); // [B, T, hd/2]
    const emb = torch.cat([freqs, freqs], -1); // [B, T, hd]
    return { cos: emb.cos().to({ dtype }), sin: emb.sin().to({ dtype }) };
  });
}

/** x [.., hd] -> cat(-x2, x1), the half-split rotation HF's rotate_half applies. */
function rotateHalf(x: Tensor): Tensor {
  const half = x.shape[x.ndim - 1]! / 2;
  return torch.cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
}

/** Rotates q [B, H, T, hd] and k [B, Hkv, T, hd] by cos/sin [B, T, hd] (HF's apply_rotary_pos_emb). */
export function applyRotary(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor): [Tensor, Tensor] {
  const c = cos.unsqueeze(1), s = sin.unsqueeze(1); // [B, 1, T, hd]: broadcast over heads
  return [q.mul(c).add(rotateHalf(q).mul(s)), k.mul(c).add(rotateHalf(k).mul(s))];
}

/**
 * Positions as HF's generate computes them for left padding: cumsum(mask) − 1, and 1 at padded
 * slots; the last T columns. attentionMask [B, S] (S = cached + new tokens) -> [B, T] int64.
 */
export function positionIdsFromMask(attentionMask: Tensor, T: number): Tensor {
  return torch.scope(() => {
    const m = attentionMask.long();
    const pos = m.cumsum(-1).sub(1).maskedFill(m.eq(0), 1); // [B, S]
    const S = pos.shape[1]!;
    return pos.narrow(1, S - T, T);
  });
}

/** What attention layers take: an additive float mask [B, 1, T, S], "causal" (no padding, no cache) or null (attend to all). */
export type AttentionMask = Tensor | "causal" | null;

/**
 * The attention mask for T new tokens after P cached ones. attentionMask2d [B, P + T] marks real
 * tokens (1) and padding (0). Blocked entries hold the dtype's lowest finite value, as HF does, so
 * a row that is blocked everywhere (a left-pad query) stays finite after softmax instead of NaN.
 */
export function buildAttentionMask(attentionMask2d: Tensor | undefined, T: number, P: number, dtype: DType, device: Device = "cpu"): AttentionMask {
  const S = P + T;
  if (attentionMask2d === undefined) {
    if (T === 1) return null; // one new token sees every cached one
    if (P === 0) return "causal";
  } else if (attentionMask2d.ndim !== 2 || attentionMask2d.shape[1] !== S) {
    throw new RangeError(`attentionMask has shape [${attentionMask2d.shape.join(", ")}] but must be [B, ${S}] (${P} cached + ${T} new tokens; 1 = token, 0 = padding)`);
  }
  return torch.scope(() => {
    const key = torch.arange(S, undefined, 1, { device }).view(1, S);
    const query = torch.arange(P, S, 1, { device }).view(T, 1);
    let allowed = key.le(query).view(1, 1, T, S); // causal: slot j visible from query slot P+i when j <= P+i
    if (attentionMask2d !== undefined) {
      const B = attentionMask2d.shape[0]!;
      allowed = allowed.logicalAnd(attentionMask2d.ne(0).view(B, 1, 1, S)); // [B, 1, T, S]
    }
    return torch.zeros(allowed.shape, { dtype, device }).maskedFill(allowed.logicalNot(), LOWEST[dtype]);
  });
}

const LOWEST: Record<DType, number> = {
  float32: -3.4028234663852886e38, float64: -1.7976931348623157e308, bfloat16: -3.3895313892515355e38, float16: -65504,
  int64: 0, int32: 0, int16: 0, int8: 0, uint8: 0, bool: 0,
};

// =============================================================================================
// KV cache

/**
 * Keys and values of every layer for the tokens seen so far, appended at each call (as HF's
 * DynamicCache). Its tensors live outside torch.scope (untracked aliases), so a cache survives
 * the per-step scopes of generation; call dispose() when done.
 * ```ts
 * const out = model.forward({ inputIds: prompt, useCache: true });
 * const next = model.forward({ inputIds: token, pastKeyValues: out.pastKeyValues });
 * out.pastKeyValues!.dispose();
 * ```
 */
export class KVCache {
  private readonly keys: (Tensor | null)[];
  private readonly values: (Tensor | null)[];
  private released = false;
  constructor(readonly numLayers: number) {
    this.keys = Array<Tensor | null>(numLayers).fill(null);
    this.values = Array<Tensor | null>(numLayers).fill(null);
  }
  /** Number of cached positions (0 when empty). */
  get length(): number { return this.keys[0]?.shape[2] ?? 0; }

  /** Appends k, v [B, Hkv, T, hd] to layer `layer`; returns all keys and values [B, Hkv, P + T, hd]. */
  update(layer: number, k: Tensor, v: Tensor): [Tensor, Tensor] {
    if (layer < 0 || layer >= this.numLayers) throw new RangeError(`KVCache.update: layer ${layer} out of range (the cache has ${this.numLayers} layers)`);
    if (this.released) throw new Error("KVCache.update: the cache was disposed; start a new one (or omit pastKeyValues with useCache: true)");
    const oldK = this.keys[layer] ?? null, oldV = this.values[layer] ?? null;
    const fullK = oldK ? torch.cat([oldK, k], 2) : k;
    const fullV = oldV ? torch.cat([oldV, v], 2) : v;
    this.keys[layer] = untracked(fullK);
    this.values[layer] = untracked(fullV);
    oldK?.dispose();
    oldV?.dispose();
    return [fullK, fullV];
  }

  /** Frees every cached tensor. */
  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t?.dispose();
    this.keys.fill(null);
    this.values.fill(null);
    this.released = true;
  }
}

/** An alias of t that no torch.scope owns (nn.Buffer wraps without tracking, as module state does). */
function untracked(t: Tensor): Tensor {
  return new nn.Buffer(t, false);
}

// =============================================================================================
// Layers

export interface LayerOptions {
  dtype?: DType;
  device?: Device;
  generator?: Generator;
}

/** x [B, Hkv, S, hd] -> [B, Hkv·n, S, hd], each KV head repeated for its n query heads (HF's repeat_kv). */
function repeatKv(x: Tensor, n: number): Tensor {
  if (n === 1) return x;
  const [B, Hkv, S, hd] = x.shape as [number, number, number, number];
  return x.unsqueeze(2).expand(B, Hkv, n, S, hd).reshape(B, Hkv * n, S, hd);
}

export class Qwen2Attention extends nn.Module {
  q_proj: nn.Linear;
  k_proj: nn.Linear;
  v_proj: nn.Linear;
  o_proj: nn.Linear;
  constructor(readonly cfg: ResolvedQwen2Config, readonly layerIdx: number, o: LayerOptions = {}) {
    super();
    const { hiddenSize: D, numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: hd } = cfg;
    this.q_proj = new nn.Linear(D, H * hd, { ...o, bias: true });
    this.k_proj = new nn.Linear(D, Hkv * hd, { ...o, bias: true });
    this.v_proj = new nn.Linear(D, Hkv * hd, { ...o, bias: true });
    this.o_proj = new nn.Linear(H * hd, D, { ...o, bias: false });
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

/**
 * The core of a decoder's self-attention, shared by the Qwen2 and Llama families: rotates q
 * [B, H, T, hd] and k [B, Hkv, T, hd], appends k and v to the cache, attends with each KV head
 * serving H/Hkv query heads, scaled by hd^-½ -> [B, T, H·hd] (before o_proj).
 */
export function ropeAttention(q0: Tensor, k0: Tensor, v0: Tensor, o: { rope: RotaryEmbeddings; mask: AttentionMask; cache?: KVCache | undefined; layerIdx: number; dropoutP: number }): Tensor {
  const [B, H, T, hd] = q0.shape as [number, number, number, number];
  const n = H / k0.shape[1]!;
  const [q, k1] = applyRotary(q0, k0, o.rope.cos, o.rope.sin);
  const [k, v] = o.cache ? o.cache.update(o.layerIdx, k1, v0) : [k1, v0]; // [B, Hkv, S, hd]
  const y = F.scaledDotProductAttention(q, repeatKv(k, n), repeatKv(v, n), {
    attnMask: o.mask === "causal" ? null : o.mask,
    isCausal: o.mask === "causal",
    dropoutP: o.dropoutP,
    scale: hd ** -0.5,
  }); // [B, H, T, hd]
  return y.transpose(1, 2).reshape(B, T, H * hd);
}

/** SwiGLU: down(silu(gate(x)) · up(x)). */
export class Qwen2MLP extends nn.Module {
  gate_proj: nn.Linear;
  up_proj: nn.Linear;
  down_proj: nn.Linear;
  constructor(cfg: ResolvedQwen2Config, o: LayerOptions = {}) {
    super();
    this.gate_proj = new nn.Linear(cfg.hiddenSize, cfg.intermediateSize, { ...o, bias: false });
    this.up_proj = new nn.Linear(cfg.hiddenSize, cfg.intermediateSize, { ...o, bias: false });
    this.down_proj = new nn.Linear(cfg.intermediateSize, cfg.hiddenSize, { ...o, bias: false });
  }
  /** x [B, T, D] -> [B, T, D] */
  forward(x: Tensor): Tensor {
    return this.down_proj.forward(F.silu(this.gate_proj.forward(x)).mul(this.up_proj.forward(x)));
  }
}

export interface DecoderLayerInput {
  positionEmbeddings: RotaryEmbeddings;
  attentionMask: AttentionMask;
  pastKeyValues?: KVCache;
}

/** Pre-norm block: h + attn(norm(h)), then + mlp(norm(·)). */
export class Qwen2DecoderLayer extends nn.Module {
  input_layernorm: nn.RMSNorm;
  self_attn: Qwen2Attention;
  post_attention_layernorm: nn.RMSNorm;
  mlp: Qwen2MLP;
  constructor(cfg: ResolvedQwen2Config, layerIdx: number, o: LayerOptions = {}) {
    super();
    this.input_layernorm = new nn.RMSNorm(cfg.hiddenSize, cfg.rmsNormEps, o);
    this.self_attn = new Qwen2Attention(cfg, layerIdx, o);
    this.post_attention_layernorm = new nn.RMSNorm(cfg.hiddenSize, cfg.rmsNormEps, o);
    this.mlp = new Qwen2MLP(cfg, o);
  }
  /** hidden [B, T, D] -> [B, T, D] */
  forward(hidden: Tensor, o: DecoderLayerInput): Tensor {
    const h = hidden.add(this.self_attn.forward(this.input_layernorm.forward(hidden), o.positionEmbeddings, o.attentionMask, o.pastKeyValues));
    return h.add(this.mlp.forward(this.post_attention_layernorm.forward(h)));
  }
}

// =============================================================================================
// Models

export interface Qwen2ModelInput {
  /** int64 [B, T]; exactly one of inputIds and inputsEmbeds. */
  inputIds?: Tensor;
  /** [B, T, D], e.g. text embeddings with image features spliced in. */
  inputsEmbeds?: Tensor;
  /** [B, P + T]: 1 for tokens, 0 for (left) padding, over cached and new tokens. */
  attentionMask?: Tensor;
  /** int64 [B, T]; by default from attentionMask (left padding), else P..P+T-1. */
  positionIds?: Tensor;
  /** Precomputed rotary tables [B, T, headDim] (e.g. multimodal RoPE); replaces positionIds. */
  positionEmbeddings?: RotaryEmbeddings;
  /** Keys/values of earlier tokens; updated in place with these. */
  pastKeyValues?: KVCache;
  /** Return a cache (a new one when pastKeyValues is absent). */
  useCache?: boolean;
  /** Also return the hidden states: the embeddings and each layer's output, the last one normed (HF's layout, L + 1 tensors). */
  outputHiddenStates?: boolean;
}

export interface Qwen2ModelOutput {
  /** After the final norm: [B, T, D]. */
  lastHiddenState: Tensor;
  hiddenStates?: Tensor[];
  pastKeyValues?: KVCache;
}

/** embed_tokens → L decoder layers → norm (HF's Qwen2Model). */
export class Qwen2Model extends nn.Module {
  embed_tokens: nn.Embedding;
  layers: nn.ModuleList<Qwen2DecoderLayer>;
  norm: nn.RMSNorm;
  /** Rerun each decoder layer in backward instead of keeping its activations (torch.checkpoint; HF's gradient_checkpointing). */
  gradientCheckpointing = false;
  constructor(readonly cfg: ResolvedQwen2Config, o: LayerOptions = {}) {
    super();
    this.embed_tokens = new nn.Embedding(cfg.vocabSize, cfg.hiddenSize, o);
    this.layers = new nn.ModuleList(Array.from({ length: cfg.numHiddenLayers }, (_, i) => new Qwen2DecoderLayer(cfg, i, o)));
    this.norm = new nn.RMSNorm(cfg.hiddenSize, cfg.rmsNormEps, o);
  }

  forward(input: Qwen2ModelInput): Qwen2ModelOutput {
    return decoderForward("Qwen2Model", this, input, (positionIds, dtype) => rotaryEmbeddings(positionIds, this.cfg.headDim, this.cfg.ropeTheta, dtype));
  }
}

/** What decoderForward runs: HF's embed_tokens → layers → norm. */
export interface DecoderStack {
  embed_tokens: nn.Embedding;
  layers: nn.ModuleList<nn.Module & { forward(hidden: Tensor, o: DecoderLayerInput): Tensor }>;
  norm: nn.RMSNorm;
  training: boolean;
  /** Checkpoint each layer while training (a stack without the field never does). */
  gradientCheckpointing?: boolean;
}

/**
 * The forward of a RoPE decoder stack (Qwen2Model's, shared with LlamaModel): embeddings, positions
 * (from the mask or the cache), rotary tables by `rope`, the attention mask, each layer, the final
 * norm. `name` names the caller in errors.
 */
export function decoderForward(name: string, m: DecoderStack, input: Qwen2ModelInput, rope: (positionIds: Tensor, dtype: DType) => RotaryEmbeddings): Qwen2ModelOutput {
  const { inputIds, inputsEmbeds, attentionMask } = input;
  if ((inputIds === undefined) === (inputsEmbeds === undefined)) throw new Error(`${name}.forward: pass exactly one of inputIds and inputsEmbeds`);
  let h = inputsEmbeds ?? m.embed_tokens.forward(inputIds!); // [B, T, D]
  const [, T] = h.shape as [number, number, number];
  const cache = input.pastKeyValues ?? (input.useCache ? new KVCache(m.layers.length) : undefined);
  const P = cache?.length ?? 0;
  if (input.positionIds && input.positionIds.ndim !== 2) {
    throw new RangeError(`${name}.forward: positionIds must be [B, T], got [${input.positionIds.shape.join(", ")}] (for multimodal RoPE, pass positionEmbeddings { cos, sin } instead)`);
  }
  const tables = input.positionEmbeddings ?? rope(
    input.positionIds ?? (attentionMask ? positionIdsFromMask(attentionMask, T) : torch.arange(P, P + T, 1, { device: h.device }).view(1, T)),
    h.dtype,
  );
  const mask = buildAttentionMask(attentionMask, T, P, h.dtype, h.device);
  const hiddenStates: Tensor[] | undefined = input.outputHiddenStates ? [] : undefined;
  for (const layer of m.layers) {
    hiddenStates?.push(h);
    // Each layer's intermediates are freed when it returns (Python frees them as they go out of
    // use); under autograd the graph keeps what backward needs.
    const x = h;
    // A cached layer appends to the cache, which a rerun would do twice: no checkpoint with a cache (as HF).
    h = m.gradientCheckpointing === true && m.training && cache === undefined
      ? torch.checkpoint((y, o) => layer.forward(y, o), x, { positionEmbeddings: tables, attentionMask: mask })
      : torch.scope(() => layer.forward(x, { positionEmbeddings: tables, attentionMask: mask, pastKeyValues: cache }));
  }
  const last = m.norm.forward(h);
  hiddenStates?.push(last);
  return { lastHiddenState: last, ...(hiddenStates ? { hiddenStates } : {}), ...(cache ? { pastKeyValues: cache } : {}) };
}

export interface Qwen2CausalLMInput extends Qwen2ModelInput {
  /** Compute logits for the last N positions only (0: all), as HF's logits_to_keep. */
  logitsToKeep?: number;
}

export interface Qwen2CausalLMOutput extends Qwen2ModelOutput {
  /** [B, T, V] (T = logitsToKeep when given). */
  logits: Tensor;
}

/**
 * Holds a Qwen2 config against a checkpoint's header before anything is allocated: the number of
 * layers against the layer weights present, and vocab_size, hidden_size, num_key_value_heads and
 * intermediate_size against the shapes of embed_tokens, layer 0's projections and lm_head. A
 * mismatch is a ConfigError naming the config.json field. `prefix` is where Qwen2Model's weights
 * sit ("model." in Qwen2ForCausalLM, "language_model.model." in a MindsEye VLM).
 * ```ts
 * checkQwen2Checkpoint(cfg, readCheckpointHeader(dir), { where: `${dir}/config.json` });
 * ```
 */
export function checkQwen2Checkpoint(cfg: ResolvedQwen2Config, header: CheckpointHeader, o: { where: string; prefix?: string; lmHead?: string }): void {
  const p = o.prefix ?? "model.", w = o.where;
  const vocab = { size: cfg.vocabSize, field: "vocab_size" }, hidden = { size: cfg.hiddenSize, field: "hidden_size" };
  checkTensorShape(header, `${p}embed_tokens.weight`, [vocab, hidden], w);
  checkLayerCount(header, `${p}layers.`, cfg.numHiddenLayers, "num_hidden_layers", w);
  checkTensorShape(header, `${p}layers.0.self_attn.q_proj.weight`, [hidden, hidden], w);
  checkTensorShape(header, `${p}layers.0.self_attn.k_proj.weight`, [{ size: cfg.numKeyValueHeads * cfg.headDim, field: `num_key_value_heads × head_dim (${cfg.numKeyValueHeads} × ${cfg.headDim})` }, hidden], w);
  checkTensorShape(header, `${p}layers.0.mlp.gate_proj.weight`, [{ size: cfg.intermediateSize, field: "intermediate_size" }, hidden], w);
  if (!cfg.tieWordEmbeddings) checkTensorShape(header, o.lmHead ?? "lm_head.weight", [vocab, hidden], w);
}

export interface PretrainedOptions {
  /** Weight dtype (default float32); bf16/f16 checkpoints are converted on load. */
  dtype?: Qwen2Dtype;
  device?: Device;
}

/**
 * The output head of a decoder-only LM, as HF's *ForCausalLM classes set it up: tied to the input
 * embedding when the config says so (one Parameter under two names), then every linear and
 * embedding weight drawn from normal(0, initializerRange) and biases zeroed, module by module.
 */
export function initCausalLmHead(lm: nn.Module, head: nn.Linear, embedding: nn.Embedding, cfg: { tieWordEmbeddings: boolean; initializerRange: number }, generator?: Generator): void {
  if (cfg.tieWordEmbeddings) {
    head.weight.dispose();
    head.weight = embedding.weight;
  }
  for (const [, m] of lm.namedModules()) {
    if (m instanceof nn.Linear || m instanceof nn.Embedding) nn.init.normal_(m.weight, 0, cfg.initializerRange, generator);
    if (m instanceof nn.Linear && m.bias) nn.init.zeros_(m.bias);
  }
}

/** hidden [B, T, D] → its last `keep` positions (all when keep is 0), as HF's logits_to_keep. */
export function keepLastPositions(hidden: Tensor, keep = 0): Tensor {
  const T = hidden.shape[1]!;
  return keep > 0 ? hidden.narrow(1, Math.max(0, T - keep), Math.min(keep, T)) : hidden;
}

/**
 * A decoder checkpoint's names as loaded (loadCheckpointInto's rename): the rotary tables older
 * checkpoints carry are dropped (computed, never loaded; HF skips them too), and under `tie` so is
 * a copy of the output embedding saved under `lmHead`: HF saves a tied head once, as the input
 * embedding, which fills the one Parameter both names share.
 * ```ts
 * loadCheckpointInto(model, dir, { rename: decoderRename(cfg.tieWordEmbeddings, "lm_head.weight") });
 * ```
 */
export function decoderRename(tie: boolean, lmHead: string): Rename {
  return (name) => (name.endsWith(".rotary_emb.inv_freq") || (tie && name === lmHead) ? null : name);
}

/**
 * Qwen2 language model with its output head (HF's Qwen2ForCausalLM). New weights follow HF's
 * initialisation: normal(0, initializerRange) for linear and embedding weights, zero biases,
 * RMSNorm weights one.
 * ```ts
 * const model = new Qwen2ForCausalLM(qwen2Preset("tiny"), { generator: new torch.Generator(0) });
 * const { logits } = model.forward({ inputIds });   // [B, T, V]
 * ```
 */
export class Qwen2ForCausalLM extends nn.Module {
  model: Qwen2Model;
  lm_head: nn.Linear;
  constructor(readonly cfg: ResolvedQwen2Config, o: LayerOptions = {}) {
    super();
    this.model = new Qwen2Model(cfg, o);
    this.lm_head = new nn.Linear(cfg.hiddenSize, cfg.vocabSize, { ...o, bias: false });
    initCausalLmHead(this, this.lm_head, this.model.embed_tokens, cfg, o.generator);
  }

  forward(input: Qwen2CausalLMInput): Qwen2CausalLMOutput {
    const out = this.model.forward(input);
    return { ...out, logits: this.lm_head.forward(keepLastPositions(out.lastHiddenState, input.logitsToKeep)) }; // [B, T, V]
  }

  /**
   * Loads an HF checkpoint directory: config.json + model.safetensors (or shards with
   * model.safetensors.index.json). Missing, unexpected and mis-shaped weights are one error.
   */
  static fromPretrained(dir: string, opts: PretrainedOptions = {}): Qwen2ForCausalLM {
    const cfg = fromHfConfig(readHfConfig(dir), `${dir}/config.json`);
    const header = readCheckpointHeader(dir);
    checkQwen2Checkpoint(cfg, header, { where: `${dir}/config.json` }); // before anything is allocated
    const dtype = opts.dtype ?? "float32";
    const model = new Qwen2ForCausalLM(cfg, { dtype, ...(opts.device ? { device: opts.device } : {}) });
    try {
      // Read into the parameters, a tensor at a time: peak memory is the model, not twice it.
      loadCheckpointInto(model, dir, { header, rename: decoderRename(cfg.tieWordEmbeddings, "lm_head.weight") });
    } catch (e) {
      model.parameters().forEach((p) => p.dispose());
      if (e instanceof nn.StateDictError) {
        throw new Error(`${dir}: the checkpoint does not fit Qwen2ForCausalLM with this config.json (tie_word_embeddings: ${cfg.tieWordEmbeddings})\n${e.message}`, { cause: e });
      }
      throw e;
    }
    return model;
  }

  /** Writes config.json and the weights as HF does (tied lm_head.weight omitted; shards beyond maxShardBytes). */
  savePretrained(dir: string, opts: { maxShardBytes?: number; dtype?: Qwen2Dtype } = {}): void {
    const dtype = opts.dtype ?? (this.model.embed_tokens.weight.dtype as Qwen2Dtype);
    saveCheckpoint(dir, this, toHfConfig({ ...this.cfg, torchDtype: dtype }), {
      skip: (name) => this.cfg.tieWordEmbeddings && name === "lm_head.weight",
      ...(opts.maxShardBytes ? { maxShardBytes: opts.maxShardBytes } : {}),
      ...(opts.dtype ? { dtype: opts.dtype } : {}),
    });
  }
}
