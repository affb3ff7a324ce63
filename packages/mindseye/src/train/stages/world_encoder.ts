// Stage 1, world-encoder: trains the synthetic world's small ViT to predict each scene's
// attributes — for each cell of the 3×3 layout, which colours, shapes, sizes and materials are
// there (multi-label) — so its features encode what and where. It is then saved in HF layout
// (config.json, model.safetensors, preprocessor_config.json) and frozen for every later stage,
// exactly as a downloaded SigLIP would be.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { torch, nn, F, type Tensor } from "@mindseye/torch";
import { VitVisionModel, resolveVitConfig } from "../../models/vit.js";
import { DataLoader } from "../../data/loader.js";
import { COLORS, MATERIALS, SHAPES, SIZES, type Scene } from "../../world/scene.js";
import { JIGSAW_VIEWS, showsIn, type JigsawView } from "../../world/jigsaw.js";
import { train, type TrainResult } from "../trainer.js";
import { TrainSection, readScenes, trainConfig, worldPreprocessorJson, readPreprocessor, markDone, writeResolved, stopIfInterrupted, trainOptions, MaxErrorRate, loadUsable, dataShard, onLeadRank, type StageOptions, refuseFinetuneOnlyKeys } from "./common.js";
import { blackPixel, jigsawViewPixels } from "./vlm_base.js";

export const WorldEncoderRecipe = z.strictObject({
  stage: z.literal("world-encoder"),
  seed: z.number().int().min(0).default(0),
  /** The world directory (mindseye world generate --out). */
  world: z.string(),
  /** Where the run (and the encoder, under encoder/) goes. */
  out: z.string(),
  encoder: z.strictObject({
    hidden_size: z.number().int().positive().default(64),
    intermediate_size: z.number().int().positive().default(128),
    layers: z.number().int().positive().default(3),
    heads: z.number().int().positive().default(4),
    patch_size: z.number().int().positive().default(8),
  }).default({ hidden_size: 64, intermediate_size: 128, layers: 3, heads: 4, patch_size: 8 }),
  /**
   * Each cell's read-out also names the cell's row and column, so every token says where it is as
   * well as what is there. Off by default: with one read-out shared by every cell, the features say
   * what is in a cell and (nearly) nothing of which cell it is (bench:grounding's cell probe).
   * Optional rather than defaulted, so that studies made before it keep their fingerprints.
   */
  read_position: z.boolean().optional(),
  /**
   * Each training scene is also shown as its two jigsaw views (world/jigsaw.ts: the scene without
   * its lower-right quadrant, and the quadrant alone), each cell's read-out targets being the
   * objects some part of which shows there. Trained on whole scenes only, the encoder's tokens for
   * a half-visible object do not look like the object's (bench:jigsaw), and what a later stage
   * learns to read from whole scenes does not carry over to the views.
   */
  read_views: z.boolean().optional(),
  max_error_rate: MaxErrorRate,
  train: TrainSection,
});
export type WorldEncoderRecipe = z.output<typeof WorldEncoderRecipe>;

const ATTRIBUTES = [...COLORS, ...SHAPES, ...SIZES, ...MATERIALS];
const CELLS = 9;
/** The place read-out's outputs per cell: its row (3, one-hot), then its column (3). */
const PLACES = 6;

/** [9 × 6]: each cell's row and column, one-hot each, in the cells' row-major order. */
export function placeTargets(): number[] {
  return Array.from({ length: CELLS }, (_, c) => [0, 1, 2].map((i) => Number(Math.floor(c / 3) === i)).concat([0, 1, 2].map((i) => Number(c % 3 === i)))).flat();
}

/** Multi-hot [9 × attributes]: attribute a present in cell (row, col). */
export function sceneTargets(scene: Scene): number[] {
  const t = new Array<number>(CELLS * ATTRIBUTES.length).fill(0);
  for (const o of scene.objects) {
    const cell = o.row * 3 + o.col;
    for (const a of [o.color, o.shape, o.size, o.material]) t[cell * ATTRIBUTES.length + ATTRIBUTES.indexOf(a)] = 1;
  }
  return t;
}

/** sceneTargets of what `view` shows of `scene`: each object some part of which shows, in its cell. */
export function viewTargets(scene: Scene, view: JigsawView): number[] {
  return sceneTargets({ ...scene, objects: scene.objects.filter((o) => showsIn(o, view)) });
}

/**
 * The encoder with a linear read-out of each layout cell's attributes (not saved): the patch
 * grid is average-pooled to the 3×3 layout and one shared linear map reads every cell, so the
 * encoder must say what is where — the structure grid:K targets later pool.
 */
class EncoderWithProbe extends nn.Module {
  constructor(readonly encoder: VitVisionModel, readonly probe: nn.Linear, readonly place: nn.Linear | null) { super(); }
  /** pixels [B, 3, S, S] -> the layout's cells [B, 9, D] */
  cells(pixels: Tensor): Tensor {
    const tokens = this.encoder.features(pixels, -1); // [B, N, D], N = g × g patches (no class token)
    const [B, N, D] = tokens.shape as [number, number, number];
    const g = Math.round(Math.sqrt(N));
    return F.adaptiveAvgPool2d(tokens.transpose(1, 2).reshape(B, D, g, g), [3, 3]).flatten(2).transpose(1, 2); // [B, 9, D]
  }
  /** pixels [B, 3, S, S] -> logits [B, 9 × A], cell-major as sceneTargets */
  forward(pixels: Tensor): Tensor {
    return this.probe.forward(this.cells(pixels)).flatten(1);
  }
  /** The read-out's loss: every cell's attributes and, with a place read-out, its row and column. */
  loss(pixels: Tensor, targets: Tensor): Tensor {
    const cells = this.cells(pixels);
    const attributes = F.binaryCrossEntropyWithLogits(this.probe.forward(cells).flatten(1), targets);
    if (!this.place) return attributes;
    const places = torch.tensor(placeTargets(), { shape: [1, CELLS * PLACES] }).expand(cells.shape[0]!, CELLS * PLACES); // [B, 9 × 6]
    return attributes.add(F.binaryCrossEntropyWithLogits(this.place.forward(cells).flatten(1), places));
  }
}

