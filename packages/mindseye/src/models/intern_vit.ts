// InternViT vision towers (OpenGVLab's InternVisionModel, modeling_intern_vit.py of the InternVL
// checkpoints): InternViT-300M-448px (InternVL2.5-1B…8B) and InternViT-6B-448px (26B…78B).
//
//   pixels ─conv (bias)─► patches ─[class token]─+pos (patch part resized bicubically to the
//   input's grid)─► layers: x + ls1·attn(norm1(x)), x + ls2·mlp(norm2(x)) ─► last_hidden_state
//   (no final norm); pooled = last[:, 0]
//
// norm1/norm2 are RMSNorm ("rms_norm", the 6B) or LayerNorm ("layer_norm", the 300M); attention
// is one packed `qkv` Linear laid out (3, heads, head_dim), with RMSNorms q_norm/k_norm over all
// heads when qk_normalization (the 6B); ls1/ls2 are per-channel layer scales. Module names are the
// reference's, so `encoder.layers.3.attn.qkv.weight` maps 1:1 to a checkpoint (`vision_model.` in
// InternVLChatModel). Golden fixture: fixtures/models/make_internvl_golden.py (vit_ln, vit_rms).
//
//   const vit = InternVisionModel.fromPretrained("InternViT-300M-448px-V2_5/");
//   const feats = torch.noGrad(() => vit.features(pixels));   // [B, 1 + 1024, 1024]
import { join } from "node:path";
import { torch, nn, F, type Tensor, type DType, type Device, type Generator } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { hfField, ensure, readHfConfig, type HfJson } from "../config/hf.js";
import { didYouMean } from "../data/formats/index.js";
import { VIT_LIMITS } from "./vit.js";
import { loadCheckpointInto, saveCheckpoint, readCheckpointHeader, checkTensorShape, checkLayerCount, type CheckpointHeader } from "./pretrained.js";

// =============================================================================================
// Config

export type InternVitNormType = "rms_norm" | "layer_norm";

/** InternVisionConfig (configuration_intern_vit.py), camelCase. */
export interface InternVitConfig {
  /** Width D of the tokens and of every layer. */
  hiddenSize: number;
  /** Width of the MLP inside each layer. */
  intermediateSize: number;
  /** Number of encoder layers. */
  numHiddenLayers: number;
  /** Attention heads per layer (hiddenSize must divide evenly). */
  numAttentionHeads: number;
  /** Side of the square training resolution; the learned position grid is imageSize/patchSize. */
  imageSize: number;
  /** Side of one square patch in pixels (the conv's kernel and stride). */
  patchSize: number;
  /** Input channels: the reference's conv takes 3 whatever this says, so it must be 3. */
  numChannels: number;
  /** The packed qkv Linear has a bias (300M: yes, 6B: no). */
  qkvBias: boolean;
  /** RMSNorm q_norm/k_norm over all heads' queries and keys (6B: yes, 300M: no). */
  qkNormalization: boolean;
  /** norm1/norm2: RMSNorm (6B) or LayerNorm (300M). */
  normType: InternVitNormType;
  /** MLP activation: "gelu", exact (ACT2FN). */
  hiddenAct: "gelu";
  /** Epsilon of norm1/norm2 and q_norm/k_norm. */
  layerNormEps: number;
  /** Dropout after attn.proj while training (0 in every release). */
  dropout: number;
  /** Stochastic depth of the reference's training (DropPath); not applied here, so training runs without it. */
  dropPathRate: number;
  /** Dropout on attention probabilities while training. */
  attentionDropout: number;
  /** Std of the reference's weight initialisation (informational). */
  initializerRange: number;
  /** Initial value of the layer scales ls1/ls2 (6B: 0.1, 300M: 1.0). */
  initializerFactor: number;
}

export type ResolvedInternVitConfig = Readonly<InternVitConfig & {
  /** hiddenSize / numAttentionHeads. */
  headDim: number;
  /** Side of the learned position grid, floor(imageSize / patchSize). */
  gridSize: number;
  /** gridSize² patches + the class position. */
  numPositions: number;
}>;

