// ViT vision towers of CLIP and SigLIP, as transformers computes them: CLIPVisionModel
// (models/clip/modeling_clip.py) and SiglipVisionModel (models/siglip/modeling_siglip.py). The
// two share one encoder and differ at the ends:
//
//   CLIP    pixels ─conv (no bias)─► patches ─[class token]─+pos─► pre_layrnorm ─► encoder
//           ─► last_hidden_state (not normed);  pooled = post_layernorm(last[:, 0])
//   SigLIP  pixels ─conv (bias)─► patches ─+pos─► encoder ─► post_layernorm ─► last_hidden_state;
//           pooled = attention-pooling head(last) when vision_use_head (default), else none
//
// Module property names are HF's, so `vision_model.encoder.layers.3.self_attn.q_proj.weight`
// maps 1:1 to a checkpoint. Full CLIPModel / SiglipModel checkpoints load too (their text tower
// and projections are skipped).
import { join } from "node:path";
import { torch, nn, F, type Tensor, type DType, type Device, type Generator } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { hfField, ensure, readHfConfig, type HfJson } from "../config/hf.js";
import { loadCheckpointInto, saveCheckpoint, readCheckpointHeader, checkTensorShape, checkLayerCount, type CheckpointHeader } from "./pretrained.js";

// ---------------------------------------------------------------------------------------------
// Config

/** Which HF family: "clip" (class token, pre-norm) or "siglip" (no class token, pooling head). */
export type VitVariant = "clip" | "siglip";
/** MLP activations of the released towers: CLIP quick_gelu, SigLIP gelu_pytorch_tanh; some CLIPs gelu. */
export type VitActivation = "quick_gelu" | "gelu" | "gelu_pytorch_tanh" | "gelu_new";
const ACTIVATIONS: readonly VitActivation[] = ["quick_gelu", "gelu", "gelu_pytorch_tanh", "gelu_new"];

/** A CLIP or SigLIP vision tower's shape (HF's CLIPVisionConfig / SiglipVisionConfig, camelCase). */
export interface VitConfig {
  /** The family, which fixes the class token, the norms and the pooling. */
  variant: VitVariant;
  /** Width of the token embeddings and of every layer. */
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
  /** Input channels (3, RGB). */
  numChannels: number;
  /** MLP activation (HF `hidden_act`). */
  hiddenAct: VitActivation;
  /** LayerNorm epsilon (CLIP 1e-5, SigLIP 1e-6). */
  layerNormEps: number;
  /** Dropout on the attention probabilities while training (0 in every release). */
  attentionDropout: number;
  /** SigLIP's attention-pooling head `head.*` (HF `vision_use_head`); always false for CLIP. */
  useHead: boolean;
}

export type ResolvedVitConfig = Readonly<VitConfig & {
  /** Per-head width, hiddenSize / numHeads. */
  headDim: number;
  /** Side of the learned position grid, floor(imageSize / patchSize). */
  gridSize: number;
  /** Learned positions: gridSize² patches, plus the class position for CLIP. */
  numPositions: number;
  /** CLIP prepends a class token; SigLIP has none. */
  hasClassToken: boolean;
}>;

/** HF's class defaults (CLIPVisionConfig, SiglipVisionConfig): a config.json field left out takes these. */
const HF_DEFAULTS: Readonly<Record<VitVariant, VitConfig>> = {
  clip: {
    variant: "clip", hiddenSize: 768, intermediateSize: 3072, numHiddenLayers: 12, numAttentionHeads: 12, imageSize: 224,
    patchSize: 32, numChannels: 3, hiddenAct: "quick_gelu", layerNormEps: 1e-5, attentionDropout: 0, useHead: false,
  },
  siglip: {
    variant: "siglip", hiddenSize: 768, intermediateSize: 3072, numHiddenLayers: 12, numAttentionHeads: 12, imageSize: 224,
    patchSize: 16, numChannels: 3, hiddenAct: "gelu_pytorch_tanh", layerNormEps: 1e-6, attentionDropout: 0, useHead: true,
  },
};

const KEYS = Object.keys(HF_DEFAULTS.clip) as (keyof VitConfig)[];

/**
 * Upper bounds far past any released tower (SigLIP so400m: hidden 1152, 27 layers, MLP 4304;
 * ViT-e/G sizes fit too): a larger value is a broken config, reported by field before anything
 * is allocated.
 */
