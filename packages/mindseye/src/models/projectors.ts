// The vision-to-language projectors of the three VLM families of the study, with the weight names
// of their checkpoints, so weights load 1:1:
//
//   LLaVA-1.5      LlavaMultiModalProjector   linear_1 -> GELU -> linear_2             (HF llava)
//                  original LLaVA repo: mm_projector.0 / mm_projector.2               (llavaProjectorRename)
//   Qwen2.5-VL     Qwen2_5_VLPatchMerger      ln_q (RMSNorm) -> 2x2 merge -> mlp.0 -> GELU -> mlp.2
//   InternVL2.5    InternVLProjector          pixel shuffle (0.5, ps_version v2) -> mlp1.0 (LayerNorm)
//                                             -> mlp1.1 -> GELU -> mlp1.3
//
// GELU is the exact (erf) one everywhere: HF's ACT2FN["gelu"] and nn.GELU() default. Each family's
// numbered layers mirror the nn.Sequential of the original code: a small module whose numeric
// properties (0, 2, ...) carry the weights, the parameter-free GELU slot left out.
// Golden fixture: fixtures/models/make_projector_golden.py (PyTorch, after the original code).
import { nn, F, type Tensor } from "@mindseye/torch";
import { ensure, hfField, type HfJson } from "../config/hf.js";
import { ConfigError } from "../config/errors.js";

// =================================================================================================
// LLaVA-1.5: mlp2x_gelu

export interface LlavaProjectorConfig {
  /** Width of one vision feature layer (CLIP ViT-L/14: 1024). */
  visionHiddenSize: number;
  /** Layer(s) of the vision tower fed to the projector; a list concatenates them (input = width × count). */
  visionFeatureLayer: number | number[];
  /** Width of the language model (Vicuna-7B: 4096); both linears output it. */
  textHiddenSize: number;
  /** Whether the two linears have biases (HF multimodal_projector_bias, default true). */
  bias: boolean;
}

export const LLAVA_PROJECTOR_DEFAULTS: Readonly<Omit<LlavaProjectorConfig, "visionHiddenSize" | "textHiddenSize">> = Object.freeze({
  visionFeatureLayer: -2,
  bias: true,
});

/** Presets, with sources. */
export const LLAVA_PROJECTOR_PRESETS = {
  /** llava-hf/llava-1.5-7b-hf: CLIP ViT-L/14-336 (1024) into Vicuna-7B (4096), layer -2 (reference/formats.md §4). */
  "llava-1.5-7b": { visionHiddenSize: 1024, visionFeatureLayer: -2, textHiddenSize: 4096, bias: true },
  /** Tests and quick runs. */
  tiny: { visionHiddenSize: 32, visionFeatureLayer: -2, textHiddenSize: 48, bias: true },
} as const satisfies Record<string, LlavaProjectorConfig>;

/** Validates a LLaVA projector config and derives its input width. */
export function resolveLlavaProjector(p: Partial<LlavaProjectorConfig>): Readonly<LlavaProjectorConfig & { inFeatures: number }> {
  const c = { ...LLAVA_PROJECTOR_DEFAULTS, ...p } as LlavaProjectorConfig;
  positiveInt(c.visionHiddenSize, "llava projector", "visionHiddenSize");
  positiveInt(c.textHiddenSize, "llava projector", "textHiddenSize");
  const layers = typeof c.visionFeatureLayer === "number" ? [c.visionFeatureLayer] : c.visionFeatureLayer;
  ensure(Array.isArray(layers) && layers.length > 0 && layers.every(Number.isInteger), "llava projector", `visionFeatureLayer must be an integer or a non-empty list of integers, got ${JSON.stringify(c.visionFeatureLayer)}`);
  ensure(typeof c.bias === "boolean", "llava projector", `bias must be a boolean, got ${JSON.stringify(c.bias)}`);
  return Object.freeze({ ...c, inFeatures: c.visionHiddenSize * layers.length });
}

// Hidden sizes of transformers' config classes, used when a sub-config omits the field (as
// llava-hf/llava-1.5-7b-hf's text_config does): LlamaConfig / MistralConfig 4096, CLIPVisionConfig /
// SiglipVisionConfig 768.
const CLASS_DEFAULT_HIDDEN: Record<string, number> = { llama: 4096, mistral: 4096, clip_vision_model: 768, siglip_vision_model: 768 };