export async function runWorldEncoder(r: WorldEncoderRecipe, opts: StageOptions = {}): Promise<{ encoderDir: string; result: TrainResult; accuracy: number; trainF1: number }> {
  refuseFinetuneOnlyKeys("world-encoder", r.train);
  mkdirSync(r.out, { recursive: true });
  writeResolved(r.out, r);
  const scenes = readScenes(r.world);
  const all_ = scenes.filter((s) => s.split === "train" || s.split === "val");
  const size = scenes[0]!.width;
  if (size % r.encoder.patch_size !== 0) throw new Error(`encoder.patch_size ${r.encoder.patch_size} does not divide the world's image size ${size}`);
  const encoderDir = join(r.out, "encoder");
  mkdirSync(encoderDir, { recursive: true });
  writeFileSync(join(encoderDir, "preprocessor_config.json"), JSON.stringify(worldPreprocessorJson(size), null, 2) + "\n");
  const pre = readPreprocessor(encoderDir);
  const path = (s: Scene) => join(r.world, "images", s.file_name);
  const { bank, usable } = await loadUsable(all_, (s) => [path(s)], pre, r.max_error_rate, console.error);
  const train_ = usable.filter((s) => s.split === "train"), val = usable.filter((s) => s.split === "val");

  torch.manualSeed(r.seed);
  const config = resolveVitConfig({
    variant: "siglip", hiddenSize: r.encoder.hidden_size, intermediateSize: r.encoder.intermediate_size, numHiddenLayers: r.encoder.layers,
    numAttentionHeads: r.encoder.heads, imageSize: size, patchSize: r.encoder.patch_size, useHead: false,
  });
  const generator = new torch.Generator(r.seed);
  const model = new EncoderWithProbe(new VitVisionModel(config, { generator }), new nn.Linear(config.hiddenSize, ATTRIBUTES.length, { generator }),
    r.read_position ? new nn.Linear(config.hiddenSize, PLACES, { generator }) : null);
  // With read_views, each batch of B scenes is [3B, …]: the scenes, then each view of them (JIGSAW_VIEWS order).
  const views = r.read_views ? { black: blackPixel(pre), targets: new Map<string, number[]>() } : null;
  /** viewTargets, worked out once per scene and view: showsIn samples every object's shape. */
  const viewTargetsOf = (s: Scene, view: JigsawView): number[] => {
    const key = `${s.id}/${view}`;
    let t = views!.targets.get(key);
    if (!t) views!.targets.set(key, t = viewTargets(s, view));
    return t;
  };
  const loader = new DataLoader({ length: train_.length, get: (i: number) => train_[i]! }, {
    batchSize: r.train.batch_size, seed: r.seed, ...dataShard(),
    collate: (batch: Scene[]) => {
      const pixels = bank.get(batch.map(path)), whole = batch.map(sceneTargets);
      if (!views) return { pixels, targets: torch.tensor(whole) };
      const v = jigsawViewPixels(pixels, views.black);
      const all = torch.cat([pixels, ...JIGSAW_VIEWS.map((view) => v[view])], 0);
      for (const t of [pixels, v.masked, v.piece]) t.dispose();
      return { pixels: all, targets: torch.tensor([...whole, ...JIGSAW_VIEWS.flatMap((view) => batch.map((s) => viewTargetsOf(s, view)))]) };
    },
  });
  const result = await train({
    model,
    loader: loader as DataLoader<unknown, { pixels: Tensor; targets: Tensor }>,
    step: ({ pixels, targets }) => ({ loss: model.loss(pixels, targets) }),
  }, trainConfig(r.out, r.train, r.seed), trainOptions(opts));
  stopIfInterrupted(result, r.out);

  // Read-out quality: F1 of the predicted (cell, attribute) pairs, on val (held out) and on
  // train (what the stage fitted). Bit accuracy would flatter it: most pairs are absent, so
  // predicting nothing already scores ~92%.
  model.eval();
  const f1 = (split: Scene[], view?: JigsawView) => torch.noGrad(() => torch.scope(() => {
    const pixels = bank.get(split.map(path));
    const predicted = model.forward(view ? jigsawViewPixels(pixels, views!.black)[view] : pixels).gt(0).float();
    const truth = torch.tensor(split.map((s) => (view ? viewTargets(s, view) : sceneTargets(s))));
    const tp = predicted.mul(truth).sum().item(), p = predicted.sum().item(), t = truth.sum().item();
    return p + t > 0 ? (2 * tp) / (p + t) : 0;
  }));
  const accuracy = f1(val), trainF1 = f1(train_);
  // With read_views, the views' F1 on val as well (each view's targets: what shows of each object).
  const viewF1 = views ? Object.fromEntries(JIGSAW_VIEWS.map((view) => [view, f1(val, view)])) : undefined;
  onLeadRank(() => {
    model.encoder.savePretrained(encoderDir);
    markDone(encoderDir, { steps: result.steps, valAttributeF1: accuracy, trainAttributeF1: trainF1, ...(viewF1 ? { valViewF1: viewF1 } : {}) });
  });
  views?.black.dispose();
  bank.dispose();
  model.parameters().forEach((p) => p.dispose());
  return { encoderDir, result, accuracy, trainF1 };
}