/** InternVisionConfig's class defaults: a config.json field left out takes these (the 6B's shape). */
export const INTERN_VIT_DEFAULTS: Readonly<InternVitConfig> = Object.freeze({
  hiddenSize: 3200,
  intermediateSize: 12800,
  numHiddenLayers: 48,
  numAttentionHeads: 25,
  imageSize: 224,
  patchSize: 14,
  numChannels: 3,
  qkvBias: false,
  qkNormalization: true,
  normType: "rms_norm",
  hiddenAct: "gelu",
  layerNormEps: 1e-6,
  dropout: 0,
  dropPathRate: 0,
  attentionDropout: 0,
  initializerRange: 0.02,
  initializerFactor: 0.1,
});

const KEYS = Object.keys(INTERN_VIT_DEFAULTS) as (keyof InternVitConfig)[];

/**
 * Defaults + overrides, validated once (unknown keys rejected); derived fields computed.
 * ```ts
 * const cfg = resolveInternVit({ ...INTERN_VIT_PRESETS.tiny, numHiddenLayers: 4 });
 * ```
 */
export function resolveInternVit(p: Partial<InternVitConfig>, where = "intern_vit"): ResolvedInternVitConfig {
  for (const k of Object.keys(p)) {
    if (!(KEYS as string[]).includes(k)) throw new ConfigError(`${where}.${k}: unknown InternViT config field${didYouMean(k, KEYS)} (known: ${KEYS.join(", ")})`);
  }
  return validated({ ...INTERN_VIT_DEFAULTS, ...p }, (k) => `${where}.${k}`);
}

function validated(c: InternVitConfig, at: (k: keyof InternVitConfig) => string): ResolvedInternVitConfig {
  for (const k of ["hiddenSize", "intermediateSize", "numHiddenLayers", "numAttentionHeads", "imageSize", "patchSize"] as const) {
    ensure(Number.isInteger(c[k]) && c[k] > 0, at(k), `must be a positive integer, got ${JSON.stringify(c[k])}`);
    ensure(c[k] <= VIT_LIMITS[k], at(k), `${c[k]} is beyond any real vision tower (at most ${VIT_LIMITS[k]}); the config is broken`);
  }
  ensure(c.numChannels === 3, at("numChannels"), `InternViT's patch embedding takes 3 (RGB) channels whatever the config says; got ${JSON.stringify(c.numChannels)}`);
  ensure(c.hiddenSize % c.numAttentionHeads === 0, at("hiddenSize"), `${c.hiddenSize} is not divisible by the number of attention heads ${c.numAttentionHeads}`);
  ensure(c.imageSize >= c.patchSize, at("imageSize"), `${c.imageSize} is smaller than one patch (patchSize ${c.patchSize})`);
  for (const k of ["qkvBias", "qkNormalization"] as const) ensure(typeof c[k] === "boolean", at(k), `must be a boolean, got ${JSON.stringify(c[k])}`);
  ensure(c.normType === "rms_norm" || c.normType === "layer_norm", at("normType"), `must be "rms_norm" or "layer_norm", got ${JSON.stringify(c.normType)}`);
  ensure(c.hiddenAct === "gelu", at("hiddenAct"), `only "gelu" (exact, as every InternViT release) is implemented, got ${JSON.stringify(c.hiddenAct)}`);
  ensure(typeof c.layerNormEps === "number" && c.layerNormEps > 0, at("layerNormEps"), `must be a positive number, got ${JSON.stringify(c.layerNormEps)}`);
  for (const k of ["dropout", "dropPathRate", "attentionDropout"] as const) {
    ensure(typeof c[k] === "number" && c[k] >= 0 && c[k] < 1, at(k), `must be in [0, 1), got ${JSON.stringify(c[k])}`);
  }
  for (const k of ["initializerRange", "initializerFactor"] as const) ensure(typeof c[k] === "number" && Number.isFinite(c[k]), at(k), `must be a number, got ${JSON.stringify(c[k])}`);
  const gridSize = Math.floor(c.imageSize / c.patchSize);
  ensure(gridSize * gridSize + 1 <= VIT_LIMITS.numPositions, at("imageSize"), `${c.imageSize} px in ${c.patchSize} px patches makes ${gridSize * gridSize} positions, beyond any real vision tower; the config is broken`);
  return Object.freeze({ ...c, headDim: c.hiddenSize / c.numAttentionHeads, gridSize, numPositions: gridSize * gridSize + 1 });
}

