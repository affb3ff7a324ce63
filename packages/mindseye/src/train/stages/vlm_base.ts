// Stage 2, vlm-base: the standard VLM — the frozen world encoder, a LLaVA projector and a small
// Qwen2 LM — trained on image captioning (the assistant answers an image with one of its
// captions) mixed, as LLaVA-1.5 mixes region data, with grounding questions (world/grounding.ts:
// a place read out, a description found). This is the baseline the proposal compares against
// and the start of the other arms. An optional first phase (`alignment`) trains the "where"
// questions alone (then, with `grounding_relations`, those and the relation lookups, and with
// `image_word_views`, the same with the jigsaw views' words) with the image-word objective before
// the mix, as LLaVA aligns its projector before instruction tuning.
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { torch, type Tensor } from "@mindseye/torch";
import { VitVisionModel } from "../../models/vit.js";
import { MindsEyeVLM, imageTokenCount, type VlmConfig } from "../../models/vlm.js";
import { resolveQwen2 } from "../../models/qwen2.js";
import { DataLoader } from "../../data/loader.js";
import { buildExample, padRight } from "../../data/vlm_inputs.js";
import { nextTokenCrossEntropy } from "../../objectives/next_token.js";
import { imageWordLoss } from "../../objectives/image_words.js";
import { readPairs } from "../../data/formats/index.js";
import { train, type TrainResult } from "../trainer.js";
import { ImageBank, TrainSection, trainConfig, readPreprocessor, loadTokenizer, copyCompanions, markDone, writeResolved, stopIfInterrupted, trainOptions, MaxErrorRate, loadUsable, readScenes, dataShard, onLeadRank, type StageOptions, refuseFinetuneOnlyKeys } from "./common.js";
import { cellWords, groundingPairs, readoutPairs, relationPairs, type GroundingPair } from "../../world/grounding.js";
import { JIGSAW_VIEWS, viewCellWords, type JigsawView } from "../../world/jigsaw.js";
import { preprocess } from "../../data/targets.js";
import type { ImageProcessorConfig } from "../../models/processors.js";
import { GRID, type Scene } from "../../world/scene.js";
import type { Tokenizer } from "../../data/tokenizer.js";
import { Rng } from "../../world/rng.js";
import { resolveModelRef } from "../../config/hub.js";
import { ConfigError } from "../../config/errors.js";

