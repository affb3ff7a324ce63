// LLaVA (HF's LlavaForConditionalGeneration, modeling_llava.py), in the layout llava-hf checkpoints
// use (transformers < 4.52; the newer model.* layout is renamed to it on load):
//
//   pixels ─► vision_tower.vision_model.*  (CLIP, or SigLIP)  ─► hidden_states[vision_feature_layer]
//          ─► drop the first token under "default" (CLIP's class token) ─► [n, N, Dv]
//          ─► multi_modal_projector.linear_1 ─► GELU ─► linear_2 ─► [n, N, D]
//   prompt:  ... <image> × N ... question ...   (the processor expands <image> to N = image_seq_length)
//   embeddings of the prompt, the <image> rows replaced in order ─► language_model.model.* ─► lm_head
//
// text_config.model_type picks the language model: "llama" (LLaVA-1.5's Vicuna) or "qwen2".
//
//   const llava = LlavaForConditionalGeneration.fromPretrained("llava-1.5-7b-hf/", { dtype: "bfloat16" });
//   const { tokens } = llava.generate({ inputIds, attentionMask, pixelValues, maxNewTokens: 32, stopTokenIds: [2] });
//
// Golden fixture: fixtures/models/make_llava_golden.py.
import { torch, nn, type Tensor, type Device, type Generator } from "@mindseye/torch";
import { ConfigError } from "../config/errors.js";
import { readHfConfig, hfField, ensure, type HfJson } from "../config/hf.js";
import { didYouMean } from "../data/formats/index.js";
import { VitVisionModel, checkVitCheckpoint, vitConfigFromHf, vitConfigToHf, vitPreset, type ResolvedVitConfig } from "./vit.js";
import { LlavaMultiModalProjector } from "./projectors.js";
import { Qwen2ForCausalLM, checkQwen2Checkpoint, fromHfConfig as qwen2FromHf, toHfConfig as qwen2ToHf, type ResolvedQwen2Config, type KVCache, type Qwen2Dtype } from "./qwen2.js";
import { LlamaForCausalLM, checkLlamaCheckpoint, llamaFromHfConfig, llamaToHfConfig, llamaPreset, type ResolvedLlamaConfig } from "./llama.js";
import { embedWithImages } from "./image_tokens.js";
import { generate, type GenerateOptions, type GenerateResult } from "./generation.js";
import { loadCheckpointInto, saveCheckpoint, readCheckpointHeader, checkTensorShape, type CheckpointEntry, type CheckpointHeader } from "./pretrained.js";

// =============================================================================================
// Config

/** The language model, by text_config.model_type. */
export type LlavaTextConfig =
  | { modelType: "llama"; config: ResolvedLlamaConfig }
  | { modelType: "qwen2"; config: ResolvedQwen2Config };

export interface LlavaConfig {
  /** The vision tower (vision_config: clip_vision_model in every llava-hf release). */
  vision: ResolvedVitConfig;
  /** The language model (text_config). */
  text: LlavaTextConfig;
  /** The placeholder token whose embedding rows receive image features (LLaVA-1.5: 32000, "<image>"). */
  imageTokenIndex: number;
  /** Index into the tower's hidden states (0 = embeddings, -1 = last layer) fed to the projector; LLaVA: -2. */
  visionFeatureLayer: number;
  /** "default" drops the first token (CLIP's class token), "full" keeps every token. */
  visionFeatureSelectStrategy: "default" | "full";
  /** Whether linear_1 and linear_2 have biases (HF multimodal_projector_bias). */
  multimodalProjectorBias: boolean;
  /** Padding token id of the tokenizer (llava-1.5: 32001), if any. */
  padTokenId: number | null;
}

export type ResolvedLlavaConfig = Readonly<LlavaConfig & {
  /** Image tokens one image becomes (HF image_seq_length; LLaVA-1.5: 24² = 576). */
  imageSeqLength: number;
}>;

const textHidden = (t: LlavaTextConfig) => t.config.hiddenSize;
const textVocab = (t: LlavaTextConfig) => t.config.vocabSize;