const HF_NAMES: Record<keyof InternVitConfig, string> = {
  hiddenSize: "hidden_size", intermediateSize: "intermediate_size", numHiddenLayers: "num_hidden_layers", numAttentionHeads: "num_attention_heads",
  imageSize: "image_size", patchSize: "patch_size", numChannels: "num_channels", qkvBias: "qkv_bias", qkNormalization: "qk_normalization",
  normType: "norm_type", hiddenAct: "hidden_act", layerNormEps: "layer_norm_eps", dropout: "dropout", dropPathRate: "drop_path_rate",
  attentionDropout: "attention_dropout", initializerRange: "initializer_range", initializerFactor: "initializer_factor",
};
const KINDS: Record<keyof InternVitConfig, "integer" | "number" | "boolean" | "string"> = {
  hiddenSize: "integer", intermediateSize: "integer", numHiddenLayers: "integer", numAttentionHeads: "integer", imageSize: "integer",
  patchSize: "integer", numChannels: "integer", qkvBias: "boolean", qkNormalization: "boolean", normType: "string", hiddenAct: "string",
  layerNormEps: "number", dropout: "number", dropPathRate: "number", attentionDropout: "number", initializerRange: "number", initializerFactor: "number",
};

export const INTERN_VIT_MODEL_TYPE = "intern_vit_6b";

/**
 * A config from an InternVisionConfig JSON: a standalone InternViT checkpoint's config.json, or the
 * vision_config of an InternVLChatConfig (whose model_type may be absent). Fields left out take the
 * class defaults, as the reference does; other keys (use_flash_attn, architectures, …) are ignored.
 */
export function internVitFromHfConfig(json: HfJson, where = "config.json"): ResolvedInternVitConfig {
  if (json.model_type !== undefined && json.model_type !== null) {
    const type = hfField<string>(json, "model_type", "string", where);
    ensure(type === INTERN_VIT_MODEL_TYPE, `${where}: "model_type"`, `expected "${INTERN_VIT_MODEL_TYPE}" (InternVisionConfig, the name every InternViT carries), got ${JSON.stringify(type)}`);
  }
  const d = INTERN_VIT_DEFAULTS;
  const c = {} as Record<keyof InternVitConfig, unknown>;
  for (const k of KEYS) c[k] = hfField(json, HF_NAMES[k], KINDS[k], where, d[k]);
  return validated(c as unknown as InternVitConfig, (k) => `${where}: "${HF_NAMES[k]}"`);
}

/** The config.json of an InternVisionModel checkpoint. */
export function internVitToHfConfig(c: ResolvedInternVitConfig): HfJson {
  const out: HfJson = { architectures: ["InternVisionModel"], model_type: INTERN_VIT_MODEL_TYPE };
  for (const k of KEYS) out[HF_NAMES[k]] = c[k];
  return out;
}

export interface InternVitPreset {
  /** Where the numbers come from. */
  source: string;
  config: Partial<InternVitConfig>;
}

