// The generic VLM (LLaVA-style): a CLIP/SigLIP-style vision tower, the LLaVA mlp2x_gelu
// projector and a Qwen2 language model, plus the optional latent prediction head of the method.
// The synthetic world's models are this family; so is any encoder + projector + Qwen2 pairing.
//
//   prompt ids:  ... <|image_pad|> × N ... question ...        (N = vision tokens per image)
//   embeddings:  the pads' rows are replaced by projector(vision features), in order
//   latent mode: caption ... <|latent_0|> ... <|latent_{K-1}|>  (no image) → latent_head at those positions
//
// Weight names follow HF's LlavaForConditionalGeneration (transformers < 4.52 layout):
// vision_tower.vision_model.*, multi_modal_projector.linear_{1,2}.*, language_model.model.*,
// language_model.lm_head.*, and MindsEye's latent_head.*.
import { torch, nn, type Tensor, type DType, type Generator } from "@mindseye/torch";
import { readHfConfig, hfField, type HfJson } from "../config/hf.js";
import { ConfigError } from "../config/errors.js";
import { VitVisionModel, checkVitCheckpoint, vitConfigFromHf, vitConfigToHf, type ResolvedVitConfig } from "./vit.js";
import { LlavaMultiModalProjector } from "./projectors.js";
import { Qwen2ForCausalLM, checkQwen2Checkpoint, fromHfConfig as qwen2FromHf, toHfConfig as qwen2ToHf, KVCache, type ResolvedQwen2Config } from "./qwen2.js";
import { LatentHead, latentHeadFromHfConfig, latentHeadToHfConfig, gatherLatentPositions, type LatentHeadConfig } from "./latent_head.js";
import { generate, type GenerateOptions, type GenerateResult } from "./generation.js";
import { embedWithImages } from "./image_tokens.js";
import { loadCheckpointInto, readCheckpointHeader, saveCheckpoint } from "./pretrained.js";

export interface VlmConfig {
  vision: ResolvedVitConfig;
  text: ResolvedQwen2Config;
  /** Hidden-state index of the vision tower fed to the projector (HF vision_feature_layer; LLaVA: -2). */
  visionFeatureLayer: number;
  /** "default" drops the class token (LLaVA), "full" keeps it. */
  visionFeatureSelectStrategy: "default" | "full";
  /** The placeholder token whose rows receive image features. */
  imageTokenId: number;
  /**
   * Where a prompt puts its images (absent: before the text, as LLaVA and Qwen2-VL do). After
   * the text, every image token can attend to the question: the visual tokens are read already
   * knowing what is asked.
   */
  imagePosition?: "before_text" | "after_text";
  /** The latent prediction head, when the model has one. */
  latentHead: LatentHeadConfig | null;
  /** Ids of <|latent_0|>…<|latent_{K-1}|> (when the head is present). */
  latentTokenIds: number[];
}

export const VLM_MODEL_TYPE = "mindseye_vlm";

/** Vision tokens one image becomes: patches (plus the class token under "full"). */
export function imageTokenCount(c: Pick<VlmConfig, "vision" | "visionFeatureSelectStrategy">): number {
  const patches = c.vision.gridSize * c.vision.gridSize;
  return c.vision.hasClassToken && c.visionFeatureSelectStrategy === "full" ? patches + 1 : patches;
}

export function vlmConfigToHf(c: VlmConfig): HfJson {
  return {
    model_type: VLM_MODEL_TYPE,
    architectures: ["MindsEyeVLM"],
    vision_config: vitConfigToHf(c.vision),
    text_config: qwen2ToHf(c.text),
    vision_feature_layer: c.visionFeatureLayer,
    vision_feature_select_strategy: c.visionFeatureSelectStrategy,
    image_token_index: c.imageTokenId,
    ...(c.imagePosition ? { image_position: c.imagePosition } : {}),
    projector_hidden_act: "gelu",
    ...(c.latentHead ? { latent_head: latentHeadToHfConfig(c.latentHead), latent_token_ids: c.latentTokenIds } : {}),
  };
}