export const VlmBaseRecipe = z.strictObject({
  stage: z.literal("vlm-base"),
  seed: z.number().int().min(0).default(0),
  world: z.string(),
  /** The frozen encoder (stage 1's encoder/ directory, or any HF CLIP/SigLIP vision model). */
  encoder: z.string(),
  out: z.string(),
  lm: z.strictObject({
    hidden_size: z.number().int().positive().default(96),
    intermediate_size: z.number().int().positive().default(192),
    layers: z.number().int().positive().default(3),
    heads: z.number().int().positive().default(4),
    kv_heads: z.number().int().positive().default(2),
    /**
     * Std of the LM's normal weight init (absent: Qwen2's 0.02). A 128-wide LM learns to look
     * a cell up from the question several times sooner at 0.08 (≈ 1/√width): `npm run bench:grounding`.
     */
    initializer_range: z.number().positive().optional(),
  }).default({ hidden_size: 96, intermediate_size: 192, layers: 3, heads: 4, kv_heads: 2 }),
  /** Where prompts put the image: before the text (LLaVA's order) or after it (image tokens see the question). */
  image_position: z.enum(["before_text", "after_text"]).default("before_text"),
  /** Mix in the world's grounding questions (what is at a place, where an object is). */
  grounding: z.boolean().default(true),
  /**
   * How the "where" questions name their object (world/grounding.ts): "full" (every attribute:
   * "the large red metal circle") or "minimal" (the fewest that single it out, as referring
   * expressions and the world's GQA questions do: "the red object"). Absent: full. Optional
   * rather than defaulted, so that finished studies keep their fingerprints.
   */
  grounding_descriptions: z.enum(["full", "minimal"]).optional(),
  /**
   * Weight of the image-word objective (0: off): each image token, read through the LM's tied
   * word embeddings, predicts the words of its cell (objectives/image_words.ts). It needs one
   * image token per cell of the world's grid (48 px scenes, 16 px patches).
   */
  image_words: z.number().min(0).default(0),
  /**
   * A first phase before the mix (absent: none), as LLaVA aligns its projector before instruction
   * tuning: `steps` steps on the base's "where" questions alone (named as grounding_descriptions
   * says; with grounding_relations, a second phase adds the relation lookups; with
   * image_word_views, a last one adds the views' words), with the
   * image-word objective at `image_words`. The image tokens learn the LM's words
   * and the LM learns to find an object by them, which inside the mix it does not within thousands
   * of steps (`npm run bench:grounding -- --kind where --descriptions minimal --image-words 1`).
   * Same trainer settings as `train`, with these steps; the aligned VLM is kept in
   * <out>/alignment/model and a rerun starts from it.
   */
  alignment: z.strictObject({
    steps: z.number().int().positive(),
    image_words: z.number().min(0).default(1),
    /**
     * Steps of the last (views) phase, with image_word_views (absent: `steps`). The longer the
     * image tokens read the views, the sooner world_jigsaw is learnt, and the more world_gqa loses
     * (2,000 against 1,000: jigsaw 88.6 against 62.7% after 1,000 fine-tuning steps, world_gqa 65.3
     * against 71.7%; the README's jigsaw table).
     */
    views_steps: z.number().int().positive().optional(),
    /**
     * Which lookups the first phase trains alone: "where" (absent) or, with grounding_relations,
     * "rel" (the relation lookups, then both in the second phase).
     */
    first: z.enum(["where", "rel"]).optional(),
  }).optional(),
  /**
   * Also the relation lookups among the grounding questions ("What is to the left of the red
   * object?" → the one object there, world/grounding.ts relationPairs), in the mix and, with
   * `alignment`, in a second alignment phase of the same steps beside the "where" questions. A
   * lookup then a step across the grid, which world_gqa's relational questions need and
   * fine-tuning does not teach (`npm run bench:grounding -- --kind rel`). Absent: off, so finished
   * studies keep their fingerprints.
   */
  grounding_relations: z.boolean().optional(),
  /**
   * Also the read-outs among the grounding questions ("What is the red object?" → "a small red
   * metal circle", world/grounding.ts readoutPairs), in the mix and, with `alignment`, beside the
   * "where" questions in every alignment phase: a lookup by part of a description, then the whole
   * object read, which world_gqa's attribute questions ask one attribute at a time. Absent: off,
   * so finished studies keep their fingerprints.
   */
  grounding_readouts: z.boolean().optional(),
  /**
   * With grounding_readouts, also one read-out per training scene of a description that no object
   * fits ("What is the blue object?" → "nothing"), as generalised referring expressions have
   * no-target ones (world/grounding.ts readoutPairs). Absent: off.
   */
  grounding_absent: z.boolean().optional(),
  /**
   * In the mix, the image-word objective (at `image_words`) also reads the two partial views a
   * jigsaw item shows of each scene (world/jigsaw.ts): the scene without its lower-right quadrant,
   * and that quadrant alone in its place, each token naming the object that shows in its cell. The
   * frozen encoder's tokens of half objects and black cells are not those of whole scenes: a
   * linear colour read-out fitted on scenes reads 60.0% of the masked views' tokens and 13.6% of
   * the pieces' (99.1 and 98.7% when fitted on views; `npm run bench:jigsaw`), and world_jigsaw
   * compares exactly these across images. With `alignment`, also a last alignment phase of the
   * same steps on its lookups with the views: in its first phases the views kept the lookups from
   * being learnt within the phase. Needs image_words > 0. Absent: off, so finished studies keep
   * their fingerprints.
   */
  image_word_views: z.boolean().optional(),
  /** Hidden state of the encoder fed to the projector (-1: last layer). */
  vision_feature_layer: z.number().int().default(-1),
  max_error_rate: MaxErrorRate,
  train: TrainSection,
});
export type VlmBaseRecipe = z.output<typeof VlmBaseRecipe>;

export interface CaptionExample { image: string; caption: string }

/** Every (image, caption) pair of a split's COCO-format captions file. */
export async function captionPairs(world: string, split: string): Promise<CaptionExample[]> {
  const out: CaptionExample[] = [];
  for await (const p of readPairs({ format: "coco", annotations: join(world, `captions_${split}.json`), images: join(world, "images") })) {
    if (p.image.kind !== "file") throw new Error("world captions must point at image files");
    for (const caption of p.captions) out.push({ image: p.image.path, caption });
  }
  return out;
}