/**
 * Validates a LLaVA config and derives imageSeqLength (`where` names it in errors).
 * ```ts
 * const cfg = resolveLlava({ ...llavaPreset("tiny"), visionFeatureLayer: -1 });
 * ```
 */
export function resolveLlava(c: LlavaConfig, where = "llava"): ResolvedLlavaConfig {
  const layers = c.vision.numHiddenLayers + 1;
  ensure(Number.isInteger(c.visionFeatureLayer) && c.visionFeatureLayer >= -layers && c.visionFeatureLayer < layers, `${where}.visionFeatureLayer`,
    `${JSON.stringify(c.visionFeatureLayer)} is not a hidden state of the ${c.vision.numHiddenLayers}-layer vision tower (use -${layers}..${layers - 1}; LLaVA uses -2)`);
  ensure(c.visionFeatureSelectStrategy === "default" || c.visionFeatureSelectStrategy === "full", `${where}.visionFeatureSelectStrategy`, `must be "default" or "full", got ${JSON.stringify(c.visionFeatureSelectStrategy)}`);
  ensure(Number.isInteger(c.imageTokenIndex) && c.imageTokenIndex >= 0 && c.imageTokenIndex < textVocab(c.text), `${where}.imageTokenIndex`,
    `${JSON.stringify(c.imageTokenIndex)} is not a token of the language model's vocabulary of ${textVocab(c.text)} (the image token must have an embedding row; LLaVA-1.5 adds <image> as 32000 of 32064)`);
  ensure(typeof c.multimodalProjectorBias === "boolean", `${where}.multimodalProjectorBias`, `must be a boolean, got ${JSON.stringify(c.multimodalProjectorBias)}`);
  ensure(c.padTokenId === null || (Number.isInteger(c.padTokenId) && c.padTokenId >= 0), `${where}.padTokenId`, `must be a token id or null, got ${JSON.stringify(c.padTokenId)}`);
  const imageSeqLength = c.vision.numPositions - (c.visionFeatureSelectStrategy === "default" ? 1 : 0);
  ensure(imageSeqLength > 0, `${where}.visionFeatureSelectStrategy`, `"default" drops the first token, and this ${c.vision.variant} tower has only one (use "full")`);
  return Object.freeze({ ...c, imageSeqLength });
}

const TEXT_TYPES = ["llama", "qwen2"] as const;

/**
 * A config from an HF LlavaConfig config.json (llava-hf/*). Sub-configs without a model_type are
 * "clip_vision_model" and "llama" (HF's defaults), and their missing fields take their class
 * defaults. image_seq_length, when given, must be the token count the tower and strategy give.
 */