/** Named configs; `tiny` is make_internvl_golden.py's vit_ln case. */
export const INTERN_VIT_PRESETS: Readonly<Record<string, InternVitPreset>> = Object.freeze({
  tiny: {
    source: "MindsEye test size (make_internvl_golden.py vit_ln): the 300M layout, 6×6 patches of 4 px",
    config: {
      hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 2, numAttentionHeads: 4, imageSize: 24, patchSize: 4,
      qkvBias: true, qkNormalization: false, normType: "layer_norm", initializerFactor: 1,
    },
  },
  "internvit-300m-448px-v2.5": {
    source: "https://huggingface.co/OpenGVLab/InternViT-300M-448px-V2_5/blob/main/config.json (vision_config of InternVL2.5-1B…8B)",
    config: {
      hiddenSize: 1024, intermediateSize: 4096, numHiddenLayers: 24, numAttentionHeads: 16, imageSize: 448, patchSize: 14,
      qkvBias: true, qkNormalization: false, normType: "layer_norm", layerNormEps: 1e-6, dropPathRate: 0.1, initializerFactor: 1,
    },
  },
  "internvit-6b-448px-v2.5": {
    source: "https://huggingface.co/OpenGVLab/InternViT-6B-448px-V2_5/blob/main/config.json (vision_config of InternVL2.5-26B…78B)",
    config: {
      hiddenSize: 3200, intermediateSize: 12800, numHiddenLayers: 45, numAttentionHeads: 25, imageSize: 448, patchSize: 14,
      qkvBias: false, qkNormalization: true, normType: "rms_norm", layerNormEps: 1e-6, dropPathRate: 0.1, initializerFactor: 0.1,
    },
  },
});

/** A preset by name, resolved; an unknown name says which exist and the closest one. */
export function internVitPreset(name: string, overrides: Partial<InternVitConfig> = {}): ResolvedInternVitConfig {
  const p = INTERN_VIT_PRESETS[name];
  if (p === undefined) {
    const names = Object.keys(INTERN_VIT_PRESETS);
    throw new ConfigError(`unknown InternViT preset "${name}"${didYouMean(name, names)} (presets: ${names.join(", ")})`);
  }
  return resolveInternVit({ ...p.config, ...overrides }, `intern_vit preset "${name}"`);
}

// =============================================================================================
// Modules

export interface InternVitOptions {
  dtype?: DType;
  device?: Device;
  /** Seeded generator for the initial weights (the global one if absent). */
  generator?: Generator;
}

/** A parameter of the given shape filled by `init`. */
function param(shape: number[], o: InternVitOptions, init: (t: Tensor) => void): nn.Parameter {
  const t = torch.empty(shape, { dtype: o.dtype ?? "float32", device: o.device ?? "cpu" });
  init(t);
  const p = new nn.Parameter(t);
  t.dispose();
  return p;
}

/** Class token, patch conv, learned positions [1, 1 + g², D] (the patch part resized to the input's grid). */
export class InternVisionEmbeddings extends nn.Module {
  class_embedding: nn.Parameter;
  patch_embedding: nn.Conv2d;
  position_embedding: nn.Parameter;

  constructor(readonly config: ResolvedInternVitConfig, o: InternVitOptions = {}) {
    super();
    const D = config.hiddenSize;
    // The reference's constructors: torch.randn for the class token and the positions.
    this.class_embedding = param([1, 1, D], o, (t) => nn.init.normal_(t, 0, 1, o.generator));
    this.patch_embedding = new nn.Conv2d(3, D, config.patchSize, { stride: config.patchSize, bias: true, ...o });
    this.position_embedding = param([1, config.numPositions, D], o, (t) => nn.init.normal_(t, 0, 1, o.generator));
  }

  /** pixels [B, 3, H, W] -> tokens [B, 1 + (H/p)·(W/p), D] with positions added. */
  forward(pixelValues: Tensor): Tensor {
    const c = this.config;
    if (pixelValues.ndim !== 4 || pixelValues.shape[1] !== 3) throw new RangeError(`InternViT: pixel values must be [batch, 3, height, width], got [${pixelValues.shape.join(", ")}]`);
    const [B, , H, W] = pixelValues.shape as [number, number, number, number];
    if (H < c.patchSize || W < c.patchSize) throw new RangeError(`InternViT: image ${H}×${W} is smaller than one ${c.patchSize}-pixel patch`);
    const w = this.patch_embedding.weight;
    const grid = this.patch_embedding.forward(pixelValues.to({ dtype: w.dtype })); // [B, D, gh, gw]
    const [, D, gh, gw] = grid.shape as [number, number, number, number];
    const x = torch.cat([this.class_embedding.expand(B, 1, D), grid.flatten(2).transpose(1, 2)], 1); // [B, 1 + gh·gw, D]
    return x.add(this.positions(gh, gw));
  }

