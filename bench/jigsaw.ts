// bench:jigsaw — is world_jigsaw's answer in what the VLM is shown? A learning diagnostic, not a
// speed benchmark. Each item's three images (the scene with its lower-right quadrant missing, and
// two candidate pieces shown in place) go through the study's frozen world encoder, at the layer
// the VLM's projector reads (vision_feature_layer); the answer is then read from those 3 × 9
// tokens in three ways:
//
//   nearest   no training: the piece whose tokens are closer (L2, all 9 cells) to the first image's
//   probe ⊙   a logistic probe (analysis/probes.ts) of f1 ⊙ (f2 − f3), cell by cell: which piece
//             agrees with the first image, as a linear function of the tokens' products
//   probe |·| a logistic probe of |f1 − f2| − |f1 − f3|, cell by cell
//
// Each probe is fitted on the training items and scored on val, test and test_novel. A probe that
// reads the answer says the frozen features carry it; a fine-tuned VLM that stays at 50% then has
// to learn the comparison (match each cell of the first image with the same cell of each piece,
// 9 and 18 tokens apart) rather than to see something its encoder cannot.
//
// Then the colour each token shows, read by a logistic probe from the same tokens, of whole scenes
// and of the two jigsaw views of them (vlm_base image_word_views: the scene without its lower-right
// quadrant, the quadrant alone; world/jigsaw.ts viewCellWords): fitted on the training scenes'
// tokens, or on their views', and scored on the val scenes' views. Half objects are not whole ones
// to the encoder: a read-out learnt on scenes alone (as the base's image-word objective learns
// one) may not read the views that world_jigsaw compares.
//
// With --model (a base VLM of the study's world, e.g. RUN/stages/vlm-base/model), also what the
// VLM's own image tokens say: for each val token, whether its colour is among the 4 words that the
// projected token ranks highest through the LM's word embeddings (the image-word objective's
// read-out), for whole scenes and both views.
//
//   npm run bench:jigsaw [-- --run runs/demo --config configs/demo.yaml --model DIR --encoder DIR]
// (--encoder: another encoder of the study's world than its own, e.g. one trained with read_views.)
// Reads the world and encoder of a finished study (make demo); last line: one row per rule.
import { existsSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { torch, type Tensor } from "@mindseye/torch";
import { loadStudy } from "mindseye/dist/experiment/runner.js";
import { VitVisionModel } from "mindseye/dist/models/vit.js";
import { readBlinkJsonl, type BlinkItem } from "mindseye/dist/data/formats/index.js";
import { ImageBank, loadTokenizer, readPreprocessor, readScenes } from "mindseye/dist/train/stages/common.js";
import { jigsawViewPixels, blackPixel, cellWordIds } from "mindseye/dist/train/stages/vlm_base.js";
import { MindsEyeVLM } from "mindseye/dist/models/vlm.js";
import { JIGSAW_VIEWS, viewCellWords, type JigsawView } from "mindseye/dist/world/jigsaw.js";
import { cellWords } from "mindseye/dist/world/grounding.js";
import type { Scene } from "mindseye/dist/world/scene.js";
import { linearProbe } from "mindseye/dist/analysis/probes.js";

const args = parseArgs({
  options: {
    config: { type: "string", default: "configs/demo.yaml" },
    run: { type: "string" },
    model: { type: "string" },
    encoder: { type: "string" },
  },
}).values;
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const SPLITS = ["train", "val", "test", "test_novel"] as const;
const ENCODE_BATCH = 256;
/** Training scenes the colour read-outs are fitted on (their tokens: 9 per scene and view). */
const COLOUR_TRAIN_SCENES = 1500;

interface SplitFeatures {
  /** [n, 3, 9, D]: the first image's tokens, then each piece's. */
  tokens: Tensor;
  /** Whether the second image is the missing part, answer (A). */
  secondIsTrue: boolean[];
}

async function readSplit(world: string, split: string): Promise<BlinkItem[]> {
  const items: BlinkItem[] = [];
  for await (const item of readBlinkJsonl({ file: join(world, "blink", "Jigsaw", `${split}.jsonl`) })) items.push(item);
  return items;
}

async function encodeSplit(items: readonly BlinkItem[], encoder: VitVisionModel, encoderDir: string, layer: number): Promise<SplitFeatures> {
  const paths = items.flatMap((it) => it.images.slice(0, 3).map((im) => {
    if (im.kind !== "file") throw new Error(`jigsaw item ${it.id}: expected image files, as the world writes them`);
    return im.path;
  }));
  const bank = await ImageBank.load(paths, readPreprocessor(encoderDir));
  const chunks: Tensor[] = [];
  for (let i = 0; i < paths.length; i += ENCODE_BATCH) {
    chunks.push(torch.noGrad(() => torch.scope(() => encoder.features(bank.get(paths.slice(i, i + ENCODE_BATCH)), layer)))); // [b, 9, D]
  }
  const all = torch.cat(chunks, 0); // [3n, 9, D]
  for (const c of chunks) c.dispose();
  const [, cells, dim] = all.shape as [number, number, number];
  const tokens = all.reshape(items.length, 3, cells, dim);
  all.dispose();
  return { tokens, secondIsTrue: items.map((it) => it.answerIndex === 0) };
}

/** [n, 9·D] per item: f1 ⊙ (f2 − f3), or |f1 − f2| − |f1 − f3|. */
function pairFeatures(t: Tensor, kind: "product" | "distance"): Tensor {
  return torch.noGrad(() => torch.scope(() => {
    const f1 = t.select(1, 0), f2 = t.select(1, 1), f3 = t.select(1, 2); // [n, 9, D]
    const x = kind === "product" ? f1.mul(f2.sub(f3)) : f1.sub(f2).abs().sub(f1.sub(f3).abs());
    return x.flatten(1);
  }));
}

/** The piece nearer the first image (L2 over all cells) taken as the answer: accuracy. */
function nearestAccuracy(f: SplitFeatures): number {
  const nearerSecond = torch.noGrad(() => torch.scope(() => {
    const f1 = f.tokens.select(1, 0), d2 = f1.sub(f.tokens.select(1, 1)).square().sum([1, 2]), d3 = f1.sub(f.tokens.select(1, 2)).square().sum([1, 2]);
    return Array.from(d2.lt(d3).toTypedArray(), Boolean);
  }));
  return nearerSecond.filter((s, i) => s === f.secondIsTrue[i]).length / nearerSecond.length;
}

/** Tokens [n·9, D] of `scenes` as `view` shows them (null: whole), and each token's colour word. */
function viewTokens(scenes: readonly Scene[], world: string, bank: ImageBank, black: Tensor, encoder: VitVisionModel, layer: number, view: JigsawView | null): { x: Tensor; colours: string[] } {
  const chunks: Tensor[] = [];
  for (let i = 0; i < scenes.length; i += ENCODE_BATCH) {
    chunks.push(torch.noGrad(() => torch.scope(() => {
      const px = bank.get(scenes.slice(i, i + ENCODE_BATCH).map((s) => join(world, "images", s.file_name)));
      return encoder.features(view === null ? px : jigsawViewPixels(px, black)[view], layer).flatten(0, 1); // [b·9, D]
    })));
  }
  const x = torch.cat(chunks, 0);
  for (const c of chunks) c.dispose();
  const colours = scenes.flatMap((s) => (view === null ? cellWords(s) : viewCellWords(s, view)).map((words) => words[0]!));
  return { x, colours };
}

/** The colour read-outs: fitted on whole training scenes or on their views, scored on the val scenes' views. */
async function colourReadouts(world: string, encoderDir: string, encoder: VitVisionModel, layer: number): Promise<string[]> {
  const scenes = readScenes(world);
  const train = scenes.filter((s) => s.split === "train").slice(0, COLOUR_TRAIN_SCENES), val = scenes.filter((s) => s.split === "val");
  const pre = readPreprocessor(encoderDir);
  const bank = await ImageBank.load([...train, ...val].map((s) => join(world, "images", s.file_name)), pre);
  const black = blackPixel(pre);
  const whole = viewTokens(train, world, bank, black, encoder, layer, null);
  const trainViews = JIGSAW_VIEWS.map((v) => viewTokens(train, world, bank, black, encoder, layer, v));
  const both = { x: torch.cat(trainViews.map((t) => t.x), 0), colours: trainViews.flatMap((t) => t.colours) };
  const rows: string[] = [];
  for (const v of JIGSAW_VIEWS) {
    const test = viewTokens(val, world, bank, black, encoder, layer, v);
    const fromWhole = linearProbe(whole.x, whole.colours, test.x, test.colours), fromViews = linearProbe(both.x, both.colours, test.x, test.colours);
    rows.push(`colour of ${v.padEnd(6)} val tokens: read-out fitted on whole scenes ${(100 * fromWhole.accuracy).toFixed(1)}%, on views ${(100 * fromViews.accuracy).toFixed(1)}%  (majority ${(100 * fromWhole.majority).toFixed(1)}%, ${test.colours.length} tokens)`);
    test.x.dispose();
  }
  for (const t of [whole.x, ...trainViews.map((t) => t.x), both.x, black]) t.dispose();
  bank.dispose();
  return rows;
}

/** Per view, the share of val tokens whose colour word is among the 4 words the VLM's projected token ranks highest. */
async function vlmColourWords(modelDir: string, world: string): Promise<string> {
  const model = MindsEyeVLM.fromPretrained(modelDir), pre = readPreprocessor(modelDir);
  const ids = cellWordIds(loadTokenizer(world), model);
  const val = readScenes(world).filter((s) => s.split === "val");
  const paths = val.map((s) => join(world, "images", s.file_name));
  const bank = await ImageBank.load(paths, pre);
  const black = blackPixel(pre);
  const shares = [null, ...JIGSAW_VIEWS].map((view) => {
    let hits = 0;
    for (let i = 0; i < val.length; i += ENCODE_BATCH) {
      const scenes = val.slice(i, i + ENCODE_BATCH);
      const top = torch.noGrad(() => torch.scope(() => {
        const px = bank.get(paths.slice(i, i + ENCODE_BATCH));
        const tokens = model.imageFeatures(view === null ? px : jigsawViewPixels(px, black)[view]); // [b, 9, D]
        return Array.from(tokens.matmul(model.language_model.model.embed_tokens.weight.transpose(0, 1)).topk(4, -1).indices.toTypedArray(), Number); // [b·9·4]
      }));
      scenes.forEach((s, k) => ids(view === null ? cellWords(s) : viewCellWords(s, view)).forEach((words, cell) => {
        if (top.slice((k * 9 + cell) * 4, (k * 9 + cell + 1) * 4).includes(words[0]!)) hits++;
      }));
    }
    return `${view ?? "whole"} ${(100 * hits / (val.length * 9)).toFixed(1)}%`;
  });
  black.dispose();
  bank.dispose();
  model.parameters().forEach((p) => p.dispose());
  return `${modelDir}: colour among a val token's 4 top words — ${shares.join(", ")} (${val.length * 9} tokens each)`;
}

async function main(): Promise<void> {
  const study = loadStudy(resolve(root, args.config));
  const run = resolve(root, args.run ?? study.out);
  const world = join(run, "world"), encoderDir = args.encoder ? resolve(args.encoder) : join(run, "stages", "world-encoder", "encoder");
  if (!existsSync(join(encoderDir, "DONE"))) throw new Error(`${encoderDir}: no finished world encoder; run the study first (make demo, or mindseye experiment --config ${args.config})`);
  const layer = study.vlm_base.vision_feature_layer;
  const encoder = VitVisionModel.fromPretrained(encoderDir);
  const features = new Map<string, SplitFeatures>();
  for (const split of SPLITS) {
    const items = await readSplit(world, split);
    if (items.some((it) => it.answerIndex === null)) throw new Error(`${world}/blink/Jigsaw/${split}.jsonl: an item without an answer; the world's jigsaw items all have one`);
    features.set(split, await encodeSplit(items, encoder, encoderDir, layer));
    console.log(`${split}: ${items.length} items encoded (vision_feature_layer ${layer})`);
  }
  const label = (f: SplitFeatures) => f.secondIsTrue.map((s) => (s ? "A" : "B"));
  const rows: string[] = [];
  rows.push(`nearest    ${SPLITS.map((s) => `${s} ${(100 * nearestAccuracy(features.get(s)!)).toFixed(1)}%`).join("  ")}`);
  const train = features.get("train")!;
  for (const kind of ["product", "distance"] as const) {
    const xTrain = pairFeatures(train.tokens, kind);
    const scores = SPLITS.filter((s) => s !== "train").map((s) => {
      const f = features.get(s)!, xTest = pairFeatures(f.tokens, kind);
      try {
        return `${s} ${(100 * linearProbe(xTrain, label(train), xTest, label(f)).accuracy).toFixed(1)}%`;
      } finally {
        xTest.dispose();
      }
    });
    xTrain.dispose();
    rows.push(`probe ${kind === "product" ? "⊙  " : "|·|"}  ${scores.join("  ")}  (fitted on ${train.secondIsTrue.length} training items)`);
  }
  for (const f of features.values()) f.tokens.dispose();
  const colours = await colourReadouts(world, encoderDir, encoder, layer);
  if (args.model) colours.push(await vlmColourWords(resolve(args.model), world));
  console.log(`\njigsaw answer read from the frozen encoder's tokens (chance 50%):\n${rows.join("\n")}\n\n${colours.join("\n")}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