function subConfigHidden(json: HfJson, key: "vision_config" | "text_config"): number {
  const sub = hfField<HfJson>(json, key, "object", "config.json");
  const where = `config.json ${key}`;
  if (sub.hidden_size !== undefined && sub.hidden_size !== null) return hfField<number>(sub, "hidden_size", "integer", where);
  const type = hfField<string>(sub, "model_type", "string", where);
  const d = CLASS_DEFAULT_HIDDEN[type];
  if (d === undefined) throw new ConfigError(`${where}: no "hidden_size" and no known default for model_type "${type}"; add "hidden_size"`);
  return d;
}

/** The projector's part of an HF LlavaConfig config.json (llava-hf/*). */
export function llavaProjectorFromHfConfig(json: HfJson): LlavaProjectorConfig {
  const act = hfField<string>(json, "projector_hidden_act", "string", "config.json", "gelu");
  if (act !== "gelu") throw new ConfigError(`config.json: projector_hidden_act "${act}" is not supported (MindsEye's LLaVA projector is mlp2x_gelu, exact GELU)`);
  const layer = json.vision_feature_layer ?? -2;
  return {
    visionHiddenSize: subConfigHidden(json, "vision_config"),
    visionFeatureLayer: layer as number | number[],
    textHiddenSize: subConfigHidden(json, "text_config"),
    bias: hfField<boolean>(json, "multimodal_projector_bias", "boolean", "config.json", true),
  };
}

/** The projector's fields in HF LlavaConfig layout, to merge into a full config.json. */
export function llavaProjectorToHfConfig(c: LlavaProjectorConfig): HfJson {
  return {
    projector_hidden_act: "gelu",
    multimodal_projector_bias: c.bias,
    vision_feature_layer: c.visionFeatureLayer,
    vision_config: { hidden_size: c.visionHiddenSize },
    text_config: { hidden_size: c.textHiddenSize },
  };
}

/** The projector's part of an original LLaVA config.json (haotian-liu/LLaVA: mm_hidden_size, hidden_size). */
export function llavaProjectorFromOriginalConfig(json: HfJson): LlavaProjectorConfig {
  const type = hfField<string>(json, "mm_projector_type", "string", "config.json", "linear");
  if (type !== "mlp2x_gelu") throw new ConfigError(`config.json: mm_projector_type "${type}" is not supported (MindsEye reads LLaVA-1.5's "mlp2x_gelu")`);
  return {
    visionHiddenSize: hfField<number>(json, "mm_hidden_size", "integer", "config.json"),
    visionFeatureLayer: hfField<number>(json, "mm_vision_select_layer", "integer", "config.json", -2),
    textHiddenSize: hfField<number>(json, "hidden_size", "integer", "config.json"),
    bias: true,
  };
}

/**
 * LLaVA's mlp2x_gelu projector, HF names (LlavaMultiModalProjector): linear_1 [text, vision·layers],
 * linear_2 [text, text]. A VLM holds it as `multi_modal_projector`.
 * ```ts
 * const proj = new LlavaMultiModalProjector(LLAVA_PROJECTOR_PRESETS.tiny);
 * proj.forward(features);   // [B, 576, 1024] -> [B, 576, 4096] for LLaVA-1.5-7B
 * ```
 */
export class LlavaMultiModalProjector extends nn.Module {
  linear_1: nn.Linear;
  linear_2: nn.Linear;
  readonly config: Readonly<LlavaProjectorConfig & { inFeatures: number }>;
  constructor(config: Partial<LlavaProjectorConfig>, o: nn.FactoryOptions = {}) {
    super();
    this.config = resolveLlavaProjector(config);
    const { inFeatures, textHiddenSize, bias } = this.config;
    this.linear_1 = new nn.Linear(inFeatures, textHiddenSize, { ...o, bias });
    this.linear_2 = new nn.Linear(textHiddenSize, textHiddenSize, { ...o, bias });
  }
  /** image features [.., inFeatures] -> [.., textHiddenSize] */
  forward(features: Tensor): Tensor {
    return this.linear_2.forward(F.gelu(this.linear_1.forward(features)));
  }
}

/**
 * Maps a checkpoint name to the LLaVA projector's own names, or null for every other weight, so a
 * whole checkpoint can be filtered straight into the projector:
 * `loadCheckpointInto(proj, dir, { rename: llavaProjectorRename })`. Accepts the
 * original repo's `model.mm_projector.{0,2}.*` (and `mm_projector.*` of mm_projector.bin) and HF's
 * `multi_modal_projector.linear_{1,2}.*` / `model.multi_modal_projector.*`.
 */
