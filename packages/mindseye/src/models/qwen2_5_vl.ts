// Qwen2.5-VL: the vision tower (Qwen2_5_VisionTransformerPretrainedModel) and the full VLM
// (Qwen2_5_VLForConditionalGeneration), reproducing transformers'
// models/qwen2_5_vl/modeling_qwen2_5_vl.py. Weight names are HF's, so checkpoints map 1:1.
// Reference: shared/reference/formats.md §3.
//
//   pixel patches [N, C·T·P·P] ──patch_embed──► [N, D] ──window order──► blocks (window attention,
//   full attention at fullatt_block_indexes; never across images) ──merger──► [N/4, D_out]
//   ──original order──► replaces the <|image_pad|> embeddings ──► Qwen2 decoder with M-RoPE.
import { torch, nn, F, type Tensor, type DType, type Device, type Generator } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { readHfConfig, hfField, ensure, type HfJson } from "../config/hf.js";
import { loadCheckpointInto, saveCheckpoint, readCheckpointHeader, checkTensorShape, checkLayerCount, type CheckpointHeader } from "./pretrained.js";
import {
  Qwen2Model, KVCache, resolveQwen2, fromHfConfig, toHfConfig as qwen2ToHfConfig, checkQwen2Checkpoint,
  type Qwen2Config, type ResolvedQwen2Config, type Qwen2Dtype,
} from "./qwen2.js";
import { Qwen2_5_VLPatchMerger } from "./projectors.js";
import { generate, type GenerateOptions, type GenerateResult, type GenerationStep } from "./generation.js";

// ---------------------------------------------------------------------------------------------
// Vision config

/** One image's (or video's) patch grid: [temporal, height, width] in patches, as image_grid_thw. */
export type GridThw = readonly [number, number, number];

/** The vision tower's shape (HF `vision_config`, camelCase). */
export interface Qwen2_5_VisionConfig {
  /** Number of transformer blocks. */
  depth: number;
  /** Width of every block. */
  hiddenSize: number;
  /** MLP activation; Qwen2.5-VL uses "silu" (SwiGLU). */
  hiddenAct: "silu";
  /** Width of the SwiGLU MLP inside each block. */
  intermediateSize: number;
  /** Attention heads per block. */
  numHeads: number;
  /** Image channels (3, RGB). */
  inChannels: number;
  /** Side of one square patch in pixels (14). */
  patchSize: number;
  /** Side of the square of patches merged into one LLM token (2, so 4 patches per token). */
  spatialMergeSize: number;
  /** Frames per patch (2: an image is repeated to two frames by the processor). */
  temporalPatchSize: number;
  /** Side of an attention window in pixels (112 = 4×4 merged tokens of 2×2 patches of 14 px). */
  windowSize: number;
  /** Blocks that attend over the whole image instead of within windows. */
  fullattBlockIndexes: readonly number[];
  /** Width of the merged tokens, the language model's hidden size. */
  outHiddenSize: number;
  /** Temporal position step per second of video in M-RoPE (unused for images). */
  tokensPerSecond: number;
}

export type ResolvedVisionConfig = Readonly<Qwen2_5_VisionConfig & {
  /** Per-head width, hiddenSize / numHeads. */
  headDim: number;
  /** Side of a window in merged tokens, windowSize / spatialMergeSize / patchSize. */
  mergedWindowSize: number;
  /** Elements of one flattened patch, inChannels · temporalPatchSize · patchSize². */
  patchDim: number;
}>;

/** Qwen2_5_VLVisionConfig's defaults, except hiddenSize which must be given (formats.md §3.1). */
const VISION_DEFAULTS: Omit<Qwen2_5_VisionConfig, "hiddenSize"> = {
  depth: 32, hiddenAct: "silu", intermediateSize: 3420, numHeads: 16, inChannels: 3, patchSize: 14,
  spatialMergeSize: 2, temporalPatchSize: 2, windowSize: 112, fullattBlockIndexes: [7, 15, 23, 31],
  outHiddenSize: 3584, tokensPerSecond: 4,
};

/** Upper bounds far past any released vision tower (Qwen2.5-VL's: hidden 1280, depth 32): larger is a broken config. */
export const VISION_LIMITS = Object.freeze({
  depth: 1024, hiddenSize: 1 << 16, intermediateSize: 1 << 18, numHeads: 1024, inChannels: 64, patchSize: 1 << 10,
  spatialMergeSize: 64, temporalPatchSize: 64, windowSize: 1 << 16, outHiddenSize: 1 << 16,
});

/** Validates a vision config and computes its derived fields. */
export function resolveVisionConfig(p: Partial<Qwen2_5_VisionConfig> & { hiddenSize: number }, where = "vision_config"): ResolvedVisionConfig {
  for (const k of Object.keys(p)) {
    if (!(k in VISION_DEFAULTS) && k !== "hiddenSize") throw new ConfigError(`${where}.${k}: unknown Qwen2.5-VL vision config field (known: hiddenSize, ${Object.keys(VISION_DEFAULTS).join(", ")})`);
  }
  const c: Qwen2_5_VisionConfig = { ...VISION_DEFAULTS, ...p };
  for (const k of ["depth", "hiddenSize", "intermediateSize", "numHeads", "inChannels", "patchSize", "spatialMergeSize", "temporalPatchSize", "windowSize", "outHiddenSize"] as const) {
    ensure(Number.isInteger(c[k]) && c[k] > 0, `${where}.${k}`, `must be a positive integer, got ${String(c[k])}`);
    ensure(c[k] <= VISION_LIMITS[k], `${where}.${k}`, `${c[k]} is beyond any real vision tower (at most ${VISION_LIMITS[k]}); the config is broken`);
  }
  ensure(c.hiddenAct === "silu", `${where}.hiddenAct`, `Qwen2.5-VL's vision MLP uses "silu", got ${JSON.stringify(c.hiddenAct)}`);
  ensure(c.hiddenSize % c.numHeads === 0, `${where}.hiddenSize`, `${c.hiddenSize} is not divisible by numHeads ${c.numHeads}`);
  const headDim = c.hiddenSize / c.numHeads;
  // 2-D rotary: half the head's channels rotate with the row, half with the column, each in pairs.
  ensure(headDim % 4 === 0, `${where}.hiddenSize`, `head dim ${headDim} (hiddenSize / numHeads) must be a multiple of 4 for the 2-D rotary embedding`);
  const mergedWindowSize = Math.floor(c.windowSize / c.spatialMergeSize / c.patchSize);
  ensure(mergedWindowSize >= 1, `${where}.windowSize`, `${c.windowSize} px is smaller than one merged token (${c.spatialMergeSize * c.patchSize} px)`);
  for (const i of c.fullattBlockIndexes) {
    ensure(Number.isInteger(i) && i >= 0 && i < c.depth, `${where}.fullattBlockIndexes`, `index ${i} is not a block (depth ${c.depth})`);
  }
  return Object.freeze({
    ...c, fullattBlockIndexes: Object.freeze([...c.fullattBlockIndexes]),
    headDim, mergedWindowSize, patchDim: c.inChannels * c.temporalPatchSize * c.patchSize * c.patchSize,
  });
}

