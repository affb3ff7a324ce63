// InternVL2.5 (OpenGVLab's InternVLChatModel, modeling_internvl_chat.py of the trust_remote_code
// checkpoints), in their published layout:
//
//   tiles [n, 3, 448, 448] ─► vision_model.*  (InternViT, intern_vit.ts) ─► hidden state select_layer
//          ─► drop the class token ─► [n, g, g, Dv] ─► pixel_shuffle (downsample_ratio 0.5, ps_version)
//          ─► [n, g/2, g/2, 4·Dv] ─► mlp1 (LayerNorm → Linear → GELU → Linear) ─► [n, num_image_token, D]
//   prompt:  … <img> <IMG_CONTEXT> × num_image_token·n </img> …  (the chat template's expansion)
//   embeddings of the prompt, the <IMG_CONTEXT> rows replaced in order ─► language_model.* ─► logits
//
// llm_config.architectures[0] picks the language model: InternLM2ForCausalLM (InternVL2.5-2B, 8B,
// 26B; internlm2.ts), Qwen2ForCausalLM (1B, 4B, 38B, 78B) or LlamaForCausalLM (InternVL2-40B/76B).
// InternVLChatConfig forces tie_word_embeddings false on the language model, and so does this.
// The <IMG_CONTEXT> token id is the tokenizer's (config.json does not hold it): from fromPretrained's
// option, else MindsEye's config.json key img_context_token_id, else the tokenizer_config.json of the
// checkpoint.
//
// Also here: dynamic_preprocess's tile plan (closest aspect ratio among min..max tiles of 448 px,
// plus a thumbnail when there is more than one tile), as a pure function of the image size.
//
//   const vl = InternVLChatModel.fromPretrained("InternVL2_5-8B/", { dtype: "bfloat16" });
//   const { tokens } = vl.generate({ inputIds, attentionMask, pixelValues, maxNewTokens: 64, stopTokenIds: [92542] });
//
// Golden fixture: fixtures/models/make_internvl_golden.py (vl_internlm2, vl_qwen2, tiles).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { torch, nn, type Tensor, type Device, type Generator } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { readHfConfig, hfField, ensure, type HfJson } from "../config/hf.js";
import { didYouMean } from "../data/formats/index.js";
import { InternVisionModel, checkInternVitCheckpoint, internVitFromHfConfig, internVitToHfConfig, internVitPreset, type ResolvedInternVitConfig } from "./intern_vit.js";
import { InternLM2ForCausalLM, checkInternLM2Checkpoint, internLM2FromHfConfig, internLM2ToHfConfig, internLM2Preset, type ResolvedInternLM2Config } from "./internlm2.js";
import { Qwen2ForCausalLM, checkQwen2Checkpoint, fromHfConfig as qwen2FromHf, toHfConfig as qwen2ToHf, qwen2Preset, type ResolvedQwen2Config, type KVCache, type Qwen2Dtype } from "./qwen2.js";
import { LlamaForCausalLM, checkLlamaCheckpoint, llamaFromHfConfig, llamaToHfConfig, type ResolvedLlamaConfig } from "./llama.js";
import { InternVLProjector, pixelShuffle } from "./projectors.js";
import { embedWithImages } from "./image_tokens.js";
import { generate, type GenerateOptions, type GenerateResult } from "./generation.js";
import { loadCheckpointInto, saveCheckpoint, readCheckpointHeader, checkTensorShape } from "./pretrained.js";

// =============================================================================================
// Config

/** The language model, by llm_config.architectures[0]. */
export type InternVLLanguageConfig =
  | { architecture: "InternLM2ForCausalLM"; config: ResolvedInternLM2Config }
  | { architecture: "Qwen2ForCausalLM"; config: ResolvedQwen2Config }
  | { architecture: "LlamaForCausalLM"; config: ResolvedLlamaConfig };

const ARCHITECTURES = ["InternLM2ForCausalLM", "Qwen2ForCausalLM", "LlamaForCausalLM"] as const;