  /**
   * Positions for a gh×gw patch grid, [1, 1 + gh·gw, D]: the learned table at the training grid,
   * else its patch part resized as the reference's _get_pos_embed does (bicubic, float32,
   * align_corners false); the class position is kept.
   */
  positions(gh: number, gw: number): Tensor {
    const g = this.config.gridSize, table = this.position_embedding; // [1, 1 + g², D]
    if (gh === g && gw === g) return table;
    const D = table.shape[2]!;
    const patchPart = table.narrow(1, 1, g * g).float().reshape(1, g, g, D).permute(0, 3, 1, 2); // [1, D, g, g]
    const resized = F.interpolate(patchPart, [gh, gw], { mode: "bicubic", alignCorners: false }).reshape(1, D, gh * gw).permute(0, 2, 1);
    return torch.cat([table.narrow(1, 0, 1), resized.to({ dtype: table.dtype })], 1);
  }
}

/** Norm of a layer by norm_type. */
function makeNorm(c: ResolvedInternVitConfig, o: InternVitOptions): nn.RMSNorm | nn.LayerNorm {
  return c.normType === "rms_norm" ? new nn.RMSNorm(c.hiddenSize, c.layerNormEps, o) : new nn.LayerNorm(c.hiddenSize, c.layerNormEps, o);
}

export class InternAttention extends nn.Module {
  qkv: nn.Linear;
  q_norm: nn.RMSNorm | null;
  k_norm: nn.RMSNorm | null;
  proj: nn.Linear;

  constructor(readonly config: ResolvedInternVitConfig, o: InternVitOptions = {}) {
    super();
    const D = config.hiddenSize;
    this.qkv = new nn.Linear(D, 3 * D, { ...o, bias: config.qkvBias });
    this.q_norm = config.qkNormalization ? new nn.RMSNorm(D, config.layerNormEps, o) : null;
    this.k_norm = config.qkNormalization ? new nn.RMSNorm(D, config.layerNormEps, o) : null;
    this.proj = new nn.Linear(D, D, { ...o, bias: true });
  }

  /** x [B, N, D] -> [B, N, D], bidirectional. */
  forward(x: Tensor): Tensor {
    const c = this.config;
    const [B, N, D] = x.shape as [number, number, number];
    const qkv = this.qkv.forward(x).view(B, N, 3, c.numAttentionHeads, c.headDim); // the reference's (3, heads, head_dim) packing
    let q = qkv.select(2, 0), k = qkv.select(2, 1); // [B, N, H, hd]
    // q_norm/k_norm normalise each token's queries (keys) across all heads at once.
    if (this.q_norm !== null) q = this.q_norm.forward(q.reshape(B, N, D)).view(B, N, c.numAttentionHeads, c.headDim);
    if (this.k_norm !== null) k = this.k_norm.forward(k.reshape(B, N, D)).view(B, N, c.numAttentionHeads, c.headDim);
    const y = F.scaledDotProductAttention(q.transpose(1, 2), k.transpose(1, 2), qkv.select(2, 2).transpose(1, 2), {
      dropoutP: this.training ? c.attentionDropout : 0,
      scale: c.headDim ** -0.5,
    }); // [B, H, N, hd]
    return F.dropout(this.proj.forward(y.transpose(1, 2).reshape(B, N, D)), c.dropout, this.training && c.dropout > 0);
  }
}

export class InternMLP extends nn.Module {
  fc1: nn.Linear;
  fc2: nn.Linear;
  constructor(config: ResolvedInternVitConfig, o: InternVitOptions = {}) {
    super();
    this.fc1 = new nn.Linear(config.hiddenSize, config.intermediateSize, o);
    this.fc2 = new nn.Linear(config.intermediateSize, config.hiddenSize, o);
  }
  /** x [B, N, D] -> [B, N, D] */
  forward(x: Tensor): Tensor { return this.fc2.forward(F.gelu(this.fc1.forward(x))); }
}