/** Reads HF's `vision_config` object. hidden_size is required: the class default (3584) is wrong for every released model. */
export function visionConfigFromHf(json: HfJson, where = "config.json vision_config"): ResolvedVisionConfig {
  const d = VISION_DEFAULTS;
  return resolveVisionConfig({
    depth: hfField(json, "depth", "integer", where, d.depth),
    hiddenSize: hfField(json, "hidden_size", "integer", where),
    hiddenAct: hfField(json, "hidden_act", "string", where, d.hiddenAct),
    intermediateSize: hfField(json, "intermediate_size", "integer", where, d.intermediateSize),
    numHeads: hfField(json, "num_heads", "integer", where, d.numHeads),
    inChannels: hfField(json, "in_channels", "integer", where, d.inChannels),
    patchSize: hfField(json, "patch_size", "integer", where, d.patchSize),
    spatialMergeSize: hfField(json, "spatial_merge_size", "integer", where, d.spatialMergeSize),
    temporalPatchSize: hfField(json, "temporal_patch_size", "integer", where, d.temporalPatchSize),
    windowSize: hfField(json, "window_size", "integer", where, d.windowSize),
    fullattBlockIndexes: hfField<number[]>(json, "fullatt_block_indexes", "array", where, [...d.fullattBlockIndexes]),
    outHiddenSize: hfField(json, "out_hidden_size", "integer", where, d.outHiddenSize),
    tokensPerSecond: hfField(json, "tokens_per_second", "number", where, d.tokensPerSecond),
  }, where);
}

/** HF's `vision_config` object for a config. */
export function visionConfigToHf(c: ResolvedVisionConfig): HfJson {
  return {
    depth: c.depth, hidden_size: c.hiddenSize, hidden_act: c.hiddenAct, intermediate_size: c.intermediateSize,
    num_heads: c.numHeads, in_channels: c.inChannels, patch_size: c.patchSize, spatial_merge_size: c.spatialMergeSize,
    temporal_patch_size: c.temporalPatchSize, window_size: c.windowSize, fullatt_block_indexes: [...c.fullattBlockIndexes],
    out_hidden_size: c.outHiddenSize, tokens_per_second: c.tokensPerSecond,
  };
}

// ---------------------------------------------------------------------------------------------
// Vision index arithmetic (plain numbers: grids are known on the host)

function checkGrids(grids: readonly GridThw[], merge: number): void {
  if (grids.length === 0) throw new RangeError("Qwen2.5-VL vision: no images (gridThw is empty)");
  grids.forEach(([t, h, w], i) => {
    if (![t, h, w].every((x) => Number.isInteger(x) && x > 0)) throw new RangeError(`Qwen2.5-VL vision: gridThw[${i}] = [${t}, ${h}, ${w}] must be positive integers`);
    if (h % merge || w % merge) throw new RangeError(`Qwen2.5-VL vision: gridThw[${i}] = [${t}, ${h}, ${w}]: height and width must be multiples of spatial_merge_size ${merge} (smart_resize guarantees it)`);
  });
}

/**
 * Row and column of every patch in the tower's input order: per image, frame by frame, the
 * merge×merge blocks row-major and the patches row-major inside each block (rot_pos_emb).
 */
export function visionPatchPositions(grids: readonly GridThw[], merge: number): { h: number[]; w: number[] } {
  const h: number[] = [], w: number[] = [];
  for (const [t, gh, gw] of grids) {
    for (let f = 0; f < t; f++) {
      for (let bh = 0; bh < gh / merge; bh++) {
        for (let bw = 0; bw < gw / merge; bw++) {
          for (let i = 0; i < merge; i++) {
            for (let j = 0; j < merge; j++) { h.push(bh * merge + i); w.push(bw * merge + j); }
          }
        }
      }
    }
  }
  return { h, w };
}

/**
 * get_window_index: the order in which merged tokens (groups of merge² patches) enter the
 * window-attention blocks, and the window boundaries in patches (cu_window_seqlens, after
 * unique_consecutive). Windows are mergedWindowSize² merged tokens, row-major within each frame;
 * edge windows are smaller (HF pads the merged grid with -100 and drops the padding).
 */
export function visionWindowIndex(grids: readonly GridThw[], c: { spatialMergeSize: number; mergedWindowSize: number }): { windowIndex: number[]; cuWindowSeqlens: number[] } {
  const m = c.spatialMergeSize, ws = c.mergedWindowSize, unit = m * m;
  const windowIndex: number[] = [];
  const cu = [0];
  let offset = 0;
  for (const [t, gh, gw] of grids) {
    const lh = gh / m, lw = gw / m;
    // HF pads by ws - (l % ws), a whole empty window when l divides evenly; empty windows vanish
    // in unique_consecutive, so ceil(l / ws) windows per side give the same order and boundaries.
    const nh = Math.ceil(lh / ws), nw = Math.ceil(lw / ws);
    for (let f = 0; f < t; f++) {
      for (let wh = 0; wh < nh; wh++) {
        for (let ww = 0; ww < nw; ww++) {
          let n = 0;
          for (let i = wh * ws; i < Math.min((wh + 1) * ws, lh); i++) {
            for (let j = ww * ws; j < Math.min((ww + 1) * ws, lw); j++) { windowIndex.push(offset + (f * lh + i) * lw + j); n++; }
          }
          if (n > 0) cu.push(cu[cu.length - 1]! + n * unit);
        }
      }
    }
    offset += t * lh * lw;
  }
  return { windowIndex, cuWindowSeqlens: cu };
}

/** cu_seqlens of full attention: one segment per frame of each image, in patches. */
export function visionFrameSeqlens(grids: readonly GridThw[]): number[] {
  const cu = [0];
  for (const [t, h, w] of grids) for (let f = 0; f < t; f++) cu.push(cu[cu.length - 1]! + h * w);
  return cu;
}

/** The inverse permutation (argsort of a permutation of 0..n-1). */
export function inversePermutation(perm: readonly number[]): number[] {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => { inv[p] = i; });
  return inv;
}

/** Block-diagonal "may attend" mask [S, S] from segment boundaries [0, s1, .., S]. */
function blockDiagonalMask(cu: readonly number[], device: Device): Tensor {
  const total = cu[cu.length - 1]!;
  const seg = new Int32Array(total);
  for (let s = 0; s + 1 < cu.length; s++) seg.fill(s, cu[s]!, cu[s + 1]!);
  return torch.scope(() => {
    const ids = torch.tensor(seg, { shape: [total], device });
    return ids.unsqueeze(1).eq(ids.unsqueeze(0)); // [S, S] bool
  });
}

/** rotate_half: [x1, x2] -> [-x2, x1] over the last dim (halves, not interleaved). */
function rotateHalf(x: Tensor): Tensor {
  const half = x.size(-1) / 2;
  return torch.cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
}

/** inv_freq = 1 / theta^(2i/dim), i < dim/2, in float32 as HF computes it. */
function inverseFrequencies(dim: number, theta: number, device: Device): Tensor {
  return torch.scope(() => torch.pow(theta, torch.arange(0, dim, 2, { dtype: "float32", device }).div(dim)).reciprocal());
}

// ---------------------------------------------------------------------------------------------
// Vision modules

export interface ModelOptions {
  dtype?: DType;
  device?: Device;
}