export function vlmConfigFromHf(json: HfJson, where = "config.json"): VlmConfig {
  const type = hfField<string>(json, "model_type", "string", where);
  if (type !== VLM_MODEL_TYPE) throw new ConfigError(`${where}: model_type "${type}" is not a MindsEye VLM ("${VLM_MODEL_TYPE}")`);
  const strategy = hfField<string>(json, "vision_feature_select_strategy", "string", where, "default");
  if (strategy !== "default" && strategy !== "full") throw new ConfigError(`${where}: vision_feature_select_strategy must be "default" or "full", got "${strategy}"`);
  const head = json.latent_head as HfJson | undefined;
  return {
    vision: vitConfigFromHf(hfField<HfJson>(json, "vision_config", "object", where), `${where} vision_config`),
    text: qwen2FromHf(hfField<HfJson>(json, "text_config", "object", where), `${where} text_config`),
    visionFeatureLayer: hfField<number>(json, "vision_feature_layer", "integer", where, -2),
    visionFeatureSelectStrategy: strategy,
    imageTokenId: hfField<number>(json, "image_token_index", "integer", where),
    ...imagePositionFromHf(json, where),
    latentHead: head ? latentHeadFromHfConfig(head) : null,
    latentTokenIds: head ? hfField<number[]>(json, "latent_token_ids", "array", where) : [],
  };
}

function imagePositionFromHf(json: HfJson, where: string): Pick<VlmConfig, "imagePosition"> {
  const p = json.image_position;
  if (p === undefined) return {};
  if (p !== "before_text" && p !== "after_text") throw new ConfigError(`${where}: image_position must be "before_text" or "after_text", got ${JSON.stringify(p)}`);
  return { imagePosition: p };
}

export interface VlmInput {
  /** int64 [B, T] with imageTokenCount pads per image. */
  inputIds: Tensor;
  /** [nImages, 3, H, W], one image per sequence that has pads, in batch order. */
  pixelValues?: Tensor;
  attentionMask?: Tensor;
  pastKeyValues?: KVCache;
  useCache?: boolean;
  logitsToKeep?: number;
}

export class MindsEyeVLM extends nn.Module {
  vision_tower: VitVisionModel;
  multi_modal_projector: LlavaMultiModalProjector;
  language_model: Qwen2ForCausalLM;
  latent_head: LatentHead | null;

  constructor(public config: VlmConfig, o: { dtype?: DType; generator?: Generator } = {}) {
    super();
    if (config.latentHead && config.latentHead.inputSize !== config.text.hiddenSize) {
      throw new ConfigError(`latent head input size ${config.latentHead.inputSize} must equal the LM hidden size ${config.text.hiddenSize}`);
    }
    this.vision_tower = new VitVisionModel(config.vision, o);
    this.multi_modal_projector = new LlavaMultiModalProjector({
      visionHiddenSize: config.vision.hiddenSize, textHiddenSize: config.text.hiddenSize, visionFeatureLayer: config.visionFeatureLayer, bias: true,
    }, o);
    this.language_model = new Qwen2ForCausalLM(config.text, o);
    this.latent_head = config.latentHead ? new LatentHead(config.latentHead, o) : null;
  }

  /** pixels [n, 3, H, W] -> projected image tokens [n, N, D_text] */
  imageFeatures(pixelValues: Tensor): Tensor {
    const drop = this.config.vision.hasClassToken && this.config.visionFeatureSelectStrategy === "default";
    const features = this.vision_tower.features(pixelValues, this.config.visionFeatureLayer, { dropClassToken: drop }); // [n, N, Dv]
    return this.multi_modal_projector.forward(features);
  }