export const VIT_LIMITS = Object.freeze({
  hiddenSize: 1 << 16, intermediateSize: 1 << 18, numHiddenLayers: 1024, numAttentionHeads: 1024, imageSize: 1 << 14, patchSize: 1 << 10, numChannels: 64,
  /** Learned positions (gridSize², + 1 for CLIP). */
  numPositions: 1 << 18,
});

/**
 * Validates a config (unknown keys rejected) and computes its derived fields. Fields left out
 * take the family's HF defaults.
 * ```ts
 * const cfg = resolveVitConfig({ variant: "siglip", hiddenSize: 64, numAttentionHeads: 4 });
 * ```
 */
export function resolveVitConfig(p: Partial<VitConfig> & { variant: VitVariant }, where = "vit config"): ResolvedVitConfig {
  ensure(p.variant === "clip" || p.variant === "siglip", `${where}.variant`, `must be "clip" or "siglip", got ${JSON.stringify(p.variant)}`);
  for (const k of Object.keys(p)) {
    ensure((KEYS as string[]).includes(k), `${where}.${k}`, `unknown field (known: ${KEYS.join(", ")})`);
  }
  const c: VitConfig = { ...HF_DEFAULTS[p.variant], ...p };
  for (const k of ["hiddenSize", "intermediateSize", "numHiddenLayers", "numAttentionHeads", "imageSize", "patchSize", "numChannels"] as const) {
    ensure(Number.isInteger(c[k]) && c[k] > 0, `${where}.${k}`, `must be a positive integer, got ${JSON.stringify(c[k])}`);
    ensure(c[k] <= VIT_LIMITS[k], `${where}.${k}`, `${c[k]} is beyond any real vision tower (at most ${VIT_LIMITS[k]}); the config is broken`);
  }
  ensure(ACTIVATIONS.includes(c.hiddenAct), `${where}.hiddenAct`, `unsupported activation ${JSON.stringify(c.hiddenAct)} (supported: ${ACTIVATIONS.join(", ")})`);
  ensure(typeof c.layerNormEps === "number" && c.layerNormEps > 0, `${where}.layerNormEps`, `must be a positive number, got ${JSON.stringify(c.layerNormEps)}`);
  ensure(typeof c.attentionDropout === "number" && c.attentionDropout >= 0 && c.attentionDropout < 1, `${where}.attentionDropout`, `must be in [0, 1), got ${JSON.stringify(c.attentionDropout)}`);
  ensure(typeof c.useHead === "boolean", `${where}.useHead`, `must be a boolean, got ${JSON.stringify(c.useHead)}`);
  ensure(!(c.variant === "clip" && c.useHead), `${where}.useHead`, "CLIP's vision tower has no attention-pooling head (only SigLIP does); set it to false");
  ensure(c.hiddenSize % c.numAttentionHeads === 0, `${where}.hiddenSize`, `${c.hiddenSize} is not divisible by numAttentionHeads ${c.numAttentionHeads}`);
  ensure(c.imageSize >= c.patchSize, `${where}.imageSize`, `${c.imageSize} is smaller than one patch (patchSize ${c.patchSize})`);
  const gridSize = Math.floor(c.imageSize / c.patchSize);
  const hasClassToken = c.variant === "clip";
  ensure(gridSize * gridSize <= VIT_LIMITS.numPositions, `${where}.imageSize`, `${c.imageSize} px in ${c.patchSize} px patches makes ${gridSize * gridSize} positions, beyond any real vision tower (at most ${VIT_LIMITS.numPositions}); the config is broken`);
  return Object.freeze({
    ...c, headDim: c.hiddenSize / c.numAttentionHeads, gridSize,
    numPositions: gridSize * gridSize + (hasClassToken ? 1 : 0), hasClassToken,
  });
}

const MODEL_TYPES: Readonly<Record<string, VitVariant>> = { clip_vision_model: "clip", siglip_vision_model: "siglip" };

/**
 * Reads an HF config: a vision config (`model_type` "clip_vision_model" / "siglip_vision_model")
 * or a full CLIPConfig / SiglipConfig (`model_type` "clip" / "siglip"), whose `vision_config` is
 * used. Missing fields take HF's class defaults, as transformers does; other keys are ignored.
 */