export function llavaProjectorRename(name: string): string | null {
  const original = /^(?:model\.)?mm_projector\.([02])\.(weight|bias)$/.exec(name);
  if (original) return `linear_${original[1] === "0" ? 1 : 2}.${original[2]}`;
  const hf = /^(?:model\.)?multi_modal_projector\.(linear_[12]\.(?:weight|bias))$/.exec(name);
  return hf ? hf[1]! : null;
}

// =================================================================================================
// Qwen2.5-VL: PatchMerger

export interface Qwen2_5_VLPatchMergerConfig {
  /** Output width: the language model's hidden size (vision_config.out_hidden_size, 7B: 3584). */
  dim: number;
  /** Input width: the vision tower's hidden size (vision_config.hidden_size, 7B: 1280). */
  contextDim: number;
  /** Side of the square of patches merged into one token (vision_config.spatial_merge_size, 2). */
  spatialMergeSize: number;
}

export const QWEN2_5_VL_MERGER_PRESETS = {
  /** Qwen/Qwen2.5-VL-7B-Instruct vision_config: hidden 1280, out_hidden 3584, merge 2 (reference/formats.md §3.1-3.2). */
  "qwen2.5-vl-7b": { dim: 3584, contextDim: 1280, spatialMergeSize: 2 },
  /** Tests and quick runs. */
  tiny: { dim: 48, contextDim: 32, spatialMergeSize: 2 },
} as const satisfies Record<string, Qwen2_5_VLPatchMergerConfig>;

export function resolveQwen2_5_VLPatchMerger(p: Partial<Qwen2_5_VLPatchMergerConfig>): Readonly<Qwen2_5_VLPatchMergerConfig & { hiddenSize: number }> {
  const c = { spatialMergeSize: 2, ...p } as Qwen2_5_VLPatchMergerConfig;
  positiveInt(c.dim, "Qwen2.5-VL merger", "dim");
  positiveInt(c.contextDim, "Qwen2.5-VL merger", "contextDim");
  positiveInt(c.spatialMergeSize, "Qwen2.5-VL merger", "spatialMergeSize");
  return Object.freeze({ ...c, hiddenSize: c.contextDim * c.spatialMergeSize ** 2 });
}

/**
 * The merger's fields from a Qwen2.5-VL vision_config. hidden_size is required: the class default
 * (3584) is not the 7B tower's 1280 (reference/formats.md §3.1).
 */
export function qwen2_5_VLPatchMergerFromHfConfig(visionConfig: HfJson): Qwen2_5_VLPatchMergerConfig {
  const where = "config.json vision_config";
  return {
    dim: hfField<number>(visionConfig, "out_hidden_size", "integer", where, 3584),
    contextDim: hfField<number>(visionConfig, "hidden_size", "integer", where),
    spatialMergeSize: hfField<number>(visionConfig, "spatial_merge_size", "integer", where, 2),
  };
}

export function qwen2_5_VLPatchMergerToHfConfig(c: Qwen2_5_VLPatchMergerConfig): HfJson {
  return { out_hidden_size: c.dim, hidden_size: c.contextDim, spatial_merge_size: c.spatialMergeSize };
}

/** nn.Sequential(Linear, GELU, Linear) of the merger: weights at mlp.0 and mlp.2. */
class MergerMlp extends nn.Module {
  readonly 0: nn.Linear;
  readonly 2: nn.Linear;
  constructor(hidden: number, dim: number, o: nn.FactoryOptions) {
    super();
    this[0] = new nn.Linear(hidden, hidden, o);
    this[2] = new nn.Linear(hidden, dim, o);
  }
  forward(x: Tensor): Tensor {
    return this[2].forward(F.gelu(this[0].forward(x)));
  }
}

/**
 * Qwen2.5-VL's PatchMerger (`visual.merger`): RMSNorm each patch (ln_q, eps 1e-6), concatenate
 * every spatialMergeSize² consecutive patches (the vision tower orders patches so that each merge
 * block is contiguous), then mlp.0 -> GELU -> mlp.2.
 * ```ts
 * const merger = new Qwen2_5_VLPatchMerger(QWEN2_5_VL_MERGER_PRESETS["qwen2.5-vl-7b"]);
 * merger.forward(patches);  // [1024, 1280] -> [256, 3584]
 * ```
 */