/** InternVLChatConfig (configuration_internvl_chat.py), camelCase. */
export interface InternVLConfig {
  /** The vision tower (vision_config). */
  vision: ResolvedInternVitConfig;
  /** The language model (llm_config); its tieWordEmbeddings must be false, as InternVLChatConfig sets it. */
  llm: InternVLLanguageConfig;
  /** Hidden state of the tower fed to the projector (-1: last_hidden_state; InternVL2.5: -1). */
  selectLayer: number;
  /** Tile size when it differs from the tower's image_size (InternVL2.5: 448, the same), else null. */
  forceImageSize: number | null;
  /** Pixel-shuffle scale: 0.5 folds 2×2 patches into one token of 4× the width. */
  downsampleRatio: number;
  /** "v2" swaps rows and columns back after the shuffle (InternVL2.5); "v1" leaves them transposed. */
  psVersion: "v1" | "v2";
  /** Name of the chat template (InternVL2.5: "internvl2_5"; informational here). */
  template: string | null;
  /** Images are cut into tiles by dynamicTiles (InternVL2.5: true). */
  dynamicImageSize: boolean;
  /** A thumbnail of the whole image follows the tiles when there are several (InternVL2.5: true). */
  useThumbnail: boolean;
  /** Fewest tiles of the tile plan. */
  minDynamicPatch: number;
  /** Most tiles of the tile plan (InternVL2.5: 12). */
  maxDynamicPatch: number;
  /** Id of the <IMG_CONTEXT> token whose embedding rows receive image features (a tokenizer fact); null until known. */
  imgContextTokenId: number | null;
}

export type ResolvedInternVLConfig = Readonly<InternVLConfig & {
  /** Tokens per tile: (imageSize / patchSize)² · downsampleRatio² (InternVL2.5: 256). */
  numImageToken: number;
  /** Side of one tile in pixels: forceImageSize ?? vision.imageSize. */
  imageSize: number;
}>;

/**
 * Validates an InternVL config and derives numImageToken (`where` names it in errors).
 * ```ts
 * const cfg = resolveInternVL({ ...internVLPreset("tiny"), psVersion: "v1" });
 * ```
 */
export function resolveInternVL(c: InternVLConfig, where = "internvl"): ResolvedInternVLConfig {
  const states = c.vision.numHiddenLayers + 1;
  ensure(Number.isInteger(c.selectLayer) && c.selectLayer >= -states && c.selectLayer < states, `${where}.selectLayer`,
    `${JSON.stringify(c.selectLayer)} is not a hidden state of the ${c.vision.numHiddenLayers}-layer vision tower (use -${states}..${states - 1}; InternVL2.5 uses -1)`);
  const k = 1 / c.downsampleRatio;
  ensure(typeof c.downsampleRatio === "number" && c.downsampleRatio > 0 && c.downsampleRatio < 1 && Number.isInteger(k), `${where}.downsampleRatio`, `must be 1/k for an integer k > 1 (InternVL uses 0.5), got ${JSON.stringify(c.downsampleRatio)}`);
  ensure(c.psVersion === "v1" || c.psVersion === "v2", `${where}.psVersion`, `must be "v1" or "v2", got ${JSON.stringify(c.psVersion)}`);
  ensure(c.forceImageSize === null || (Number.isInteger(c.forceImageSize) && c.forceImageSize >= c.vision.patchSize), `${where}.forceImageSize`, `must be null or a whole number of pixels of at least one patch, got ${JSON.stringify(c.forceImageSize)}`);
  const imageSize = c.forceImageSize ?? c.vision.imageSize;
  const grid = Math.floor(imageSize / c.vision.patchSize);
  ensure(grid % k === 0, `${where}.downsampleRatio`, `the ${grid}×${grid} patch grid of a ${imageSize}-px tile does not divide into ${k}×${k} blocks for the pixel shuffle`);
  ensure(c.llm.config.tieWordEmbeddings === false, `${where}.llm.tieWordEmbeddings`, "must be false: InternVLChatConfig unties the language model's output from its embeddings");
  for (const key of ["dynamicImageSize", "useThumbnail"] as const) ensure(typeof c[key] === "boolean", `${where}.${key}`, `must be a boolean, got ${JSON.stringify(c[key])}`);
  ensure(Number.isInteger(c.minDynamicPatch) && c.minDynamicPatch >= 1, `${where}.minDynamicPatch`, `must be a positive integer, got ${JSON.stringify(c.minDynamicPatch)}`);
  ensure(Number.isInteger(c.maxDynamicPatch) && c.maxDynamicPatch >= c.minDynamicPatch, `${where}.maxDynamicPatch`, `must be an integer ≥ minDynamicPatch ${c.minDynamicPatch}, got ${JSON.stringify(c.maxDynamicPatch)}`);
  ensure(c.template === null || typeof c.template === "string", `${where}.template`, `must be a string or null, got ${JSON.stringify(c.template)}`);
  const vocab = c.llm.config.vocabSize;
  ensure(c.imgContextTokenId === null || (Number.isInteger(c.imgContextTokenId) && c.imgContextTokenId >= 0 && c.imgContextTokenId < vocab), `${where}.imgContextTokenId`,
    `${JSON.stringify(c.imgContextTokenId)} is not a token of the language model's vocabulary of ${vocab} (<IMG_CONTEXT> must have an embedding row)`);
  return Object.freeze({ ...c, imageSize, numImageToken: (grid / k) ** 2 });
}