export function vitConfigFromHf(json: HfJson, where = "config.json"): ResolvedVitConfig {
  const type = json.model_type;
  let v = json, w = where, variant: VitVariant;
  if (type === "clip" || type === "siglip") {
    variant = type;
    v = hfField<HfJson>(json, "vision_config", "object", where);
    w = `${where} vision_config`;
    const inner = v.model_type;
    ensure(inner === undefined || MODEL_TYPES[inner as string] === variant, `${w}.model_type`, `${JSON.stringify(inner)} does not belong to a "${type}" config (expected "${type}_vision_model")`);
  } else if (typeof type === "string" && MODEL_TYPES[type] !== undefined) {
    variant = MODEL_TYPES[type]!;
  } else {
    throw new ConfigError(
      `${where}: model_type ${JSON.stringify(type)} is not a CLIP or SigLIP vision tower (expected "clip_vision_model", "siglip_vision_model", ` +
      `or a full "clip" / "siglip" config with a vision_config; for a VLM config such as LLaVA's, pass its vision_config object)`,
    );
  }
  const d = HF_DEFAULTS[variant];
  return resolveVitConfig({
    variant,
    hiddenSize: hfField(v, "hidden_size", "integer", w, d.hiddenSize),
    intermediateSize: hfField(v, "intermediate_size", "integer", w, d.intermediateSize),
    numHiddenLayers: hfField(v, "num_hidden_layers", "integer", w, d.numHiddenLayers),
    numAttentionHeads: hfField(v, "num_attention_heads", "integer", w, d.numAttentionHeads),
    imageSize: hfField(v, "image_size", "integer", w, d.imageSize),
    patchSize: hfField(v, "patch_size", "integer", w, d.patchSize),
    numChannels: hfField(v, "num_channels", "integer", w, d.numChannels),
    hiddenAct: hfField(v, "hidden_act", "string", w, d.hiddenAct),
    layerNormEps: hfField(v, "layer_norm_eps", "number", w, d.layerNormEps),
    attentionDropout: hfField(v, "attention_dropout", "number", w, d.attentionDropout),
    // SiglipVisionTransformer: `use_head = True if not hasattr(config, "vision_use_head")`.
    useHead: variant === "siglip" ? hfField(v, "vision_use_head", "boolean", w, true) : false,
  }, w);
}

/** The config.json of a CLIPVisionModel / SiglipVisionModel checkpoint. */
export function vitConfigToHf(c: ResolvedVitConfig): HfJson {
  const clip = c.variant === "clip";
  return {
    architectures: [clip ? "CLIPVisionModel" : "SiglipVisionModel"],
    model_type: clip ? "clip_vision_model" : "siglip_vision_model",
    hidden_size: c.hiddenSize, intermediate_size: c.intermediateSize, num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads, image_size: c.imageSize, patch_size: c.patchSize,
    num_channels: c.numChannels, hidden_act: c.hiddenAct, layer_norm_eps: c.layerNormEps,
    attention_dropout: c.attentionDropout,
    ...(clip ? {} : { vision_use_head: c.useHead }),
  };
}

// ---------------------------------------------------------------------------------------------
// Presets (HF sources: the vision_config of each model's config.json)

const tiny = { hiddenSize: 32, intermediateSize: 37, numHiddenLayers: 2, numAttentionHeads: 4, imageSize: 16, patchSize: 4 };

export const VIT_PRESETS: Readonly<Record<string, ResolvedVitConfig>> = Object.freeze({
  /** Tests and quick runs (the shape of fixtures/models/make_vit_golden.py): 4×4 patches + class token. */
  "clip-tiny": resolveVitConfig({ variant: "clip", ...tiny }),
  /** Tests and quick runs: 4×4 patches, attention-pooling head. */
  "siglip-tiny": resolveVitConfig({ variant: "siglip", ...tiny }),
  /** ViT-B/16: openai/clip-vit-base-patch16 (14×14 patches + class token, 86 M parameters). */
  "clip-vit-b16": resolveVitConfig({
    variant: "clip", hiddenSize: 768, intermediateSize: 3072, numHiddenLayers: 12, numAttentionHeads: 12, imageSize: 224, patchSize: 16,
  }),
  /** LLaVA-1.5's tower: openai/clip-vit-large-patch14-336 (24×24 patches + class token). */
  "clip-vit-l14-336": resolveVitConfig({
    variant: "clip", hiddenSize: 1024, intermediateSize: 4096, numHiddenLayers: 24, numAttentionHeads: 16, imageSize: 336, patchSize: 14,
  }),
  /** google/siglip-so400m-patch14-384 (27×27 patches: 384 is not a multiple of 14, the conv drops 6 px). */
  "siglip-so400m-14-384": resolveVitConfig({
    variant: "siglip", hiddenSize: 1152, intermediateSize: 4304, numHiddenLayers: 27, numAttentionHeads: 16, imageSize: 384, patchSize: 14,
  }),
});