/** A fresh VLM around a frozen encoder, sized by the recipe and the tokenizer. */
export function buildVlm(encoder: VitVisionModel, vocabSize: number, imageTokenId: number, r: VlmBaseRecipe, seed: number): MindsEyeVLM {
  const config: VlmConfig = {
    vision: encoder.config,
    text: resolveQwen2({
      vocabSize, hiddenSize: r.lm.hidden_size, intermediateSize: r.lm.intermediate_size, numHiddenLayers: r.lm.layers,
      numAttentionHeads: r.lm.heads, numKeyValueHeads: r.lm.kv_heads, tieWordEmbeddings: true, maxPositionEmbeddings: 2048,
      ...(r.lm.initializer_range === undefined ? {} : { initializerRange: r.lm.initializer_range }),
    }),
    visionFeatureLayer: r.vision_feature_layer, visionFeatureSelectStrategy: "default", imageTokenId, imagePosition: r.image_position, latentHead: null, latentTokenIds: [],
  };
  const vlm = new MindsEyeVLM(config, { generator: new torch.Generator(seed) });
  vlm.vision_tower.loadStateDict(encoder.stateDict());
  return vlm;
}

/** The collate of image-conditioned examples: ids, labels, mask and the images' pixels. */
export function collateVlm(bank: ImageBank, padId: number) {
  return (batch: { ids: number[]; labels: number[]; images: string[] }[]) => {
    const p = padRight(batch, padId);
    return {
      inputIds: torch.tensor(p.ids, { dtype: "int64" }),
      labels: torch.tensor(p.labels, { dtype: "int64" }),
      attentionMask: torch.tensor(p.mask, { dtype: "int64" }),
      pixels: bank.get(batch.flatMap((b) => b.images)),
    };
  };
}
export type VlmBatch = ReturnType<ReturnType<typeof collateVlm>>;

/** One micro-batch of the VLM's next-token loss (labels mask everything but answers). */
export function vlmLoss(model: MindsEyeVLM, b: VlmBatch): Tensor {
  const { logits } = model.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask, ...(b.pixels.shape[0]! > 0 ? { pixelValues: b.pixels } : {}) });
  return nextTokenCrossEntropy(logits, b.labels);
}

/**
 * The token ids of each cell's words (world/grounding.ts cellWords) for the image-word objective:
 * [9][4] per scene. Refuses a VLM whose images are not one token per cell, and words the
 * tokenizer splits.
 */
export function cellWordIds(tok: Tokenizer, model: MindsEyeVLM): (words: string[][]) => number[][] {
  const perImage = imageTokenCount(model.config);
  if (perImage !== GRID * GRID) throw new Error(`image_words: the VLM reads ${perImage} tokens per image, but the objective needs one per cell of the world's ${GRID}×${GRID} grid (48 px scenes with 16 px patches); set image_words: 0 or use such an encoder`);
  const ids = new Map<string, number>();
  const idOf = (word: string) => {
    let id = ids.get(word);
    if (id === undefined) {
      const encoded = tok.encode(word, { addSpecialTokens: false });
      if (encoded.length !== 1) throw new Error(`image_words: the tokenizer splits "${word}" into ${encoded.length} tokens; the objective needs one token per word`);
      ids.set(word, id = encoded[0]!);
    }
    return id;
  };
  return (cells) => cells.map((words) => words.map(idOf));
}

/**
 * The base's loss: next-token, plus `imageWords` × the image-word objective when the batch carries
 * words ([B, 9, 4]). The objective runs the frozen encoder and the projector again rather than
 * share the forward pass's image tokens: the gradients are the same sum but round differently, and
 * when a run leaves its plateau is sensitive to that (bench:grounding's figures were measured so).
 */
export function vlmBaseLoss(model: MindsEyeVLM, b: VlmBaseBatch, imageWords: number): { loss: Tensor; metrics?: { ce: Tensor; image_words: Tensor } } {
  const ce = vlmLoss(model, b);
  if (imageWords === 0 || !b.words) return { loss: ce };
  const embedding = model.language_model.model.embed_tokens.weight;
  const whole = imageWordLoss(model.imageFeatures(b.pixels), embedding, b.words);
  // The views' own term beside the whole scenes' (a mean over both would weigh the scenes a third).
  const words = b.views ? whole.add(imageWordLoss(model.imageFeatures(b.views.pixels), embedding, b.views.words)) : whole;
  return { loss: ce.add(words.mul(imageWords)), metrics: { ce, image_words: words } };
}

/** A base batch: with the image-word objective, its images' cell words, and with views, theirs. */
export type VlmBaseBatch = VlmBatch & {
  /** [B, 9, 4] */
  words?: Tensor;
  /** The batch's images as jigsaw views, all masked then all pieces: pixels [2B, 3, H, W], words [2B, 9, 4]. */
  views?: { pixels: Tensor; words: Tensor };
};

