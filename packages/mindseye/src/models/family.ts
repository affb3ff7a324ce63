// The one interface every VLM family implements for MindsEye, and `loadVlm(dir)`, which picks the
// family from config.json's model_type. The stages (latent-pretrain, finetune) and the evaluation
// see only this interface:
//
//   processor       images -> pixel inputs + LLM tokens per image, as the family's HF processor
//   imageTokenId    the placeholder whose rows receive image features (the prompt holds one per token)
//   forward         prompts with images -> logits [B, T, V] and hidden states [B, T, H]
//   visionFeatures  the frozen tower's features per image (latent targets), at a chosen layer
//   generate        greedy continuation with the KV cache (a wrapper may check every step's logits)
//   latent head     attach (with its query tokens; embeddings grow as resize_token_embeddings),
//                   drop, predictLatents
//   savePretrained  the family's published layout
//   promptFormat    how prompts are written (ChatML + <|image_pad|>; LLaVA: Vicuna v1 + <image>, </s>;
//                   InternVL: ChatML + <img> <IMG_CONTEXT>… </img>)
//
//   family        model_type      model class                              processor
//   mindseye_vlm  mindseye_vlm    MindsEyeVLM (ViT + LLaVA projector + Qwen2) CLIP / SigLIP (fixed size)
//   qwen2_5_vl    qwen2_5_vl      Qwen2_5_VLForConditionalGeneration       Qwen2VLImageProcessor (dynamic)
//   llava         llava           LlavaForConditionalGeneration            CLIP 336 + LLaVA pad-to-square
//   internvl_chat internvl_chat   InternVLChatModel                        448-px tiles + thumbnail (dynamicTiles)
//
// The latent head of mindseye_vlm is part of its checkpoint (latent_head.* in model.safetensors).
// The published families keep their layout untouched, so transformers still loads the directory:
// the head is written beside it (LATENT_HEAD_FILE) and config.json gains the keys latent_head and
// latent_token_ids (transformers keeps unknown keys as config attributes).
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { torch, nn, io, F, type Tensor, type Generator } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { resolveModelRef } from "../config/hub.js";
import { readHfConfig, type HfJson } from "../config/hf.js";
import { didYouMean } from "../data/formats/index.js";
import { CHATML, VICUNA_V1, INTERNVL_CHATML, type PromptFormat } from "../data/vlm_inputs.js";
import { MindsEyeVLM, imageTokenCount, VLM_MODEL_TYPE } from "./vlm.js";
import { Qwen2_5_VLForConditionalGeneration, visionWindowIndex, type GridThw, type ResolvedQwen2_5_VLConfig } from "./qwen2_5_vl.js";
import { LlavaForConditionalGeneration } from "./llava.js";
import { InternVLChatModel, dynamicTiles } from "./internvl.js";
import { LatentHead, gatherLatentPositions, latentHeadFromHfConfig, latentHeadToHfConfig, resizeTokenEmbeddings, type LatentHeadConfig } from "./latent_head.js";
import { generate, type GenerateOptions, type GenerateResult, type GenerativeLM, type GenerationCache, type GenerationStep } from "./generation.js";
import {
  processorConfigFromHf, processClip, processSiglip, processQwen2VL, resizeBicubic, smartResize, type ImageProcessorConfig, type RgbImage, type Rgb, type SiglipProcessorConfig,
} from "./processors.js";

// ---------------------------------------------------------------------------------------------
// Pixel inputs and processors

/** What a family's processor makes of a list of images. */
export interface PixelInputs {
  /**
   * Fixed-size towers: [n, 3, H, W]. Qwen2.5-VL: [Σ t·h·w, C·T·P·P] patches (pixel_values).
   * InternVL: [Σ tiles, 3, S, S].
   */
  pixelValues: Tensor;
  /** Qwen2.5-VL: each image's [t, h, w] in patches (image_grid_thw). */
  imageGridThw?: GridThw[];
  /** LLM tokens each image becomes, in order (its prompt holds that many image tokens). */
  tokensPerImage: number[];
}

export interface VlmProcessor {
  /** The family's processor settings (HF preprocessor_config.json, or InternVL's tile settings). */
  readonly config: ImageProcessorConfig | InternVLTileConfig;
  /** Images -> pixel inputs, as the family's HF processor. */
  process(images: RgbImage[]): PixelInputs;
  /** LLM tokens one image of this size becomes (without processing it). */
  tokensFor(image: { width: number; height: number }): number;
}

/** Disposes the tensors of pixel inputs. */
export function disposePixels(p: PixelInputs): void {
  p.pixelValues.dispose();
}