  /** Token embeddings with the image pads' rows replaced by image features, in order. [B, T, D] */
  embed(inputIds: Tensor, pixelValues?: Tensor): Tensor {
    return embedWithImages(this.language_model.model.embed_tokens, inputIds, this.config.imageTokenId, pixelValues, (px) => this.imageFeatures(px));
  }

  forward(input: VlmInput): { logits: Tensor; lastHiddenState: Tensor; pastKeyValues?: KVCache } {
    const inputsEmbeds = this.embed(input.inputIds, input.pixelValues);
    return this.language_model.forward({
      inputsEmbeds,
      ...(input.attentionMask ? { attentionMask: input.attentionMask } : {}),
      ...(input.pastKeyValues ? { pastKeyValues: input.pastKeyValues } : {}),
      ...(input.useCache ? { useCache: true } : {}),
      ...(input.logitsToKeep ? { logitsToKeep: input.logitsToKeep } : {}),
    });
  }

  /** Text-only forward with latent queries: logits [B, T, V] and predicted latents [B, K, D_latent]. */
  predictLatents(inputIds: Tensor, attentionMask?: Tensor): { logits: Tensor; latents: Tensor } {
    if (!this.latent_head) throw new Error("this model has no latent head (config.latent_head)");
    const out = this.language_model.forward({ inputIds, ...(attentionMask ? { attentionMask } : {}) });
    const h = gatherLatentPositions(out.lastHiddenState, inputIds, this.config.latentTokenIds); // [B, K, H]
    return { logits: out.logits, latents: this.latent_head.forward(h) };
  }

  /** Greedy/sampled continuation of prompts with images (left-padded inputIds). */
  generate(o: Omit<GenerateOptions, "inputsEmbeds" | "inputIds"> & { inputIds: Tensor; pixelValues?: Tensor }): GenerateResult {
    return torch.noGrad(() => torch.scope(() => {
      const inputsEmbeds = this.embed(o.inputIds, o.pixelValues);
      const { inputIds: _ids, pixelValues: _px, ...rest } = o;
      return generate(this.language_model, { ...rest, inputsEmbeds });
    }));
  }

  /** Adds (or replaces) the latent head, e.g. when latent pretraining starts from a base VLM. */
  attachLatentHead(head: LatentHeadConfig, latentTokenIds: number[], o: { generator?: Generator } = {}): void {
    if (latentTokenIds.length === 0) throw new Error("attachLatentHead: no latent token ids");
    if (this.latent_head) this.latent_head.parameters().forEach((p) => p.dispose());
    this.latent_head = new LatentHead(head, o);
    this.config = { ...this.config, latentHead: this.latent_head.config, latentTokenIds: [...latentTokenIds] };
  }

  static fromPretrained(dir: string, opts: { dtype?: DType } = {}): MindsEyeVLM {
    const where = `${dir}/config.json`;
    const config = vlmConfigFromHf(readHfConfig(dir), where);
    // The checkpoint's shapes are checked against config.json before anything is allocated.
    const header = readCheckpointHeader(dir);
    checkVitCheckpoint(config.vision, header, { where, prefix: "vision_tower.vision_model." });
    checkQwen2Checkpoint(config.text, header, { where, prefix: "language_model.model.", lmHead: "language_model.lm_head.weight" });
    const model = new MindsEyeVLM(config, opts.dtype ? { dtype: opts.dtype } : {});
    const tie = config.text.tieWordEmbeddings;
    try {
      // Into the parameters, a tensor at a time. A tied lm_head is the embedding (a copy saved under lm_head is ignored).
      loadCheckpointInto(model, dir, { header, rename: (n) => (tie && n === "language_model.lm_head.weight" ? null : n) });
    } catch (e) {
      model.parameters().forEach((p) => p.dispose());
      throw e;
    }
    return model;
  }

  savePretrained(dir: string): void {
    saveCheckpoint(dir, this, vlmConfigToHf(this.config), {
      skip: (name) => this.config.text.tieWordEmbeddings && name === "language_model.lm_head.weight",
    });
  }
}