/** Conv3d with kernel = stride = (T, P, P) over one patch: a linear map of the flattened patch. */
export class Qwen2_5_VisionPatchEmbed extends nn.Module {
  proj: nn.Conv3d;
  constructor(readonly c: ResolvedVisionConfig, o: ModelOptions = {}) {
    super();
    this.proj = new nn.Conv3d(c.inChannels, c.hiddenSize, [c.temporalPatchSize, c.patchSize, c.patchSize], { bias: false, ...o });
  }
  /** patches [N, C·T·P·P] in (C, T, P, P) order -> [N, D] */
  forward(patches: Tensor): Tensor {
    return torch.scope(() => {
      // The conv's output is 1×1×1 per patch, so it is exactly x · W.view(D, -1)ᵀ.
      const x = patches.to({ dtype: this.proj.weight.dtype });
      return F.linear(x, this.proj.weight.view(this.c.hiddenSize, this.c.patchDim));
    });
  }
}

/** q, k [S, H, hd] rotated by cos, sin [S, hd] in float32, cast back (apply_rotary_pos_emb_vision). */
function applyVisionRotary(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor): [Tensor, Tensor] {
  return torch.scope(() => {
    const c = cos.unsqueeze(-2).float(), s = sin.unsqueeze(-2).float(); // [S, 1, hd]
    const rot = (x: Tensor) => {
      const xf = x.float();
      return xf.mul(c).add(rotateHalf(xf).mul(s)).to({ dtype: x.dtype });
    };
    return [rot(q), rot(k)] as [Tensor, Tensor];
  });
}

export class Qwen2_5_VLVisionAttention extends nn.Module {
  qkv: nn.Linear;
  proj: nn.Linear;
  constructor(readonly c: ResolvedVisionConfig, o: ModelOptions = {}) {
    super();
    this.qkv = new nn.Linear(c.hiddenSize, 3 * c.hiddenSize, { bias: true, ...o });
    this.proj = new nn.Linear(c.hiddenSize, c.hiddenSize, { bias: true, ...o });
  }
  /** x [S, D], mask [S, S] bool (true = may attend), cos/sin [S, hd] -> [S, D] */
  forward(x: Tensor, mask: Tensor, cos: Tensor, sin: Tensor): Tensor {
    return torch.scope(() => {
      const S = x.size(0), H = this.c.numHeads;
      const [q0, k0, v] = this.qkv.forward(x).reshape(S, 3, H, this.c.headDim).permute(1, 0, 2, 3).unbind(0); // 3 × [S, H, hd]
      const [q, k] = applyVisionRotary(q0!, k0!, cos, sin);
      const heads = (t: Tensor) => t.transpose(0, 1); // [H, S, hd]
      const y = F.scaledDotProductAttention(heads(q), heads(k), heads(v!), { attnMask: mask }); // [H, S, hd]
      return this.proj.forward(y.transpose(0, 1).reshape(S, this.c.hiddenSize));
    });
  }
}

/** SwiGLU with bias: down(silu(gate(x)) · up(x)). */
export class Qwen2_5_VLMLP extends nn.Module {
  gate_proj: nn.Linear;
  up_proj: nn.Linear;
  down_proj: nn.Linear;
  constructor(hidden: number, intermediate: number, o: ModelOptions & { bias: boolean }) {
    super();
    this.gate_proj = new nn.Linear(hidden, intermediate, o);
    this.up_proj = new nn.Linear(hidden, intermediate, o);
    this.down_proj = new nn.Linear(intermediate, hidden, o);
  }
  forward(x: Tensor): Tensor {
    return torch.scope(() => this.down_proj.forward(F.silu(this.gate_proj.forward(x)).mul(this.up_proj.forward(x))));
  }
}

export class Qwen2_5_VLVisionBlock extends nn.Module {
  norm1: nn.RMSNorm;
  norm2: nn.RMSNorm;
  attn: Qwen2_5_VLVisionAttention;
  mlp: Qwen2_5_VLMLP;
  constructor(c: ResolvedVisionConfig, o: ModelOptions = {}) {
    super();
    this.norm1 = new nn.RMSNorm(c.hiddenSize, 1e-6, o);
    this.norm2 = new nn.RMSNorm(c.hiddenSize, 1e-6, o);
    this.attn = new Qwen2_5_VLVisionAttention(c, o);
    this.mlp = new Qwen2_5_VLMLP(c.hiddenSize, c.intermediateSize, { ...o, bias: true });
  }
  /** x [S, D] -> [S, D] */
  forward(x: Tensor, mask: Tensor, cos: Tensor, sin: Tensor): Tensor {
    return torch.scope(() => {
      const h = x.add(this.attn.forward(this.norm1.forward(x), mask, cos, sin));
      return h.add(this.mlp.forward(this.norm2.forward(h)));
    });
  }
}

export class Qwen2_5_VisionTransformer extends nn.Module {
  patch_embed: Qwen2_5_VisionPatchEmbed;
  blocks: nn.ModuleList<Qwen2_5_VLVisionBlock>;
  merger: Qwen2_5_VLPatchMerger;
  /** Rerun each block in backward instead of keeping its activations (torch.checkpoint; HF's gradient_checkpointing). */
  gradientCheckpointing = false;
  constructor(readonly config: ResolvedVisionConfig, o: ModelOptions = {}) {
    super();
    this.patch_embed = new Qwen2_5_VisionPatchEmbed(config, o);
    this.blocks = new nn.ModuleList(Array.from({ length: config.depth }, () => new Qwen2_5_VLVisionBlock(config, o)));
    this.merger = new Qwen2_5_VLPatchMerger({ dim: config.outHiddenSize, contextDim: config.hiddenSize, spatialMergeSize: config.spatialMergeSize }, o);
  }

  /** Merged tokens per image, t·h·w / merge². */
  tokensPerImage(grids: readonly GridThw[]): number[] {
    const m2 = this.config.spatialMergeSize ** 2;
    return grids.map(([t, h, w]) => (t * h * w) / m2);
  }