/** What the image-word objective needs to read the jigsaw views of a batch's images. */
export interface ImageWordViews {
  /** [1, 3, 1, 1]: a black pixel as the encoder's preprocessing makes it (the views' missing part). */
  black: Tensor;
  /** imageWordsOf's lookup for each view. */
  words: Record<JigsawView, (images: string[]) => Tensor>;
}

/** A black pixel as `pre` preprocesses it, [1, 3, 1, 1]: a black image through it (resizing black keeps it black), one of its pixels. */
export function blackPixel(pre: ImageProcessorConfig): Tensor {
  return torch.noGrad(() => torch.scope(() => preprocess([{ width: 2, height: 2, data: new Uint8Array(2 * 2 * 3) }], pre).narrow(2, 0, 1).narrow(3, 0, 1).contiguous()));
}

/** The jigsaw views' image-word inputs for `world`, its images preprocessed as `pre` says. */
export function imageWordViews(world: string, idsOf: (words: string[][]) => number[][], pre: ImageProcessorConfig): ImageWordViews {
  const words = Object.fromEntries(JIGSAW_VIEWS.map((view) => [view, imageWordsOf(world, idsOf, (s) => viewCellWords(s, view))])) as ImageWordViews["words"];
  return { black: blackPixel(pre), words };
}

/**
 * The jigsaw views of images [n, 3, H, W] (world/render.ts renderJigsaw makes them from the
 * scene's pixels the same way): the lower-right quadrant black, then everything but it.
 */
export function jigsawViewPixels(pixels: Tensor, black: Tensor): { masked: Tensor; piece: Tensor } {
  return torch.scope(() => {
    const [, , H, W] = pixels.shape as [number, number, number, number];
    const rows = torch.arange(0, H, 1).ge(H / 2).view(1, 1, H, 1), cols = torch.arange(0, W, 1).ge(W / 2).view(1, 1, 1, W);
    const quadrant = rows.logicalAnd(cols); // [1, 1, H, W]
    return { masked: torch.where(quadrant, black, pixels), piece: torch.where(quadrant, pixels, black) };
  });
}

/**
 * collateVlm's batches, with each image's cell words ([B, 9, 4], `words`) when the image-word
 * objective is on (`imageWords`: imageWordsOf's lookup) — for examples of one image each — and
 * with `views`, the images' jigsaw views and their words.
 */
export function collateVlmBase(bank: ImageBank, padId: number, imageWords: ((images: string[]) => Tensor) | null, views: ImageWordViews | null = null) {
  const collate = collateVlm(bank, padId);
  return (batch: { ids: number[]; labels: number[]; images: string[] }[]): VlmBaseBatch => {
    const base = collate(batch);
    if (!imageWords) return base;
    const images = batch.map((e) => e.images[0]!);
    if (!views) return { ...base, words: imageWords(images) };
    const viewPixels = jigsawViewPixels(base.pixels, views.black);
    const pixels = JIGSAW_VIEWS.map((view) => viewPixels[view]), viewWords = JIGSAW_VIEWS.map((view) => views.words[view](images)); // in the same view order
    const out = { ...base, words: imageWords(images), views: { pixels: torch.cat(pixels, 0), words: torch.cat(viewWords, 0) } };
    for (const t of [...pixels, ...viewWords]) t.dispose();
    return out;
  };
}

/**
 * The words tensor [B, 9, 4] of a batch's images (paths into the world's images/): each scene's
 * cellWords, or what `describe` says it shows. Each image's ids are worked out once and kept: the
 * collate asks for them every step, and a view's words sample every object's shape.
 */
export function imageWordsOf(world: string, idsOf: (words: string[][]) => number[][], describe: (scene: Scene) => string[][] = cellWords): (images: string[]) => Tensor {
  const byImage = new Map(readScenes(world).map((s) => [join(world, "images", s.file_name), s]));
  const ids = new Map<string, number[][]>();
  const idsFor = (image: string) => {
    let row = ids.get(image);
    if (!row) {
      const scene = byImage.get(image);
      if (!scene) throw new Error(`image_words: ${image} is not one of the world's scenes (${world}/scenes.json)`);
      ids.set(image, row = idsOf(describe(scene)));
    }
    return row;
  };
  return (images) => torch.tensor(images.map(idsFor), { dtype: "int64" });
}