/** A preset by name, with the known names in the error. */
export function vitPreset(name: string): ResolvedVitConfig {
  const c = VIT_PRESETS[name];
  if (c === undefined) throw new ConfigError(`unknown ViT preset "${name}" (known: ${Object.keys(VIT_PRESETS).join(", ")})`);
  return c;
}

// ---------------------------------------------------------------------------------------------
// Modules

export interface VitFactoryOptions {
  dtype?: DType;
  device?: Device;
  /** Seeded generator for the initial weights (the global one if absent). */
  generator?: Generator;
}

/** A parameter of the given shape, drawn from N(0, std). */
function normalParam(shape: number[], std: number, o: VitFactoryOptions): nn.Parameter {
  const t = torch.empty(shape, { dtype: o.dtype ?? "float32", device: o.device ?? "cpu" });
  nn.init.normal_(t, 0, std, o.generator);
  const p = new nn.Parameter(t);
  t.dispose();
  return p;
}

function activation(name: VitActivation): (x: Tensor) => Tensor {
  switch (name) {
    case "quick_gelu": return (x) => x.mul(x.mul(1.702).sigmoid()); // QuickGELUActivation
    case "gelu": return (x) => F.gelu(x);
    // gelu_new (NewGELUActivation) is the same tanh formula, written out in Python.
    case "gelu_pytorch_tanh": case "gelu_new": return (x) => F.gelu(x, "tanh");
  }
}

/** Patch embedding, the CLIP class token, and the learned positions (resized on demand). */
export class VitEmbeddings extends nn.Module {
  class_embedding: nn.Parameter | null;
  patch_embedding: nn.Conv2d;
  position_embedding: nn.Embedding;

  constructor(readonly config: ResolvedVitConfig, o: VitFactoryOptions = {}) {
    super();
    const c = config, D = c.hiddenSize;
    // HF's CLIP init: class ~ N(0, D^-1/2), positions ~ N(0, 0.02).
    this.class_embedding = c.hasClassToken ? normalParam([D], D ** -0.5, o) : null;
    this.patch_embedding = new nn.Conv2d(c.numChannels, D, c.patchSize, { stride: c.patchSize, bias: !c.hasClassToken, ...o });
    this.position_embedding = new nn.Embedding(c.numPositions, D, o);
    nn.init.normal_(this.position_embedding.weight, 0, 0.02, o.generator);
  }

  /** pixels [B, C, H, W] -> tokens [B, (1 +) (H/p)·(W/p), D] with positions added. */
  forward(pixelValues: Tensor, interpolatePosEncoding: boolean): Tensor {
    const c = this.config;
    const [B, C, H, W] = pixelValues.shape as [number, number, number, number];
    if (pixelValues.ndim !== 4 || C !== c.numChannels) {
      throw new RangeError(`ViT: pixel values must be [batch, ${c.numChannels}, height, width], got [${pixelValues.shape.join(", ")}]`);
    }
    if (H < c.patchSize || W < c.patchSize) throw new RangeError(`ViT: image ${H}×${W} is smaller than one ${c.patchSize}-pixel patch`);
    // HF's CLIP checks the pixel size; SigLIP only needs the patch grid to match (378 px works for a 384-px so400m).
    const fits = c.hasClassToken ? H === c.imageSize && W === c.imageSize
      : Math.floor(H / c.patchSize) === c.gridSize && Math.floor(W / c.patchSize) === c.gridSize;
    if (!interpolatePosEncoding && !fits) {
      throw new RangeError(`ViT: input image size (${H}*${W}) doesn't match the model (${c.imageSize}*${c.imageSize}); resize it, or pass interpolatePosEncoding: true to resize the position embeddings`);
    }
    const w = this.patch_embedding.weight;
    const patches = this.patch_embedding.forward(pixelValues.to({ dtype: w.dtype })).flatten(2).transpose(1, 2); // [B, N, D]
    const x = this.class_embedding === null ? patches
      : torch.cat([this.class_embedding.view(1, 1, c.hiddenSize).expand(B, 1, c.hiddenSize), patches], 1); // [B, 1+N, D]
    return x.add(this.positions(H, W, interpolatePosEncoding));
  }