  /**
   * Patches of one or more images -> merged tokens, images concatenated in order.
   * ```ts
   * const feats = visual.forward(pixelValues, [[1, 32, 32]]); // [256, outHiddenSize]
   * ```
   * @param pixelValues [Σ t·h·w, C·T·P·P], the processor's flattened patches
   * @param grids each image's [t, h, w] in patches (image_grid_thw)
   * @returns [Σ t·h·w / merge², outHiddenSize]
   */
  forward(pixelValues: Tensor, grids: readonly GridThw[]): Tensor {
    const c = this.config, unit = c.spatialMergeSize ** 2;
    checkGrids(grids, c.spatialMergeSize);
    const N = grids.reduce((a, [t, h, w]) => a + t * h * w, 0);
    if (pixelValues.ndim !== 2 || pixelValues.size(0) !== N || pixelValues.size(1) !== c.patchDim) {
      throw new RangeError(`Qwen2.5-VL vision: pixelValues has shape [${pixelValues.shape.join(", ")}], expected [${N}, ${c.patchDim}] for grids ${JSON.stringify(grids)} (Σ t·h·w patches of C·T·P·P = ${c.inChannels}·${c.temporalPatchSize}·${c.patchSize}² values)`);
    }
    const device = pixelValues.device;
    // 1. window order: merged token j of the windowed sequence is merged token windowIndex[j].
    const { windowIndex, cuWindowSeqlens } = visionWindowIndex(grids, c);
    const patchOrder = windowIndex.flatMap((j) => Array.from({ length: unit }, (_, u) => j * unit + u));
    return torch.scope(() => {
      const order = torch.tensor(Int32Array.from(patchOrder), { shape: [N], device }).long();
      let x = this.patch_embed.forward(pixelValues).indexSelect(0, order); // [N, D]

      // 2. 2-D rotary: per patch [h·inv_freq, w·inv_freq], doubled to the head dim.
      const pos = visionPatchPositions(grids, c.spatialMergeSize);
      const hw = torch.tensor(Float32Array.from(patchOrder.flatMap((p) => [pos.h[p]!, pos.w[p]!])), { shape: [N, 2], device });
      const invFreq = inverseFrequencies(c.headDim / 2, 10000, device); // [hd/4]
      const freqs = hw.unsqueeze(-1).mul(invFreq).flatten(1); // [N, hd/2]
      const emb = torch.cat([freqs, freqs], -1); // [N, hd]
      const cos = emb.cos(), sin = emb.sin();

      // 3. blocks: windows everywhere except the full-attention blocks; never across images.
      const windowMask = blockDiagonalMask(cuWindowSeqlens, device);
      const fullMask = blockDiagonalMask(visionFrameSeqlens(grids), device);
      const full = new Set(c.fullattBlockIndexes);
      // Checkpointed blocks keep only their inputs: the mask and rotary tables go in as arguments,
      // not through the closure, so they outlive this scope until backward reruns the block.
      const checkpointing = this.gradientCheckpointing && this.training;
      let i = 0;
      for (const block of this.blocks) {
        const mask = full.has(i++) ? fullMask : windowMask;
        x = checkpointing ? torch.checkpoint((y, m, co, si) => block.forward(y, m, co, si), x, mask, cos, sin) : block.forward(x, mask, cos, sin);
      }

      // 4. merge 2×2 blocks (consecutive in window order), then back to the original order.
      const merged = this.merger.forward(x); // [N / unit, Dout]
      const back = torch.tensor(Int32Array.from(inversePermutation(windowIndex)), { shape: [N / unit], device }).long();
      return merged.indexSelect(0, back);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Multimodal rotary positions (M-RoPE)

/** The token ids get_rope_index looks for. */
export interface VisionTokenIds {
  imageTokenId: number;
  videoTokenId: number;
  visionStartTokenId: number;
}

/**
 * get_rope_index for text and images: 3-D positions (temporal, height, width) per token, and
 * per row the delta (max position + 1 − length) that decoding adds to the cache position.
 * Text tokens get t = h = w = a running index; an image after `<|vision_start|>` gets
 * t = start (t·0·tokens_per_second for images), h = start + row, w = start + column of its
 * merged grid, where start is the previous maximum + 1 plus the text before it; the text after
 * continues from the image's maximum + 1. Padding (attentionMask 0) gets position 1 and is
 * skipped. Images are taken from `grids` in order across the batch.
 * ```ts
 * // [text, <vs>, 4 image pads (2×2 merged), <ve>, text]
 * ropeIndex([[7, VS, I, I, I, I, VE, 8]], [[1, 4, 4]], ids, 2).positions[1][0] // h: [0, 1, 2, 2, 3, 3, 4, 5]
 * ```
 */
export function ropeIndex(
  inputIds: readonly (readonly number[])[], grids: readonly GridThw[], ids: VisionTokenIds, spatialMergeSize: number,
  attentionMask?: readonly (readonly number[])[],
): { positions: number[][][]; ropeDeltas: number[] } {
  const positions: number[][][] = [[], [], []];
  const ropeDeltas: number[] = [];
  let image = 0;
  inputIds.forEach((row, b) => {
    const keep = row.map((_, i) => (attentionMask ? attentionMask[b]![i] === 1 : true));
    const tokens = row.filter((_, i) => keep[i]);
    const t: number[] = [], h: number[] = [], w: number[] = [];
    let max = -1; // the largest position so far
    const push = (pt: number, ph: number, pw: number) => { t.push(pt); h.push(ph); w.push(pw); max = Math.max(max, pt, ph, pw); };
    let st = 0;
    for (let i = 0; i + 1 < tokens.length; i++) {
      if (tokens[i] !== ids.visionStartTokenId) continue;
      if (tokens[i + 1] === ids.videoTokenId) throw new RangeError(`Qwen2.5-VL rope index: row ${b} has a video (<|vision_start|><|video_pad|>); only images are supported`);
      if (tokens[i + 1] !== ids.imageTokenId) continue;
      // HF takes the first image pad at or after the end of the previous image.
      const ed = tokens.indexOf(ids.imageTokenId, st);
      const grid = grids[image];
      if (grid === undefined) throw new RangeError(`Qwen2.5-VL rope index: row ${b} has more images than the ${grids.length} grids given`);
      image++;
      const [gt, gh, gw] = [grid[0], grid[1] / spatialMergeSize, grid[2] / spatialMergeSize];
      const s0 = max + 1;
      for (let k = 0; k < ed - st; k++) push(s0 + k, s0 + k, s0 + k);
      const s1 = s0 + ed - st;
      for (let f = 0; f < gt; f++) {
        for (let r = 0; r < gh; r++) for (let c = 0; c < gw; c++) push(s1, s1 + r, s1 + c);
      }
      st = ed + gt * gh * gw;
    }
    const s0 = max + 1;
    for (let k = 0; k < tokens.length - st; k++) push(s0 + k, s0 + k, s0 + k);
    // scatter back into the padded row; padding keeps position 1
    const full = [t, h, w].map((axis) => {
      const out = new Array<number>(row.length).fill(1);
      let j = 0;
      row.forEach((_, i) => { if (keep[i]) out[i] = axis[j++]!; });
      return out;
    });
    full.forEach((axis, a) => positions[a]!.push(axis));
    ropeDeltas.push(max + 1 - row.length);
  });
  return { positions, ropeDeltas };
}

/**
 * cos and sin [B, L, hd] of M-RoPE for positions [3, B, L]: the rotary angles of each axis,
 * doubled to the head dim, then channel chunk i of mropeSection·2 taken from axis i mod 3
 * (apply_multimodal_rotary_pos_emb's selection, done once per forward).
 */
export function mropeCosSin(positionIds: Tensor, invFreq: Tensor, mropeSection: readonly number[], dtype: DType): { cos: Tensor; sin: Tensor } {
  return torch.scope(() => {
    const freqs = positionIds.float().unsqueeze(-1).mul(invFreq); // [3, B, L, hd/2]
    const emb = torch.cat([freqs, freqs], -1); // [3, B, L, hd]
    const sections = [...mropeSection, ...mropeSection];
    const pick = (x: Tensor) => torch.cat(x.split(sections, -1).map((chunk, i) => chunk.select(0, i % 3)), -1).to({ dtype });
    return { cos: pick(emb.cos()), sin: pick(emb.sin()) };
  });
}

// ---------------------------------------------------------------------------------------------
// VLM config

/** The full model's config: a Qwen2 decoder, the vision tower, M-RoPE and the vision tokens. */
export interface Qwen2_5_VLConfig {
  /** The language model (HF `text_config`, or the top-level text fields of older configs). */
  text: ResolvedQwen2Config;
  vision: ResolvedVisionConfig;
  /** M-RoPE: rotary channel pairs driven by the temporal, height and width positions; sums to text headDim / 2. */
  mropeSection: readonly [number, number, number];
  /** <|image_pad|>: each is replaced by one merged vision token. */
  imageTokenId: number;
  /** <|video_pad|> (videos are not supported; a video in the input is an error). */
  videoTokenId: number;
  /** <|vision_start|>, which precedes every image's pads. */
  visionStartTokenId: number;
  /** <|vision_end|>, which follows them. */
  visionEndTokenId: number;
}
export type ResolvedQwen2_5_VLConfig = Readonly<Qwen2_5_VLConfig>;

export interface Qwen2_5_VLConfigInput {
  text: Partial<Qwen2Config>;
  vision: Partial<Qwen2_5_VisionConfig> & { hiddenSize: number };
  mropeSection: readonly [number, number, number];
  imageTokenId?: number;
  videoTokenId?: number;
  visionStartTokenId?: number;
  visionEndTokenId?: number;
}

/** Qwen2_5_VLConfig's token defaults (formats.md §3.5). */
const TOKEN_DEFAULTS = { imageTokenId: 151655, videoTokenId: 151656, visionStartTokenId: 151652, visionEndTokenId: 151653 } as const;

/** Validates the parts and how they fit together. */
export function resolveQwen2_5_VL(p: Qwen2_5_VLConfigInput, where = "qwen2_5_vl"): ResolvedQwen2_5_VLConfig {
  const text = resolveQwen2(p.text, `${where}.text`);
  const vision = resolveVisionConfig(p.vision, `${where}.vision`);
  const c = { ...TOKEN_DEFAULTS, ...p, text, vision };
  const sec = c.mropeSection;
  ensure(Array.isArray(sec) && sec.length === 3 && sec.every((x) => Number.isInteger(x) && x > 0), `${where}.mropeSection`, `must be three positive integers [temporal, height, width], got ${JSON.stringify(sec)}`);
  ensure(sec[0] + sec[1] + sec[2] === text.headDim / 2, `${where}.mropeSection`, `${JSON.stringify(sec)} sums to ${sec[0] + sec[1] + sec[2]}, but must cover the ${text.headDim / 2} rotary pairs of the text head dim ${text.headDim}`);
  ensure(vision.outHiddenSize === text.hiddenSize, `${where}.vision.outHiddenSize`, `${vision.outHiddenSize} must equal the language model's hiddenSize ${text.hiddenSize} (merged tokens replace token embeddings)`);
  for (const k of ["imageTokenId", "videoTokenId", "visionStartTokenId", "visionEndTokenId"] as const) {
    ensure(Number.isInteger(c[k]) && c[k] >= 0 && c[k] < text.vocabSize, `${where}.${k}`, `${c[k]} is not a token id of the ${text.vocabSize}-token vocabulary`);
  }
  return Object.freeze({
    text, vision, mropeSection: Object.freeze([...sec]) as unknown as readonly [number, number, number],
    imageTokenId: c.imageTokenId, videoTokenId: c.videoTokenId, visionStartTokenId: c.visionStartTokenId, visionEndTokenId: c.visionEndTokenId,
  });
}

/** The text fields Qwen2's reader understands (HF names); read from text_config, else the top level. */
const TEXT_FIELDS = [
  "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
  "head_dim", "hidden_act", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings", "attention_dropout",
  "bos_token_id", "eos_token_id", "initializer_range", "use_sliding_window", "sliding_window", "max_window_layers",
] as const;

/**
 * A config from HF's config.json (Qwen2_5_VLConfig). Text fields are read from `text_config`
 * (transformers ≥ 4.52) and, for those it lacks, from the top level (the original release's
 * layout); `rope_scaling` (or `rope_parameters`) must carry `mrope_section`; `vision_config`
 * must give `hidden_size` (formats.md §3.1: the class default is wrong for released models).
 */
export function qwen2_5_vlFromHfConfig(json: HfJson, where = "config.json"): ResolvedQwen2_5_VLConfig {
  if (json.model_type !== undefined) {
    ensure(json.model_type === "qwen2_5_vl", `${where}: "model_type"`, `expected "qwen2_5_vl", got ${JSON.stringify(json.model_type)} (this loader reads Qwen2.5-VL checkpoints)`);
  }
  const textJson = json.text_config === undefined || json.text_config === null ? {} : hfField<HfJson>(json, "text_config", "object", where);
  const read = (k: string): unknown => textJson[k] ?? json[k];
  const text: HfJson = {};
  for (const k of TEXT_FIELDS) if (read(k) !== undefined && read(k) !== null) text[k] = read(k);
  // torch_dtype is the checkpoint's, at the top level (text_config's may differ in re-saved copies).
  const dtype = json.torch_dtype ?? json.dtype;
  if (dtype !== undefined && dtype !== null) text.torch_dtype = dtype;
  const ropeKey = ["rope_scaling", "rope_parameters"].find((k) => read(k) !== undefined && read(k) !== null);
  if (ropeKey === undefined) throw new ConfigError(`${where}: missing "rope_scaling" (or "rope_parameters") with "mrope_section" (Qwen2.5-VL's multimodal RoPE, e.g. {"type": "mrope", "mrope_section": [16, 24, 24]})`);
  const rope = read(ropeKey) as HfJson;
  const ropeWhere = `${where}: ${ropeKey}`;
  ensure(typeof rope === "object" && !Array.isArray(rope), ropeWhere, `must be an object with "mrope_section", got ${JSON.stringify(rope)}`);
  const ropeType = hfField<string>(rope, "rope_type", "string", ropeWhere, hfField<string>(rope, "type", "string", ropeWhere, "default"));
  ensure(ropeType === "mrope" || ropeType === "default", `${ropeWhere}.rope_type`, `only multimodal RoPE without scaling ("mrope" or "default") is supported, got ${JSON.stringify(ropeType)}`);
  text.rope_theta = hfField<number>(rope, "rope_theta", "number", ropeWhere, (read("rope_theta") as number | undefined) ?? 1_000_000);
  const mropeSection = hfField<number[]>(rope, "mrope_section", "array", ropeWhere) as unknown as [number, number, number];
  const visionJson = hfField<HfJson>(json, "vision_config", "object", where);
  const { headDim: _hd, ...textCfg } = fromHfConfig(text, json.text_config ? `${where}: text_config` : where);
  const { headDim: _vhd, mergedWindowSize: _mws, patchDim: _pd, ...vision } = visionConfigFromHf(visionJson, `${where}: vision_config`);
  const token = (k: string, d: number) => hfField<number>(json, k, "integer", where, d);
  return resolveQwen2_5_VL({
    text: textCfg, vision, mropeSection,
    imageTokenId: token("image_token_id", TOKEN_DEFAULTS.imageTokenId),
    videoTokenId: token("video_token_id", TOKEN_DEFAULTS.videoTokenId),
    visionStartTokenId: token("vision_start_token_id", TOKEN_DEFAULTS.visionStartTokenId),
    visionEndTokenId: token("vision_end_token_id", TOKEN_DEFAULTS.visionEndTokenId),
  }, where);
}

/**
 * HF's config.json for a config, as transformers 4.52–4.54 write it: the text fields both at the
 * top level (read by older transformers) and under text_config (read by newer ones).
 */
export function qwen2_5_vlToHfConfig(c: ResolvedQwen2_5_VLConfig): HfJson {
  const text = qwen2ToHfConfig(c.text);
  delete text.architectures;
  delete text.model_type;
  text.rope_scaling = { type: "default", rope_type: "default", mrope_section: [...c.mropeSection] };
  return {
    architectures: ["Qwen2_5_VLForConditionalGeneration"], model_type: "qwen2_5_vl",
    ...text,
    image_token_id: c.imageTokenId, video_token_id: c.videoTokenId,
    vision_start_token_id: c.visionStartTokenId, vision_end_token_id: c.visionEndTokenId,
    text_config: { ...text, model_type: "qwen2_5_vl_text", rope_scaling: { type: "default", rope_type: "default", mrope_section: [...c.mropeSection] } },
    vision_config: visionConfigToHf(c.vision),
  };
}

export interface Qwen2_5_VLPreset {
  /** Where the numbers come from. */
  source: string;
  config: Qwen2_5_VLConfigInput;
}

const QWEN25_VL_TEXT = { hiddenAct: "silu", rmsNormEps: 1e-6, ropeTheta: 1_000_000, maxPositionEmbeddings: 128000, attentionDropout: 0, bosTokenId: 151643, eosTokenId: 151645, torchDtype: "bfloat16", initializerRange: 0.02, useSlidingWindow: false, slidingWindow: 32768 } as const;
const QWEN25_VL_VISION = { depth: 32, hiddenSize: 1280, hiddenAct: "silu", intermediateSize: 3420, numHeads: 16, inChannels: 3, patchSize: 14, spatialMergeSize: 2, temporalPatchSize: 2, windowSize: 112, fullattBlockIndexes: [7, 15, 23, 31], tokensPerSecond: 2 } as const;

/** Named configs; `tiny` is shared by tests (fixtures/models/make_qwen2_5_vl_golden.py has the same numbers). */
export const QWEN2_5_VL_PRESETS: Readonly<Record<string, Qwen2_5_VLPreset>> = Object.freeze({
  tiny: {
    source: "MindsEye test size: vision depth 3 (block 1 full attention), width 32, 2 heads, 4-px patches, 16-px windows (2×2 merged tokens); text width 64, GQA 4/2 heads, vocab 256",
    config: {
      text: { vocabSize: 256, hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2, rmsNormEps: 1e-6, ropeTheta: 1_000_000, maxPositionEmbeddings: 4096, tieWordEmbeddings: false, bosTokenId: 243, eosTokenId: 245, torchDtype: "float32", slidingWindow: null },
      vision: { depth: 3, hiddenSize: 32, intermediateSize: 48, numHeads: 2, inChannels: 3, patchSize: 4, spatialMergeSize: 2, temporalPatchSize: 2, windowSize: 16, fullattBlockIndexes: [1], outHiddenSize: 64, tokensPerSecond: 2 },
      mropeSection: [2, 3, 3],
      imageTokenId: 251, videoTokenId: 252, visionStartTokenId: 248, visionEndTokenId: 249,
    },
  },
  "qwen2.5-vl-3b": {
    source: "Qwen/Qwen2.5-VL-3B-Instruct config.json [indirect: copies of it]; formats.md §3.1 has the 7B and the shared vision tower",
    config: {
      text: { ...QWEN25_VL_TEXT, vocabSize: 151936, hiddenSize: 2048, intermediateSize: 11008, numHiddenLayers: 36, numAttentionHeads: 16, numKeyValueHeads: 2, tieWordEmbeddings: true, maxWindowLayers: 70 },
      vision: { ...QWEN25_VL_VISION, outHiddenSize: 2048 },
      mropeSection: [16, 24, 24],
    },
  },
  "qwen2.5-vl-7b": {
    source: "shared/reference/formats.md §3.1 (Qwen/Qwen2.5-VL-7B-Instruct config.json)",
    config: {
      text: { ...QWEN25_VL_TEXT, vocabSize: 152064, hiddenSize: 3584, intermediateSize: 18944, numHiddenLayers: 28, numAttentionHeads: 28, numKeyValueHeads: 4, tieWordEmbeddings: false, maxWindowLayers: 28 },
      vision: { ...QWEN25_VL_VISION, outHiddenSize: 3584 },
      mropeSection: [16, 24, 24],
    },
  },
});

/** A preset by name, resolved. */
export function qwen2_5_vlPreset(name: string): ResolvedQwen2_5_VLConfig {
  const p = QWEN2_5_VL_PRESETS[name];
  if (p === undefined) throw new ConfigError(`unknown Qwen2.5-VL preset "${name}" (presets: ${Object.keys(QWEN2_5_VL_PRESETS).join(", ")})`);
  return resolveQwen2_5_VL(p.config, `qwen2_5_vl preset "${name}"`);
}

// ---------------------------------------------------------------------------------------------
// The VLM

/** A KV cache that also remembers each row's rope delta from the prefill, for decoding. */
export class Qwen2_5_VLCache extends KVCache {
  /** max position + 1 − length per row, set by the forward that filled the empty cache. */
  ropeDeltas: number[] | null = null;
}

/** visual + language_model, as HF's Qwen2_5_VLModel (weights under model.visual.* and model.language_model.*). */
export class Qwen2_5_VLModel extends nn.Module {
  visual: Qwen2_5_VisionTransformer;
  language_model: Qwen2Model;
  constructor(cfg: ResolvedQwen2_5_VLConfig, o: ModelOptions = {}) {
    super();
    this.visual = new Qwen2_5_VisionTransformer(cfg.vision, o);
    this.language_model = new Qwen2Model(cfg.text, o);
  }
}

export interface Qwen2_5_VLInput {
  /** int64 [B, T]: text with `<|vision_start|>` + one `<|image_pad|>` per merged token + `<|vision_end|>` per image. */
  inputIds: Tensor;
  /** [Σ t·h·w, C·T·P·P]: every image's patches, in the order the images appear (the processor's pixel_values). */
  pixelValues?: Tensor;
  /** Each image's [t, h, w] in patches (image_grid_thw); needed for the positions whenever the text holds images. */
  imageGridThw?: readonly GridThw[];
  /** [B, P + T]: 1 for tokens, 0 for (left) padding, over cached and new tokens. */
  attentionMask?: Tensor;
  /** int64 [3, B, T] explicit M-RoPE positions; by default get_rope_index (prefill) or cache length + delta (decoding). */
  positionIds?: Tensor;
  /** Keys and values of earlier tokens, updated in place. */
  pastKeyValues?: KVCache;
  /** Return a cache (a new Qwen2_5_VLCache when pastKeyValues is absent). */
  useCache?: boolean;
  /** Per-row deltas for decoding; by default those the prefill stored in a Qwen2_5_VLCache. */
  ropeDeltas?: readonly number[];
  /** Also return the embeddings and every layer's output (HF's layout, L + 1 tensors). */
  outputHiddenStates?: boolean;
  /** Logits for the last N positions only (0: all), as HF's logits_to_keep. */
  logitsToKeep?: number;
}

export interface Qwen2_5_VLOutput {
  /** [B, T, V] (T = logitsToKeep when given). */
  logits: Tensor;
  /** After the final norm: [B, T, D]. */
  lastHiddenState: Tensor;
  hiddenStates?: Tensor[];
  pastKeyValues?: KVCache;
  /** Per row: max position + 1 − length (decoding positions are cache length + delta). */
  ropeDeltas: number[];
}

/** The original release's weight names (model.* for the LM, visual.*) or transformers ≥ 4.52's (model.language_model.*, model.visual.*). */
export type Qwen2_5_VLWeightNaming = "original" | "nested";

/** transformers' _checkpoint_conversion_mapping: original names -> this module's (nested) names. */
function fromOriginalName(name: string): string {
  if (name.startsWith("visual.")) return `model.${name}`;
  if (name.startsWith("model.") && !name.startsWith("model.language_model.") && !name.startsWith("model.visual.")) return `model.language_model.${name.slice("model.".length)}`;
  return name;
}
function toOriginalName(name: string): string {
  if (name.startsWith("model.visual.")) return name.slice("model.".length);
  if (name.startsWith("model.language_model.")) return `model.${name.slice("model.language_model.".length)}`;
  return name;
}

/**
 * Holds a Qwen2.5-VL config against a checkpoint's header (names in transformers ≥ 4.52's
 * layout) before anything is allocated: the text model as checkQwen2Checkpoint does, and the
 * vision tower's depth, hidden_size, patch sizes, intermediate_size and out_hidden_size against
 * its block weights, patch_embed, layer 0 and merger. A mismatch is a ConfigError naming the field.
 */
export function checkQwen2_5_VLCheckpoint(cfg: ResolvedQwen2_5_VLConfig, header: CheckpointHeader, where: string): void {
  checkQwen2Checkpoint(cfg.text, header, { where, prefix: "model.language_model.", lmHead: "lm_head.weight" });
  const v = cfg.vision, w = `${where} vision_config`;
  const hidden = { size: v.hiddenSize, field: "hidden_size" }, patch = { size: v.patchSize, field: "patch_size" };
  checkTensorShape(header, "model.visual.patch_embed.proj.weight", [hidden, { size: v.inChannels, field: "in_channels" }, { size: v.temporalPatchSize, field: "temporal_patch_size" }, patch, patch], w);
  checkLayerCount(header, "model.visual.blocks.", v.depth, "depth", w);
  checkTensorShape(header, "model.visual.blocks.0.mlp.gate_proj.weight", [{ size: v.intermediateSize, field: "intermediate_size" }, hidden], w);
  checkTensorShape(header, "model.visual.merger.mlp.2.weight", [{ size: v.outHiddenSize, field: "out_hidden_size" }, null], w);
}

export interface Qwen2_5_VLOptions extends ModelOptions {
  /** Seeded generator for new weights. */
  generator?: Generator;
}

/**
 * Qwen2.5-VL: the vision tower's merged tokens replace the image pads, then a Qwen2 decoder
 * with multimodal RoPE and lm_head. New weights follow HF's _init_weights (normal(0,
 * initializerRange) for linear, conv and embedding weights, zero biases, RMSNorm one).
 * ```ts
 * const vlm = Qwen2_5_VLForConditionalGeneration.fromPretrained("Qwen2.5-VL-7B-Instruct/", { dtype: "bfloat16" });
 * const out = torch.noGrad(() => vlm.forward({ inputIds, pixelValues, imageGridThw: [[1, 32, 32]], useCache: true }));
 * const next = vlm.forward({ inputIds: token, pastKeyValues: out.pastKeyValues });   // positions from the stored rope delta
 * ```
 */
export class Qwen2_5_VLForConditionalGeneration extends nn.Module {
  model: Qwen2_5_VLModel;
  lm_head: nn.Linear;
  /** The naming of the checkpoint this model was loaded from (savePretrained's default). */
  loadedNaming: Qwen2_5_VLWeightNaming | null = null;

  constructor(readonly config: ResolvedQwen2_5_VLConfig, o: Qwen2_5_VLOptions = {}) {
    super();
    const f = { ...(o.dtype ? { dtype: o.dtype } : {}), ...(o.device ? { device: o.device } : {}) };
    this.model = new Qwen2_5_VLModel(config, f);
    this.lm_head = new nn.Linear(config.text.hiddenSize, config.text.vocabSize, { ...f, bias: false });
    if (config.text.tieWordEmbeddings) {
      this.lm_head.weight.dispose();
      this.lm_head.weight = this.model.language_model.embed_tokens.weight; // one Parameter under two names
    }
    for (const [, m] of this.namedModules()) {
      if (m instanceof nn.Linear || m instanceof nn.Conv3d || m instanceof nn.Embedding) nn.init.normal_(m.weight, 0, config.text.initializerRange, o.generator);
      if ((m instanceof nn.Linear || m instanceof nn.Conv3d) && m.bias) nn.init.zeros_(m.bias);
    }
  }

  get visual(): Qwen2_5_VisionTransformer { return this.model.visual; }
  get languageModel(): Qwen2Model { return this.model.language_model; }

  /** The tower's merged tokens, one tensor [t·h·w / merge², D] per image (get_image_features). */
  getImageFeatures(pixelValues: Tensor, grids: readonly GridThw[]): Tensor[] {
    return torch.scope(() => this.visual.forward(pixelValues, grids).split(this.visual.tokensPerImage(grids), 0));
  }

  /** get_rope_index on int64 input ids [B, T] (and an optional 0/1 mask [B, T]): positions int64 [3, B, T] and per-row deltas. */
  ropeIndex(inputIds: Tensor, grids: readonly GridThw[] = [], attentionMask?: Tensor): { positionIds: Tensor; ropeDeltas: number[] } {
    const rows = (t: Tensor) => t.tolist() as number[][];
    const { positions, ropeDeltas } = ropeIndex(rows(inputIds), grids, this.config, this.config.vision.spatialMergeSize, attentionMask ? rows(attentionMask) : undefined);
    return { positionIds: torch.tensor(positions, { dtype: "int64", device: inputIds.device }), ropeDeltas };
  }

  forward(input: Qwen2_5_VLInput): Qwen2_5_VLOutput {
    const { inputIds, pixelValues, attentionMask } = input;
    const grids = input.imageGridThw ?? [];
    if (inputIds.ndim !== 2) throw new RangeError(`Qwen2.5-VL forward: inputIds must be [B, T], got [${inputIds.shape.join(", ")}]`);
    const [B, T] = inputIds.shape as [number, number];
    const cache = input.pastKeyValues ?? (input.useCache ? new Qwen2_5_VLCache(this.config.text.numHiddenLayers) : undefined);
    const P = cache?.length ?? 0;
    return torch.scope(() => {
      // 1. token embeddings, the image pads replaced by the tower's merged tokens in order
      let embeds = this.languageModel.embed_tokens.forward(inputIds); // [B, T, D]
      if (pixelValues !== undefined) {
        if (grids.length === 0) throw new RangeError("Qwen2.5-VL forward: pixelValues given without imageGridThw (each image's [t, h, w] in patches)");
        const feats = this.visual.forward(pixelValues, grids).to({ dtype: embeds.dtype }); // [N, D]
        const slots = torch.nonzero(inputIds.eq(this.config.imageTokenId).flatten()).squeeze(1); // positions in B·T
        if (slots.size(0) !== feats.size(0)) {
          throw new RangeError(`Qwen2.5-VL forward: image features and image tokens do not match: ${slots.size(0)} <|image_pad|> tokens (id ${this.config.imageTokenId}), ${feats.size(0)} merged vision tokens for grids ${JSON.stringify(grids)} (each image needs t·h·w/${this.config.vision.spatialMergeSize ** 2} pads)`);
        }
        const D = embeds.size(2);
        embeds = embeds.reshape(B * T, D).indexPut([slots], feats).reshape(B, T, D);
      }

      // 2. M-RoPE positions [3, B, T]: get_rope_index on a prefill, cache length + delta when decoding
      let positionIds: Tensor, ropeDeltas: number[];
      if (input.positionIds !== undefined) {
        positionIds = input.positionIds;
        ropeDeltas = [...(input.ropeDeltas ?? Array<number>(B).fill(0))];
      } else if (P === 0) {
        ({ positionIds, ropeDeltas } = this.ropeIndex(inputIds, grids, attentionMask));
        if (cache instanceof Qwen2_5_VLCache) cache.ropeDeltas = ropeDeltas;
      } else {
        const stored = cache instanceof Qwen2_5_VLCache ? cache.ropeDeltas : null;
        const deltas = input.ropeDeltas ?? stored;
        if (deltas === null) throw new Error("Qwen2.5-VL forward: decoding with a cache needs the prefill's rope deltas: pass ropeDeltas (returned by the prefill) or use the Qwen2_5_VLCache the prefill returned");
        ropeDeltas = [...deltas];
        const base = torch.arange(P, P + T, 1, { device: inputIds.device }).view(1, 1, T);
        positionIds = base.add(torch.tensor(ropeDeltas, { dtype: "int64", device: inputIds.device }).view(1, B, 1)).expand(3, B, T);
      }
      // inv_freq in float32 whatever the weights' dtype (HF's is a non-persistent float32 buffer)
      const invFreq = inverseFrequencies(this.config.text.headDim, this.config.text.ropeTheta, inputIds.device);
      const rope = mropeCosSin(positionIds, invFreq, this.config.mropeSection, embeds.dtype); // [B, T, hd] each

      // 3. the decoder and the head
      const out = this.languageModel.forward({
        inputsEmbeds: embeds, positionEmbeddings: rope,
        ...(attentionMask ? { attentionMask } : {}), ...(cache ? { pastKeyValues: cache } : {}),
        ...(input.outputHiddenStates ? { outputHiddenStates: true } : {}),
      });
      const keep = input.logitsToKeep ?? 0;
      const h = keep > 0 ? out.lastHiddenState.narrow(1, Math.max(0, T - keep), Math.min(keep, T)) : out.lastHiddenState;
      return { ...out, logits: this.lm_head.forward(h), ropeDeltas };
    });
  }

  /**
   * Generates after a prompt with images (models/generation.ts: greedy or sampled, left-padded
   * batches, KV cache). The first step gets the images; later steps one token per row, their
   * positions cache length + the prefill's rope delta.
   * ```ts
   * const { tokens } = vlm.generate({ inputIds, attentionMask, pixelValues, imageGridThw: [[1, 32, 32]], maxNewTokens: 64, stopTokenIds: [151645] });
   * ```
   */
  generate(o: Omit<GenerateOptions, "inputsEmbeds"> & { inputIds: Tensor; pixelValues?: Tensor; imageGridThw?: readonly GridThw[] }): GenerateResult {
    const { pixelValues, imageGridThw, ...rest } = o;
    const images = { ...(pixelValues ? { pixelValues } : {}), ...(imageGridThw ? { imageGridThw } : {}) };
    const step = (s: GenerationStep<KVCache>) => {
      if (s.inputIds === undefined) throw new Error("Qwen2.5-VL generate: needs inputIds (positions come from the image pads)");
      return this.forward({ ...s, inputIds: s.inputIds, ...(s.pastKeyValues === undefined ? images : {}) });
    };
    return generate({ forward: step }, rest);
  }

  /**
   * Loads an HF checkpoint directory (config.json + model.safetensors or shards) in either
   * weight naming. Missing, unexpected and mis-shaped weights are one error.
   */
  static fromPretrained(dir: string, opts: { dtype?: Qwen2Dtype; device?: Device } = {}): Qwen2_5_VLForConditionalGeneration {
    const cfg = qwen2_5_vlFromHfConfig(readHfConfig(dir), `${dir}/config.json`);
    const checkpoint = readCheckpointHeader(dir);
    const header = new Map([...checkpoint].map(([n, e]) => [fromOriginalName(n), e]));
    checkQwen2_5_VLCheckpoint(cfg, header, `${dir}/config.json`); // before anything is allocated
    const names = [...checkpoint.keys()];
    const nested = names.some((n) => n.startsWith("model.language_model.") || n.startsWith("model.visual."));
    const original = names.some((n) => fromOriginalName(n) !== n);
    if (nested && original) {
      const a = names.find((n) => fromOriginalName(n) !== n)!, b = names.find((n) => n.startsWith("model.language_model.") || n.startsWith("model.visual."))!;
      throw new Error(`${dir}: the checkpoint mixes the two Qwen2.5-VL weight namings (e.g. "${a}" from the original release and "${b}" from transformers ≥ 4.52); re-save it in one`);
    }
    const dtype = opts.dtype ?? "float32";
    const model = new Qwen2_5_VLForConditionalGeneration(cfg, { dtype, ...(opts.device ? { device: opts.device } : {}) });
    try {
      // Read into the parameters, a tensor at a time: peak memory is the model, not twice it.
      // A tied lm_head is embed_tokens (a copy saved under lm_head.weight is ignored).
      loadCheckpointInto(model, dir, {
        header: checkpoint,
        rename: (n) => (cfg.text.tieWordEmbeddings && fromOriginalName(n) === "lm_head.weight" ? null : fromOriginalName(n)),
      });
    } catch (e) {
      model.parameters().forEach((p) => p.dispose());
      if (e instanceof nn.StateDictError) {
        throw new Error(`${dir}: the checkpoint does not fit Qwen2_5_VLForConditionalGeneration with this config.json (names as ${nested ? "transformers ≥ 4.52: model.language_model.*, model.visual.*" : "the original release: model.*, visual.*"}, shown below in transformers ≥ 4.52's naming; tie_word_embeddings: ${cfg.text.tieWordEmbeddings})\n${e.message}`, { cause: e });
      }
      throw e;
    }
    model.loadedNaming = nested ? "nested" : "original";
    return model;
  }

  /**
   * Writes config.json and the weights (a tied lm_head.weight omitted, as HF does) in one naming:
   * by default the one the checkpoint was loaded with, else transformers ≥ 4.52's ("nested").
   */
  savePretrained(dir: string, opts: { naming?: Qwen2_5_VLWeightNaming; dtype?: Qwen2Dtype; maxShardBytes?: number } = {}): void {
    const naming = opts.naming ?? this.loadedNaming ?? "nested";
    const dtype = opts.dtype ?? (this.lm_head.weight.dtype as Qwen2Dtype);
    const config = qwen2_5_vlToHfConfig(this.config);
    config.torch_dtype = dtype;
    (config.text_config as HfJson).torch_dtype = dtype;
    saveCheckpoint(dir, this, config, {
      ...(naming === "original" ? { rename: toOriginalName } : {}),
      skip: (name) => this.config.text.tieWordEmbeddings && name === "lm_head.weight",
      ...(opts.maxShardBytes ? { maxShardBytes: opts.maxShardBytes } : {}),
      ...(opts.dtype ? { dtype: opts.dtype } : {}),
    });
  }
}