/** Pre-norm block with layer scale: x + ls1·attn(norm1(x)), then + ls2·mlp(norm2(·)). */
export class InternVisionEncoderLayer extends nn.Module {
  attn: InternAttention;
  mlp: InternMLP;
  norm1: nn.RMSNorm | nn.LayerNorm;
  norm2: nn.RMSNorm | nn.LayerNorm;
  ls1: nn.Parameter;
  ls2: nn.Parameter;

  constructor(config: ResolvedInternVitConfig, o: InternVitOptions = {}) {
    super();
    this.attn = new InternAttention(config, o);
    this.mlp = new InternMLP(config, o);
    this.norm1 = makeNorm(config, o);
    this.norm2 = makeNorm(config, o);
    this.ls1 = param([config.hiddenSize], o, (t) => t.fill_(config.initializerFactor));
    this.ls2 = param([config.hiddenSize], o, (t) => t.fill_(config.initializerFactor));
  }

  forward(x: Tensor): Tensor {
    const h = x.add(this.attn.forward(this.norm1.forward(x)).mul(this.ls1));
    return h.add(this.mlp.forward(this.norm2.forward(h)).mul(this.ls2));
  }
}

export class InternVisionEncoder extends nn.Module {
  layers: nn.ModuleList<InternVisionEncoderLayer>;
  constructor(config: ResolvedInternVitConfig, o: InternVitOptions = {}) {
    super();
    this.layers = new nn.ModuleList(Array.from({ length: config.numHiddenLayers }, () => new InternVisionEncoderLayer(config, o)));
  }
}

export interface InternVitOutput {
  /** The last layer's output [B, N, D] (no final norm, as the reference). */
  lastHiddenState: Tensor;
  /** numHiddenLayers + 1 states [B, N, D]: the embeddings, then each layer's output. */
  hiddenStates: Tensor[];
  /** The class token of the last layer [B, D] (the reference's pooler_output). */
  pooled: Tensor;
}

/**
 * Holds an InternViT config against a checkpoint's header before anything is allocated: the layer
 * count against the layer weights present, and hidden_size, patch_size, image_size,
 * intermediate_size, qkv_bias and qk_normalization against the embeddings' and layer 0's weights.
 * `prefix` is where the tower's weights sit ("" standalone, "vision_model." in InternVLChatModel).
 */
export function checkInternVitCheckpoint(c: ResolvedInternVitConfig, header: CheckpointHeader, o: { where: string; prefix?: string }): void {
  const p = o.prefix ?? "", w = o.where;
  const hidden = { size: c.hiddenSize, field: "hidden_size" }, patch = { size: c.patchSize, field: "patch_size" };
  checkTensorShape(header, `${p}embeddings.patch_embedding.weight`, [hidden, { size: 3, field: "num_channels" }, patch, patch], w);
  const positions = { size: c.numPositions, field: `(image_size / patch_size)² + 1 = (${c.imageSize} / ${c.patchSize})² + 1` };
  checkTensorShape(header, `${p}embeddings.position_embedding`, [null, positions, hidden], w);
  checkLayerCount(header, `${p}encoder.layers.`, c.numHiddenLayers, "num_hidden_layers", w);
  checkTensorShape(header, `${p}encoder.layers.0.attn.qkv.weight`, [{ size: 3 * c.hiddenSize, field: "3 × hidden_size" }, hidden], w);
  checkTensorShape(header, `${p}encoder.layers.0.mlp.fc1.weight`, [{ size: c.intermediateSize, field: "intermediate_size" }, hidden], w);
  // Which optional weights exist says which layout the checkpoint has.
  const flag = (name: string, field: string, value: boolean | string, want: boolean) => {
    if (!header.has(`${p}encoder.layers.0.attn.qkv.weight`)) return; // an empty or foreign checkpoint: loading names what is missing
    const has = header.has(`${p}encoder.layers.0.${name}`);
    if (has !== want) throw new ConfigError(`${w}: field "${field}" says ${JSON.stringify(value)}, but the checkpoint ${has ? "has" : "lacks"} ${p}encoder.layers.0.${name}; config.json does not describe this checkpoint: fix the field or use the config.json that came with the weights`);
  };
  flag("attn.qkv.bias", "qkv_bias", c.qkvBias, c.qkvBias);
  flag("attn.q_norm.weight", "qk_normalization", c.qkNormalization, c.qkNormalization);
  flag("norm1.bias", "norm_type", c.normType, c.normType === "layer_norm");
}