export class Qwen2_5_VLPatchMerger extends nn.Module {
  ln_q: nn.RMSNorm;
  mlp: MergerMlp;
  readonly config: Readonly<Qwen2_5_VLPatchMergerConfig & { hiddenSize: number }>;
  constructor(config: Partial<Qwen2_5_VLPatchMergerConfig>, o: nn.FactoryOptions = {}) {
    super();
    this.config = resolveQwen2_5_VLPatchMerger(config);
    this.ln_q = new nn.RMSNorm(this.config.contextDim, 1e-6, o);
    this.mlp = new MergerMlp(this.config.hiddenSize, this.config.dim, o);
  }
  /** patches [N, contextDim], N a multiple of spatialMergeSize² -> [N / spatialMergeSize², dim] */
  forward(patches: Tensor): Tensor {
    const { contextDim, spatialMergeSize, hiddenSize } = this.config;
    const [n, c] = patches.shape as [number, number];
    const unit = spatialMergeSize ** 2;
    if (patches.ndim !== 2 || c !== contextDim || n % unit !== 0) {
      throw new RangeError(`Qwen2_5_VLPatchMerger: expected patches [N, ${contextDim}] with N a multiple of ${unit} (spatialMergeSize ${spatialMergeSize} squared), got [${patches.shape.join(", ")}]`);
    }
    return this.mlp.forward(this.ln_q.forward(patches).view(-1, hiddenSize)); // [N/unit, unit·C] -> [N/unit, dim]
  }
}

// =================================================================================================
// InternVL2.5: pixel shuffle + mlp1

export interface InternVLProjectorConfig {
  /** Width of the vision tower's features (InternViT-300M: 1024). */
  visionHiddenSize: number;
  /** Width of the language model (InternLM2.5-7B: 4096). */
  llmHiddenSize: number;
  /** Pixel-shuffle scale: 0.5 folds each 2×2 block of patches into one token of 4× the width. */
  downsampleRatio: number;
  /** "v2" swaps rows and columns back after the shuffle; "v1" (early checkpoints) leaves them transposed. */
  psVersion: "v1" | "v2";
}

export const INTERNVL_PROJECTOR_PRESETS = {
  /** OpenGVLab/InternVL2_5-8B: InternViT-300M-448px (1024) into InternLM2.5-7B (4096), ratio 0.5, ps v2 (reference/formats.md §4). */
  "internvl2.5-8b": { visionHiddenSize: 1024, llmHiddenSize: 4096, downsampleRatio: 0.5, psVersion: "v2" },
  /** Tests and quick runs. */
  tiny: { visionHiddenSize: 16, llmHiddenSize: 40, downsampleRatio: 0.5, psVersion: "v2" },
} as const satisfies Record<string, InternVLProjectorConfig>;

export function resolveInternVLProjector(p: Partial<InternVLProjectorConfig>): Readonly<InternVLProjectorConfig & { inFeatures: number }> {
  const c = { downsampleRatio: 0.5, psVersion: "v2", ...p } as InternVLProjectorConfig;
  positiveInt(c.visionHiddenSize, "InternVL projector", "visionHiddenSize");
  positiveInt(c.llmHiddenSize, "InternVL projector", "llmHiddenSize");
  const inv = 1 / c.downsampleRatio;
  ensure(c.downsampleRatio > 0 && c.downsampleRatio < 1 && Number.isInteger(inv), "InternVL projector", `downsampleRatio must be 1/k for an integer k > 1 (InternVL uses 0.5), got ${c.downsampleRatio}`);
  ensure(c.psVersion === "v1" || c.psVersion === "v2", "InternVL projector", `psVersion must be "v1" or "v2", got ${JSON.stringify(c.psVersion)}`);
  return Object.freeze({ ...c, inFeatures: c.visionHiddenSize * inv ** 2 });
}

/** The projector's fields from an InternVLChatConfig config.json (vision_config, llm_config, downsample_ratio, ps_version). */
export function internVLProjectorFromHfConfig(json: HfJson): InternVLProjectorConfig {
  const vision = hfField<HfJson>(json, "vision_config", "object", "config.json");
  const llm = hfField<HfJson>(json, "llm_config", "object", "config.json");
  const ps = hfField<string>(json, "ps_version", "string", "config.json", "v1");
  if (ps !== "v1" && ps !== "v2") throw new ConfigError(`config.json: ps_version must be "v1" or "v2", got "${ps}"`);
  return {
    visionHiddenSize: hfField<number>(vision, "hidden_size", "integer", "config.json vision_config"),
    llmHiddenSize: hfField<number>(llm, "hidden_size", "integer", "config.json llm_config"),
    downsampleRatio: hfField<number>(json, "downsample_ratio", "number", "config.json", 0.5),
    psVersion: ps,
  };
}