  /**
   * The position embeddings for an H×W input, [1, (1 +) N, D]: the learned table at the training
   * grid, else (interpolatePosEncoding) the patch grid resized bicubically as HF does; CLIP's
   * class position is kept as is.
   */
  positions(H: number, W: number, interpolate: boolean): Tensor {
    const c = this.config, D = c.hiddenSize, table = this.position_embedding.weight; // [P, D]
    const gh = Math.floor(H / c.patchSize), gw = Math.floor(W / c.patchSize);
    if (!interpolate || (gh * gw === c.gridSize * c.gridSize && H === W)) return table.unsqueeze(0);
    const extra = c.hasClassToken ? 1 : 0;
    const grid = table.slice(0, extra).reshape(1, c.gridSize, c.gridSize, D).permute(0, 3, 1, 2); // [1, D, g, g]
    const resized = F.interpolate(grid, [gh, gw], { mode: "bicubic", alignCorners: false }).permute(0, 2, 3, 1).reshape(1, gh * gw, D);
    return extra ? torch.cat([table.slice(0, 0, 1).unsqueeze(0), resized], 1) : resized;
  }
}

export class VitAttention extends nn.Module {
  k_proj: nn.Linear;
  v_proj: nn.Linear;
  q_proj: nn.Linear;
  out_proj: nn.Linear;

  constructor(readonly config: ResolvedVitConfig, o: VitFactoryOptions = {}) {
    super();
    const D = config.hiddenSize;
    this.k_proj = new nn.Linear(D, D, o);
    this.v_proj = new nn.Linear(D, D, o);
    this.q_proj = new nn.Linear(D, D, o);
    this.out_proj = new nn.Linear(D, D, o);
  }

  /** x [B, T, D] -> [B, T, D], bidirectional. */
  forward(x: Tensor): Tensor {
    const c = this.config;
    const [B, T, D] = x.shape as [number, number, number];
    const heads = (t: Tensor) => t.view(B, T, c.numAttentionHeads, c.headDim).transpose(1, 2); // [B, H, T, hd]
    const y = F.scaledDotProductAttention(heads(this.q_proj.forward(x)), heads(this.k_proj.forward(x)), heads(this.v_proj.forward(x)), {
      dropoutP: this.training ? c.attentionDropout : 0,
      scale: c.headDim ** -0.5,
    }); // [B, H, T, hd]
    return this.out_proj.forward(y.transpose(1, 2).reshape(B, T, D));
  }
}

export class VitMLP extends nn.Module {
  fc1: nn.Linear;
  fc2: nn.Linear;
  private readonly act: (x: Tensor) => Tensor;

  constructor(config: ResolvedVitConfig, o: VitFactoryOptions = {}) {
    super();
    this.fc1 = new nn.Linear(config.hiddenSize, config.intermediateSize, o);
    this.fc2 = new nn.Linear(config.intermediateSize, config.hiddenSize, o);
    this.act = activation(config.hiddenAct);
  }

  forward(x: Tensor): Tensor { return this.fc2.forward(this.act(this.fc1.forward(x))); }
}

/** Pre-norm block: x + attn(ln1(x)), then x + mlp(ln2(x)). */
export class VitEncoderLayer extends nn.Module {
  self_attn: VitAttention;
  layer_norm1: nn.LayerNorm;
  mlp: VitMLP;
  layer_norm2: nn.LayerNorm;

  constructor(config: ResolvedVitConfig, o: VitFactoryOptions = {}) {
    super();
    this.self_attn = new VitAttention(config, o);
    this.layer_norm1 = new nn.LayerNorm(config.hiddenSize, config.layerNormEps, o);
    this.mlp = new VitMLP(config, o);
    this.layer_norm2 = new nn.LayerNorm(config.hiddenSize, config.layerNormEps, o);
  }

  forward(x: Tensor): Tensor {
    const h = x.add(this.self_attn.forward(this.layer_norm1.forward(x)));
    return h.add(this.mlp.forward(this.layer_norm2.forward(h)));
  }
}

export class VitEncoder extends nn.Module {
  layers: nn.ModuleList<VitEncoderLayer>;
  constructor(config: ResolvedVitConfig, o: VitFactoryOptions = {}) {
    super();
    this.layers = new nn.ModuleList(Array.from({ length: config.numHiddenLayers }, () => new VitEncoderLayer(config, o)));
  }
}

/** torch.nn.MultiheadAttention's weights and its batch-first forward (no mask, no dropout). */
export class MultiheadAttention extends nn.Module {
  in_proj_weight: nn.Parameter;
  in_proj_bias: nn.Parameter;
  out_proj: nn.Linear;