/** A CLIP/SigLIP processor (fixed size): every image becomes `tokens` tokens. */
export function fixedSizeProcessor(config: ImageProcessorConfig, tokens: number, where: string): VlmProcessor {
  if (config.kind === "qwen2_vl") throw new ConfigError(`${where}: this family takes fixed-size images (CLIP or SigLIP preprocessing), not Qwen2-VL's`);
  return {
    config,
    process: (images) => ({ pixelValues: config.kind === "clip" ? processClip(images, config) : processSiglip(images, config), tokensPerImage: images.map(() => tokens) }),
    tokensFor: () => tokens,
  };
}

/** Qwen2VLImageProcessor: smart_resize per image, t·h·w / merge² tokens each. */
export function qwen2VLProcessor(config: ImageProcessorConfig, where: string): VlmProcessor {
  if (config.kind !== "qwen2_vl") throw new ConfigError(`${where}: Qwen2.5-VL needs Qwen2VLImageProcessor preprocessing, got ${config.kind}`);
  const m2 = config.mergeSize ** 2;
  return {
    config,
    process: (images) => torch.scope(() => {
      const { pixelValues, imageGridThw } = processQwen2VL(images, config);
      const grids = (imageGridThw.tolist() as number[][]).map((g) => [g[0]!, g[1]!, g[2]!] as const);
      return { pixelValues, imageGridThw: grids, tokensPerImage: grids.map(([t, h, w]) => (t * h * w) / m2) };
    }),
    tokensFor: (image) => {
      const { patchSize: P, mergeSize: m } = config;
      const s = qwenSize(image, config);
      return (s.height / P) * (s.width / P) / (m * m);
    },
  };
}

function qwenSize(image: { width: number; height: number }, c: Extract<ImageProcessorConfig, { kind: "qwen2_vl" }>): { width: number; height: number } {
  if (!c.doResize) return image;
  // The same smart_resize the processor runs (processors.ts).
  return smartResizeOf(image.height, image.width, c);
}

function smartResizeOf(height: number, width: number, c: Extract<ImageProcessorConfig, { kind: "qwen2_vl" }>): { width: number; height: number } {
  return smartResize(height, width, { factor: c.patchSize * c.mergeSize, minPixels: c.minPixels, maxPixels: c.maxPixels });
}

/** ImageNet's normalisation (InternVL's build_transform). */
export const IMAGENET_MEAN: Rgb = [0.485, 0.456, 0.406];
export const IMAGENET_STD: Rgb = [0.229, 0.224, 0.225];

/** InternVL's image settings: the tile plan of dynamic_preprocess, then ToTensor + ImageNet normalisation. */
export interface InternVLTileConfig {
  kind: "internvl_tiles";
  /** Side of one tile (InternVL2.5: 448). */
  imageSize: number;
  /** Tile plan bounds (min_dynamic_patch, max_dynamic_patch). */
  minNum: number;
  maxNum: number;
  /** A thumbnail of the whole image follows several tiles. */
  useThumbnail: boolean;
  /** Tokens per tile (num_image_token). */
  tokensPerTile: number;
}

/**
 * InternVL's load_image: the image resized (bicubic) to the tile plan's grid and cut into tiles,
 * plus the thumbnail when there are several; each tile normalised with ImageNet's mean and std.
 * Pixels: [Σ tiles, 3, S, S]; tokens per image = its tiles × num_image_token.
 */
export function internVLProcessor(c: InternVLTileConfig): VlmProcessor {
  const norm: SiglipProcessorConfig = {
    kind: "siglip", doResize: false, doRescale: true, rescaleFactor: 1 / 255, doNormalize: true,
    imageMean: IMAGENET_MEAN, imageStd: IMAGENET_STD, height: c.imageSize, width: c.imageSize,
  };
  const plan = (image: { width: number; height: number }) => dynamicTiles(image.width, image.height, { minNum: c.minNum, maxNum: c.maxNum, imageSize: c.imageSize, useThumbnail: c.useThumbnail });
  return {
    config: c,
    process: (images) => {
      const tiles: RgbImage[] = [], tokensPerImage: number[] = [];
      for (const img of images) {
        const p = plan(img);
        const resized = resizeBicubic(img, p.resizedWidth, p.resizedHeight);
        for (const b of p.boxes) tiles.push(crop(resized, b.left, b.top, c.imageSize));
        if (p.thumbnail) tiles.push(resizeBicubic(img, c.imageSize, c.imageSize));
        tokensPerImage.push((p.boxes.length + (p.thumbnail ? 1 : 0)) * c.tokensPerTile);
      }
      return { pixelValues: processSiglip(tiles, norm), tokensPerImage };
    },
    tokensFor: (image) => {
      const p = plan(image);
      return (p.boxes.length + (p.thumbnail ? 1 : 0)) * c.tokensPerTile;
    },
  };
}

/** The size×size square of `img` at (left, top). */
function crop(img: RgbImage, left: number, top: number, size: number): RgbImage {
  const out = new Uint8Array(size * size * 3);
  for (let y = 0; y < size; y++) out.set(img.data.subarray(((top + y) * img.width + left) * 3, ((top + y) * img.width + left + size) * 3), y * size * 3);
  return { data: out, width: size, height: size };
}