/** The settings that decide which grounding questions join the base's captions (basePairs): a caption stage's replay rehearses the same mix. */
export const BASE_MIX_SETTINGS = ["grounding_descriptions", "grounding_relations", "grounding_readouts", "grounding_absent"] as const;

/**
 * The base's training pairs: each training image's captions (answered to an empty prompt), then,
 * with `grounding`, its grounding questions (world/grounding.ts) named as `grounding_descriptions`
 * says, with `grounding_relations` its relation lookups after them, and with `grounding_readouts`
 * its read-outs (with `grounding_absent`, one of an object that is not there) last.
 */
export async function basePairs(r: Pick<VlmBaseRecipe, "world" | "seed" | "grounding" | (typeof BASE_MIX_SETTINGS)[number]>): Promise<BasePair[]> {
  const pairs: BasePair[] = (await captionPairs(r.world, "train")).map((p) => ({ kind: "caption", image: p.image, text: "", answer: p.caption }));
  if (r.grounding) {
    for (const scene of readScenes(r.world).filter((s) => s.split === "train")) {
      const image = join(r.world, "images", scene.file_name);
      const grounding = groundingPairs(scene, new Rng(r.seed, "grounding", scene.id), 2, r.grounding_descriptions);
      const relations = r.grounding_relations ? relationPairs(scene, new Rng(r.seed, "relations", scene.id), r.grounding_descriptions) : [];
      const readouts = r.grounding_readouts ? readoutPairs(scene, new Rng(r.seed, "readouts", scene.id), r.grounding_descriptions, r.grounding_absent ? 1 : 0) : [];
      for (const g of [...grounding, ...relations, ...readouts]) pairs.push({ kind: g.kind, image, text: g.question, answer: g.answer });
    }
  }
  return pairs;
}

/** One of the base's training pairs: a caption (answered to an empty prompt) or a grounding question. */
export interface BasePair { kind: "caption" | GroundingPair["kind"]; image: string; text: string; answer: string }

/** The base's pairs as `model`'s inputs: the image and the question (or nothing), answered. */
export function baseExamples(tok: Tokenizer, model: MindsEyeVLM, pairs: readonly BasePair[]): { ids: number[]; labels: number[]; images: string[] }[] {
  const imagesAfterText = model.config.imagePosition === "after_text", perImage = imageTokenCount(model.config);
  return pairs.map((p) => ({ ...buildExample(tok, { images: 1, text: p.text, answer: p.answer, imagesAfterText }, perImage), images: [p.image] }));
}