  constructor(readonly embedDim: number, readonly numHeads: number, o: VitFactoryOptions = {}) {
    super();
    // As torch: in_proj xavier-uniform, both biases zero.
    const w = torch.empty([3 * embedDim, embedDim], { dtype: o.dtype ?? "float32", device: o.device ?? "cpu" });
    nn.init.xavierUniform_(w, 1, o.generator);
    this.in_proj_weight = new nn.Parameter(w);
    w.dispose();
    const b = torch.zeros([3 * embedDim], { dtype: o.dtype ?? "float32", device: o.device ?? "cpu" });
    this.in_proj_bias = new nn.Parameter(b);
    b.dispose();
    this.out_proj = new nn.Linear(embedDim, embedDim, o);
    nn.init.zeros_(this.out_proj.bias!);
  }

  /** query [B, L, E], key = value [B, S, E] -> [B, L, E] */
  forward(query: Tensor, kv: Tensor): Tensor {
    const [B, L, E] = query.shape as [number, number, number];
    const S = kv.shape[1]!, hd = E / this.numHeads;
    const [wq, wk, wv] = this.in_proj_weight.chunk(3, 0) as [Tensor, Tensor, Tensor];
    const [bq, bk, bv] = this.in_proj_bias.chunk(3, 0) as [Tensor, Tensor, Tensor];
    const heads = (t: Tensor, n: number) => t.view(B, n, this.numHeads, hd).transpose(1, 2); // [B, H, n, hd]
    const y = F.scaledDotProductAttention(heads(F.linear(query, wq, bq), L), heads(F.linear(kv, wk, bk), S), heads(F.linear(kv, wv, bv), S));
    return this.out_proj.forward(y.transpose(1, 2).reshape(B, L, E));
  }
}

/** SigLIP's SiglipMultiheadAttentionPoolingHead: one learned probe attends over the tokens. */
export class VitPoolingHead extends nn.Module {
  probe: nn.Parameter;
  attention: MultiheadAttention;
  layernorm: nn.LayerNorm;
  mlp: VitMLP;

  constructor(config: ResolvedVitConfig, o: VitFactoryOptions = {}) {
    super();
    this.probe = normalParam([1, 1, config.hiddenSize], config.hiddenSize ** -0.5, o);
    this.attention = new MultiheadAttention(config.hiddenSize, config.numAttentionHeads, o);
    this.layernorm = new nn.LayerNorm(config.hiddenSize, config.layerNormEps, o);
    this.mlp = new VitMLP(config, o);
  }

  /** tokens [B, N, D] -> pooled [B, D] */
  forward(tokens: Tensor): Tensor {
    const B = tokens.shape[0]!;
    const h = this.attention.forward(this.probe.expand(B, 1, this.probe.shape[2]!), tokens); // [B, 1, D]
    return h.add(this.mlp.forward(this.layernorm.forward(h))).select(1, 0);
  }
}

/** HF's CLIPVisionTransformer / SiglipVisionTransformer (the `vision_model` submodule). */
export class VitTransformer extends nn.Module {
  embeddings: VitEmbeddings;
  pre_layrnorm: nn.LayerNorm | null;
  encoder: VitEncoder;
  post_layernorm: nn.LayerNorm;
  head: VitPoolingHead | null;

  constructor(readonly config: ResolvedVitConfig, o: VitFactoryOptions = {}) {
    super();
    const D = config.hiddenSize, eps = config.layerNormEps;
    this.embeddings = new VitEmbeddings(config, o);
    this.pre_layrnorm = config.variant === "clip" ? new nn.LayerNorm(D, eps, o) : null; // sic, HF's name
    this.encoder = new VitEncoder(config, o);
    this.post_layernorm = new nn.LayerNorm(D, eps, o);
    this.head = config.useHead ? new VitPoolingHead(config, o) : null;
  }

  /** The encoder's input, hidden state 0: embeddings (then pre_layrnorm for CLIP). */
  embed(pixelValues: Tensor, interpolatePosEncoding: boolean): Tensor {
    const x = this.embeddings.forward(pixelValues, interpolatePosEncoding);
    return this.pre_layrnorm === null ? x : this.pre_layrnorm.forward(x);
  }
}

export interface VitForwardOptions {
  /** Which hidden state to return as `features`, indexed as HF's hidden_states (0 = embeddings, -1 = last layer, -2 as LLaVA). */
  featureLayer?: number;
  /** Resize the learned position grid to the input's patch grid (HF `interpolate_pos_encoding`). */
  interpolatePosEncoding?: boolean;
}