// ---------------------------------------------------------------------------------------------
// The interface

export interface VlmForwardInput {
  /** int64 [B, T], the image tokens expanded (tokensPerImage per image). */
  inputIds: Tensor;
  attentionMask?: Tensor;
  pixels?: PixelInputs;
  /** Also return every layer's hidden state (L + 1 tensors). */
  outputHiddenStates?: boolean;
}

export interface VlmForwardOutput {
  logits: Tensor;
  lastHiddenState: Tensor;
  hiddenStates?: Tensor[];
}

/** Frozen vision features of each image, row-major over its 2-D grid, for latent targets. */
export interface VisionFeatures {
  /** One [rows·cols (+1 with a class token first), D] per image. */
  features: Tensor[];
  /** Each image's grid of feature positions [rows, cols]. */
  grids: [number, number][];
  hasClassToken: boolean;
}

export interface VlmGenerateOptions extends Omit<GenerateOptions, "inputsEmbeds" | "inputIds"> {
  inputIds: Tensor;
  pixels?: PixelInputs;
  /** Wraps the language model's step (e.g. to check its logits). */
  wrap?: <C extends GenerationCache>(lm: GenerativeLM<C>) => GenerativeLM<C>;
}

/** The interface every VLM family implements for MindsEye's stages and evaluation. */
export interface Vlm {
  /** config.json's model_type. */
  readonly modelType: string;
  /** What the trainer trains and checkpoints (the model plus, for published families, the latent head). */
  readonly module: nn.Module;
  readonly processor: VlmProcessor;
  readonly imageTokenId: number;
  /** Prompts put images after the text (mindseye_vlm's image_position after_text). */
  readonly imagesAfterText: boolean;
  /** How prompts are written: ChatML with <|image_pad|> (Qwen, MindsEye) or LLaVA-1.5's Vicuna v1 with <image> and </s>. */
  readonly promptFormat: PromptFormat;
  readonly textHiddenSize: number;
  readonly textLayers: number;
  readonly vocabSize: number;
  readonly latentHead: LatentHead | null;
  readonly latentTokenIds: readonly number[];
  /** The vision layers visionFeatures can read (first: the default). */
  readonly visionLayers: readonly string[];
  forward(input: VlmForwardInput): VlmForwardOutput;
  visionFeatures(pixels: PixelInputs, layer?: string): VisionFeatures;
  generate(o: VlmGenerateOptions): GenerateResult;
  /** Adds (or replaces) the latent head; embeddings grow (resize_token_embeddings) when an id is past the vocabulary. */
  attachLatentHead(head: LatentHeadConfig, latentTokenIds: readonly number[], o?: { generator?: Generator }): void;
  dropLatentHead(): void;
  /** Text-only forward with latent queries: logits [B, T, V] and predicted latents [B, K, D]. */
  predictLatents(inputIds: Tensor, attentionMask?: Tensor): { logits: Tensor; latents: Tensor };
  /** The vision tower (and for LLaVA-style families nothing else) frozen and in eval mode. */
  freezeVision(): void;
  savePretrained(dir: string): void;
  dispose(): void;
}

/** The head of a published family, beside its weights. */
export const LATENT_HEAD_FILE = "latent_head.safetensors";

/** Embedding and output head of a causal LM of any of our families. */
interface LmParts { embed: nn.Embedding; head: nn.Linear }

function lmParts(lm: nn.Module): LmParts {
  const m = lm as unknown as { model: { embed_tokens?: nn.Embedding; tok_embeddings?: nn.Embedding }; lm_head?: nn.Linear; output?: nn.Linear };
  const embed = m.model.embed_tokens ?? m.model.tok_embeddings, head = m.lm_head ?? m.output;
  if (!embed || !head) throw new Error("lmParts: the language model has no embed_tokens/lm_head (or tok_embeddings/output)");
  return { embed, head };
}

/** What the families differ in; the shared logic lives in FamilyVlm. */
interface FamilyParts<M extends nn.Module> {
  modelType: string;
  model: M;
  processor: VlmProcessor;
  imageTokenId: number;
  imagesAfterText: boolean;
  promptFormat: PromptFormat;
  text: { hiddenSize: number; numHiddenLayers: number; vocabSize: number };
  /** The language model's token embedding and output head (resized together). */
  lm: () => LmParts;
  visionLayers: readonly string[];
  /** Parameters of the frozen vision side. */
  vision: nn.Module;
  forward(input: VlmForwardInput): VlmForwardOutput;
  visionFeatures(pixels: PixelInputs, layer: string): VisionFeatures;
  /** The first step of generation: a GenerativeLM over the model (images at prefill only). */
  generator(o: VlmGenerateOptions): { lm: GenerativeLM<GenerationCache>; first: Pick<GenerateOptions, "inputIds" | "inputsEmbeds"> };
  /** Records a new vocabulary size in the model's config (after resizing). */
  setVocab(v: number): void;
  save(dir: string): void;
}