/**
 * InternViT (OpenGVLab's InternVisionModel; weights `embeddings.*`, `encoder.*`).
 * ```ts
 * const vit = new InternVisionModel(internVitPreset("tiny"), { generator: new torch.Generator(0) });
 * const { lastHiddenState } = vit.forward(pixels);   // [B, 1 + 36, 32]
 * ```
 */
export class InternVisionModel extends nn.Module {
  embeddings: InternVisionEmbeddings;
  encoder: InternVisionEncoder;
  /** Rerun each encoder layer in backward instead of keeping its activations (torch.checkpoint). */
  gradientCheckpointing = false;

  constructor(readonly config: ResolvedInternVitConfig, o: InternVitOptions = {}) {
    super();
    this.embeddings = new InternVisionEmbeddings(config, o);
    this.encoder = new InternVisionEncoder(config, o);
  }

  /** pixels [B, 3, H, W] -> every output of the reference's forward (with output_hidden_states). */
  forward(pixelValues: Tensor): InternVitOutput {
    let h = this.embeddings.forward(pixelValues);
    const hiddenStates = [h];
    for (const layer of this.encoder.layers) {
      h = this.runLayer(layer, h);
      hiddenStates.push(h);
    }
    return { lastHiddenState: h, hiddenStates, pooled: h.select(1, 0) };
  }

  /**
   * Hidden state `layer` [B, N, D] (0 = embeddings, -1 = the last layer's output, as the
   * reference's hidden_states index and InternVL's select_layer); layers past it are not run.
   */
  features(pixelValues: Tensor, layer = -1): Tensor {
    const k = this.layerIndex(layer);
    const layers = [...this.encoder.layers].slice(0, k);
    return torch.scope(() => {
      let h = this.embeddings.forward(pixelValues);
      for (const l of layers) {
        const x = h;
        h = this.runLayer(l, x);
        x.dispose();
      }
      return h;
    });
  }

  private runLayer(layer: InternVisionEncoderLayer, x: Tensor): Tensor {
    if (this.gradientCheckpointing && this.training) return torch.checkpoint((y) => layer.forward(y), x);
    return torch.scope(() => layer.forward(x));
  }

  /** A Python-style index into the numHiddenLayers + 1 hidden states. */
  layerIndex(layer: number): number {
    const n = this.config.numHiddenLayers + 1;
    if (!Number.isInteger(layer) || layer < -n || layer >= n) {
      throw new RangeError(`InternViT: layer ${layer} is out of range: there are ${n} hidden states (embeddings + ${n - 1} layers), so use -${n}..${n - 1}`);
    }
    return layer < 0 ? n + layer : layer;
  }

  /** Loads a standalone InternViT checkpoint directory (config.json + safetensors, weights `embeddings.*`, `encoder.*`). */
  static fromPretrained(dir: string, opts: { dtype?: DType; device?: Device } = {}): InternVisionModel {
    const where = join(dir, "config.json");
    const config = internVitFromHfConfig(readHfConfig(dir), where);
    const header = readCheckpointHeader(dir);
    checkInternVitCheckpoint(config, header, { where }); // before anything is allocated
    const model = new InternVisionModel(config, opts);
    try {
      loadCheckpointInto(model, dir, { header }); // into the parameters, a tensor at a time
    } catch (e) {
      model.parameters().forEach((p) => p.dispose());
      if (e instanceof nn.StateDictError) throw new Error(`${dir}: the checkpoint does not fit InternVisionModel with this config.json\n${e.message}`, { cause: e });
      throw e;
    }
    return model.eval();
  }

  /** Writes config.json and the weights in the reference's layout. */
  savePretrained(dir: string, opts: { dtype?: DType; maxShardBytes?: number } = {}): void {
    saveCheckpoint(dir, this, internVitToHfConfig(this.config), opts);
  }
}