/**
 * A config from an InternVLChatConfig config.json (OpenGVLab/InternVL2_5-*). The vision_config and
 * llm_config take their own classes' defaults for fields left out; the language model comes
 * untied, as InternVLChatConfig makes it. `imgContextTokenId` is MindsEye's config.json key
 * img_context_token_id, when present.
 */
export function internVLFromHfConfig(json: HfJson, where = "config.json"): ResolvedInternVLConfig {
  const type = hfField<string>(json, "model_type", "string", where);
  ensure(type === "internvl_chat", `${where}: "model_type"`, `expected "internvl_chat", got ${JSON.stringify(type)} (this loader reads InternVLChatModel checkpoints such as OpenGVLab/InternVL2_5-8B; transformers' converted "internvl" layout is not this one)`);
  for (const key of ["use_backbone_lora", "use_llm_lora"]) {
    const r = hfField<number>(json, key, "integer", where, 0);
    ensure(r === 0, `${where}: "${key}"`, `${r}: a checkpoint saved with PEFT LoRA wrappers has other weight names; merge the adapters and save with ${key} 0`);
  }
  const vision = internVitFromHfConfig(hfField<HfJson>(json, "vision_config", "object", where), `${where} vision_config`);
  const llmJson = hfField<HfJson>(json, "llm_config", "object", where);
  const lw = `${where} llm_config`;
  const arch = hfField<unknown[]>(llmJson, "architectures", "array", lw);
  const name = String(arch[0]);
  const untied = { ...llmJson, tie_word_embeddings: false }; // InternVLChatConfig: "tie_word_embeddings=False for models of all sizes"
  let llm: InternVLLanguageConfig;
  if (name === "InternLM2ForCausalLM") llm = { architecture: name, config: internLM2FromHfConfig(untied, lw) };
  else if (name === "Qwen2ForCausalLM") llm = { architecture: name, config: qwen2FromHf(untied, lw) };
  else if (name === "LlamaForCausalLM") llm = { architecture: name, config: llamaFromHfConfig(untied, lw) };
  else throw new ConfigError(`${lw}: architectures[0] ${JSON.stringify(arch[0])} is not a language model MindsEye's InternVL builds (supported: ${ARCHITECTURES.join(", ")}; Phi3 is not)`);
  const ps = hfField<string>(json, "ps_version", "string", where, "v1");
  return resolveInternVL({
    vision,
    llm,
    selectLayer: hfField<number>(json, "select_layer", "integer", where, -1),
    forceImageSize: hfField<number | null>(json, "force_image_size", "integer", where, null),
    downsampleRatio: hfField<number>(json, "downsample_ratio", "number", where, 0.5),
    psVersion: ps as "v1" | "v2",
    template: hfField<string | null>(json, "template", "string", where, null),
    dynamicImageSize: hfField<boolean>(json, "dynamic_image_size", "boolean", where, false),
    useThumbnail: hfField<boolean>(json, "use_thumbnail", "boolean", where, false),
    minDynamicPatch: hfField<number>(json, "min_dynamic_patch", "integer", where, 1),
    maxDynamicPatch: hfField<number>(json, "max_dynamic_patch", "integer", where, 6),
    imgContextTokenId: hfField<number | null>(json, "img_context_token_id", "integer", where, null),
  }, where);
}

function llmToHf(l: InternVLLanguageConfig): HfJson {
  if (l.architecture === "InternLM2ForCausalLM") return internLM2ToHfConfig(l.config);
  if (l.architecture === "Qwen2ForCausalLM") return qwen2ToHf(l.config);
  return llamaToHfConfig(l.config);
}