/** A model with the latent head as a child, so that the trainer trains and checkpoints both. */
class WithLatentHead extends nn.Module {
  latent_head: LatentHead | null = null;
  constructor(public vlm: nn.Module) { super(); }
}

/**
 * A published family: the model as its class defines it, the head outside it (LATENT_HEAD_FILE).
 * mindseye_vlm keeps its head inside (MindsEyeVlm below).
 */
class FamilyVlm<M extends nn.Module> implements Vlm {
  readonly module: nn.Module;
  private readonly wrapper: WithLatentHead;
  private tokenIds: number[] = [];
  constructor(protected readonly p: FamilyParts<M>) {
    this.wrapper = new WithLatentHead(p.model);
    this.module = this.wrapper;
  }
  get modelType(): string { return this.p.modelType; }
  get model(): M { return this.p.model; }
  get processor(): VlmProcessor { return this.p.processor; }
  get imageTokenId(): number { return this.p.imageTokenId; }
  get imagesAfterText(): boolean { return this.p.imagesAfterText; }
  get promptFormat(): PromptFormat { return this.p.promptFormat; }
  get textHiddenSize(): number { return this.p.text.hiddenSize; }
  get textLayers(): number { return this.p.text.numHiddenLayers; }
  get vocabSize(): number { return this.p.lm().embed.numEmbeddings; }
  get latentHead(): LatentHead | null { return this.wrapper.latent_head; }
  get latentTokenIds(): readonly number[] { return this.tokenIds; }
  get visionLayers(): readonly string[] { return this.p.visionLayers; }

  forward(input: VlmForwardInput): VlmForwardOutput { return this.p.forward(input); }

  visionFeatures(pixels: PixelInputs, layer?: string): VisionFeatures {
    const l = layer ?? this.p.visionLayers[0]!;
    if (!this.p.visionLayers.includes(l)) throw new ConfigError(`vision layer "${l}" is not one ${this.p.modelType} offers${didYouMean(l, this.p.visionLayers)} (known: ${this.p.visionLayers.join(", ")})`);
    return torch.noGrad(() => this.p.visionFeatures(pixels, l));
  }

  generate(o: VlmGenerateOptions): GenerateResult {
    return torch.noGrad(() => torch.scope(() => {
      const { lm, first } = this.p.generator(o);
      const { inputIds: _i, pixels: _p, wrap, ...rest } = o;
      return generate(wrap ? wrap(lm) : lm, { ...rest, ...first });
    }));
  }

  attachLatentHead(head: LatentHeadConfig, latentTokenIds: readonly number[], o: { generator?: Generator } = {}): void {
    if (latentTokenIds.length === 0) throw new Error("attachLatentHead: no latent token ids");
    growVocab(this.p.lm(), Math.max(...latentTokenIds) + 1, (v) => this.p.setVocab(v), o.generator);
    this.dropLatentHead();
    this.wrapper.latent_head = new LatentHead(head, o.generator ? { generator: o.generator } : {});
    this.tokenIds = [...latentTokenIds];
  }

  dropLatentHead(): void {
    this.wrapper.latent_head?.parameters().forEach((p) => p.dispose());
    this.wrapper.latent_head = null;
    this.tokenIds = [];
  }

  predictLatents(inputIds: Tensor, attentionMask?: Tensor): { logits: Tensor; latents: Tensor } {
    const head = this.wrapper.latent_head;
    if (!head) throw new Error(`this ${this.p.modelType} model has no latent head (attach one: latent-pretrain does)`);
    const out = this.p.forward({ inputIds, ...(attentionMask ? { attentionMask } : {}) });
    const h = gatherLatentPositions(out.lastHiddenState, inputIds, this.tokenIds); // [B, K, H]
    return { logits: out.logits, latents: head.forward(h) };
  }

  freezeVision(): void {
    this.p.vision.requiresGrad_(false);
    this.p.vision.eval();
  }

  /** The family's own layout, then the head beside it and its keys in config.json. */
  savePretrained(dir: string): void {
    this.p.save(dir);
    const head = this.wrapper.latent_head;
    if (!head) return;
    io.saveFile(join(dir, LATENT_HEAD_FILE), head.stateDict());
    const path = join(dir, "config.json");
    const json = JSON.parse(readFileSync(path, "utf8")) as HfJson;
    writeFileSync(path, JSON.stringify({ ...json, latent_head: latentHeadToHfConfig(head.config), latent_token_ids: this.tokenIds }, null, 2) + "\n");
  }