export function internVLProjectorToHfConfig(c: InternVLProjectorConfig): HfJson {
  return {
    downsample_ratio: c.downsampleRatio,
    ps_version: c.psVersion,
    vision_config: { hidden_size: c.visionHiddenSize },
    llm_config: { hidden_size: c.llmHiddenSize },
  };
}

/**
 * InternVL's pixel_shuffle: x [N, R, C, D] (rows, columns, channels) -> [N, R·s, C·s, D/s²] for
 * scale s (0.5). The operations are InternVL's own, in order: fold column pairs into channels,
 * swap the grid axes, fold row pairs into channels, and (v2 only) swap the axes back.
 */
export function pixelShuffle(x: Tensor, scale: number, psVersion: "v1" | "v2"): Tensor {
  const [n, r, c, d] = x.shape as [number, number, number, number];
  const cs = c * scale, rs = r * scale, ds = d / scale, dss = d / (scale * scale);
  if (x.ndim !== 4 || !Number.isInteger(cs) || !Number.isInteger(rs) || !Number.isInteger(dss)) {
    throw new RangeError(`pixelShuffle: expected [N, rows, cols, channels] with rows and cols divisible by ${1 / scale}, got [${x.shape.join(", ")}]`);
  }
  let y = x.view(n, r, cs, ds);                  // [N, R, C·s, D/s]
  y = y.permute(0, 2, 1, 3).contiguous();        // [N, C·s, R, D/s]
  y = y.view(n, cs, rs, dss);                    // [N, C·s, R·s, D/s²]
  if (psVersion === "v2") y = y.permute(0, 2, 1, 3).contiguous(); // [N, R·s, C·s, D/s²]
  return y;
}

/** nn.Sequential(LayerNorm, Linear, GELU, Linear) of InternVL: weights at mlp1.0, mlp1.1, mlp1.3. */
class InternVLMlp1 extends nn.Module {
  readonly 0: nn.LayerNorm;
  readonly 1: nn.Linear;
  readonly 3: nn.Linear;
  constructor(inFeatures: number, llmHidden: number, o: nn.FactoryOptions) {
    super();
    this[0] = new nn.LayerNorm(inFeatures, 1e-5, o);
    this[1] = new nn.Linear(inFeatures, llmHidden, o);
    this[3] = new nn.Linear(llmHidden, llmHidden, o);
  }
  forward(x: Tensor): Tensor {
    return this[3].forward(F.gelu(this[1].forward(this[0].forward(x))));
  }
}

/**
 * InternVL's projector: the vision tower's patch features (CLS dropped) on a square grid are pixel-
 * shuffled, then go through mlp1. Its weights are named as InternVLChatModel's top-level `mlp1.*`.
 * ```ts
 * const proj = new InternVLProjector(INTERNVL_PROJECTOR_PRESETS["internvl2.5-8b"]);
 * proj.forward(vitEmbeds);  // [tiles, 1024, 1024] -> [tiles, 256, 4096]
 * ```
 */
export class InternVLProjector extends nn.Module {
  mlp1: InternVLMlp1;
  readonly config: Readonly<InternVLProjectorConfig & { inFeatures: number }>;
  constructor(config: Partial<InternVLProjectorConfig>, o: nn.FactoryOptions = {}) {
    super();
    this.config = resolveInternVLProjector(config);
    this.mlp1 = new InternVLMlp1(this.config.inFeatures, this.config.llmHiddenSize, o);
  }
  /** vitEmbeds [N, L, visionHiddenSize], L = side² -> [N, L·ratio², llmHiddenSize] */
  forward(vitEmbeds: Tensor): Tensor {
    const [n, l, c] = vitEmbeds.shape as [number, number, number];
    const side = Math.round(Math.sqrt(l));
    if (vitEmbeds.ndim !== 3 || side * side !== l || c !== this.config.visionHiddenSize) {
      throw new RangeError(`InternVLProjector: expected [N, side², ${this.config.visionHiddenSize}] (patch features without CLS), got [${vitEmbeds.shape.join(", ")}]`);
    }
    const grid = vitEmbeds.reshape(n, side, side, c);                                        // [N, h, w, C]
    const shuffled = pixelShuffle(grid, this.config.downsampleRatio, this.config.psVersion); // [N, h/2, w/2, 4C]
    return this.mlp1.forward(shuffled.reshape(n, -1, this.config.inFeatures));              // [N, L/4, llm]
  }
}

function positiveInt(v: unknown, where: string, key: string): void {
  ensure(typeof v === "number" && Number.isInteger(v) && v > 0, where, `${key} must be a positive integer, got ${JSON.stringify(v)}`);
}