export function llavaFromHfConfig(json: HfJson, where = "config.json"): ResolvedLlavaConfig {
  const type = hfField<string>(json, "model_type", "string", where);
  ensure(type === "llava", `${where}: "model_type"`, `expected "llava", got ${JSON.stringify(type)} (this loader reads LlavaForConditionalGeneration checkpoints such as llava-hf/llava-1.5-7b-hf)`);
  const act = hfField<string>(json, "projector_hidden_act", "string", where, "gelu");
  ensure(act === "gelu", `${where}: "projector_hidden_act"`, `only "gelu" (LLaVA-1.5's mlp2x_gelu, exact GELU) is implemented, got ${JSON.stringify(act)}`);
  const layer = json.vision_feature_layer;
  if (Array.isArray(layer)) {
    throw new ConfigError(`${where}: "vision_feature_layer" ${JSON.stringify(layer)}: a list of layers (concatenated features) is not supported; MindsEye's LLaVA reads one layer (an integer such as -2)`);
  }
  const visionJson = hfField<HfJson>(json, "vision_config", "object", where);
  const textJson = hfField<HfJson>(json, "text_config", "object", where);
  const vision = vitConfigFromHf({ ...visionJson, model_type: visionJson.model_type ?? "clip_vision_model" }, `${where} vision_config`);
  const textType = hfField<string>(textJson, "model_type", "string", `${where} text_config`, "llama");
  let text: LlavaTextConfig;
  if (textType === "llama") text = { modelType: "llama", config: llamaFromHfConfig(textJson, `${where} text_config`) };
  else if (textType === "qwen2") text = { modelType: "qwen2", config: qwen2FromHf(textJson, `${where} text_config`) };
  else throw new ConfigError(`${where} text_config: model_type ${JSON.stringify(textType)}${didYouMean(textType, TEXT_TYPES)} is not a language model MindsEye's LLaVA builds (supported: ${TEXT_TYPES.join(", ")})`);
  const strategy = hfField<string>(json, "vision_feature_select_strategy", "string", where, "default");
  const cfg = resolveLlava({
    vision,
    text,
    imageTokenIndex: hfField<number>(json, "image_token_index", "integer", where, hfField<number>(json, "image_token_id", "integer", where, 32000)),
    visionFeatureLayer: hfField<number>(json, "vision_feature_layer", "integer", where, -2),
    visionFeatureSelectStrategy: strategy as "default" | "full",
    multimodalProjectorBias: hfField<boolean>(json, "multimodal_projector_bias", "boolean", where, true),
    padTokenId: hfField<number | null>(json, "pad_token_id", "integer", where, null),
  }, where);
  if (json.image_seq_length !== undefined && json.image_seq_length !== null) {
    const n = hfField<number>(json, "image_seq_length", "integer", where);
    ensure(n === cfg.imageSeqLength, `${where}: "image_seq_length"`,
      `${n} differs from the ${cfg.imageSeqLength} tokens one image gives ((image_size / patch_size)² = (${vision.imageSize} / ${vision.patchSize})²${vision.hasClassToken ? " + 1 class token" : ""}${strategy === "default" ? ", the first dropped by \"default\"" : ""}); fix image_seq_length or the vision_config`);
  }
  return cfg;
}

/** The config.json llava-hf writes for this config. */
export function llavaToHfConfig(c: ResolvedLlavaConfig): HfJson {
  const { architectures: _va, ...vision } = vitConfigToHf(c.vision);
  const text = c.text.modelType === "llama" ? llamaToHfConfig(c.text.config) : qwen2ToHf(c.text.config);
  return {
    architectures: ["LlavaForConditionalGeneration"],
    model_type: "llava",
    image_token_index: c.imageTokenIndex,
    image_seq_length: c.imageSeqLength,
    projector_hidden_act: "gelu",
    multimodal_projector_bias: c.multimodalProjectorBias,
    vision_feature_layer: c.visionFeatureLayer,
    vision_feature_select_strategy: c.visionFeatureSelectStrategy,
    pad_token_id: c.padTokenId,
    tie_word_embeddings: c.text.config.tieWordEmbeddings,
    torch_dtype: c.text.config.torchDtype,
    vision_config: vision,
    text_config: text,
  };
}

export interface LlavaPreset {
  /** Where the numbers come from. */
  source: string;
  config: () => LlavaConfig;
}

/** Named configs; `tiny` is make_llava_golden.py's "llama" case and tests' size. */
export const LLAVA_PRESETS: Readonly<Record<string, LlavaPreset>> = Object.freeze<Record<string, LlavaPreset>>({
  tiny: {
    source: "MindsEye test size: clip-tiny tower (16 patches + class token), a 48-wide GQA Llama, image token 100 of 110",
    config: () => ({
      vision: vitPreset("clip-tiny"), text: { modelType: "llama", config: llamaPreset("tiny", { vocabSize: 110, hiddenSize: 48, padTokenId: 101 }) },
      imageTokenIndex: 100, visionFeatureLayer: -2, visionFeatureSelectStrategy: "default", multimodalProjectorBias: true, padTokenId: 101,
    }),
  },
  "llava-1.5-7b": {
    source: "https://huggingface.co/llava-hf/llava-1.5-7b-hf/blob/main/config.json (CLIP ViT-L/14-336, Vicuna-7B v1.5)",
    config: () => ({
      vision: vitPreset("clip-vit-l14-336"), text: { modelType: "llama", config: llamaPreset("vicuna-7b-v1.5") },
      imageTokenIndex: 32000, visionFeatureLayer: -2, visionFeatureSelectStrategy: "default", multimodalProjectorBias: true, padTokenId: 32001,
    }),
  },
});