  /** Reads a head saved beside the weights (config.json's latent_head + LATENT_HEAD_FILE). */
  loadLatentHead(dir: string, json: HfJson): void {
    const cfg = json.latent_head as HfJson | undefined;
    if (cfg === undefined) return;
    const ids = json.latent_token_ids;
    if (!Array.isArray(ids) || ids.length === 0 || !ids.every((x) => Number.isInteger(x))) throw new ConfigError(`${dir}/config.json: latent_head needs latent_token_ids (a list of token ids)`);
    const file = join(dir, LATENT_HEAD_FILE);
    if (!existsSync(file)) throw new ConfigError(`${dir}/config.json names a latent_head but ${LATENT_HEAD_FILE} is missing beside it`);
    this.wrapper.latent_head = new LatentHead(latentHeadFromHfConfig(cfg));
    this.wrapper.latent_head.loadStateDict(io.loadFile(file));
    this.tokenIds = ids as number[];
  }

  dispose(): void { this.module.parameters().forEach((p) => p.dispose()); }
}

/** resize_token_embeddings when `needed` rows exceed the embedding (never shrinks: checkpoints pad their vocabularies). */
function growVocab({ embed, head }: LmParts, needed: number, setVocab: (v: number) => void, generator?: Generator): void {
  if (needed <= embed.numEmbeddings) return;
  resizeTokenEmbeddings(embed, needed, { lmHead: head, ...(generator ? { generator } : {}) });
  setVocab(needed);
}

/** mindseye_vlm: MindsEyeVLM's own methods, its head inside its checkpoint. */
export class MindsEyeVlm implements Vlm {
  readonly modelType = VLM_MODEL_TYPE;
  readonly visionLayers = ["projector_input"] as const;
  readonly promptFormat = CHATML;
  constructor(readonly model: MindsEyeVLM, readonly processor: VlmProcessor) {}
  get module(): nn.Module { return this.model; }
  get imageTokenId(): number { return this.model.config.imageTokenId; }
  get imagesAfterText(): boolean { return this.model.config.imagePosition === "after_text"; }
  get textHiddenSize(): number { return this.model.config.text.hiddenSize; }
  get textLayers(): number { return this.model.config.text.numHiddenLayers; }
  get vocabSize(): number { return this.model.config.text.vocabSize; }
  get latentHead(): LatentHead | null { return this.model.latent_head; }
  get latentTokenIds(): readonly number[] { return this.model.config.latentTokenIds; }

  forward(input: VlmForwardInput): VlmForwardOutput {
    if (input.outputHiddenStates) {
      return this.model.language_model.forward({
        inputsEmbeds: this.model.embed(input.inputIds, input.pixels?.pixelValues), outputHiddenStates: true,
        ...(input.attentionMask ? { attentionMask: input.attentionMask } : {}),
      });
    }
    return this.model.forward({ inputIds: input.inputIds, ...(input.attentionMask ? { attentionMask: input.attentionMask } : {}), ...(input.pixels ? { pixelValues: input.pixels.pixelValues } : {}) });
  }

  visionFeatures(pixels: PixelInputs): VisionFeatures {
    const c = this.model.config;
    return torch.noGrad(() => torch.scope(() => {
      const f = this.model.vision_tower.features(pixels.pixelValues, c.visionFeatureLayer, { dropClassToken: false }); // [n, N(+1), D]
      const g = c.vision.gridSize;
      return { features: f.unbind(0), grids: Array.from({ length: f.shape[0]! }, () => [g, g] as [number, number]), hasClassToken: c.vision.hasClassToken };
    }));
  }

  generate(o: VlmGenerateOptions): GenerateResult {
    return torch.noGrad(() => torch.scope(() => {
      const inputsEmbeds = this.model.embed(o.inputIds, o.pixels?.pixelValues);
      const { inputIds: _i, pixels: _p, wrap, ...rest } = o;
      const lm = this.model.language_model as GenerativeLM<GenerationCache>;
      return generate(wrap ? wrap(lm) : lm, { ...rest, inputsEmbeds });
    }));
  }

  attachLatentHead(head: LatentHeadConfig, latentTokenIds: readonly number[], o: { generator?: Generator } = {}): void {
    growVocab(lmParts(this.model.language_model), Math.max(...latentTokenIds) + 1, (v) => {
      this.model.config = { ...this.model.config, text: { ...this.model.config.text, vocabSize: v } };
    }, o.generator);
    this.model.attachLatentHead(head, [...latentTokenIds], o);
  }

  dropLatentHead(): void {
    if (!this.model.latent_head) return;
    this.model.latent_head.parameters().forEach((p) => p.dispose());
    this.model.latent_head = null;
    this.model.config = { ...this.model.config, latentHead: null, latentTokenIds: [] };
  }

  predictLatents(inputIds: Tensor, attentionMask?: Tensor): { logits: Tensor; latents: Tensor } { return this.model.predictLatents(inputIds, attentionMask); }