/**
 * Holds a CLIP/SigLIP vision config against a checkpoint's header before anything is allocated:
 * the number of layers against the layer weights present, and hidden_size, num_channels,
 * patch_size, image_size and intermediate_size against the embeddings' and layer 0's shapes. A
 * mismatch is a ConfigError naming the field. `prefix` is where the tower's weights sit
 * ("vision_model." in a CLIP/SigLIP checkpoint, "vision_tower.vision_model." in a MindsEye VLM).
 */
export function checkVitCheckpoint(c: ResolvedVitConfig, header: CheckpointHeader, o: { where: string; prefix?: string }): void {
  const p = o.prefix ?? "vision_model.", w = o.where;
  const hidden = { size: c.hiddenSize, field: "hidden_size" }, patch = { size: c.patchSize, field: "patch_size" };
  checkTensorShape(header, `${p}embeddings.patch_embedding.weight`, [hidden, { size: c.numChannels, field: "num_channels" }, patch, patch], w);
  const positions = `(image_size / patch_size)²${c.hasClassToken ? " + 1" : ""} = (${c.imageSize} / ${c.patchSize})²${c.hasClassToken ? " + 1" : ""}`;
  checkTensorShape(header, `${p}embeddings.position_embedding.weight`, [{ size: c.numPositions, field: positions }, hidden], w);
  checkLayerCount(header, `${p}encoder.layers.`, c.numHiddenLayers, "num_hidden_layers", w);
  checkTensorShape(header, `${p}encoder.layers.0.self_attn.q_proj.weight`, [hidden, hidden], w);
  checkTensorShape(header, `${p}encoder.layers.0.mlp.fc1.weight`, [{ size: c.intermediateSize, field: "intermediate_size" }, hidden], w);
}

export interface VitOutput {
  /** [B, N, D]. CLIP: the last layer's output, not normed; SigLIP: after post_layernorm. As HF. */
  lastHiddenState: Tensor;
  /** numHiddenLayers + 1 states [B, N, D], as HF's output_hidden_states: the encoder's input, then each layer's output (before any post_layernorm). */
  hiddenStates: Tensor[];
  /** [B, D]. CLIP: post_layernorm(class token); SigLIP: the head's output, or null without a head. */
  pooled: Tensor | null;
  /** hiddenStates at featureLayer, or lastHiddenState when none was asked for. */
  features: Tensor;
}

/**
 * A CLIP or SigLIP vision tower (HF's CLIPVisionModel / SiglipVisionModel; weights under
 * `vision_model.*`).
 * ```ts
 * const tower = VitVisionModel.fromPretrained("clip-vit-large-patch14-336/").requiresGrad_(false);
 * const patches = torch.noGrad(() => tower.features(pixels, -2, { dropClassToken: true })); // LLaVA's [B, 576, 1024]
 * ```
 */
export class VitVisionModel extends nn.Module {
  vision_model: VitTransformer;
  /** Rerun each encoder layer in backward instead of keeping its activations (torch.checkpoint; HF's gradient_checkpointing). */
  gradientCheckpointing = false;

  constructor(readonly config: ResolvedVitConfig, o: VitFactoryOptions = {}) {
    super();
    this.vision_model = new VitTransformer(config, o);
  }

  /** pixels [B, C, H, W] -> every output HF's forward gives (with output_hidden_states). */
  forward(pixelValues: Tensor, opts: VitForwardOptions = {}): VitOutput {
    const vm = this.vision_model;
    const layers = [...vm.encoder.layers];
    const pick = opts.featureLayer === undefined ? undefined : this.layerIndex(opts.featureLayer);
    let h = vm.embed(pixelValues, opts.interpolatePosEncoding ?? false);
    const hiddenStates = [h];
    for (const layer of layers) {
      const x = h;
      h = this.runLayer(layer, x);
      hiddenStates.push(h);
    }
    const lastHiddenState = this.config.variant === "clip" ? h : vm.post_layernorm.forward(h);
    let pooled: Tensor | null = null;
    if (this.config.variant === "clip") pooled = vm.post_layernorm.forward(h.select(1, 0));
    else if (vm.head !== null) pooled = vm.head.forward(lastHiddenState);
    return { lastHiddenState, hiddenStates, pooled, features: pick === undefined ? lastHiddenState : hiddenStates[pick]! };
  }