export async function runVlmBase(recipe: VlmBaseRecipe, opts: StageOptions = {}): Promise<{ modelDir: string; result: TrainResult }> {
  refuseFinetuneOnlyKeys("vlm-base", recipe.train);
  if (recipe.alignment && !recipe.grounding) throw new ConfigError("vlm-base: alignment trains on the grounding \"where\" questions, and grounding is false — set grounding: true or remove alignment");
  if (recipe.image_word_views && recipe.image_words === 0) throw new ConfigError("vlm-base: image_word_views adds jigsaw views to the mix's image-word objective, which is off (image_words: 0) — set image_words > 0 (e.g. 1) or remove image_word_views");
  if (recipe.alignment?.views_steps !== undefined && !recipe.image_word_views) throw new ConfigError("vlm-base: alignment.views_steps sets the length of the views' alignment phase, which only image_word_views adds — set image_word_views: true or remove views_steps");
  if (recipe.alignment?.first === "rel" && !recipe.grounding_relations) throw new ConfigError("vlm-base: alignment.first: rel starts the alignment on the relation lookups, which grounding_relations adds, and it is off — set grounding_relations: true or remove alignment.first");
  if (recipe.grounding_absent && !recipe.grounding_readouts) throw new ConfigError("vlm-base: grounding_absent adds read-outs that find nothing, and grounding_readouts is off — set grounding_readouts: true or remove grounding_absent");
  if (recipe.grounding_readouts && !recipe.grounding) throw new ConfigError("vlm-base: grounding_readouts adds read-outs to the grounding questions, and grounding is false — set grounding: true or remove grounding_readouts");
  if (recipe.grounding_relations && !recipe.grounding) throw new ConfigError("vlm-base: grounding_relations adds relation lookups to the grounding questions, and grounding is false — set grounding: true or remove grounding_relations");
  const r = { ...recipe, encoder: resolveModelRef(recipe.encoder) }; // a directory, or a Hugging Face id in the hub cache
  mkdirSync(r.out, { recursive: true });
  writeResolved(r.out, r);
  const tok = loadTokenizer(r.world);
  const pre = readPreprocessor(r.encoder);
  const alignedDir = join(r.out, "alignment", "model");
  const aligned = r.alignment !== undefined && existsSync(join(alignedDir, "DONE")); // a rerun starts from the aligned VLM
  let model: MindsEyeVLM;
  if (aligned) model = MindsEyeVLM.fromPretrained(alignedDir);
  else {
    const encoder = VitVisionModel.fromPretrained(r.encoder);
    torch.manualSeed(r.seed);
    model = buildVlm(encoder, tok.vocabSize, tok.specialTokenIds.imagePad!, r, r.seed);
    encoder.parameters().forEach((p) => p.dispose());
  }
  model.vision_tower.requiresGrad_(false);
  model.vision_tower.eval();

  const pairs = await basePairs(r);
  const { bank, usable } = await loadUsable(pairs, (p) => [p.image], pre, r.max_error_rate, console.error);
  const examples = baseExamples(tok, model, usable);
  const wordIds = r.image_words > 0 || (r.alignment?.image_words ?? 0) > 0 ? cellWordIds(tok, model) : null;
  const cellWordsOf = wordIds ? imageWordsOf(r.world, wordIds) : null;
  const views = wordIds && r.image_word_views ? imageWordViews(r.world, wordIds, pre) : null;
  /** The trainer's run over `of` (examples), with the image-word objective at `imageWords` (with `withViews`, on the jigsaw views too), in `runDir`. */
  const phase = async (of: typeof examples, imageWords: number, runDir: string, steps: number, withViews: ImageWordViews | null = null) => {
    const loader = new DataLoader({ length: of.length, get: (i: number) => of[i]! }, {
      batchSize: r.train.batch_size, seed: r.seed, ...dataShard(), collate: collateVlmBase(bank, tok.specialTokenIds.pad ?? 0, imageWords > 0 ? cellWordsOf : null, imageWords > 0 ? withViews : null),
    });
    const result = await train({ model, loader: loader as DataLoader<unknown, VlmBaseBatch>, step: (b) => vlmBaseLoss(model, b, imageWords) },
      trainConfig(runDir, { ...r.train, steps }, r.seed), trainOptions(opts));
    stopIfInterrupted(result, runDir);
    return result;
  };
  if (r.alignment && !aligned) {
    // The "where" questions, with grounding_readouts the read-outs beside them.
    const where = examples.filter((_, i) => usable[i]!.kind === "where" || usable[i]!.kind === "what");
    const firstKind = r.alignment.first;
    const first = firstKind === "rel" ? examples.filter((_, i) => usable[i]!.kind === "rel") : where;
    let result = await phase(first, r.alignment.image_words, join(r.out, "alignment"), r.alignment.steps);
    // Then the relation lookups beside the "where" questions: mixed from the start, the "where"
    // lookups do not come within the phase's steps (26.8% against 96.8% in the README's study).
    const lookups = r.grounding_relations ? examples.filter((_, i) => usable[i]!.kind !== "caption" && usable[i]!.kind !== "at") : null;
    if (lookups) result = await phase(lookups, r.alignment.image_words, join(r.out, "alignment", "relations"), r.alignment.steps);
    // Then, with image_word_views, a last phase of the same lookups with the views' words: in either
    // phase before, the views kept its lookups from being learnt within the phase.
    if (views) result = await phase(lookups ?? where, r.alignment.image_words, join(r.out, "alignment", "views"), r.alignment.views_steps ?? r.alignment.steps, views);
    onLeadRank(() => {
      model.savePretrained(alignedDir);
      copyCompanions(alignedDir, [r.world, r.encoder]);
      markDone(alignedDir, { stage: "vlm-base alignment", questions: first.length, ...(firstKind ? { first: firstKind } : {}), ...(lookups ? { withRelations: lookups.length } : {}), steps: result.steps, lastLoss: result.lastLoss });
    });
  }
  const result = await phase(examples, r.image_words, r.out, r.train.steps, views);
  const modelDir = join(r.out, "model");
  onLeadRank(() => {
    model.savePretrained(modelDir);
    copyCompanions(modelDir, [r.world, r.encoder]);
    markDone(modelDir, { stage: "vlm-base", steps: result.steps, lastLoss: result.lastLoss });
  });
  bank.dispose();
  views?.black.dispose();
  model.parameters().forEach((p) => p.dispose());
  return { modelDir, result };
}