  freezeVision(): void {
    this.model.vision_tower.requiresGrad_(false);
    this.model.vision_tower.eval();
  }

  savePretrained(dir: string): void { this.model.savePretrained(dir); }
  dispose(): void { this.model.parameters().forEach((p) => p.dispose()); }
}

// ---------------------------------------------------------------------------------------------
// Qwen2.5-VL

/**
 * Qwen2.5-VL's tower output per image before the PatchMerger ("pre_merger": [h·w patches, 1280],
 * rows of patches) or after it ("merger", the default: [h/2·w/2, out_hidden_size], the tokens
 * the LM reads). Pre-merger features are read at the merger's input (window order) and put back
 * into row-major patch order.
 */
function qwenVisionFeatures(model: Qwen2_5_VLForConditionalGeneration, pixels: PixelInputs, layer: string): VisionFeatures {
  const grids = pixels.imageGridThw;
  if (!grids) throw new Error("Qwen2.5-VL vision features: pixels without imageGridThw");
  const m = model.config.vision.spatialMergeSize;
  const visual = model.visual;
  return torch.scope(() => {
    if (layer === "merger") {
      const merged = visual.forward(pixels.pixelValues, grids);
      return { features: merged.split(visual.tokensPerImage(grids), 0), grids: grids.map(([t, h, w]) => [t * h / m, w / m] as [number, number]), hasClassToken: false };
    }
    // The merger's input: the last block's output [N, D] in window order (merge blocks consecutive).
    let captured: Tensor | null = null;
    const merger = visual.merger;
    const original = merger.forward.bind(merger);
    merger.forward = (x: Tensor) => { captured = torch.keep(x); return original(x); }; // kept past the tower's scope
    try {
      visual.forward(pixels.pixelValues, grids);
    } finally {
      merger.forward = original;
    }
    const windowed = captured as unknown as Tensor;
    const { windowIndex } = windowIndexOf(model, grids);
    const unit = m * m;
    // patch p of window order is patch windowIndex[⌊p/unit⌋]·unit + p mod unit of the processor's (merge-block) order
    const toBlock = new Int32Array(windowIndex.length * unit);
    windowIndex.forEach((j, i) => { for (let u = 0; u < unit; u++) toBlock[j * unit + u] = i * unit + u; });
    const blockOrder = windowed.indexSelect(0, torch.tensor(toBlock, { shape: [toBlock.length] }).long()); // [N, D], merge-block order
    windowed.dispose();
    const D = blockOrder.shape[1]!;
    const features: Tensor[] = [];
    let at = 0;
    for (const [t, h, w] of grids) {
      const n = t * h * w;
      // (t, h/m, w/m, m, m, D) -> (t, h/m, m, w/m, m, D): rows of patches
      features.push(blockOrder.narrow(0, at, n).reshape(t, h / m, w / m, m, m, D).permute(0, 1, 3, 2, 4, 5).reshape(n, D));
      at += n;
    }
    return { features, grids: grids.map(([t, h, w]) => [t * h, w] as [number, number]), hasClassToken: false };
  });
}

function windowIndexOf(model: Qwen2_5_VLForConditionalGeneration, grids: readonly GridThw[]): { windowIndex: number[] } {
  return visionWindowIndex(grids, model.config.vision);
}

function qwen2_5_vlFamily(dir: string, json: HfJson): FamilyVlm<Qwen2_5_VLForConditionalGeneration> {
  const model = Qwen2_5_VLForConditionalGeneration.fromPretrained(dir);
  const processor = qwen2VLProcessor(readProcessor(dir, {}), `${dir}/preprocessor_config.json`);
  const cfg = () => model.config;
  const fam = new FamilyVlm({
    modelType: "qwen2_5_vl", model, processor, imageTokenId: model.config.imageTokenId, imagesAfterText: false, promptFormat: CHATML,
    text: { hiddenSize: cfg().text.hiddenSize, numHiddenLayers: cfg().text.numHiddenLayers, vocabSize: cfg().text.vocabSize },
    lm: () => ({ embed: model.languageModel.embed_tokens, head: model.lm_head }), visionLayers: ["merger", "pre_merger"], vision: model.visual,
    forward: (i) => model.forward({
      inputIds: i.inputIds, ...(i.attentionMask ? { attentionMask: i.attentionMask } : {}), ...(i.outputHiddenStates ? { outputHiddenStates: true } : {}),
      ...(i.pixels ? { pixelValues: i.pixels.pixelValues, imageGridThw: i.pixels.imageGridThw! } : {}),
    }),
    visionFeatures: (px, layer) => qwenVisionFeatures(model, px, layer),
    generator: (o) => {
      const images = o.pixels ? { pixelValues: o.pixels.pixelValues, imageGridThw: o.pixels.imageGridThw! } : {};
      const lm: GenerativeLM<GenerationCache> = {
        forward: (s: GenerationStep<GenerationCache>) => model.forward({
          inputIds: s.inputIds!, attentionMask: s.attentionMask, useCache: true, logitsToKeep: 1,
          ...(s.pastKeyValues === undefined ? images : { pastKeyValues: s.pastKeyValues as never }),
        }),
      };
      return { lm, first: { inputIds: o.inputIds } };
    },
    setVocab: (v) => {
      // The config is plain data; the resized embedding and head are the model's own modules.
      (model as { config: ResolvedQwen2_5_VLConfig }).config = Object.freeze({ ...model.config, text: Object.freeze({ ...model.config.text, vocabSize: v }) });
    },
    save: (d) => model.savePretrained(d),
  });
  fam.loadLatentHead(dir, json);
  return fam;
}