/** The config.json InternVLChatConfig writes for this config (plus img_context_token_id when known). */
export function internVLToHfConfig(c: ResolvedInternVLConfig): HfJson {
  return {
    architectures: ["InternVLChatModel"],
    model_type: "internvl_chat",
    vision_config: internVitToHfConfig(c.vision),
    llm_config: llmToHf(c.llm),
    select_layer: c.selectLayer,
    force_image_size: c.forceImageSize,
    downsample_ratio: c.downsampleRatio,
    ps_version: c.psVersion,
    template: c.template,
    dynamic_image_size: c.dynamicImageSize,
    use_thumbnail: c.useThumbnail,
    min_dynamic_patch: c.minDynamicPatch,
    max_dynamic_patch: c.maxDynamicPatch,
    use_backbone_lora: 0,
    use_llm_lora: 0,
    tie_word_embeddings: false,
    torch_dtype: c.llm.config.torchDtype,
    ...(c.imgContextTokenId === null ? {} : { img_context_token_id: c.imgContextTokenId }),
  };
}

export interface InternVLPreset {
  /** Where the numbers come from. */
  source: string;
  config: () => InternVLConfig;
}

const V25 = { selectLayer: -1, forceImageSize: 448, downsampleRatio: 0.5, psVersion: "v2", template: "internvl2_5", dynamicImageSize: true, useThumbnail: true, minDynamicPatch: 1, maxDynamicPatch: 12 } as const;

/** Named configs; `tiny` is make_internvl_golden.py's vl_internlm2 case (with plain RoPE) and tests' size. */
export const INTERNVL_PRESETS: Readonly<Record<string, InternVLPreset>> = Object.freeze<Record<string, InternVLPreset>>({
  tiny: {
    source: "MindsEye test size: the tiny InternViT (6×6 patches → 9 image tokens), a 48-wide GQA InternLM2, <IMG_CONTEXT> 100 of 110",
    config: () => ({
      ...V25, forceImageSize: 24, vision: internVitPreset("tiny"), imgContextTokenId: 100,
      llm: { architecture: "InternLM2ForCausalLM", config: internLM2Preset("tiny", { vocabSize: 110, hiddenSize: 48, padTokenId: 2 }) },
    }),
  },
  "internvl2.5-1b": {
    source: "https://huggingface.co/OpenGVLab/InternVL2_5-1B/blob/main/config.json (InternViT-300M-448px-V2_5, Qwen2.5-0.5B-Instruct; <IMG_CONTEXT> 151667)",
    config: () => ({
      ...V25, vision: internVitPreset("internvit-300m-448px-v2.5"), imgContextTokenId: 151667,
      llm: {
        architecture: "Qwen2ForCausalLM",
        config: qwen2Preset("qwen2.5-0.5b", { vocabSize: 151674, tieWordEmbeddings: false, torchDtype: "bfloat16" }),
      },
    }),
  },
  "internvl2.5-8b": {
    source: "https://huggingface.co/OpenGVLab/InternVL2_5-8B/blob/main/config.json (InternViT-300M-448px-V2_5, InternLM2.5-7B-chat; <IMG_CONTEXT> 92546)",
    config: () => ({
      ...V25, vision: internVitPreset("internvit-300m-448px-v2.5"), imgContextTokenId: 92546,
      llm: { architecture: "InternLM2ForCausalLM", config: internLM2Preset("internlm2.5-7b-chat", { vocabSize: 92553 }) },
    }),
  },
});

/** A preset by name, resolved; an unknown name says which exist and the closest one. */
export function internVLPreset(name: string): ResolvedInternVLConfig {
  const p = INTERNVL_PRESETS[name];
  if (p === undefined) {
    const names = Object.keys(INTERNVL_PRESETS);
    throw new ConfigError(`unknown InternVL preset "${name}"${didYouMean(name, names)} (presets: ${names.join(", ")})`);
  }
  return resolveInternVL(p.config(), `internvl preset "${name}"`);
}

/**
 * The <IMG_CONTEXT> token id from a checkpoint's tokenizer_config.json (its added_tokens_decoder,
 * as transformers writes it), or null when the file or the token is not there.
 */
export function imgContextTokenFromTokenizer(dir: string): number | null {
  const path = join(dir, "tokenizer_config.json");
  if (!existsSync(path)) return null;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ConfigError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  const added = (json as { added_tokens_decoder?: unknown }).added_tokens_decoder;
  if (added === null || typeof added !== "object") return null;
  for (const [id, tok] of Object.entries(added as Record<string, unknown>)) {
    if ((tok as { content?: unknown } | null)?.content === "<IMG_CONTEXT>") return Number(id);
  }
  return null;
}