  /**
   * Hidden state `layer` (HF's hidden_states index: 0 = embeddings, -1 = last layer's output
   * before any post_layernorm, -2 as LLaVA) for the VLM and latent-target side, [B, N, D];
   * layers past it are not run. dropClassToken removes CLIP's class token (LLaVA's "patch").
   */
  features(pixelValues: Tensor, layer = -1, opts: { dropClassToken?: boolean; interpolatePosEncoding?: boolean } = {}): Tensor {
    const k = this.layerIndex(layer);
    if (opts.dropClassToken && !this.config.hasClassToken) {
      throw new RangeError(`ViT features: dropClassToken is set but this ${this.config.variant} tower has no class token (every token is a patch)`);
    }
    const layers = [...this.vision_model.encoder.layers].slice(0, k);
    return torch.scope(() => {
      let h = this.vision_model.embed(pixelValues, opts.interpolatePosEncoding ?? false);
      for (const l of layers) {
        const x = h;
        h = this.runLayer(l, x);
        x.dispose();
      }
      return opts.dropClassToken ? h.slice(1, 1) : h;
    });
  }

  /** One encoder layer, its intermediates freed at once (kept by the graph, or rerun in backward when checkpointing). */
  private runLayer(layer: VitEncoderLayer, x: Tensor): Tensor {
    if (this.gradientCheckpointing && this.training) return torch.checkpoint((y) => layer.forward(y), x);
    return torch.scope(() => layer.forward(x));
  }

  /** A Python-style index into the numHiddenLayers + 1 hidden states. */
  layerIndex(layer: number): number {
    const n = this.config.numHiddenLayers + 1;
    if (!Number.isInteger(layer) || layer < -n || layer >= n) {
      throw new RangeError(`ViT: feature layer ${layer} is out of range: there are ${n} hidden states (embeddings + ${n - 1} layers), so use -${n}..${n - 1}`);
    }
    return layer < 0 ? n + layer : layer;
  }

  /**
   * Loads an HF checkpoint directory: a CLIPVisionModel / SiglipVisionModel, or a full
   * CLIPModel / SiglipModel (the text tower and projections are not read). A SigLIP config that
   * does not say `vision_use_head` gets the head when the checkpoint has one.
   */
  static fromPretrained(dir: string, opts: { dtype?: DType; device?: Device } = {}): VitVisionModel {
    const json = readHfConfig(dir);
    const header = readCheckpointHeader(dir);
    const names = [...header.keys()].filter((n) => checkpointRename(n) !== null);
    const where = join(dir, "config.json");
    const config = vitConfigFromHf(withHeadDefault(json, names.includes("vision_model.head.probe")), where);
    checkVitCheckpoint(config, header, { where }); // before anything is allocated
    const model = new VitVisionModel(config, opts);
    try {
      loadCheckpointInto(model, dir, { header, rename: checkpointRename }); // into the parameters, a tensor at a time; the text tower is never read
    } catch (e) {
      model.parameters().forEach((p) => p.dispose());
      throw e;
    }
    return model.eval();
  }

  /** Writes config.json and model.safetensors (HF layout, loadable by transformers). */
  savePretrained(dir: string, opts: { dtype?: DType; maxShardBytes?: number } = {}): void {
    saveCheckpoint(dir, this, vitConfigToHf(this.config), opts);
  }
}

/**
 * Checkpoint name -> module name: `vision_model.*` as is; a full CLIPModel / SiglipModel's text
 * tower, projections and logit scale/bias, and the position_ids buffers older transformers saved,
 * are skipped (null). Anything else is kept, so loading reports it as unexpected.
 */
export function checkpointRename(name: string): string | null {
  if (name.startsWith("text_model.")) return null;
  if (["visual_projection.weight", "text_projection.weight", "logit_scale", "logit_bias"].includes(name)) return null;
  if (name.endsWith("embeddings.position_ids")) return null;
  return name;
}

/**
 * Fills a SigLIP config's missing `vision_use_head` from the checkpoint (whether it holds head
 * weights). HF would default it to true and leave the head random when the weights lack it.
 */
function withHeadDefault(json: HfJson, checkpointHasHead: boolean): HfJson {
  const full = json.model_type === "siglip";
  if (!full && json.model_type !== "siglip_vision_model") return json;
  const vision = full ? json.vision_config : json;
  if (vision === null || typeof vision !== "object" || Array.isArray(vision)) return json; // vitConfigFromHf reports it
  const v = vision as HfJson;
  if (v.vision_use_head !== undefined && v.vision_use_head !== null) return json;
  const filled = { ...v, vision_use_head: checkpointHasHead };
  return full ? { ...json, vision_config: filled } : filled;
}