// ---------------------------------------------------------------------------------------------
// LLaVA and InternVL (embedding-splice families)

function llavaFamily(dir: string, json: HfJson): FamilyVlm<LlavaForConditionalGeneration> {
  const model = LlavaForConditionalGeneration.fromPretrained(dir);
  const c = model.config;
  const pp = readProcessorJson(dir);
  // llava-hf's CLIPImageProcessor files do not pad; LLaVA-1.5 itself pads to a square with the
  // mean colour (image_aspect_ratio "pad"), which is what it was trained with. LlavaImageProcessor
  // says so itself (do_pad).
  const type = pp.json.image_processor_type;
  const pad = type === "LlavaImageProcessor" ? pp.json.do_pad === true : true;
  const config = processorConfigFromHf(type === "LlavaImageProcessor" ? { ...pp.json, image_processor_type: "CLIPImageProcessor" } : pp.json, { padToSquare: pad }, pp.path);
  const processor = fixedSizeProcessor(config, c.imageSeqLength, pp.path);
  const fam = new FamilyVlm({
    modelType: "llava", model, processor, imageTokenId: c.imageTokenIndex, imagesAfterText: false, promptFormat: VICUNA_V1,
    text: c.text.config, lm: () => lmParts(model.language_model), visionLayers: ["projector_input"], vision: model.vision_tower,
    forward: (i) => model.language_model.forward({
      inputsEmbeds: model.embed(i.inputIds, i.pixels?.pixelValues), ...(i.attentionMask ? { attentionMask: i.attentionMask } : {}),
    }),
    visionFeatures: (px) => torch.scope(() => {
      const f = model.visionFeatures(px.pixelValues);
      const g = c.vision.gridSize;
      return { features: f.unbind(0), grids: Array.from({ length: f.shape[0]! }, () => [g, g] as [number, number]), hasClassToken: c.visionFeatureSelectStrategy === "full" && c.vision.hasClassToken };
    }),
    generator: (o) => ({ lm: model.language_model as GenerativeLM<GenerationCache>, first: { inputsEmbeds: model.embed(o.inputIds, o.pixels?.pixelValues) } }),
    setVocab: (v) => {
      const t = c.text;
      (model as { config: typeof c }).config = { ...model.config, text: t.modelType === "llama" ? { modelType: "llama", config: { ...t.config, vocabSize: v } } : { modelType: "qwen2", config: { ...t.config, vocabSize: v } } };
    },
    save: (d) => model.savePretrained(d),
  });
  fam.loadLatentHead(dir, json);
  return fam;
}

function internVLFamily(dir: string, json: HfJson): FamilyVlm<InternVLChatModel> {
  const model = InternVLChatModel.fromPretrained(dir);
  const c = model.config;
  if (c.imgContextTokenId === null) throw new ConfigError(`${dir}: the <IMG_CONTEXT> token id is unknown (config.json img_context_token_id or the tokenizer's added tokens)`);
  const processor = internVLProcessor({
    kind: "internvl_tiles", imageSize: c.imageSize, minNum: c.minDynamicPatch, maxNum: c.dynamicImageSize ? c.maxDynamicPatch : 1, useThumbnail: c.useThumbnail, tokensPerTile: c.numImageToken,
  });
  const fam = new FamilyVlm({
    modelType: "internvl_chat", model, processor, imageTokenId: c.imgContextTokenId, imagesAfterText: false, promptFormat: INTERNVL_CHATML,
    text: c.llm.config, lm: () => lmParts(model.language_model), visionLayers: ["projector_input"], vision: model.vision_model,
    forward: (i) => model.language_model.forward({
      inputsEmbeds: model.embed(i.inputIds, i.pixels?.pixelValues), ...(i.attentionMask ? { attentionMask: i.attentionMask } : {}),
    }),
    // Per tile (thumbnail included): the patch grid of the selected layer, class token dropped.
    visionFeatures: (px) => torch.scope(() => {
      const f = model.visionFeatures(px.pixelValues);
      const g = Math.round(Math.sqrt(f.shape[1]!));
      return { features: f.unbind(0), grids: Array.from({ length: f.shape[0]! }, () => [g, g] as [number, number]), hasClassToken: false };
    }),
    generator: (o) => ({ lm: model.language_model as GenerativeLM<GenerationCache>, first: { inputsEmbeds: model.embed(o.inputIds, o.pixels?.pixelValues) } }),
    setVocab: (v) => {
      const l = c.llm;
      const llm = l.architecture === "InternLM2ForCausalLM" ? { architecture: l.architecture, config: { ...l.config, vocabSize: v } }
        : l.architecture === "Qwen2ForCausalLM" ? { architecture: l.architecture, config: { ...l.config, vocabSize: v } } : { architecture: l.architecture, config: { ...l.config, vocabSize: v } };
      (model as { config: typeof c }).config = { ...model.config, llm };
    },
    save: (d) => model.savePretrained(d),
  });
  fam.loadLatentHead(dir, json);
  return fam;
}