/** A preset by name, resolved; an unknown name says which exist and the closest one. */
export function llavaPreset(name: string): ResolvedLlavaConfig {
  const p = LLAVA_PRESETS[name];
  if (p === undefined) {
    const names = Object.keys(LLAVA_PRESETS);
    throw new ConfigError(`unknown LLaVA preset "${name}"${didYouMean(name, names)} (presets: ${names.join(", ")})`);
  }
  return resolveLlava(p.config(), `llava preset "${name}"`);
}

// =============================================================================================
// Checkpoint names

/**
 * Checkpoint name -> module name: the llava-hf layout as is; transformers ≥ 4.52's layout
 * (model.vision_tower.*, model.multi_modal_projector.*, model.language_model.*, lm_head.*) renamed
 * to it; the position_ids and rotary inv_freq buffers older checkpoints carry dropped (null).
 */
export function llavaCheckpointRename(name: string): string | null {
  if (name.endsWith("embeddings.position_ids") || name.endsWith(".rotary_emb.inv_freq")) return null;
  if (name.startsWith("model.vision_tower.") || name.startsWith("model.multi_modal_projector.")) return name.slice("model.".length);
  if (name.startsWith("model.language_model.")) return `language_model.model.${name.slice("model.language_model.".length)}`;
  if (name.startsWith("lm_head.")) return `language_model.${name}`;
  return name;
}

function renamedHeader(header: CheckpointHeader): CheckpointHeader {
  const out = new Map<string, CheckpointEntry>();
  for (const [name, e] of header) {
    const to = llavaCheckpointRename(name);
    if (to !== null) out.set(to, e);
  }
  return out;
}

// =============================================================================================
// Model

export interface LlavaInput {
  /** int64 [B, T], imageSeqLength image tokens per image. */
  inputIds: Tensor;
  /** [nImages, 3, H, W], the images in the order their tokens appear (row by row). */
  pixelValues?: Tensor;
  /** [B, P + T]: 1 = token, 0 = left padding. */
  attentionMask?: Tensor;
  pastKeyValues?: KVCache;
  useCache?: boolean;
  logitsToKeep?: number;
}

export interface LlavaOutput {
  /** [B, T, V] (T = logitsToKeep when given). */
  logits: Tensor;
  /** After the language model's final norm: [B, T, D]. */
  lastHiddenState: Tensor;
  pastKeyValues?: KVCache;
}

/**
 * LLaVA: vision tower, projector and a Llama or Qwen2 language model, with HF's weight names.
 * ```ts
 * const llava = new LlavaForConditionalGeneration(llavaPreset("tiny"), { generator: new torch.Generator(0) });
 * const { logits } = llava.forward({ inputIds, pixelValues });   // [B, T, V]
 * ```
 */
export class LlavaForConditionalGeneration extends nn.Module {
  vision_tower: VitVisionModel;
  multi_modal_projector: LlavaMultiModalProjector;
  language_model: LlamaForCausalLM | Qwen2ForCausalLM;

  constructor(readonly config: ResolvedLlavaConfig, o: { dtype?: Qwen2Dtype; device?: Device; generator?: Generator } = {}) {
    super();
    this.vision_tower = new VitVisionModel(config.vision, o);
    this.multi_modal_projector = new LlavaMultiModalProjector({
      visionHiddenSize: config.vision.hiddenSize, textHiddenSize: textHidden(config.text), visionFeatureLayer: config.visionFeatureLayer, bias: config.multimodalProjectorBias,
    }, o);
    this.language_model = config.text.modelType === "llama" ? new LlamaForCausalLM(config.text.config, o) : new Qwen2ForCausalLM(config.text.config, o);
  }