// =============================================================================================
// Dynamic tiling (dynamic_preprocess)

/** A crop of the resized image, in pixels: [left, top) to [right, bottom). */
export interface TileBox {
  left: number;
  top: number;
  right: number;
  bottom: number;
}

export interface TilePlan {
  /** Tiles across and down. */
  columns: number;
  rows: number;
  /** The whole image is resized to columns·imageSize × rows·imageSize, then cut. */
  resizedWidth: number;
  resizedHeight: number;
  /** The tiles row by row, in the resized image. */
  boxes: TileBox[];
  /** Whether a thumbnail (the whole image resized to imageSize²) follows the tiles. */
  thumbnail: boolean;
}

/**
 * InternVL's dynamic_preprocess as a function of the image size: among the grids (i, j) with
 * minNum ≤ i·j ≤ maxNum (ordered by tile count), the one whose aspect ratio i/j is closest to
 * width/height; on a tie the later grid wins when the image's area exceeds half of that grid's
 * pixels. The tiles are that grid's cells of the resized image, plus a thumbnail under
 * useThumbnail when there is more than one tile.
 * ```ts
 * dynamicTiles(800, 600, { maxNum: 12, useThumbnail: true }); // 4 × 3 tiles of 448 px + thumbnail
 * ```
 */
export function dynamicTiles(width: number, height: number, o: { minNum?: number; maxNum?: number; imageSize?: number; useThumbnail?: boolean } = {}): TilePlan {
  const minNum = o.minNum ?? 1, maxNum = o.maxNum ?? 12, size = o.imageSize ?? 448;
  for (const [k, v] of [["width", width], ["height", height], ["minNum", minNum], ["imageSize", size]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`dynamicTiles: ${k} must be a positive integer, got ${v}`);
  }
  if (!Number.isInteger(maxNum) || maxNum < minNum) throw new RangeError(`dynamicTiles: maxNum must be an integer ≥ minNum ${minNum}, got ${maxNum}`);
  // Every grid once, stably ordered by tile count. (The reference sorts a Python set, so grids of
  // equal count come in CPython's set order, which this does not reproduce. With minNum = 1, as
  // every InternVL release, that never changes the result: (1, 1) is always closer than two
  // equal-count grids tying with each other (checked for maxNum ≤ 12 on all sizes to 300×300).
  // With minNum ≥ 4 such ties occur, e.g. 5×2 under minNum = maxNum = 4 gives (4, 1) in the
  // reference but (2, 2) here. make_internvl_golden.py and make_processor_golden.py check sizes.)
  const grids: [number, number][] = [];
  for (let n = minNum; n <= maxNum; n++) {
    for (let i = 1; i <= n; i++) {
      for (let j = 1; j <= n; j++) {
        if (i * j >= minNum && i * j <= maxNum && !grids.some(([a, b]) => a === i && b === j)) grids.push([i, j]);
      }
    }
  }
  grids.sort((a, b) => a[0] * a[1] - b[0] * b[1]);
  const aspect = width / height, area = width * height;
  let bestDiff = Infinity, best: [number, number] = [1, 1];
  for (const r of grids) {
    const diff = Math.abs(aspect - r[0] / r[1]);
    if (diff < bestDiff) { bestDiff = diff; best = r; }
    else if (diff === bestDiff && area > 0.5 * size * size * r[0] * r[1]) best = r;
  }
  const [columns, rows] = best;
  const boxes: TileBox[] = [];
  for (let i = 0; i < columns * rows; i++) {
    const c = i % columns, r = Math.floor(i / columns);
    boxes.push({ left: c * size, top: r * size, right: (c + 1) * size, bottom: (r + 1) * size });
  }
  return { columns, rows, resizedWidth: columns * size, resizedHeight: rows * size, boxes, thumbnail: (o.useThumbnail ?? false) && boxes.length !== 1 };
}

// =============================================================================================
// Model

export interface InternVLInput {
  /** int64 [B, T], numImageToken <IMG_CONTEXT> tokens per tile. */
  inputIds: Tensor;
  /** [nTiles, 3, S, S], the tiles of every image in the order their tokens appear. */
  pixelValues?: Tensor;
  /** [B, P + T]: 1 = token, 0 = left padding. */
  attentionMask?: Tensor;
  pastKeyValues?: KVCache;
  useCache?: boolean;
  logitsToKeep?: number;
}