// ---------------------------------------------------------------------------------------------
// Loading

function readProcessorJson(dir: string): { json: HfJson; path: string } {
  const path = join(dir, "preprocessor_config.json");
  if (!existsSync(path)) throw new ConfigError(`${dir}: no preprocessor_config.json; a model directory needs the family's image processor settings beside config.json`);
  return { json: JSON.parse(readFileSync(path, "utf8")) as HfJson, path };
}

function readProcessor(dir: string, opts: { padToSquare?: boolean }): ImageProcessorConfig {
  const { json, path } = readProcessorJson(dir);
  return processorConfigFromHf(json, opts, path);
}

/** The families by config.json model_type (one explicit registry). */
const FAMILIES: Readonly<Record<string, (dir: string, json: HfJson) => Vlm>> = Object.freeze({
  [VLM_MODEL_TYPE]: (dir: string) => {
    const model = MindsEyeVLM.fromPretrained(dir);
    const where = `${dir}/preprocessor_config.json`;
    return new MindsEyeVlm(model, fixedSizeProcessor(readProcessor(dir, {}), imageTokenCount(model.config), where));
  },
  qwen2_5_vl: qwen2_5_vlFamily,
  llava: llavaFamily,
  internvl_chat: internVLFamily,
});

export const VLM_FAMILIES: readonly string[] = Object.keys(FAMILIES);

/**
 * Loads a VLM directory (config.json, weights, preprocessor_config.json) as its family says.
 * ```ts
 * const vlm = loadVlm("runs/qwen/latent/model");
 * const px = vlm.processor.process(images);
 * const { logits } = vlm.forward({ inputIds, attentionMask, pixels: px });
 * ```
 */
export function loadVlm(ref: string): Vlm {
  const dir = resolveModelRef(ref);
  const json = readHfConfig(dir);
  const type = json.model_type;
  if (typeof type !== "string") throw new ConfigError(`${dir}/config.json: no "model_type" (expected one of ${VLM_FAMILIES.join(", ")})`);
  const load = FAMILIES[type];
  if (load === undefined) throw new ConfigError(`${dir}/config.json: model_type "${type}" is not a VLM family MindsEye trains${didYouMean(type, VLM_FAMILIES)}; known: ${VLM_FAMILIES.join(", ")}`);
  return load(dir, json);
}

// ---------------------------------------------------------------------------------------------
// Targets from a family's own tower

/**
 * One image's features [N(+1), D] on a rows×cols grid pooled to [K, D]: mean, all, cls (needs a
 * class token) or grid:K (adaptive average pooling of the 2-D grid, cells row-major).
 */
export function poolImageFeatures(features: Tensor, grid: readonly [number, number], spec: string, hasClassToken: boolean): Tensor {
  return torch.scope(() => {
    if (spec === "cls") {
      if (!hasClassToken) throw new ConfigError("pool cls: this tower's features have no class token (use mean or grid:K)");
      return features.narrow(0, 0, 1);
    }
    const patches = hasClassToken ? features.narrow(0, 1, features.shape[0]! - 1) : features; // [rows·cols, D]
    if (spec === "mean") return patches.mean(0, { keepdim: true });
    if (spec === "all") return patches;
    const m = /^grid:(\d+)$/.exec(spec);
    const side = m ? Math.round(Math.sqrt(Number(m[1]))) : 0;
    if (!m || side * side !== Number(m[1]) || side < 1) throw new ConfigError(`unknown pooling "${spec}" (expected cls, mean, grid:K with K a square, or all)`);
    const [rows, cols] = grid, D = patches.shape[1]!;
    if (rows * cols !== patches.shape[0]) throw new RangeError(`poolImageFeatures: ${patches.shape[0]} features do not fill a ${rows}×${cols} grid`);
    const x = patches.transpose(0, 1).reshape(1, D, rows, cols);
    return F.adaptiveAvgPool2d(x, [side, side]).reshape(D, side * side).transpose(0, 1); // [K, D]
  });
}