  /** pixels [n, 3, H, W] -> the tower's hidden state visionFeatureLayer, first token dropped under "default": [n, imageSeqLength, Dv] */
  visionFeatures(pixelValues: Tensor): Tensor {
    const dtype = this.vision_tower.vision_model.embeddings.patch_embedding.weight.dtype;
    return torch.scope(() => {
      const h = this.vision_tower.features(pixelValues.to({ dtype }), this.config.visionFeatureLayer);
      return this.config.visionFeatureSelectStrategy === "default" ? h.slice(1, 1) : h;
    });
  }

  /** pixels [n, 3, H, W] -> projected image tokens [n, imageSeqLength, D] */
  imageFeatures(pixelValues: Tensor): Tensor {
    return this.multi_modal_projector.forward(this.visionFeatures(pixelValues));
  }

  /** Token embeddings with the image tokens' rows replaced by image features, in order. [B, T, D] */
  embed(inputIds: Tensor, pixelValues?: Tensor): Tensor {
    return embedWithImages(this.language_model.model.embed_tokens, inputIds, this.config.imageTokenIndex, pixelValues, (px) => this.imageFeatures(px));
  }

  forward(input: LlavaInput): LlavaOutput {
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
   * Loads an HF checkpoint directory (config.json + model.safetensors or shards). config.json is
   * held against the checkpoint's shapes before anything is allocated; missing, unexpected and
   * mis-shaped weights are one error.
   */
  static fromPretrained(dir: string, opts: { dtype?: Qwen2Dtype; device?: Device } = {}): LlavaForConditionalGeneration {
    const where = `${dir}/config.json`;
    const config = llavaFromHfConfig(readHfConfig(dir), where);
    const checkpoint = readCheckpointHeader(dir);
    const header = renamedHeader(checkpoint);
    checkVitCheckpoint(config.vision, header, { where: `${where} vision_config`, prefix: "vision_tower.vision_model." });
    checkTensorShape(header, "multi_modal_projector.linear_1.weight", [
      { size: textHidden(config.text), field: "text_config.hidden_size" }, { size: config.vision.hiddenSize, field: "vision_config.hidden_size" },
    ], where);
    const lm = { where: `${where} text_config`, prefix: "language_model.model.", lmHead: "language_model.lm_head.weight" };
    if (config.text.modelType === "llama") checkLlamaCheckpoint(config.text.config, header, lm);
    else checkQwen2Checkpoint(config.text.config, header, lm);

    const dtype = opts.dtype ?? "float32";
    const model = new LlavaForConditionalGeneration(config, { dtype, ...(opts.device ? { device: opts.device } : {}) });
    const tie = config.text.config.tieWordEmbeddings;
    try {
      // Into the parameters, a tensor at a time. A tied lm_head is the embedding (a copy saved under lm_head is ignored).
      loadCheckpointInto(model, dir, {
        header: checkpoint,
        rename: (n) => { const to = llavaCheckpointRename(n); return tie && to === "language_model.lm_head.weight" ? null : to; },
      });
    } catch (e) {
      model.parameters().forEach((p) => p.dispose());
      if (e instanceof nn.StateDictError) throw new Error(`${dir}: the checkpoint does not fit LlavaForConditionalGeneration with this config.json\n${e.message}`, { cause: e });
      throw e;
    }
    return model;
  }

  /** Writes config.json and the weights in the llava-hf layout (a tied lm_head is saved once, as the embedding). */
  savePretrained(dir: string, opts: { maxShardBytes?: number; dtype?: Qwen2Dtype } = {}): void {
    const tie = this.config.text.config.tieWordEmbeddings;
    const dtype = opts.dtype ?? (this.language_model.model.embed_tokens.weight.dtype as Qwen2Dtype);
    const text: LlavaTextConfig = this.config.text.modelType === "llama"
      ? { modelType: "llama", config: { ...this.config.text.config, torchDtype: dtype } }
      : { modelType: "qwen2", config: { ...this.config.text.config, torchDtype: dtype } };
    saveCheckpoint(dir, this, llavaToHfConfig({ ...this.config, text }), {
      skip: (name) => tie && name === "language_model.lm_head.weight",
      ...(opts.maxShardBytes ? { maxShardBytes: opts.maxShardBytes } : {}),
      ...(opts.dtype ? { dtype: opts.dtype } : {}),
    });
  }
}