export interface InternVLOutput {
  /** [B, T, V] (T = logitsToKeep when given). */
  logits: Tensor;
  /** After the language model's final norm: [B, T, D]. */
  lastHiddenState: Tensor;
  pastKeyValues?: KVCache;
}

type LanguageModel = InternLM2ForCausalLM | Qwen2ForCausalLM | LlamaForCausalLM;

/**
 * InternVL: InternViT, mlp1 and an InternLM2, Qwen2 or Llama language model, with the reference's
 * weight names (vision_model.*, mlp1.{0,1,3}.*, language_model.*).
 * ```ts
 * const vl = new InternVLChatModel(internVLPreset("tiny"), { generator: new torch.Generator(0) });
 * const { logits } = vl.forward({ inputIds, pixelValues });   // [B, T, V]
 * ```
 */
export class InternVLChatModel extends nn.Module {
  vision_model: InternVisionModel;
  language_model: LanguageModel;
  /** nn.Sequential(LayerNorm, Linear, GELU, Linear): projectors.ts's InternVL mlp1. */
  mlp1: InternVLProjector["mlp1"];

  constructor(readonly config: ResolvedInternVLConfig, o: { dtype?: Qwen2Dtype; device?: Device; generator?: Generator } = {}) {
    super();
    this.vision_model = new InternVisionModel(config.vision, o);
    const l = config.llm;
    this.language_model = l.architecture === "InternLM2ForCausalLM" ? new InternLM2ForCausalLM(l.config, o)
      : l.architecture === "Qwen2ForCausalLM" ? new Qwen2ForCausalLM(l.config, o) : new LlamaForCausalLM(l.config, o);
    this.mlp1 = new InternVLProjector({
      visionHiddenSize: config.vision.hiddenSize, llmHiddenSize: l.config.hiddenSize, downsampleRatio: config.downsampleRatio, psVersion: config.psVersion,
    }, o).mlp1;
  }

  /** tiles [n, 3, S, S] -> the tower's hidden state selectLayer without the class token: [n, g², Dv] */
  visionFeatures(pixelValues: Tensor): Tensor {
    const dtype = this.vision_model.embeddings.patch_embedding.weight.dtype;
    return torch.scope(() => this.vision_model.features(pixelValues.to({ dtype }), this.config.selectLayer).slice(1, 1));
  }

  /** tiles [n, 3, S, S] -> image tokens [n, (g·ratio)², D]: pixel shuffle, then mlp1 (the reference's extract_feature). */
  imageFeatures(pixelValues: Tensor): Tensor {
    return torch.scope(() => {
      const x = this.visionFeatures(pixelValues); // [n, g², Dv]
      const [n, N, Dv] = x.shape as [number, number, number];
      const g = Math.round(Math.sqrt(N));
      if (g * g !== N) throw new RangeError(`InternVL: the tiles give ${N} patches, not a square grid; tiles must be square (${this.config.imageSize} px)`);
      const shuffled = pixelShuffle(x.reshape(n, g, g, Dv), this.config.downsampleRatio, this.config.psVersion); // [n, g/2, g/2, 4·Dv]
      return this.mlp1.forward(shuffled.reshape(n, -1, shuffled.shape[3]!)); // [n, g²/4, D]
    });
  }

  /** Token embeddings with the <IMG_CONTEXT> rows replaced by image features, in order. [B, T, D] */
  embed(inputIds: Tensor, pixelValues?: Tensor): Tensor {
    const id = this.config.imgContextTokenId;
    if (id === null && pixelValues !== undefined) {
      throw new ConfigError("InternVL: the <IMG_CONTEXT> token id is unknown; pass fromPretrained's imgContextTokenId (the tokenizer's id of \"<IMG_CONTEXT>\"), or load a checkpoint with its tokenizer_config.json");
    }
    return embedWithImages(this.language_model.model.embed_tokens, inputIds, id ?? -1, pixelValues, (px) => this.imageFeatures(px));
  }

  forward(input: InternVLInput): InternVLOutput {
    return this.language_model.forward({
      inputsEmbeds: this.embed(input.inputIds, input.pixelValues),
      ...(input.attentionMask ? { attentionMask: input.attentionMask } : {}),
      ...(input.pastKeyValues ? { pastKeyValues: input.pastKeyValues } : {}),
      ...(input.useCache ? { useCache: true } : {}),
      ...(input.logitsToKeep ? { logitsToKeep: input.logitsToKeep } : {}),
    });
  }

  /** Greedy/sampled continuation of prompts with images (left-padded inputIds), with the KV cache. */
  generate(o: Omit<GenerateOptions, "inputsEmbeds" | "inputIds"> & { inputIds: Tensor; pixelValues?: Tensor }): GenerateResult {
    return torch.noGrad(() => torch.scope(() => {
      const inputsEmbeds = this.embed(o.inputIds, o.pixelValues);
      const { inputIds: _ids, pixelValues: _px, ...rest } = o;
      return generate(this.language_model, { ...rest, inputsEmbeds });
    }));
  }

  /**
   * Loads a checkpoint directory (config.json + model.safetensors or shards). config.json is held
   * against the checkpoint's shapes before anything is allocated; missing, unexpected and
   * mis-shaped weights are one error.
   */
  static fromPretrained(dir: string, opts: { dtype?: Qwen2Dtype; device?: Device; imgContextTokenId?: number } = {}): InternVLChatModel {
    const where = `${dir}/config.json`;
    const read = internVLFromHfConfig(readHfConfig(dir), where);
    const token = opts.imgContextTokenId ?? read.imgContextTokenId ?? imgContextTokenFromTokenizer(dir);
    const config = resolveInternVL({ ...read, imgContextTokenId: token }, where);
    const header = readCheckpointHeader(dir);
    checkInternVitCheckpoint(config.vision, header, { where: `${where} vision_config`, prefix: "vision_model." });
    const r = 1 / config.downsampleRatio;
    checkTensorShape(header, "mlp1.1.weight", [
      { size: config.llm.config.hiddenSize, field: "llm_config.hidden_size" }, { size: config.vision.hiddenSize * r * r, field: `vision_config.hidden_size × ${r * r} (the pixel shuffle)` },
    ], where);
    const lm = { where: `${where} llm_config`, prefix: "language_model.model." };
    const l = config.llm;
    if (l.architecture === "InternLM2ForCausalLM") checkInternLM2Checkpoint(l.config, header, { ...lm, output: "language_model.output.weight" });
    else if (l.architecture === "Qwen2ForCausalLM") checkQwen2Checkpoint(l.config, header, { ...lm, lmHead: "language_model.lm_head.weight" });
    else checkLlamaCheckpoint(l.config, header, { ...lm, lmHead: "language_model.lm_head.weight" });

    const dtype = opts.dtype ?? "float32";
    const model = new InternVLChatModel(config, { dtype, ...(opts.device ? { device: opts.device } : {}) });
    try {
      // Into the parameters, a tensor at a time; rotary tables are computed, never loaded.
      loadCheckpointInto(model, dir, { header, rename: (n) => (n.endsWith(".rotary_emb.inv_freq") ? null : n) });
    } catch (e) {
      model.parameters().forEach((p) => p.dispose());
      if (e instanceof nn.StateDictError) throw new Error(`${dir}: the checkpoint does not fit InternVLChatModel with this config.json (language model ${l.architecture})\n${e.message}`, { cause: e });
      throw e;
    }
    return model;
  }

  /** Writes config.json (with img_context_token_id when known) and the weights in the published layout. */
  savePretrained(dir: string, opts: { maxShardBytes?: number; dtype?: Qwen2Dtype } = {}): void {
    const dtype = opts.dtype ?? (this.language_model.model.embed_tokens.weight.dtype as Qwen2Dtype);
    const l = this.config.llm;
    const llm: InternVLLanguageConfig = l.architecture === "InternLM2ForCausalLM" ? { architecture: l.architecture, config: { ...l.config, torchDtype: dtype } }
      : l.architecture === "Qwen2ForCausalLM" ? { architecture: l.architecture, config: { ...l.config, torchDtype: dtype } }
        : { architecture: l.architecture, config: { ...l.config, torchDtype: dtype } };
    saveCheckpoint(dir, this, internVLToHfConfig({ ...this.config, llm }), {
      ...(opts.maxShardBytes ? { maxShardBytes: opts.maxShardBytes } : {}),
      ...(opts.dtype ? { dtype: opts.dtype } : {}),
    });
  }
}
